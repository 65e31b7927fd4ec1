//! PROTOCOL.md section 7, the client: dialing, headers, closed states, redialing,
//! ping, and automatic reconnection across a server restart; on every runtime.

use std::time::Duration;

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{
    AckError, Backoff, Client, Conn, DialError, DisconnectReason, EmitError, Error, Event, Server,
};

fn echo_server<R: TestRuntime>() -> (TestServer<R>, Hooks) {
    let (builder, hooks) = hooked(Server::<R>::builder());
    let server = builder
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .on(
            "kick",
            |conn: Conn, _event: Event| async move { conn.close() },
        )
        .build()
        .unwrap();
    (TestServer::start(server), hooks)
}

/// A `127.0.0.1` port that nothing listens on (it was just freed).
fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn the_client_dials_ws_and_http_urls<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>();
    for url in [
        format!("ws://{}/ws", test.addr),
        format!("http://{}/ws", test.addr),
        format!("WS://{}/upper", test.addr),
    ] {
        let client = Client::<R>::builder().build().unwrap();
        let conn = within("dial", client.dial(&url)).await.unwrap();
        assert!(client.is_connected());
        assert_eq!(client.conn().as_ref(), Some(&conn));
        assert_eq!(
            within("ack", client.emit_with_ack("echo", url.clone()))
                .await
                .unwrap(),
            url.as_str()
        );
        // The client's conn knows the server's address; it has no rooms.
        assert_eq!(conn.request().remote_addr(), Some(test.addr));
        assert!(!conn.join("room"));
        assert!(conn.server_rooms().is_none());
        let server_conn = hooks.connects.next().await;
        assert!(
            server_conn
                .request()
                .uri()
                .path()
                .starts_with(if url.ends_with("upper") {
                    "/upper"
                } else {
                    "/ws"
                })
        );
        client.close();
        let (_, reason) = hooks.disconnects.next().await;
        assert!(reason.is_normal(), "{reason:?}");
    }
    test.stop().await;
}

async fn bad_urls_and_refused_dials_fail_clearly<R: TestRuntime>() {
    let client = Client::<R>::builder().build().unwrap();
    for url in ["ftp://127.0.0.1/ws", "127.0.0.1:80", "ws://"] {
        let err = within("dial", client.dial(url)).await.unwrap_err();
        assert!(
            matches!(err, DialError::InvalidRequest(_) | DialError::Handshake(_)),
            "{url}: {err:?}"
        );
    }
    assert!(matches!(
        within("dial", client.dial("ftp://127.0.0.1/ws")).await,
        Err(DialError::InvalidRequest(_))
    ));
    // Nothing listens on a port we just freed.
    let addr = free_addr();
    let err = within("dial", client.dial(&format!("ws://{addr}/ws")))
        .await
        .unwrap_err();
    assert!(matches!(err, DialError::Io(_)), "{err:?}");
    assert!(!client.is_connected());

    // An upgrade the server refuses (403) is a handshake error too.
    let (test, mut hooks) = echo_server::<R>();
    let mut headers = http::HeaderMap::new();
    headers.insert("origin", "http://evil.example".parse().unwrap());
    let err = within("dial", client.dial_with_headers(&test.url("/ws"), headers))
        .await
        .unwrap_err();
    assert!(matches!(err, DialError::Handshake(_)), "{err:?}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(hooks.errors.next().await.0.is_none());
    test.stop().await;
}

async fn dial_with_headers_sends_them_to_the_server<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>();
    let client = Client::<R>::builder().build().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", "Bearer abc".parse().unwrap());
    headers.insert("x-app", "tests".parse().unwrap());
    headers.append("x-multi", "one".parse().unwrap());
    headers.append("x-multi", "two".parse().unwrap());
    within(
        "dial",
        client.dial_with_headers(&test.url("/ws?room=7"), headers),
    )
    .await
    .unwrap();
    let conn = hooks.connects.next().await;
    let request = conn.request();
    assert_eq!(request.headers()["authorization"], "Bearer abc");
    assert_eq!(request.headers()["x-app"], "tests");
    let multi: Vec<_> = request.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(request.query_param("room"), Some("7"));
    client.close();
    test.stop().await;
}

