//! PROTOCOL.md section 6: the upgrade, as raw HTTP/1.1 requests see it, on every
//! runtime. etp-tokio answers with hyper; etp-async-std reads the request head itself
//! (etp-async-std/src/http.rs): both must answer alike.

use etp_behaviour::raw::*;
use etp_behaviour::*;
use std::time::Duration;

use etp_driver::{Conn, Error, Event, OriginPolicy, Server, ServerBuilder};

fn start<R: TestRuntime>(builder: ServerBuilder<R>) -> (TestServer<R>, Hooks) {
    let (builder, hooks) = hooked(builder);
    (TestServer::start(builder.build().unwrap()), hooks)
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

async fn a_plain_get_without_upgrade_gets_426<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn http_1_0_gets_426<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn a_post_upgrade_gets_405<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn a_bad_websocket_version_gets_400<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn a_missing_or_bad_key_gets_400<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn a_valid_upgrade_gets_101_with_the_rfc_accept_key_on_any_path<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn a_cross_origin_request_gets_403_with_go_text<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn a_same_host_origin_is_allowed<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn origin_patterns_allow_matching_origins_only<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder().origin_patterns(["*.trusted.test"]));
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

async fn insecure_allow_any_skips_the_origin_check<R: TestRuntime>() {
    let (test, mut hooks) =
        start(Server::<R>::builder().origin_policy(OriginPolicy::insecure_allow_any()));
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

async fn an_origin_that_is_not_a_url_gets_403<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn browser_style_headers_are_accepted<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
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

async fn a_frame_sent_right_behind_the_request_is_not_lost<R: TestRuntime>() {
    let server = Server::<R>::builder()
        .on("early", |_conn: Conn, _event: Event| async { "seen" })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut bytes = upgrade_request("GET", test.addr, "/ws", "").into_bytes();
    bytes.extend(encode_frame(true, OP_TEXT, b"early||1", true));
    let expected = b"__ack_early||1||seen";
    let got = send_and_read_until(test.addr, bytes, expected).await;
    assert!(
        find(&got, expected).is_some(),
        "no reply: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.starts_with(b"HTTP/1.1 101"));
    test.stop().await;
}

// ---------------------------------------------------------------------------------
// The HTTP exchange around the upgrade: hyper (tokio) and etp-async-std's own reader
// must behave alike.
// ---------------------------------------------------------------------------------

/// A browser behind proxies may send many headers and large cookies: hyper takes up to
/// 100 headers and about 400 KiB of head (Go's net/http: 1 MiB).
async fn a_request_head_with_80_headers_and_a_20_kib_cookie_is_accepted<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
    let addr = test.addr;
    let many: String = (0..80).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let response = http_exchange(addr, &upgrade_request("GET", addr, "/ws", &many)).await;
    assert_eq!(response.status, 101, "80 headers: {response:?}");
    assert_eq!(
        hooks.connects.next().await.request().headers()["x-header-79"],
        "79"
    );
    let cookie = format!("Cookie: session={}\r\n", "c".repeat(20 * 1024));
    let response = http_exchange(addr, &upgrade_request("GET", addr, "/ws", &cookie)).await;
    assert_eq!(
        response.status,
        101,
        "a 20 KiB head: {:?}",
        response.status_line()
    );
    hooks.connects.next().await;
    assert!(hooks.errors.try_next().is_none());
    test.stop().await;
}

async fn a_malformed_request_gets_400_and_the_connection_is_closed<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
    for request in [
        "GARBAGE\r\n\r\n",
        "GET /ws HTTP/1.1\r\nNo colon here\r\n\r\n",
    ] {
        let (response, mut rest) = http_exchange_keeping(test.addr, request).await;
        assert_eq!(response.status, 400, "{request:?}: {response:?}");
        assert_eq!(
            rest.reader.ends_within(GUARD).await,
            Some(true),
            "the connection stays open after {request:?}"
        );
    }
    // Not an upgrade the server could judge: nothing reaches the hooks.
    assert!(hooks.errors.try_next().is_none());
    assert!(hooks.connects.try_next().is_none());
    test.stop().await;
}

/// HTTP/1.1 keeps a connection alive after an error response unless told otherwise
/// (hyper does, and so does Go's net/http behind Go etp): a client may send its real
/// upgrade on the connection that got the refusal.
async fn after_a_refusal_the_same_connection_can_carry_the_upgrade<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
    let addr = test.addr;
    let (response, mut socket) =
        http_exchange_keeping(addr, &format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
    assert_eq!(response.status, 426, "{response:?}");
    hooks.errors.next().await;
    socket
        .writer
        .write_raw(upgrade_request("GET", addr, "/ws", "").as_bytes())
        .await
        .unwrap();
    let head = socket.reader.head().await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");
    hooks.connects.next().await;
    // The refusal said nothing contradictory about the connection either.
    assert_eq!(
        response.headers("connection"),
        ["Upgrade"],
        "one Connection header: {response:?}"
    );
    drop(socket);
    test.stop().await;
}

