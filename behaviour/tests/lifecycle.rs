//! PROTOCOL.md sections 5 (close codes) and 7 (lifecycle, request, id, data) over
//! real sockets, on every runtime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{Conn, ConnConfig, ConnId, DisconnectReason, Error, Event, Server};
use tungstenite::client::IntoClientRequest;

fn plain_server<R: TestRuntime>() -> (TestServer<R>, Hooks) {
    let (builder, hooks) = hooked(Server::<R>::builder());
    let server = builder
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .on(
            "bye",
            |conn: Conn, _event: Event| async move { conn.close() },
        )
        .build()
        .unwrap();
    (TestServer::start(server), hooks)
}

// ---------------------------------------------------------------------------------
// Close codes
// ---------------------------------------------------------------------------------

/// The peer closes with `frame`; returns what the disconnect hook heard and the echo.
async fn peer_closes_with<R: TestRuntime>(
    frame: Option<CloseFrame>,
) -> (DisconnectReason, Option<CloseFrame>) {
    let (test, mut hooks) = plain_server::<R>();
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    hooks.connects.next().await;
    peer.send(Message::Close(frame)).await;
    let echo = match peer.next().await {
        Some(Message::Close(echo)) => echo,
        other => panic!("expected the close echo, got {other:?}"),
    };
    let (_, reason) = hooks.disconnects.next().await;
    test.stop().await;
    (reason, echo)
}

fn frame(code: u16, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    })
}

async fn a_peer_close_with_1000_is_normal_and_echoed<R: TestRuntime>() {
    let (reason, echo) = peer_closes_with::<R>(frame(1000, "bye")).await;
    assert!(reason.is_normal(), "{reason:?}");
    assert_eq!(reason.code(), Some(1000));
    assert_eq!(reason.reason(), Some("bye"));
    let echo = echo.expect("echo with a code");
    assert_eq!(u16::from(echo.code), 1000);
    assert_eq!(echo.reason.as_str(), "bye");
}

async fn a_peer_close_with_1001_is_not_normal<R: TestRuntime>() {
    let (reason, echo) = peer_closes_with::<R>(frame(1001, "going away")).await;
    assert!(!reason.is_normal(), "{reason:?}");
    assert_eq!(reason.code(), Some(1001));
    assert_eq!(reason.reason(), Some("going away"));
    assert_eq!(u16::from(echo.unwrap().code), 1001);
}

async fn a_peer_close_with_4000_is_not_normal<R: TestRuntime>() {
    let (reason, echo) = peer_closes_with::<R>(frame(4000, "app")).await;
    assert!(!reason.is_normal(), "{reason:?}");
    assert_eq!(reason.code(), Some(4000));
    assert_eq!(u16::from(echo.unwrap().code), 4000);
}

async fn a_peer_close_without_a_code_is_1005_and_not_normal<R: TestRuntime>() {
    let (reason, echo) = peer_closes_with::<R>(None).await;
    assert!(!reason.is_normal(), "{reason:?}");
    assert_eq!(reason.code(), Some(1005));
    assert!(echo.is_none(), "{echo:?}");
}

async fn a_dropped_tcp_connection_is_lost_and_not_normal<R: TestRuntime>() {
    let (test, mut hooks) = plain_server::<R>();
    let raw = RawSocket::connect(test.addr, "/ws").await;
    hooks.connects.next().await;
    drop(raw);
    let (_, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::ConnectionLost),
        "{reason:?}"
    );
    assert!(!reason.is_normal());
    assert_eq!(reason.code(), None);
    test.stop().await;
}

async fn conn_close_sends_1000_with_an_empty_reason<R: TestRuntime>() {
    let (test, mut hooks) = plain_server::<R>();
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    raw.send(OP_TEXT, b"bye||0").await;
    let (before, close) = raw.reader.until_close().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(close.close(), (Some(1000), String::new()));
    assert_eq!(close.payload, vec![0x03, 0xe8]);
    assert!(!close.masked);
    // Our echo completes the handshake: a normal close on the server too.
    raw.send(OP_CLOSE, &close.payload).await;
    let (_, reason) = hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    // And the server closes the TCP connection after the handshake.
    assert!(raw.frame().await.is_none());
    test.stop().await;
}