async fn the_client_fails_to_emit_before_dialing_and_after_a_disconnect<R: TestRuntime>() {
    let (client, mut client_hooks) = hooked_client(Client::<R>::builder());
    let client = client.build().unwrap();
    assert!(!client.is_connected());
    assert!(client.conn().is_none());
    assert_eq!(client.emit("echo", "x"), Err(EmitError::Closed));
    assert_eq!(
        client.emit_with_ack("echo", "x").await,
        Err(AckError::Emit(EmitError::Closed))
    );
    assert_eq!(client.ping().await, Err(EmitError::Closed));

    let (test, _hooks) = echo_server::<R>();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let first = client_hooks.connects.next().await;
    client.emit("kick", "").unwrap();
    let (gone, reason) = client_hooks.disconnects.next().await;
    assert_eq!(gone, first);
    assert!(reason.is_normal(), "{reason:?}");
    assert!(!client.is_connected());
    assert_eq!(client.emit("echo", "x"), Err(EmitError::Closed));
    assert_eq!(
        client.emit_with_ack("echo", "x").await,
        Err(AckError::Emit(EmitError::Closed))
    );
    assert_eq!(first.emit("echo", "x"), Err(EmitError::Closed));
    assert_eq!(client.ping().await, Err(EmitError::Closed));
    assert_eq!(EmitError::Closed.to_string(), "connection closed");

    // The client can dial again.
    within("redial", client.dial(&test.url("/ws")))
        .await
        .unwrap();
    let second = client_hooks.connects.next().await;
    assert_ne!(first.id(), second.id());
    assert_eq!(
        within("ack", client.emit_with_ack("echo", "again"))
            .await
            .unwrap(),
        "again"
    );
    client.close();
    let (_, reason) = client_hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    assert_eq!(client.emit("echo", "x"), Err(EmitError::Closed));
    test.stop().await;
}

async fn a_new_dial_replaces_the_current_connection<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>();
    let client = Client::<R>::builder().build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let first = hooks.connects.next().await;
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let second = hooks.connects.next().await;
    let (gone, reason) = hooks.disconnects.next().await;
    assert_eq!(gone, first);
    assert!(reason.is_normal(), "{reason:?}");
    // (The disconnect hook runs while the connection is still registered.)
    eventually("the first connection to be unregistered", || {
        test.server.connection_count() == 1
    })
    .await;
    assert_eq!(test.server.rooms().all(), [second]);
    client.close();
    test.stop().await;
}

async fn client_ping_is_answered<R: TestRuntime>() {
    let (test, _hooks) = echo_server::<R>();
    let client = Client::<R>::builder().build().unwrap();
    let conn = within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    for _ in 0..3 {
        within("pong", client.ping()).await.unwrap();
    }
    within("pong", conn.ping()).await.unwrap();
    // Pings and events interleave.
    let (pong, echo) = within("both", async {
        futures_util::join!(client.ping(), client.emit_with_ack("echo", "e"))
    })
    .await;
    pong.unwrap();
    assert_eq!(echo.unwrap(), "e");
    client.close();
    test.stop().await;
}

async fn the_server_can_ping_the_client_too<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>();
    let client = Client::<R>::builder().build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let conn = hooks.connects.next().await;
    within("pong", conn.ping()).await.unwrap();
    client.close();
    test.stop().await;
}

