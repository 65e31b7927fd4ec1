//! Hostile peers against a running server on loopback, on every runtime: what the
//! other suites do not already cover (see the coverage table in FUZZING.md's
//! "Hardening" section). Each case asserts the documented outcome (the error or
//! close code, the connection's state) and that the server goes on serving others.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{Conn, ConnConfig, DisconnectReason, Event, Server, ServerBuilder};

fn start<R: TestRuntime>(builder: ServerBuilder<R>) -> (TestServer<R>, Hooks) {
    let (builder, hooks) = hooked(builder);
    let server = builder
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .build()
        .unwrap();
    (TestServer::start(server), hooks)
}

/// A second client, served while the hostile one does its worst.
async fn bystander_is_served<R: TestRuntime>(test: &TestServer<R>, hooks: &mut Hooks) {
    let mut other = WsPeer::connect(&test.url("/ws")).await;
    hooks.connects.next().await;
    assert_eq!(other.ask("echo||7||fine").await, "__ack_echo||7||fine");
    other
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    assert!(other.next().await.is_some_and(|m| m.is_close()));
    let (_, reason) = hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
}

/// A name that fills a message to exactly the read limit is an event like any other
/// (answered under its own name); one byte more closes with 1009.
async fn a_huge_name_at_the_read_limit_is_answered_and_one_byte_more_closes_with_1009<
    R: TestRuntime,
>() {
    const LIMIT: usize = 64 * 1024;
    let (test, mut hooks) = start(Server::<R>::builder().read_limit(Some(LIMIT)));
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    hooks.connects.next().await;
    let name = "n".repeat(LIMIT - "||1".len());
    raw.send(OP_TEXT, format!("{name}||1").as_bytes()).await;
    let reply = raw.frame().await.expect("a reply");
    assert_eq!(reply.text(), format!("__ack_{name}||1"));
    let name = "n".repeat(LIMIT + 1 - "||1".len());
    let RawSocket {
        mut reader,
        mut writer,
        ..
    } = raw;
    // The server stops reading mid-message: the rest of our write may fail.
    let writing = R::spawn_task(async move {
        let _ = writer.send(OP_TEXT, format!("{name}||1").as_bytes()).await;
    });
    let (before, close) = reader.until_close().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(close.close().0, Some(1009));
    within("writer", writing).await;
    let (_, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::ReadLimit { limit: LIMIT }),
        "{reason:?}"
    );
    bystander_is_served(&test, &mut hooks).await;
    test.stop().await;
}

/// Sends one malformed control frame; expects a 1002 close and a WebSocket error as
/// the reason, and the server still serving others.
async fn expect_protocol_close<R: TestRuntime>(fin: bool, opcode: u8, payload: &[u8]) {
    let (test, mut hooks) = start(Server::<R>::builder());
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    hooks.connects.next().await;
    raw.writer
        .send_frame(fin, opcode, payload, true)
        .await
        .unwrap();
    let (before, close) = raw.reader.until_close().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(close.close().0, Some(1002));
    let (_, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::WebSocket(_)),
        "{reason:?}"
    );
    bystander_is_served(&test, &mut hooks).await;
    test.stop().await;
}

/// Control frames carry at most 125 bytes (RFC 6455 5.5).
async fn a_ping_of_126_bytes_closes_with_1002<R: TestRuntime>() {
    expect_protocol_close::<R>(true, OP_PING, &[b'p'; 126]).await;
}

/// Control frames must not be fragmented (RFC 6455 5.5).
async fn a_fragmented_ping_closes_with_1002<R: TestRuntime>() {
    expect_protocol_close::<R>(false, OP_PING, b"part").await;
}

/// A close frame is a control frame too.
async fn a_fragmented_close_closes_with_1002<R: TestRuntime>() {
    expect_protocol_close::<R>(false, OP_CLOSE, &close_payload(1000, "")).await;
}

