//! A minimal HTTP/1.1 upgrade exchange over any byte stream: read request heads and
//! answer `101` or a refusal. async-std has no hyper; this does what hyper does for
//! etp on tokio, with the same limits (100 headers, about 400 KiB of head) and
//! keep-alive after a refusal, so the two runtimes behave alike.

use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest request head accepted (hyper's default buffer limit); a longer one is
/// refused with 431.
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The most request headers accepted (hyper's default).
const MAX_HEADERS: usize = 100;
/// How much of a partial head is parsed early to refuse garbage at once.
const EARLY_CHECK: usize = 16 * 1024;
/// The longest request body skipped to keep a connection alive after a refusal;
/// anything larger closes the connection instead.
const MAX_SKIPPED_BODY: usize = 64 * 1024;

/// A request head, and the bytes read past it (the client may send its first frame
/// right after the handshake, or its next request after a refusal).
pub(crate) struct Head {
    pub(crate) request: http::Request<()>,
    pub(crate) rest: Vec<u8>,
}

/// Why no request head could be read.
pub(crate) enum HeadError {
    /// The connection ended or failed before a full head arrived: nobody to answer.
    Gone,
    /// The head is malformed or too large: answer with this status and text.
    Refuse(http::StatusCode, &'static str),
}

/// Reads one request head; `buf` holds bytes already read past the previous one.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: Vec<u8>,
) -> Result<Head, HeadError> {
    // Where to resume looking for the blank line, so each byte is scanned once.
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(&buf, scanned) {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            return match parsed.parse(&buf[..end]) {
                Ok(httparse::Status::Complete(len)) => {
                    let request = to_http(&parsed)?;
                    Ok(Head {
                        request,
                        rest: buf.split_off(len),
                    })
                }
                Err(httparse::Error::TooManyHeaders) => Err(HeadError::Refuse(
                    http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many request headers",
                )),
                _ => Err(HeadError::Refuse(
                    http::StatusCode::BAD_REQUEST,
                    "malformed HTTP request",
                )),
            };
        }
        scanned = buf.len().saturating_sub(2);
        // Garbage (a TLS hello, say) is refused as soon as its start shows it, not
        // after the handshake timeout; the start suffices, so big heads are not
        // re-parsed on every read.
        if !buf.is_empty() && buf.len() <= EARLY_CHECK {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            if let Err(err) = httparse::Request::new(&mut headers).parse(&buf) {
                return Err(match err {
                    httparse::Error::TooManyHeaders => HeadError::Refuse(
                        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "too many request headers",
                    ),
                    _ => HeadError::Refuse(http::StatusCode::BAD_REQUEST, "malformed HTTP request"),
                });
            }
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::Refuse(
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            ));
        }
        // Read straight into the buffer: a stack array here would sit in every
        // connection task's state for the connection's whole life.
        let filled = buf.len();
        buf.resize(filled + 8192, 0);
        let read = stream.read(&mut buf[filled..]).await;
        buf.truncate(filled + read.as_ref().map_or(0, |n| *n));
        match read {
            Ok(0) | Err(_) => return Err(HeadError::Gone),
            Ok(_) => {}
        }
    }
}

/// The end of the head (just past its blank line, `\n\n` or `\n\r\n`), searching from
/// `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(offset) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + offset;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

fn to_http(parsed: &httparse::Request<'_, '_>) -> Result<http::Request<()>, HeadError> {
    let bad = |_| HeadError::Refuse(http::StatusCode::BAD_REQUEST, "malformed HTTP request");
    let version = match parsed.version {
        Some(1) => http::Version::HTTP_11,
        _ => http::Version::HTTP_10,
    };
    let mut builder = http::Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(version);
    for header in parsed.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    builder.body(()).map_err(bad)
}

/// After a refused request, whether the connection can carry the next one (HTTP/1.1
/// keep-alive, as hyper does), and how many body bytes to skip first.
pub(crate) fn keep_alive_after_refusal(request: &http::request::Parts) -> Option<usize> {
    let headers = &request.headers;
    let says_close = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        });
    if request.version != http::Version::HTTP_11
        || says_close
        || headers.contains_key(http::header::TRANSFER_ENCODING)
    {
        return None;
    }
    let body = match headers.get(http::header::CONTENT_LENGTH) {
        None => 0,
        Some(value) => value.to_str().ok()?.trim().parse().ok()?,
    };
    (body <= MAX_SKIPPED_BODY).then_some(body)
}

/// Drops `len` body bytes: first from `buf` (already read), then from the stream.
/// Returns what remains of `buf`, or `None` if the stream ended.
pub(crate) async fn skip_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: Vec<u8>,
    len: usize,
) -> Option<Vec<u8>> {
    let from_buf = len.min(buf.len());
    buf.drain(..from_buf);
    let mut left = len - from_buf;
    let mut chunk = vec![0u8; left.min(8192)];
    while left > 0 {
        let n = stream.read(&mut chunk[..left.min(8192)]).await.ok()?;
        if n == 0 {
            return None;
        }
        left -= n;
    }
    Some(buf)
}

/// Writes a response head (and text body) in one write; `close` announces that the
/// connection ends after it.
pub(crate) async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &http::Response<String>,
    close: bool,
) -> std::io::Result<()> {
    let status = response.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        if close && name == http::header::CONNECTION {
            continue;
        }
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push_str("\r\n");
    }
    if status != http::StatusCode::SWITCHING_PROTOCOLS {
        out.push_str(&format!("content-length: {}\r\n", response.body().len()));
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(response.body());
    stream.write_all(out.as_bytes()).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::head_end;

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(head_end(b"", 0), None);
    }
}