async fn client_handlers_receive_server_events_and_answer_requests<R: TestRuntime>() {
    let (seen_tx, mut seen) = channel::<String>();
    let (test, mut hooks) = echo_server::<R>();
    let client = Client::<R>::builder()
        .on("news", move |_conn: Conn, event: Event| {
            let seen_tx = seen_tx.clone();
            async move {
                seen_tx.send(String::from_utf8_lossy(event.data()).into_owned());
            }
        })
        .on("question", |_conn: Conn, event: Event| async move {
            format!("answer to {}", String::from_utf8_lossy(event.data()))
        })
        .build()
        .unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let conn = hooks.connects.next().await;
    conn.emit("news", "hello client").unwrap();
    assert_eq!(seen.next().await, "hello client");
    assert_eq!(
        within("ack", conn.emit_with_ack("question", "life"))
            .await
            .unwrap(),
        "answer to life"
    );
    // No handler on the client: still answered, with empty data.
    assert!(
        within("ack", conn.emit_with_ack("unknown", "x"))
            .await
            .unwrap()
            .is_empty()
    );
    client.close();
    test.stop().await;
}

async fn the_client_reconnects_across_a_server_restart_on_the_same_port<R: TestRuntime>() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let make_server = |name: &'static str| {
        let (builder, hooks) = hooked(Server::<R>::builder());
        let server = builder
            .on("who", move |_conn: Conn, _event: Event| async move { name })
            .build()
            .unwrap();
        (server, hooks)
    };
    let (server, mut hooks) = make_server("first");
    let first = TestServer::serve(server, listener);

    let (client, mut client_hooks) = hooked_client(Client::<R>::builder().reconnect(Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        max_attempts: Some(50),
    }));
    let client = client.build().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-client", "me".parse().unwrap());
    within(
        "dial",
        client.dial_with_headers(&format!("ws://{addr}/ws"), headers),
    )
    .await
    .unwrap();
    client_hooks.connects.next().await;
    assert_eq!(
        hooks.connects.next().await.request().headers()["x-client"],
        "me"
    );
    assert_eq!(
        within("ack", client.emit_with_ack("who", ""))
            .await
            .unwrap(),
        "first"
    );

    // The server goes away: the client sees a normal close and keeps trying.
    assert_eq!(first.stop().await, 0);
    let (_, reason) = client_hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    assert_eq!(client.emit("who", ""), Err(EmitError::Closed));
    // A failed redial is reported to the client's error hook.
    let (conn, err) = client_hooks.errors.next().await;
    assert!(conn.is_none());
    assert!(matches!(err, Error::Dial(DialError::Io(_))), "{err:?}");

    // A new server on the same address: the client comes back by itself.
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let (server, mut hooks) = make_server("second");
    let second = TestServer::serve(server, listener);
    client_hooks.connects.next().await;
    // The redial sends the same URL and headers.
    let conn = hooks.connects.next().await;
    assert_eq!(conn.request().headers()["x-client"], "me");
    assert_eq!(conn.request().uri().path(), "/ws");
    assert!(client.is_connected());
    assert_eq!(
        within("ack", client.emit_with_ack("who", ""))
            .await
            .unwrap(),
        "second"
    );

    // close() stops the reconnection for good.
    client.close();
    let (_, reason) = hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    R::sleep(Duration::from_millis(400)).await;
    assert!(
        hooks.connects.try_next().is_none(),
        "reconnected after close()"
    );
    assert_eq!(second.server.connection_count(), 0);
    second.stop().await;
}

async fn reconnection_gives_up_after_max_attempts<R: TestRuntime>() {
    let (test, _hooks) = echo_server::<R>();
    let (client, mut client_hooks) = hooked_client(Client::<R>::builder().reconnect(Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(20),
        max_attempts: Some(3),
    }));
    let client = client.build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    test.stop().await;
    client_hooks.disconnects.next().await;
    for _ in 0..3 {
        let (_, err) = client_hooks.errors.next().await;
        assert!(matches!(err, Error::Dial(DialError::Io(_))), "{err:?}");
    }
    R::sleep(Duration::from_millis(200)).await;
    assert!(client_hooks.errors.try_next().is_none(), "a fourth attempt");
    assert!(!client.is_connected());
}

