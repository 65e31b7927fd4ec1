//! PROTOCOL.md section 6: the upgrade, as raw HTTP/1.1 requests see it.

mod common;

use common::*;
use etp_tokio::{Error, OriginPolicy, Server, ServerBuilder};

async fn start(builder: ServerBuilder) -> (TestServer, Hooks) {
    let (builder, hooks) = hooked(builder);
    (TestServer::start(builder.build().unwrap()).await, hooks)
}

/// Asserts a refusal: status, exact body, and the error hook's report (no connection).
async fn expect_refusal(hooks: &mut Hooks, response: &HttpResponse, status: u16, body: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.body, format!("{body}\n"), "{response:?}");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let (conn, err) = hooks.errors.next().await;
    assert!(conn.is_none(), "a refused upgrade has no connection");
    match err {
        Error::Handshake(handshake) => {
            assert_eq!(handshake.status().as_u16(), status);
            assert_eq!(handshake.message(), body);
        }
        other => panic!("expected Error::Handshake, got {other:?}"),
    }
    assert!(hooks.connects.try_next().is_none());
}

#[tokio::test]
async fn a_plain_get_without_upgrade_gets_426() {
    let (test, mut hooks) = start(Server::builder()).await;
    let addr = test.addr;
    let response = http_exchange(addr, &format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
    expect_refusal(
        &mut hooks,
        &response,
        426,
        "WebSocket protocol violation: Connection header \"\" does not contain Upgrade",
    )
    .await;
    assert_eq!(response.header("upgrade").as_deref(), Some("websocket"));

    // Connection: Upgrade without `Upgrade: websocket`.
    let response = http_exchange(
        addr,
        &format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"),
    )
    .await;
    expect_refusal(
        &mut hooks,
        &response,
        426,
        "WebSocket protocol violation: Upgrade header \"h2c\" does not contain websocket",
    )
    .await;
    test.stop().await;
}

#[tokio::test]
async fn http_1_0_gets_426() {
    let (test, mut hooks) = start(Server::builder()).await;
    let addr = test.addr;
    let request = upgrade_request("GET", addr, "/ws", "").replace("HTTP/1.1", "HTTP/1.0");
    let response = http_exchange(addr, &request).await;
    expect_refusal(
        &mut hooks,
        &response,
        426,
        "WebSocket protocol violation: handshake request must be at least HTTP/1.1: HTTP/1.0",
    )
    .await;
    test.stop().await;
}

#[tokio::test]
async fn a_post_upgrade_gets_405() {
    let (test, mut hooks) = start(Server::builder()).await;
    let response = http_exchange(test.addr, &upgrade_request("POST", test.addr, "/ws", "")).await;
    expect_refusal(
        &mut hooks,
        &response,
        405,
        "WebSocket protocol violation: handshake request method is not GET but \"POST\"",
    )
    .await;
    test.stop().await;
}

#[tokio::test]
async fn a_bad_websocket_version_gets_400() {
    let (test, mut hooks) = start(Server::builder()).await;
    let request = upgrade_request("GET", test.addr, "/ws", "")
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let response = http_exchange(test.addr, &request).await;
    expect_refusal(
        &mut hooks,
        &response,
        400,
        "unsupported WebSocket protocol version (only 13 is supported): \"8\"",
    )
    .await;
    assert_eq!(
        response.header("sec-websocket-version").as_deref(),
        Some("13")
    );
    test.stop().await;
}

#[tokio::test]
async fn a_missing_or_bad_key_gets_400() {
    let (test, mut hooks) = start(Server::builder()).await;
    let without_key = upgrade_request("GET", test.addr, "/ws", "")
        .replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "");
    let response = http_exchange(test.addr, &without_key).await;
    expect_refusal(
        &mut hooks,
        &response,
        400,
        "WebSocket protocol violation: missing Sec-WebSocket-Key",
    )
    .await;

    let bad_key = upgrade_request("GET", test.addr, "/ws", "").replace(KEY, "not-base64");
    let response = http_exchange(test.addr, &bad_key).await;
    expect_refusal(
        &mut hooks,
        &response,
        400,
        "WebSocket protocol violation: invalid Sec-WebSocket-Key \"not-base64\", must be a 16 byte base64 encoded string",
    )
    .await;

    let two_keys = upgrade_request(
        "GET",
        test.addr,
        "/ws",
        &format!("Sec-WebSocket-Key: {KEY}\r\n"),
    );
    let response = http_exchange(test.addr, &two_keys).await;
    expect_refusal(
        &mut hooks,
        &response,
        400,
        "WebSocket protocol violation: multiple Sec-WebSocket-Key headers",
    )
    .await;
    test.stop().await;
}

