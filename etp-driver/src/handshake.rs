//! The server side of the WebSocket upgrade, with Go etp's (coder/websocket's) rules
//! and messages: which requests are refused, with which status, and the origin check.

use std::fmt;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

/// Which browser origins may open a connection (PROTOCOL.md section 6).
///
/// A request without `Origin` (not a browser) is always allowed; so is one whose
/// origin host equals the request's `Host` (case-insensitive). Other origins must match
/// one of the patterns, unless the check is skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    patterns: Vec<String>,
    skip: bool,
}

impl OriginPolicy {
    /// Same host only (the default).
    pub fn same_host() -> Self {
        Self::default()
    }

    /// Same host, or an origin `host[:port]` matching one of these case-insensitive
    /// glob patterns (`*` and `?` match within a name, `[a-z]` classes, `\` escapes),
    /// such as `"*.example.com"` or `"localhost:*"`.
    pub fn patterns<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| p.into().to_ascii_lowercase())
            .collect();
        Self {
            patterns,
            skip: false,
        }
    }

    /// No origin check at all: any web page may connect. Only for development or when
    /// the application authenticates every connection itself.
    pub fn insecure_allow_any() -> Self {
        Self {
            patterns: Vec::new(),
            skip: true,
        }
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), HandshakeError> {
        if self.skip {
            return Ok(());
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let host = headers
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        let Some(origin_host) = origin_host(&origin) else {
            return Err(HandshakeError::forbidden(format!(
                "request Origin {origin:?} is not a valid URL with a host"
            )));
        };
        if origin_host.eq_ignore_ascii_case(&host) {
            return Ok(());
        }
        let lower = origin_host.to_ascii_lowercase();
        if self
            .patterns
            .iter()
            .any(|p| glob(p.as_bytes(), lower.as_bytes()))
        {
            return Ok(());
        }
        Err(HandshakeError::forbidden(format!(
            "request Origin {origin_host:?} is not authorized for Host {host:?}"
        )))
    }
}

/// The `host[:port]` of an origin such as `https://example.com:8443`.
fn origin_host(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

/// Go's `filepath.Match` on names without separators: `*`, `?`, `[...]`, `\`.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len())
            .take_while(|&i| i == 0 || text[i - 1] != b'/')
            .any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => {
            matches!(text.split_first(), Some((&c, t)) if c != b'/' && glob(rest, t))
        }
        Some((b'[', rest)) => {
            let Some((&c, t)) = text.split_first() else {
                return false;
            };
            match class(rest, c) {
                Some((true, after)) => glob(after, t),
                _ => false,
            }
        }
        Some((b'\\', rest)) => match (rest.split_first(), text.split_first()) {
            (Some((p, prest)), Some((c, t))) => p == c && glob(prest, t),
            _ => false,
        },
        Some((p, rest)) => matches!(text.split_first(), Some((c, t)) if c == p && glob(rest, t)),
    }
}

/// Matches `c` against a class body (after `[`); returns the match and the pattern
/// after `]`, or `None` for a malformed class (which, as in Go, matches nothing).
fn class(body: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (negated, mut body) = match body.split_first() {
        Some((b'^', rest)) => (true, rest),
        _ => (false, body),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let (&lo, rest) = body.split_first()?;
        if lo == b']' && !first {
            return Some((matched != negated, rest));
        }
        first = false;
        let (lo, rest) = if lo == b'\\' {
            (*rest.first()?, &rest[1..])
        } else {
            (lo, rest)
        };
        let (hi, rest) = match rest {
            [b'-', hi, tail @ ..] if *hi != b']' => (*hi, tail),
            _ => (lo, rest),
        };
        if lo <= c && c <= hi {
            matched = true;
        }
        body = rest;
    }
}

/// A refused upgrade: the status and short text body to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeError {
    status: StatusCode,
    message: String,
    /// Headers coder/websocket adds to tell the client what to send instead.
    hint: Option<(header::HeaderName, &'static str)>,
}

impl HandshakeError {
    fn new(status: StatusCode, message: String) -> Self {
        Self {
            status,
            message,
            hint: None,
        }
    }