async fn the_client_read_limit_closes_with_1009<R: TestRuntime>() {
    let listener = RawListener::new();
    let url = listener.url();
    let (client, mut client_hooks) = hooked_client(Client::<R>::builder().read_limit(Some(100)));
    let client = client.build().unwrap();
    let (accepted, dialed) = futures_util::join!(listener.accept(), client.dial(&url));
    dialed.unwrap();
    let (mut ws, _) = accepted;
    ws.send_text(&format!("ev||0||{}", "x".repeat(93))).await;
    ws.send_text(&format!("ev||0||{}", "x".repeat(94))).await;
    // The first message (exactly 100 bytes) is accepted; the second closes.
    let close = match ws.next().await {
        Some(Message::Close(frame)) => frame.expect("a close code"),
        other => panic!("expected a close frame, got {other:?}"),
    };
    assert_eq!(u16::from(close.code), 1009);
    assert_eq!(close.reason.as_str(), "read limited at 101 bytes");
    let (_, reason) = client_hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::ReadLimit { limit: 100 }),
        "{reason:?}"
    );
}

async fn a_second_dial_does_not_leave_two_reconnect_loops_fighting<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>();
    let client = Client::<R>::builder()
        .reconnect(Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(40),
            max_attempts: Some(50),
        })
        .build()
        .unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    hooks.connects.next().await;
    // Dialing again replaces the connection; the first dial's reconnect loop must
    // not take the replacement for a lost connection and redial.
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    hooks.connects.next().await;
    R::sleep(Duration::from_millis(400)).await;
    let mut extra = 0;
    while hooks.connects.try_next().is_some() {
        extra += 1;
    }
    assert_eq!(extra, 0, "the client kept reconnecting by itself");
    assert_eq!(test.server.connection_count(), 1);
    client.close();
    test.stop().await;
}

async fn close_during_a_reconnect_attempt_does_not_leave_the_client_connected<R: TestRuntime>() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let first = TestServer::serve(builder.build().unwrap(), listener);
    let (client, mut client_hooks) = hooked_client(Client::<R>::builder().reconnect(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(40),
        max_attempts: Some(50),
    }));
    let client = client.build().unwrap();
    within("dial", client.dial(&format!("ws://{addr}/ws")))
        .await
        .unwrap();
    hooks.connects.next().await;
    first.stop().await;
    client_hooks.disconnects.next().await;

    // A server that accepts the redial's TCP connection but holds its handshake.
    let raw = RawListener::bind(addr);
    let stream = raw.accept_tcp().await;
    client.close();
    // Now the handshake completes: the client was closed meanwhile, so it must not
    // keep this connection.
    let (mut ws, _) = WsPeer::accept(stream).await;
    let outcome = ws.read(Duration::from_secs(1)).await;
    let connected = client.is_connected();
    assert!(
        !connected
            && matches!(
                outcome,
                ReadOutcome::Ended
                    | ReadOutcome::Message(Message::Close(_))
                    | ReadOutcome::Failed(_)
            ),
        "after close(), the reconnect loop adopted a new connection (connected: {connected}, \
         server saw {outcome:?})"
    );
}

async fn the_client_asks_for_no_subprotocol_and_sends_the_extra_headers_raw<R: TestRuntime>() {
    let listener = RawListener::new();
    let client = Client::<R>::builder().build().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("cookie", "session=1".parse().unwrap());
    let url = format!("{}?token=abc", listener.url());
    let (accepted, dialed) =
        futures_util::join!(listener.accept(), client.dial_with_headers(&url, headers));
    let conn = dialed.unwrap();
    let (_ws, seen) = accepted;
    assert_eq!(seen["cookie"], "session=1");
    assert!(seen.get("sec-websocket-protocol").is_none(), "{seen:?}");
    assert_eq!(seen["sec-websocket-version"], "13");
    assert_eq!(conn.request().uri().query(), Some("token=abc"));
    assert_eq!(conn.request().headers()["cookie"], "session=1");
    client.close();
}

// ---------------------------------------------------------------------------------
// Dial failures: the same error on every runtime
// ---------------------------------------------------------------------------------