async fn conn_close_from_a_handler_sends_earlier_emits_before_the_close_frame<R: TestRuntime>() {
    let server = Server::<R>::builder()
        .on("bye", |conn: Conn, _event: Event| async move {
            conn.emit("last words", "x").unwrap();
            conn.close();
            "reply"
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    raw.send(OP_TEXT, b"bye||1").await;
    let (before, close) = raw.reader.until_close().await;
    let texts: Vec<String> = before.iter().map(RawFrame::text).collect();
    // What the handler emitted before closing goes out; the close comes after it.
    assert_eq!(texts.first().map(String::as_str), Some("last words||0||x"));
    assert_eq!(close.close().0, Some(1000));
    raw.send(OP_CLOSE, &close.payload).await;
    test.stop().await;
}

// ---------------------------------------------------------------------------------
// Lifecycle order
// ---------------------------------------------------------------------------------

async fn the_connect_hook_runs_before_the_first_frame_is_handled<R: TestRuntime>() {
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let release = Gate::new();
    let (started_tx, mut started) = channel::<()>();
    let server = Server::<R>::builder()
        .on_connect({
            let log = log.clone();
            let release = release.clone();
            move |_conn| {
                let log = log.clone();
                let release = release.clone();
                let started_tx = started_tx.clone();
                async move {
                    log.lock().unwrap().push("connect start".into());
                    started_tx.send(());
                    release.pass().await;
                    log.lock().unwrap().push("connect end".into());
                }
            }
        })
        .on("ev", {
            let log = log.clone();
            move |_conn: Conn, _event: Event| {
                let log = log.clone();
                async move { log.lock().unwrap().push("event".into()) }
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    // The frame is in the socket while the hook runs.
    peer.send_text("ev||1").await;
    started.next().await;
    R::sleep(Duration::from_millis(50)).await;
    assert_eq!(*log.lock().unwrap(), ["connect start"]);
    release.open(1);
    assert_eq!(peer.next_text().await, "__ack_ev||1");
    assert_eq!(
        *log.lock().unwrap(),
        ["connect start", "connect end", "event"]
    );
    test.stop_with(&mut peer).await;
}

async fn the_connect_hook_may_emit_before_anything_is_read<R: TestRuntime>() {
    let server = Server::<R>::builder()
        .on_connect(|conn: Conn| async move {
            conn.emit("welcome", conn.id().to_string()).unwrap();
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let welcome = peer.next_text().await;
    assert!(welcome.starts_with("welcome||0||"), "{welcome}");
    test.stop_with(&mut peer).await;
}

async fn the_disconnect_hook_runs_once_while_the_conn_is_still_in_its_rooms<R: TestRuntime>() {
    type Seen = (ConnId, Vec<String>, usize, bool, bool);
    let (seen_tx, mut seen) = channel::<Seen>();
    let (connect_tx, mut connects) = channel::<Conn>();
    let server = Server::<R>::builder()
        .on_connect(move |conn: Conn| {
            conn.join("shared");
            conn.join(&format!("own-{}", conn.id()));
            connect_tx.send(conn);
            async {}
        })
        .on_disconnect(move |conn: Conn, _reason| {
            let rooms = conn.server_rooms().expect("server conns have rooms");
            seen_tx.send((
                conn.id(),
                conn.rooms(),
                rooms.len("shared"),
                rooms.members(["shared"]).contains(&conn),
                rooms.get(conn.id()).is_some(),
            ));
            async {}
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let rooms = test.server.rooms();
    let mut leaving = WsPeer::connect(&test.url("/ws")).await;
    let first = connects.next().await;
    let mut staying = WsPeer::connect(&test.url("/ws")).await;
    let second = connects.next().await;
    assert_eq!(rooms.len("shared"), 2);
    assert_eq!(rooms.rooms().len(), 3);

    leaving.send(Message::Close(frame(1000, ""))).await;
    let (id, its_rooms, shared_len, member, registered) = seen.next().await;
    assert_eq!(id, first.id());
    let mut expected = vec![format!("own-{}", first.id()), "shared".to_owned()];
    expected.sort();
    assert_eq!(its_rooms, expected);
    assert_eq!(shared_len, 2);
    assert!(member);
    assert!(registered);

    // After the hook: out of every room; its own room is gone; the shared room stays.
    eventually("the first connection to end", || {
        test.server.connection_count() == 1
    })
    .await;
    assert!(rooms.get(first.id()).is_none());
    assert_eq!(rooms.len("shared"), 1);
    assert_eq!(rooms.members(["shared"]), std::slice::from_ref(&second));
    assert_eq!(
        rooms.rooms(),
        [
            "own-".to_owned() + &second.id().to_string(),
            "shared".to_owned()
        ]
    );
    assert!(first.rooms().is_empty());
    assert!(first.is_closed());
    assert!(!first.join("late"), "an ended conn cannot join");
    assert_eq!(rooms.len("late"), 0);

    let _ = leaving.next().await;
    test.stop_with(&mut staying).await;
    // Exactly once per connection: one more for the second, nothing else.
    let (id, ..) = seen.next().await;
    assert_eq!(id, second.id());
    assert!(seen.try_next().is_none());
    assert!(rooms.rooms().is_empty());
    assert!(rooms.all().is_empty());
}

async fn the_request_exposes_uri_query_headers_and_remote_addr<R: TestRuntime>() {
    let (test, mut hooks) = plain_server::<R>();
    let stream = tcp_connect(test.addr).await;
    let local = stream.local_addr().unwrap();
    let mut request = format!("ws://{}/chat/room?user=ana&x=1&flag", test.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-token", "secret".parse().unwrap());
    let mut ws = WsPeer::handshake(stream, request).await;
    let conn = hooks.connects.next().await;
    let req = conn.request();
    assert_eq!(req.uri().path(), "/chat/room");
    assert_eq!(req.uri().query(), Some("user=ana&x=1&flag"));
    assert_eq!(req.query_param("user"), Some("ana"));
    assert_eq!(req.query_param("x"), Some("1"));
    assert_eq!(req.query_param("flag"), Some(""));
    assert_eq!(req.query_param("missing"), None);
    assert_eq!(req.headers()["x-token"], "secret");
    assert_eq!(req.headers()["upgrade"], "websocket");
    assert_eq!(req.remote_addr(), Some(local));
    ws.close().await;
    test.stop().await;
}

async fn connection_ids_are_32_lowercase_hex_and_unique<R: TestRuntime>() {
    let (test, mut hooks) = plain_server::<R>();
    let mut a = WsPeer::connect(&test.url("/ws")).await;
    let first = hooks.connects.next().await;
    let mut b = WsPeer::connect(&test.url("/ws")).await;
    let second = hooks.connects.next().await;
    for conn in [&first, &second] {
        let text = conn.id().to_string();
        assert_eq!(text.len(), 32, "{text}");
        assert!(
            text.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{text}"
        );
        assert_eq!(text.parse::<ConnId>().unwrap(), conn.id());
        assert_eq!(test.server.rooms().get(conn.id()).as_ref(), Some(conn));
    }
    assert_ne!(first.id(), second.id());
    a.send_text("x||0").await;
    b.send_text("x||0").await;
    drop((a, b));
    test.stop().await;
}

async fn the_data_store_lives_with_the_connection<R: TestRuntime>() {
    #[derive(Clone, Debug, PartialEq)]
    struct User(String);
    let (seen_tx, mut seen) = channel::<(Option<User>, Option<u32>)>();
    let server = Server::<R>::builder()
        .on_connect(|conn: Conn| async move {
            conn.data().insert(User(
                conn.request()
                    .query_param("user")
                    .unwrap_or_default()
                    .to_owned(),
            ));
            conn.data().set("count", 0u32);
        })
        .on("count", |conn: Conn, _event: Event| async move {
            let count = conn.data().value::<u32>("count").unwrap_or_default() + 1;
            conn.data().set("count", count);
            let user = conn.data().get::<User>().unwrap();
            format!("{}:{count}", user.0)
        })
        .on_disconnect(move |conn: Conn, _reason| {
            seen_tx.send((conn.data().get::<User>(), conn.data().value("count")));
            async {}
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut ana = WsPeer::connect(&test.url("/ws?user=ana")).await;
    let mut bob = WsPeer::connect(&test.url("/ws?user=bob")).await;
    assert_eq!(ana.ask("count||1").await, "__ack_count||1||ana:1");
    assert_eq!(ana.ask("count||2").await, "__ack_count||2||ana:2");
    assert_eq!(bob.ask("count||1").await, "__ack_count||1||bob:1");
    assert_eq!(ana.ask("count||3").await, "__ack_count||3||ana:3");
    ana.send(Message::Close(frame(1000, ""))).await;
    assert_eq!(seen.next().await, (Some(User("ana".into())), Some(3)));
    let _ = ana.next().await;
    test.stop_with(&mut bob).await;
    assert_eq!(seen.next().await, (Some(User("bob".into())), Some(1)));
}

async fn a_panicking_connect_hook_is_reported_and_the_connection_closed<R: TestRuntime>() {
    let (errors_tx, mut errors) = channel::<String>();
    let (disconnect_tx, mut disconnects) = channel::<DisconnectReason>();
    let server = Server::<R>::builder()
        .on_connect(|_conn: Conn| async move { panic!("no entry") })
        .on_disconnect(move |_conn, reason| {
            disconnect_tx.send(reason);
            async {}
        })
        .on_error(move |conn, err| {
            assert!(conn.is_some());
            assert!(matches!(
                err,
                Error::HookPanicked {
                    hook: "on_connect",
                    ..
                }
            ));
            errors_tx.send(err.to_string());
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    assert_eq!(errors.next().await, "on_connect hook panicked: no entry");
    let (before, close) = peer.until_close().await;
    assert!(before.is_empty());
    assert_eq!(u16::from(close.unwrap().code), 1000);
    assert!(disconnects.next().await.is_normal());
    test.stop().await;
}

async fn keepalive_pings_a_silent_peer_and_closes_with_1001_when_it_never_answers<
    R: TestRuntime,
>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .keepalive(Duration::from_millis(50), Duration::from_millis(300))
        .build()
        .unwrap();
    let test = TestServer::start(server);
    // A hand-written peer: it reads, but never answers pings.
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    let (before, close) = raw.reader.until_close().await;
    assert!(
        before.iter().any(|f| f.opcode == OP_PING),
        "pings before the close: {before:?}"
    );
    assert!(before.iter().all(|f| f.opcode == OP_PING), "{before:?}");
    assert_eq!(close.close(), (Some(1001), "idle timeout".to_owned()));
    raw.send(OP_CLOSE, &close.payload).await;
    let (_, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::IdleTimeout),
        "{reason:?}"
    );
    assert!(!reason.is_normal());
    test.stop().await;
}

async fn keepalive_keeps_a_peer_that_answers_pings<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .keepalive(Duration::from_millis(50), Duration::from_millis(500))
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    // tungstenite answers every ping it reads.
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let mut pings = 0;
    let deadline = Instant::now() + Duration::from_millis(900);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match peer.read(left).await {
            ReadOutcome::Message(Message::Ping(_)) => pings += 1,
            ReadOutcome::TimedOut => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings > 0);
    assert!(hooks.disconnects.try_next().is_none());
    assert_eq!(peer.ask("echo||1||alive").await, "__ack_echo||1||alive");
    test.stop_with(&mut peer).await;
}

async fn close_gives_up_on_a_peer_that_never_answers_after_the_close_timeout<R: TestRuntime>() {
    let mut config = ConnConfig::default();
    config.close_timeout = Duration::from_millis(200);
    let (builder, mut hooks) = hooked(Server::<R>::builder().conn_config(config));
    let test = TestServer::start(builder.build().unwrap());
    // This peer never reads.
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    let conn = hooks.connects.next().await;
    conn.close();
    conn.close(); // harmless
    let (_, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::CloseTimedOut { code: 1000 }),
        "{reason:?}"
    );
    assert!(!reason.is_normal());
    let (_, close) = raw.reader.until_close().await;
    assert_eq!(close.close(), (Some(1000), String::new()));
    assert!(raw.frame().await.is_none());
    test.stop().await;
}

async fn handlers_still_running_are_cancelled_when_the_connection_ends<R: TestRuntime>() {
    struct Dropped(Tx<&'static str>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.send("handler dropped");
        }
    }
    let (events_tx, mut events) = channel::<&'static str>();
    let server = Server::<R>::builder()
        .on("forever", {
            let events_tx = events_tx.clone();
            move |_conn: Conn, _event: Event| {
                let guard = Dropped(events_tx.clone());
                events_tx.send("handler started");
                async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                }
            }
        })
        .on_disconnect(move |_conn, _reason| {
            events_tx.send("disconnect hook");
            async {}
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.send_text("forever||1").await;
    assert_eq!(events.next().await, "handler started");
    peer.send(Message::Close(frame(1000, ""))).await;
    // The hook runs first (work may still be going on), then the work is cancelled.
    assert_eq!(events.next().await, "disconnect hook");
    assert_eq!(events.next().await, "handler dropped");
    test.stop().await;
}

behaviour_suite! {
    a_peer_close_with_1000_is_normal_and_echoed,
    a_peer_close_with_1001_is_not_normal,
    a_peer_close_with_4000_is_not_normal,
    a_peer_close_without_a_code_is_1005_and_not_normal,
    a_dropped_tcp_connection_is_lost_and_not_normal,
    conn_close_sends_1000_with_an_empty_reason,
    conn_close_from_a_handler_sends_earlier_emits_before_the_close_frame,
    the_connect_hook_runs_before_the_first_frame_is_handled,
    the_connect_hook_may_emit_before_anything_is_read,
    the_disconnect_hook_runs_once_while_the_conn_is_still_in_its_rooms,
    the_request_exposes_uri_query_headers_and_remote_addr,
    connection_ids_are_32_lowercase_hex_and_unique,
    the_data_store_lives_with_the_connection,
    a_panicking_connect_hook_is_reported_and_the_connection_closed,
    keepalive_pings_a_silent_peer_and_closes_with_1001_when_it_never_answers,
    keepalive_keeps_a_peer_that_answers_pings,
    close_gives_up_on_a_peer_that_never_answers_after_the_close_timeout,
    handlers_still_running_are_cancelled_when_the_connection_ends,
}