    /// A refusal with this status and message, for an authentication hook
    /// ([`ServerBuilder::authenticate`](crate::ServerBuilder::authenticate)). The
    /// message is the response body: say what the client should do, and nothing a
    /// stranger should not know. A status that is not an error (outside 400..=599)
    /// would let the client think the upgrade went through: it becomes 403.
    pub fn refuse(status: StatusCode, message: impl Into<String>) -> Self {
        let status = match status.as_u16() {
            400..=599 => status,
            _ => StatusCode::FORBIDDEN,
        };
        Self::new(status, message.into())
    }

    /// 401 Unauthorized: the request carries no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message.into())
    }

    /// 500: the authentication hook panicked (the panic goes to the error hook, not
    /// to the client).
    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error".to_owned(),
        )
    }

    /// 503: the server is shutting down.
    pub(crate) fn service_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down".to_owned(),
        )
    }

    /// 403 Forbidden: the credentials are valid but not enough (or the origin is not
    /// allowed).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message.into())
    }

    /// The HTTP status: 426, 405, 400 or 403 (503 while shutting down), or the one an
    /// authentication hook chose.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The explanation sent as the body.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP response to send: the status, the message as a text body, and the
    /// headers that say what a valid request needs.
    pub fn to_response(&self) -> Response<String> {
        let mut response = Response::new(format!("{}\n", self.message));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status == StatusCode::UPGRADE_REQUIRED {
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        if let Some((name, value)) = &self.hint {
            headers.insert(name.clone(), HeaderValue::from_static(value));
        }
        response
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for HandshakeError {}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Checks an upgrade request the way Go etp does and returns the `101 Switching
/// Protocols` response to send, or the refusal.
///
/// Order and messages follow coder/websocket: not an upgrade 426, not `GET` 405, bad
/// `Sec-WebSocket-Version` or `Sec-WebSocket-Key` 400, then the origin check 403.
pub fn accept(
    method: &Method,
    version: http::Version,
    headers: &HeaderMap,
    origins: &OriginPolicy,
) -> Result<Response<()>, HandshakeError> {
    if version < http::Version::HTTP_11 {
        return Err(HandshakeError::new(
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "WebSocket protocol violation: handshake request must be at least HTTP/1.1: {version:?}"
            ),
        ));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::new(
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "WebSocket protocol violation: Connection header {:?} does not contain Upgrade",
                header_text(headers, header::CONNECTION)
            ),
        ));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(HandshakeError::new(
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "WebSocket protocol violation: Upgrade header {:?} does not contain websocket",
                header_text(headers, header::UPGRADE)
            ),
        ));
    }
    if method != Method::GET {
        return Err(HandshakeError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "WebSocket protocol violation: handshake request method is not GET but {:?}",
                method.as_str()
            ),
        ));
    }
    let version = header_text(headers, header::SEC_WEBSOCKET_VERSION);
    if version != "13" {
        let mut err = HandshakeError::new(
            StatusCode::BAD_REQUEST,
            format!("unsupported WebSocket protocol version (only 13 is supported): {version:?}"),
        );
        err.hint = Some((header::SEC_WEBSOCKET_VERSION, "13"));
        return Err(err);
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (None, _) => {
            return Err(HandshakeError::new(
                StatusCode::BAD_REQUEST,
                "WebSocket protocol violation: missing Sec-WebSocket-Key".to_owned(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(HandshakeError::new(
                StatusCode::BAD_REQUEST,
                "WebSocket protocol violation: multiple Sec-WebSocket-Key headers".to_owned(),
            ));
        }
        (Some(key), None) => String::from_utf8_lossy(key.as_bytes()).trim().to_owned(),
    };
    if !is_base64_of_16_bytes(&key) {
        return Err(HandshakeError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "WebSocket protocol violation: invalid Sec-WebSocket-Key {key:?}, must be a 16 byte base64 encoded string"
            ),
        ));
    }
    origins.check(headers)?;

    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    Ok(response)
}

/// A dial URL as tungstenite wants it: `http(s)://` becomes `ws(s)://`, as Go etp's
/// client accepts both; other schemes are refused with an explanation.
pub fn websocket_url(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} has no scheme"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(format!(
                "unsupported scheme {other:?} in {url:?} (ws, wss, http, https)"
            ));
        }
    };
    Ok(format!("{scheme}://{rest}"))
}

/// The tungstenite settings for one connection, the same on every runtime: the read
/// limit enforced while a message is assembled (frames too), and small buffers
/// (tungstenite's defaults take 128 KiB per connection for reading alone).
pub fn websocket_config(config: &crate::ConnConfig) -> tungstenite::protocol::WebSocketConfig {
    let read_limit = config.session.read_limit;
    tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(4 << 20)
        .max_message_size(read_limit)
        .max_frame_size(read_limit)
}