/// Reads the upgrade request up to its empty line.
fn read_request(stream: &std::net::TcpStream) {
    use std::io::Read;
    let mut request = Vec::new();
    while find(&request, b"\r\n\r\n").is_none() {
        let mut chunk = [0u8; 1024];
        match (&*stream).read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw server that accepts one connection, waits for the upgrade request, and then
/// does `then` with the stream (blocking, on its own thread).
async fn raw_dial_peer<R: TestRuntime>(
    then: impl FnOnce(std::net::TcpStream) + Send + 'static,
) -> Result<Conn, DialError> {
    let listener = RawListener::new();
    let url = listener.url();
    let client = Client::<R>::builder().build().unwrap();
    let serve = async {
        let stream = listener.accept_tcp().await;
        blocking("the raw server", move || {
            // The request has arrived (unread) once peek returns.
            let mut byte = [0u8; 1];
            let _ = stream.peek(&mut byte);
            then(stream);
        })
        .await;
    };
    let (_, dialed) = futures_util::join!(serve, within("dial", client.dial(&url)));
    dialed
}

/// An I/O failure is `DialError::Io` whether it happens while connecting or during the
/// WebSocket handshake (etp-tokio maps tungstenite's `Error::Io` to it).
async fn a_reset_during_the_dial_handshake_is_an_io_error<R: TestRuntime>() {
    // Closing a socket with unread data resets the connection.
    let dialed = raw_dial_peer::<R>(drop).await;
    assert!(matches!(dialed, Err(DialError::Io(_))), "{dialed:?}");
}

async fn a_connection_closed_during_the_dial_handshake_is_a_handshake_error<R: TestRuntime>() {
    let dialed = raw_dial_peer::<R>(|stream| read_request(&stream)).await;
    assert!(matches!(dialed, Err(DialError::Handshake(_))), "{dialed:?}");
}

async fn a_server_that_does_not_upgrade_is_a_handshake_error<R: TestRuntime>() {
    let dialed = raw_dial_peer::<R>(|stream| {
        use std::io::{Read, Write};
        read_request(&stream);
        let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        // Until the client hangs up.
        let _ = (&stream).read(&mut [0u8; 64]);
    })
    .await;
    match dialed {
        Err(DialError::Handshake(err)) => assert!(err.to_string().contains("200"), "{err}"),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

/// `wss://` to a server that speaks plain HTTP: the TLS handshake fails, `Io` on both.
async fn wss_to_a_plain_server_is_an_io_error<R: TestRuntime>() {
    let (test, _hooks) = echo_server::<R>();
    let client = Client::<R>::builder().build().unwrap();
    let dialed = within("dial", client.dial(&format!("wss://{}/ws", test.addr))).await;
    assert!(matches!(dialed, Err(DialError::Io(_))), "{dialed:?}");
    assert!(!client.is_connected());
    test.stop().await;
}

behaviour_suite! {
    the_client_dials_ws_and_http_urls,
    bad_urls_and_refused_dials_fail_clearly,
    dial_with_headers_sends_them_to_the_server,
    the_client_fails_to_emit_before_dialing_and_after_a_disconnect,
    a_new_dial_replaces_the_current_connection,
    client_ping_is_answered,
    the_server_can_ping_the_client_too,
    client_handlers_receive_server_events_and_answer_requests,
    the_client_reconnects_across_a_server_restart_on_the_same_port,
    reconnection_gives_up_after_max_attempts,
    the_client_read_limit_closes_with_1009,
    a_second_dial_does_not_leave_two_reconnect_loops_fighting,
    close_during_a_reconnect_attempt_does_not_leave_the_client_connected,
    the_client_asks_for_no_subprotocol_and_sends_the_extra_headers_raw,
    a_reset_during_the_dial_handshake_is_an_io_error,
    a_connection_closed_during_the_dial_handshake_is_a_handshake_error,
    a_server_that_does_not_upgrade_is_a_handshake_error,
    wss_to_a_plain_server_is_an_io_error,
}