/// Thousands of pings from a peer that does not read meanwhile: the server answers
/// (tungstenite keeps one pending pong, not one per ping), stays open and serves the
/// events that follow the flood, and others meanwhile.
async fn a_ping_flood_is_answered_and_the_connection_keeps_serving<R: TestRuntime>() {
    const PINGS: usize = 5_000;
    let (test, mut hooks) = start(Server::<R>::builder());
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    hooks.connects.next().await;
    let flood: Vec<u8> = (0..PINGS)
        .flat_map(|i| encode_frame(true, OP_PING, format!("{i:0>125}").as_bytes(), true))
        .collect();
    raw.writer.write_raw(&flood).await.unwrap();
    raw.send(OP_TEXT, b"echo||1||after").await;
    bystander_is_served(&test, &mut hooks).await;
    let mut pongs = 0;
    loop {
        let frame = raw.frame().await.expect("the connection stays open");
        match frame.opcode {
            OP_PONG => {
                let text = frame.text();
                let i: usize = text.parse().expect("a pong echoes a ping's payload");
                assert!(i < PINGS);
                pongs += 1;
            }
            OP_TEXT => {
                assert_eq!(frame.text(), "__ack_echo||1||after");
                break;
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    assert!((1..=PINGS).contains(&pongs), "{pongs} pongs");
    assert!(hooks.disconnects.try_next().is_none());
    assert!(hooks.errors.try_next().is_none());
    drop(raw);
    hooks.disconnects.next().await;
    test.stop().await;
}

/// More requests than the handlers can take: once the bound and the backlog are full
/// the server stops reading, so the flooding client's writes stall (its data waits in
/// the kernel's buffers, not in the server's memory); others are still served; once
/// the handlers move, every request is handled, none lost.
async fn a_request_flood_over_the_handler_bound_stalls_the_sender_and_loses_nothing<
    R: TestRuntime,
>() {
    const MAX_FLOOD: usize = 256 << 20;
    let gate = Gate::new();
    let handled = Arc::new(AtomicUsize::new(0));
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .handler_concurrency(2)
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .on("job", {
            let (gate, handled) = (gate.clone(), handled.clone());
            move |_conn: Conn, _event: Event| {
                let (gate, handled) = (gate.clone(), handled.clone());
                async move {
                    gate.pass().await;
                    handled.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    hooks.connects.next().await;
    let job = encode_frame(
        true,
        OP_TEXT,
        format!("job||0||{}", "j".repeat(1024)).as_bytes(),
        true,
    );
    let (whole, rest) = raw
        .writer
        .flood(&job, MAX_FLOOD, Duration::from_millis(500))
        .await;
    let sent = whole + usize::from(!rest.is_empty());
    assert!(
        sent * job.len() < MAX_FLOOD,
        "the server read {MAX_FLOOD} bytes of requests it could not handle"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    bystander_is_served(&test, &mut hooks).await;
    // The handlers move: reading resumes, and every request is handled.
    gate.open(sent);
    raw.writer.write_raw(&rest).await.unwrap();
    eventually("every request to be handled", || {
        handled.load(Ordering::SeqCst) == sent
    })
    .await;
    raw.send(OP_TEXT, b"echo||1||done").await;
    assert_eq!(
        raw.frame().await.expect("a reply").text(),
        "__ack_echo||1||done"
    );
    assert_eq!(
        handled.load(Ordering::SeqCst),
        sent,
        "no request handled twice"
    );
    assert!(hooks.errors.try_next().is_none());
    drop(raw);
    hooks.disconnects.next().await;
    test.stop().await;
}

/// A peer that vanished without a FIN (it neither reads nor writes any more): the
/// keepalive notices the silence and closes with 1001, the close is never answered,
/// and the close timeout drops the connection; it leaves its rooms.
async fn a_half_open_connection_is_reaped_by_keepalive_and_the_close_timeout<R: TestRuntime>() {
    let mut config = ConnConfig::default();
    config.session.ping_interval = Some(Duration::from_millis(50));
    config.session.idle_timeout = Some(Duration::from_millis(200));
    config.close_timeout = Duration::from_millis(200);
    let (test, mut hooks) = start(Server::<R>::builder().conn_config(config));
    let raw = RawSocket::connect(test.addr, "/ws").await;
    let conn = hooks.connects.next().await;
    conn.join("room");
    let (gone, reason) = hooks.disconnects.next().await;
    assert_eq!(gone, conn);
    assert!(
        matches!(reason, DisconnectReason::IdleTimeout),
        "{reason:?}"
    );
    let rooms = test.server.rooms();
    eventually("the connection to leave", || {
        rooms.connection_count() == 0 && rooms.is_empty()
    })
    .await;
    assert_eq!(rooms.len("room"), 0);
    bystander_is_served(&test, &mut hooks).await;
    drop(raw);
    test.stop().await;
}

/// `count` extra header lines.
fn extra_headers(count: usize) -> String {
    (0..count)
        .map(|i| format!("X-Extra-{i}: {i}\r\n"))
        .collect()
}

/// The request head takes at most 100 header lines (hyper's bound, kept by the
/// async-std adapter): 100 are upgraded, 101 get 431 and no connection.
async fn a_request_head_of_100_headers_is_upgraded_and_101_get_431<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
    // The upgrade request has 5 header lines of its own.
    let at = upgrade_request("GET", test.addr, "/ws", &extra_headers(95));
    assert_eq!(at.matches("\r\n").count() - 2, 100);
    let (response, socket) = http_exchange_keeping(test.addr, &at).await;
    assert_eq!(response.status, 101, "{response:?}");
    hooks.connects.next().await;
    drop(socket);
    hooks.disconnects.next().await;
    let over = upgrade_request("GET", test.addr, "/ws", &extra_headers(96));
    let response = http_exchange(test.addr, &over).await;
    assert_eq!(response.status, 431, "{response:?}");
    assert!(hooks.connects.try_next().is_none());
    bystander_is_served(&test, &mut hooks).await;
    test.stop().await;
}

/// A request head far over the size bound (about 400 KiB) gets 431 instead of being
/// buffered.
async fn a_half_mebibyte_request_head_gets_431<R: TestRuntime>() {
    let (test, mut hooks) = start(Server::<R>::builder());
    let cookie = format!("Cookie: c={}\r\n", "x".repeat(512 * 1024));
    let request = upgrade_request("GET", test.addr, "/ws", &cookie);
    let mut socket = RawSocket::connect_raw(test.addr).await;
    // The server may answer and close before it has read everything.
    let _ = socket.writer.write_raw(request.as_bytes()).await;
    let head = socket.reader.head().await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head:?}");
    assert!(hooks.connects.try_next().is_none());
    bystander_is_served(&test, &mut hooks).await;
    test.stop().await;
}

behaviour_suite! {
    a_request_head_of_100_headers_is_upgraded_and_101_get_431,
    a_half_mebibyte_request_head_gets_431,
    a_huge_name_at_the_read_limit_is_answered_and_one_byte_more_closes_with_1009,
    a_ping_of_126_bytes_closes_with_1002,
    a_fragmented_ping_closes_with_1002,
    a_fragmented_close_closes_with_1002,
    a_ping_flood_is_answered_and_the_connection_keeps_serving,
    a_request_flood_over_the_handler_bound_stalls_the_sender_and_loses_nothing,
    a_half_open_connection_is_reaped_by_keepalive_and_the_close_timeout,
}