/// Standard base64 with padding that decodes to exactly 16 bytes (Go's lenient
/// `StdEncoding.DecodeString`: trailing bits are not checked).
fn is_base64_of_16_bytes(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    const GOOD: &[(&str, &str)] = &[
        ("host", "example.com"),
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn try_accept(
        extra: &[(&str, &str)],
        policy: &OriginPolicy,
    ) -> Result<Response<()>, HandshakeError> {
        let mut h = headers(GOOD);
        for (k, v) in extra {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        accept(&Method::GET, http::Version::HTTP_11, &h, policy)
    }

    #[test]
    fn a_valid_upgrade_gets_the_rfc_accept_key() {
        let response = try_accept(&[], &OriginPolicy::default()).unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            response.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refusals_use_go_statuses_and_messages() {
        let policy = OriginPolicy::default();
        let err = accept(
            &Method::GET,
            http::Version::HTTP_11,
            &headers(&[("host", "x")]),
            &policy,
        )
        .unwrap_err();
        assert_eq!(err.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(
            err.message(),
            "WebSocket protocol violation: Connection header \"\" does not contain Upgrade"
        );
        let err = accept(
            &Method::POST,
            http::Version::HTTP_11,
            &headers(GOOD),
            &policy,
        )
        .unwrap_err();
        assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            err.message(),
            "WebSocket protocol violation: handshake request method is not GET but \"POST\""
        );
        let err = try_accept(&[("sec-websocket-version", "8")], &policy).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            err.to_response().headers()[header::SEC_WEBSOCKET_VERSION],
            "13"
        );
        let err = try_accept(&[("sec-websocket-key", "short")], &policy).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(
            err.message()
                .contains("invalid Sec-WebSocket-Key \"short\"")
        );
    }

    #[test]
    fn origin_rules_same_host_patterns_and_skip() {
        let same = OriginPolicy::default();
        assert!(try_accept(&[("origin", "https://EXAMPLE.com")], &same).is_ok());
        let err = try_accept(&[("origin", "https://evil.com")], &same).unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            err.message(),
            "request Origin \"evil.com\" is not authorized for Host \"example.com\""
        );
        let patterns = OriginPolicy::patterns(["*.Trusted.org", "localhost:30??"]);
        assert!(try_accept(&[("origin", "https://app.trusted.ORG")], &patterns).is_ok());
        assert!(try_accept(&[("origin", "http://localhost:3000")], &patterns).is_ok());
        assert!(try_accept(&[("origin", "http://localhost:4000")], &patterns).is_err());
        assert!(
            try_accept(
                &[("origin", "https://evil.com")],
                &OriginPolicy::insecure_allow_any()
            )
            .is_ok()
        );
    }

    #[test]
    fn refusals_from_hooks_keep_error_statuses_only() {
        let refusal = HandshakeError::refuse(StatusCode::TOO_MANY_REQUESTS, "slow down");
        assert_eq!(refusal.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refusal.to_response().body(), "slow down\n");
        // The edges of the error range are kept; one past them is not.
        for (given, kept) in [(400, 400), (599, 599), (399, 403), (600, 403), (101, 403)] {
            let status = StatusCode::from_u16(given).unwrap();
            assert_eq!(
                HandshakeError::refuse(status, "x").status().as_u16(),
                kept,
                "{given}"
            );
        }
        assert_eq!(
            HandshakeError::unauthorized("who").status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            HandshakeError::forbidden("no").status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn http_urls_become_websocket_urls() {
        assert_eq!(websocket_url("http://h/ws?x=1").unwrap(), "ws://h/ws?x=1");
        assert_eq!(websocket_url("HTTPS://h").unwrap(), "wss://h");
        assert_eq!(websocket_url("ws://h").unwrap(), "ws://h");
        assert!(websocket_url("ftp://h").is_err());
        assert!(websocket_url("h:80").is_err());
    }

    #[test]
    fn glob_follows_go_filepath_match() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"[a-c]x", b"bx"));
        assert!(!glob(b"[^a-c]x", b"bx"));
        assert!(glob(b"\\*", b"*"));
        assert!(!glob(b"[a-", b"a"));
    }
}