#[tokio::test]
async fn a_valid_upgrade_gets_101_with_the_rfc_accept_key_on_any_path() {
    let (test, mut hooks) = start(Server::builder()).await;
    for path in ["/", "/ws", "/any/path?with=query"] {
        let response = http_exchange(test.addr, &upgrade_request("GET", test.addr, path, "")).await;
        assert_eq!(response.status, 101, "{response:?}");
        assert_eq!(
            response.header("sec-websocket-accept").as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(response.header("upgrade").as_deref(), Some("websocket"));
        assert!(response.header("sec-websocket-protocol").is_none());
        let conn = hooks.connects.next().await;
        assert_eq!(conn.request().uri().to_string(), path);
    }
    assert!(hooks.errors.try_next().is_none());
    test.stop().await;
}

#[tokio::test]
async fn a_cross_origin_request_gets_403_with_go_text() {
    let (test, mut hooks) = start(Server::builder()).await;
    let addr = test.addr;
    let request = upgrade_request("GET", addr, "/ws", "Origin: http://evil.example\r\n");
    let response = http_exchange(addr, &request).await;
    expect_refusal(
        &mut hooks,
        &response,
        403,
        &format!("request Origin \"evil.example\" is not authorized for Host \"{addr}\""),
    )
    .await;
    // Same host name, other port: a different origin.
    let other_port = format!(
        "Origin: http://127.0.0.1:{}\r\n",
        addr.port().wrapping_add(1)
    );
    let response = http_exchange(addr, &upgrade_request("GET", addr, "/ws", &other_port)).await;
    assert_eq!(response.status, 403, "{response:?}");
    let _ = hooks.errors.next().await;
    test.stop().await;
}

#[tokio::test]
async fn a_same_host_origin_is_allowed() {
    let (test, mut hooks) = start(Server::builder()).await;
    let addr = test.addr;
    for origin in [
        format!("http://{addr}"),
        format!("https://{addr}/some/page"),
    ] {
        let request = upgrade_request("GET", addr, "/ws", &format!("Origin: {origin}\r\n"));
        let response = http_exchange(addr, &request).await;
        assert_eq!(response.status, 101, "{origin}: {response:?}");
        hooks.connects.next().await;
    }
    // Case-insensitive host comparison.
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: LocalHost:{port}\r\nOrigin: http://localhost:{port}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: {KEY}\r\n\r\n",
        port = addr.port()
    );
    assert_eq!(http_exchange(addr, &request).await.status, 101);
    assert!(hooks.errors.try_next().is_none());
    test.stop().await;
}

#[tokio::test]
async fn origin_patterns_allow_matching_origins_only() {
    let (test, mut hooks) = start(Server::builder().origin_patterns(["*.trusted.test"])).await;
    let addr = test.addr;
    let ask = |origin: &str| upgrade_request("GET", addr, "/ws", &format!("Origin: {origin}\r\n"));
    assert_eq!(
        http_exchange(addr, &ask("http://app.trusted.test"))
            .await
            .status,
        101
    );
    assert_eq!(
        http_exchange(addr, &ask("https://API.Trusted.Test"))
            .await
            .status,
        101
    );
    // The port is part of what the pattern must match.
    let response = http_exchange(addr, &ask("http://app.trusted.test:8080")).await;
    assert_eq!(response.status, 403);
    assert_eq!(
        response.body,
        format!("request Origin \"app.trusted.test:8080\" is not authorized for Host \"{addr}\"\n")
    );
    let response = http_exchange(addr, &ask("http://evil.example")).await;
    assert_eq!(response.status, 403);
    // Two refusals reported, two connections made.
    for _ in 0..2 {
        let (conn, err) = hooks.errors.next().await;
        assert!(conn.is_none());
        assert!(matches!(err, Error::Handshake(_)));
        hooks.connects.next().await;
    }
    test.stop().await;
}

#[tokio::test]
async fn insecure_allow_any_skips_the_origin_check() {
    let (test, mut hooks) =
        start(Server::builder().origin_policy(OriginPolicy::insecure_allow_any())).await;
    let addr = test.addr;
    let request = upgrade_request("GET", addr, "/ws", "Origin: http://evil.example\r\n");
    assert_eq!(http_exchange(addr, &request).await.status, 101);
    hooks.connects.next().await;
    // Other checks still apply.
    let response = http_exchange(addr, &upgrade_request("POST", addr, "/ws", "")).await;
    assert_eq!(response.status, 405);
    assert!(hooks.errors.next().await.0.is_none());
    test.stop().await;
}

#[tokio::test]
async fn an_origin_that_is_not_a_url_gets_403() {
    let (test, mut hooks) = start(Server::builder()).await;
    let request = upgrade_request("GET", test.addr, "/ws", "Origin: null\r\n");
    let response = http_exchange(test.addr, &request).await;
    expect_refusal(
        &mut hooks,
        &response,
        403,
        "request Origin \"null\" is not a valid URL with a host",
    )
    .await;
    test.stop().await;
}

#[tokio::test]
async fn browser_style_headers_are_accepted() {
    let (test, mut hooks) = start(Server::builder()).await;
    let addr = test.addr;
    // Firefox sends `Connection: keep-alive, Upgrade`; header values are matched
    // case-insensitively.
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         Origin: http://{addr}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    );
    let response = http_exchange(addr, &request).await;
    assert_eq!(response.status, 101, "{response:?}");
    // No extension is negotiated.
    assert!(response.header("sec-websocket-extensions").is_none());
    hooks.connects.next().await;
    test.stop().await;
}

#[tokio::test]
async fn a_frame_sent_right_behind_the_request_is_not_lost() {
    let server = Server::builder()
        .on(
            "early",
            |_conn: etp_tokio::Conn, _event: etp_tokio::Event| async { "seen" },
        )
        .build()
        .unwrap();
    let test = TestServer::start(server).await;
    let stream = tokio::net::TcpStream::connect(test.addr).await.unwrap();
    let mut bytes = upgrade_request("GET", test.addr, "/ws", "").into_bytes();
    bytes.extend(encode_frame(true, OP_TEXT, b"early||1", true));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut read, mut write) = stream.into_split();
    write.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    let expected = b"__ack_early||1||seen";
    within("the reply", async {
        while !got.windows(expected.len()).any(|w| w == expected) {
            let mut chunk = [0u8; 1024];
            let n = read.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(got.starts_with(b"HTTP/1.1 101"));
    drop((read, write));
    test.stop().await;
}