/// The handshake timeout of these tests: short, so that nothing waits for long, and
/// far above what a loopback request head needs.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(400);

/// The default handshake timeout is hyper's old fixed 10 s, on both runtimes.
async fn the_default_handshake_timeout_is_ten_seconds<R: TestRuntime>() {
    let server = Server::<R>::builder().build().unwrap();
    assert_eq!(server.handshake_timeout(), Duration::from_secs(10));
    assert_eq!(
        etp_driver::DEFAULT_HANDSHAKE_TIMEOUT,
        Duration::from_secs(10)
    );
}

/// A client that sends half a request head and stalls is dropped once the handshake
/// timeout passes (hyper's `header_read_timeout` on tokio, the adapter's own timer on
/// async-std), without an answer and without holding up other connections.
async fn a_half_sent_request_head_is_dropped_after_the_handshake_timeout<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder().handshake_timeout(HANDSHAKE_TIMEOUT));
    let mut stalled = RawSocket::connect_raw(test.addr).await;
    stalled
        .writer
        .write_raw(format!("GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upg", test.addr).as_bytes())
        .await
        .unwrap();
    // Others get through meanwhile.
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    hooks.connects.next().await;
    assert_eq!(peer.ask("x||1").await, "__ack_x||1");
    assert_eq!(
        stalled.reader.ends_within(GUARD).await,
        Some(true),
        "the stalled request got an answer instead of being dropped"
    );
    assert!(hooks.errors.try_next().is_none());
    assert!(hooks.connects.try_next().is_none());
    test.stop_with(&mut peer).await;
}

/// A TCP connection that never sends a byte is dropped after the handshake timeout
/// too: idle sockets cannot pile up before the upgrade.
async fn a_connection_that_sends_nothing_is_dropped_after_the_handshake_timeout<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder().handshake_timeout(HANDSHAKE_TIMEOUT));
    let mut silent = RawSocket::connect_raw(test.addr).await;
    assert_eq!(silent.reader.ends_within(GUARD).await, Some(true));
    assert!(hooks.errors.try_next().is_none());
    assert!(hooks.connects.try_next().is_none());
    test.stop().await;
}

/// A head that arrives in pieces, all within the timeout, is upgraded.
async fn a_request_head_sent_in_pieces_within_the_timeout_is_upgraded<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder().handshake_timeout(Duration::from_secs(1)));
    let mut socket = RawSocket::connect_raw(test.addr).await;
    let request = upgrade_request("GET", test.addr, "/ws", "");
    let (first, second) = request.split_at(request.len() / 2);
    socket.writer.write_raw(first.as_bytes()).await.unwrap();
    R::sleep(Duration::from_millis(300)).await;
    socket.writer.write_raw(second.as_bytes()).await.unwrap();
    let head = socket.reader.head().await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");
    hooks.connects.next().await;
    // Past the timeout, the upgraded connection is not touched by it.
    R::sleep(Duration::from_millis(900)).await;
    socket.send(OP_TEXT, b"x||1").await;
    assert_eq!(socket.frame().await.expect("a reply").text(), "__ack_x||1");
    drop(socket);
    hooks.disconnects.next().await;
    test.stop().await;
}

behaviour_suite! {
    a_plain_get_without_upgrade_gets_426,
    http_1_0_gets_426,
    a_post_upgrade_gets_405,
    a_bad_websocket_version_gets_400,
    a_missing_or_bad_key_gets_400,
    a_valid_upgrade_gets_101_with_the_rfc_accept_key_on_any_path,
    a_cross_origin_request_gets_403_with_go_text,
    a_same_host_origin_is_allowed,
    origin_patterns_allow_matching_origins_only,
    insecure_allow_any_skips_the_origin_check,
    an_origin_that_is_not_a_url_gets_403,
    browser_style_headers_are_accepted,
    a_frame_sent_right_behind_the_request_is_not_lost,
    a_request_head_with_80_headers_and_a_20_kib_cookie_is_accepted,
    a_malformed_request_gets_400_and_the_connection_is_closed,
    after_a_refusal_the_same_connection_can_carry_the_upgrade,
    the_default_handshake_timeout_is_ten_seconds,
    a_half_sent_request_head_is_dropped_after_the_handshake_timeout,
    a_connection_that_sends_nothing_is_dropped_after_the_handshake_timeout,
    a_request_head_sent_in_pieces_within_the_timeout_is_upgraded,
}
