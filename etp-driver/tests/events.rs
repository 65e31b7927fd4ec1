//! Inbound events on a server connection: replies, the fallback, malformed frames,
//! panics, the connection's lifecycle and how it ends.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use etp_driver::{Conn, DisconnectReason, Error, Event, Rooms};
use tungstenite::Message;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError as WsProtocolError};

fn text(event: &Event) -> String {
    String::from_utf8_lossy(event.data()).into_owned()
}

#[tokio::test]
async fn an_event_with_an_ack_id_gets_exactly_one_reply_with_the_handlers_return_value() {
    let rt = ManualRuntime::new();
    let calls = Recorder::new();
    let seen = calls.clone();
    let server = server_builder(&rt)
        .on("string", |_: Conn, e: Event| async move {
            format!("hello {}", text(&e))
        })
        .on("static", |_: Conn, _: Event| async { "static reply" })
        .on("unit", |_: Conn, _: Event| async {})
        .on("none", |_: Conn, _: Event| async { None::<String> })
        .on("some", |_: Conn, _: Event| async {
            Some(b"bytes".to_vec())
        })
        .on("log", move |_: Conn, e: Event| {
            seen.push(format!("{} has_data={}", text(&e), e.has_data()));
            async { "logged" }
        })
        .build()
        .unwrap();
    let s = serve(&server).await;

    for (frame, reply) in [
        ("string||1||ana", "__ack_string||1||hello ana"),
        ("static||2", "__ack_static||2||static reply"),
        ("unit||5", "__ack_unit||5"),
        ("unit||6||ignored data", "__ack_unit||6"),
        ("none||7", "__ack_none||7"),
        ("some||8", "__ack_some||8||bytes"),
        // Ack ids as Go's strconv.Atoi reads them, written back as i64.
        ("unit||-1", "__ack_unit||-1"),
        ("unit||009", "__ack_unit||9"),
        ("unit||+4", "__ack_unit||4"),
        // The data is the whole rest of the message, `||` included.
        ("string||3||a||b", "__ack_string||3||hello a||b"),
    ] {
        s.peer.send_text(frame);
        assert_eq!(s.peer.recv_text().await, reply, "reply to {frame}");
    }
    s.peer.assert_silent().await;

    // Ack id 0: the handler runs, nothing is sent back. Two parts: no data; three
    // parts with an empty tail: empty data.
    s.peer.send_text("log||0||x");
    s.peer.send_text("log||0");
    s.peer.send_text("log||0||");
    eventually("the three events were handled", || calls.log().len() == 3).await;
    s.peer.assert_silent().await;
    assert_eq!(
        calls.log(),
        ["x has_data=true", " has_data=false", " has_data=true"]
    );
}

#[tokio::test]
async fn js_compatible_encoding_always_writes_the_third_part() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .js_compatible(true)
        .on("unit", |_: Conn, _: Event| async {})
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("unit||5");
    assert_eq!(s.peer.recv_text().await, "__ack_unit||5||");
    s.peer.send_text("nobody||6");
    assert_eq!(s.peer.recv_text().await, "__ack_nobody||6||");
}

#[tokio::test]
async fn an_ack_request_without_handler_or_fallback_gets_an_empty_reply() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .on("other", |_: Conn, _: Event| async { "other" })
        .build()
        .unwrap();
    let s = serve(&server).await;

    s.peer.send_text("x||7");
    assert_eq!(s.peer.recv_text().await, "__ack_x||7");
    s.peer.send_text("x||8||with data");
    assert_eq!(s.peer.recv_text().await, "__ack_x||8");
    // Without an ack id an unknown event is dropped silently.
    s.peer.send_text("x||0||dropped");
    s.peer.assert_silent().await;
    assert!(rec.errors().is_empty());
    assert_eq!(rec.reason_count(), 0);
}

#[tokio::test]
async fn the_fallback_receives_unknown_events_but_never_ack_replies() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let seen = rec.clone();
    let server = server_builder(&rt)
        .on("known", |_: Conn, _: Event| async { "known" })
        .on_unknown_event(move |_: Conn, e: Event| {
            seen.push(format!("{}={}", e.name(), text(&e)));
            async { "fallback" }
        })
        .build()
        .unwrap();
    let s = serve(&server).await;

    s.peer.send_text("mystery||3||d");
    assert_eq!(s.peer.recv_text().await, "__ack_mystery||3||fallback");
    s.peer.send_text("known||4");
    assert_eq!(s.peer.recv_text().await, "__ack_known||4||known");
    s.peer.send_text("quiet||0||q");
    // A reply to nothing we asked: dropped, never given to the fallback.
    s.peer.send_text("__ack_mystery||99||late");
    s.peer.send_text("__ack_||1");
    eventually("the fallback saw quiet", || rec.log().len() == 2).await;
    s.peer.assert_silent().await;
    assert_eq!(rec.log(), ["mystery=d", "quiet=q"]);
}

#[tokio::test]
async fn malformed_frames_reach_the_error_hook_and_the_connection_stays_open() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .on("ev", |_: Conn, e: Event| async move { text(&e) })
        .build()
        .unwrap();
    let s = serve(&server).await;

    s.peer.send_text("no separator");
    s.peer.send_text("ev||x");
    s.peer.send_text("");
    s.peer.send_text("ev||99999999999999999999");
    s.peer.send_text("ev||1||still here");
    assert_eq!(s.peer.recv_text().await, "__ack_ev||1||still here");
    s.peer.assert_silent().await;

    let errors: Vec<String> = rec
        .errors()
        .iter()
        .map(|e| {
            assert!(
                matches!(e, Error::Protocol(_)),
                "not a protocol error: {e:?}"
            );
            e.to_string()
        })
        .collect();
    assert_eq!(
        errors,
        [
            "expected format: <eventName>||<ackId>||<eventData>, got: no separator",
            "parse ackId: strconv.Atoi: parsing \"x\": invalid syntax",
            "expected format: <eventName>||<ackId>||<eventData>, got: ",
            "parse ackId: strconv.Atoi: parsing \"99999999999999999999\": value out of range",
        ]
    );
    assert_eq!(rec.reason_count(), 0);
    assert!(!s.conn.is_closed());
}

#[tokio::test]
async fn binary_messages_are_read_like_text_and_non_utf8_replies_go_out_as_binary() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on("echo", |_: Conn, e: Event| async move { e.into_data() })
        .build()
        .unwrap();
    let s = serve(&server).await;

    s.peer.send(Message::binary(&b"echo||1||plain"[..]));
    assert_eq!(s.peer.recv_text().await, "__ack_echo||1||plain");
    s.peer.send(Message::binary(&b"echo||2||\xff\xfe"[..]));
    match s.peer.recv().await {
        Some(Message::Binary(data)) => assert_eq!(&data[..], b"__ack_echo||2||\xff\xfe"),
        other => panic!("expected a binary reply, got {other:?}"),
    }
}

#[tokio::test]
async fn a_panicking_handler_is_contained_reported_and_still_answered() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .on("boom", |_: Conn, _: Event| async {
            tokio::task::yield_now().await;
            if true {
                panic!("kaboom");
            }
            "unreachable"
        })
        .on("boom_at_call", |_: Conn, e: Event| {
            if !e.name().is_empty() {
                panic!("{} exploded before its future", e.name());
            }
            async { "unreachable" }
        })
        .on("ok", |_: Conn, _: Event| async { "fine" })
        .build()
        .unwrap();
    let s = serve(&server).await;

    s.peer.send_text("boom||1||x");
    assert_eq!(s.peer.recv_text().await, "__ack_boom||1");
    s.peer.send_text("boom_at_call||2");
    assert_eq!(s.peer.recv_text().await, "__ack_boom_at_call||2");
    s.peer.send_text("boom||0");
    s.peer.send_text("ok||3");
    assert_eq!(s.peer.recv_text().await, "__ack_ok||3||fine");
    eventually("three panics were reported", || rec.errors().len() == 3).await;
    s.peer.assert_silent().await;

    let panics: Vec<(String, String)> = rec
        .errors()
        .iter()
        .map(|e| match e {
            Error::HandlerPanicked { event, message } => (event.clone(), message.clone()),
            other => panic!("unexpected error {other:?}"),
        })
        .collect();
    assert_eq!(
        panics,
        [
            ("boom".to_owned(), "kaboom".to_owned()),
            (
                "boom_at_call".to_owned(),
                "boom_at_call exploded before its future".to_owned()
            ),
            ("boom".to_owned(), "kaboom".to_owned()),
        ]
    );
    assert_eq!(rec.reason_count(), 0);
    assert!(!s.conn.is_closed());
}

#[tokio::test]
async fn hooks_run_in_order_and_the_connection_is_in_its_rooms_during_on_disconnect() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let gate = Gate::default();
    let rooms_handle: Arc<Mutex<Option<Rooms>>> = Arc::default();

    let (on_connect, on_event, on_disconnect) = (rec.clone(), rec.clone(), rec.clone());
    let (connect_gate, hook_rooms) = (gate.clone(), rooms_handle.clone());
    let server = server_builder(&rt)
        .on_connect(move |conn: Conn| {
            let (rec, gate) = (on_connect.clone(), connect_gate.clone());
            async move {
                rec.push("connect start");
                assert!(conn.join("r"));
                gate.wait().await;
                rec.push(format!(
                    "connect end x={:?}",
                    conn.request().query_param("x")
                ));
            }
        })
        .on("ev", move |_: Conn, e: Event| {
            on_event.push(format!("event {}", text(&e)));
            async {}
        })
        .on_disconnect(move |conn: Conn, reason: DisconnectReason| {
            let rooms = hook_rooms.lock().unwrap().clone().expect("rooms set");
            on_disconnect.push(format!(
                "disconnect {} normal={} rooms={:?} members={} closed={}",
                reason,
                reason.is_normal(),
                conn.rooms(),
                rooms.len("r"),
                conn.is_closed(),
            ));
            async {}
        })
        .build()
        .unwrap();
    *rooms_handle.lock().unwrap() = Some(server.rooms());
    let s = serve(&server).await;

    // Frames sent right away wait until the connect hook is done.
    s.peer.send_text("ev||1||first");
    s.peer.send_text("ev||0||second");
    s.peer.assert_silent().await;
    assert_eq!(rec.log(), ["connect start"]);

    gate.open();
    assert_eq!(s.peer.recv_text().await, "__ack_ev||1");
    eventually("both events were handled", || rec.log().len() == 4).await;
    assert_eq!(server.rooms().len("r"), 1);

    s.peer.close_with(Some(1000), "bye");
    let done = s.task;
    guarded("serve_connection", done).await.unwrap();
    assert_eq!(
        rec.log(),
        [
            "connect start",
            "connect end x=Some(\"1\")",
            "event first",
            "event second",
            "disconnect closed with code 1000: bye normal=true rooms=[\"r\"] members=1 closed=true",
        ]
    );
    // After the hook: out of every room, rooms without members are gone.
    assert_eq!(server.rooms().len("r"), 0);
    assert!(server.rooms().is_empty());
    assert_eq!(server.rooms().connection_count(), 0);
    assert_eq!(server.connection_count(), 0);
    assert!(server.rooms().get(s.conn.id()).is_none());
    assert!(s.peer.is_dropped());
    assert!(s.peer.sent_after_close().is_empty());
    assert_eq!(
        s.conn.emit("ev", "late"),
        Err(etp_driver::EmitError::Closed)
    );
    assert!(!s.conn.join("r"), "an ended connection cannot join a room");
}

#[tokio::test]
async fn a_panicking_connect_hook_is_reported_and_the_connection_closed() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .on_connect(|_: Conn| async { panic!("no session") })
        .on("ev", |_: Conn, _: Event| async { "served" })
        .build()
        .unwrap();
    let mut s = serve(&server).await;
    assert_eq!(s.peer.answer_close().await, (1000, String::new()));
    let reason = rec.disconnected().await;
    assert!(reason.is_normal(), "{reason:?}");
    assert!(matches!(
        &rec.errors()[..],
        [Error::HookPanicked { hook: "on_connect", message }] if message == "no session"
    ));
    s.finished().await;
}

#[tokio::test]
async fn a_panicking_disconnect_hook_is_reported_and_the_rooms_are_still_left() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let errors = rec.clone();
    let server = server_builder(&rt)
        .on_error(move |_, e| errors.errors().push(e))
        .on_connect(|conn: Conn| async move {
            conn.join("r");
        })
        .on_disconnect(|_: Conn, _: DisconnectReason| async { panic!("hook failed") })
        .build()
        .unwrap();
    let mut s = serve(&server).await;
    settle().await;
    assert_eq!(server.rooms().len("r"), 1);
    s.peer.close_stream();
    s.finished().await;
    assert!(server.rooms().is_empty());
    assert_eq!(server.connection_count(), 0);
    assert!(matches!(
        &rec.errors()[..],
        [Error::HookPanicked { hook: "on_disconnect", message }] if message == "hook failed"
    ));
}

/// Runs a connection, lets the peer end it with `end`, returns the reason.
async fn reason_after(end: impl FnOnce(&Peer)) -> DisconnectReason {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec.server(server_builder(&rt)).build().unwrap();
    let mut s = serve(&server).await;
    settle().await;
    end(&s.peer);
    let reason = rec.disconnected().await;
    assert!(
        s.peer.sent_after_close().is_empty(),
        "sent after close: {:?}",
        s.peer.sent_after_close()
    );
    s.finished().await;
    reason
}

#[tokio::test]
async fn a_peer_close_with_1000_is_a_normal_close() {
    let reason = reason_after(|p| p.close_with(Some(1000), "done")).await;
    assert!(
        matches!(&reason, DisconnectReason::Closed { code: 1000, reason } if reason == "done"),
        "{reason:?}"
    );
    assert!(reason.is_normal());
    assert_eq!(reason.code(), Some(1000));
    assert_eq!(reason.reason(), Some("done"));
}

#[tokio::test]
async fn a_peer_close_with_1001_or_without_a_code_is_not_normal() {
    let reason = reason_after(|p| p.close_with(Some(1001), "")).await;
    assert!(
        matches!(reason, DisconnectReason::Closed { code: 1001, .. }),
        "{reason:?}"
    );
    assert!(!reason.is_normal());

    let reason = reason_after(|p| p.close_with(None, "")).await;
    assert!(
        matches!(reason, DisconnectReason::Closed { code: 1005, .. }),
        "{reason:?}"
    );
    assert!(!reason.is_normal());

    let reason = reason_after(|p| p.close_with(Some(4001), "app")).await;
    assert_eq!(reason.code(), Some(4001));
    assert!(!reason.is_normal());
}

#[tokio::test]
async fn a_stream_that_ends_without_a_close_frame_is_a_lost_connection() {
    let reason = reason_after(Peer::close_stream).await;
    assert!(
        matches!(reason, DisconnectReason::ConnectionLost),
        "{reason:?}"
    );
    assert!(!reason.is_normal());
    assert_eq!(reason.code(), None);
}

#[tokio::test]
async fn a_tcp_drop_as_tungstenite_reports_it_is_a_lost_connection() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec.server(server_builder(&rt)).build().unwrap();
    let s = serve(&server).await;
    settle().await;
    s.peer.reset();
    let reason = rec.disconnected().await;
    assert!(
        matches!(reason, DisconnectReason::ConnectionLost),
        "{reason:?}"
    );
    // Nobody is there to read a close frame.
    assert_eq!(s.peer.try_recv(), None);
}

#[tokio::test]
async fn websocket_errors_close_with_1002_or_1007_and_end_the_connection() {
    for (error, code) in [
        (
            WsError::Protocol(WsProtocolError::UnmaskedFrameFromClient),
            1002,
        ),
        (WsError::Utf8("invalid utf-8 sequence".into()), 1007),
    ] {
        let rt = ManualRuntime::new();
        let rec = Recorder::new();
        let server = rec.server(server_builder(&rt)).build().unwrap();
        let mut s = serve(&server).await;
        settle().await;
        s.peer.send_error(error);
        let reason = rec.disconnected().await;
        assert!(
            matches!(reason, DisconnectReason::WebSocket(_)),
            "{reason:?}"
        );
        assert_eq!(s.peer.recv_close().await.0, code);
        s.finished().await;
    }
}

#[tokio::test]
async fn io_errors_end_the_connection_with_the_io_error() {
    let reason = reason_after(|p| {
        p.send_error(WsError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset by peer",
        )))
    })
    .await;
    assert_eq!(
        reason.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionReset),
        "{reason:?}"
    );
}

#[tokio::test]
async fn a_message_at_the_read_limit_is_handled_and_one_byte_more_closes_with_1009() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let seen = rec.clone();
    let server = rec
        .server(server_builder(&rt))
        .read_limit(Some(16))
        .on("ev", move |_: Conn, e: Event| {
            seen.push(format!("ev {}", text(&e)));
            async { "ok" }
        })
        .build()
        .unwrap();
    let mut s = serve(&server).await;

    let at_limit = "ev||1||123456789";
    assert_eq!(at_limit.len(), 16);
    s.peer.send_text(at_limit);
    assert_eq!(s.peer.recv_text().await, "__ack_ev||1||ok");

    let over = "ev||2||1234567890";
    assert_eq!(over.len(), 17);
    s.peer.send_text(over);
    assert_eq!(
        s.peer.answer_close().await,
        (1009, "read limited at 17 bytes".to_owned())
    );
    let reason = rec.disconnected().await;
    assert!(
        matches!(reason, DisconnectReason::ReadLimit { limit: 16 }),
        "{reason:?}"
    );
    assert_eq!(reason.to_string(), "read limited at 17 bytes");
    assert!(!reason.is_normal());
    assert_eq!(
        rec.log(),
        ["ev 123456789", "disconnect read limited at 17 bytes"]
    );
    s.finished().await;
}

#[tokio::test]
async fn a_message_the_websocket_layer_refuses_as_too_long_closes_with_1009() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .read_limit(Some(16))
        .build()
        .unwrap();
    let s = serve(&server).await;
    settle().await;
    s.peer
        .send_error(WsError::Capacity(CapacityError::MessageTooLong {
            size: 17,
            max_size: 16,
        }));
    let reason = rec.disconnected().await;
    assert!(
        matches!(reason, DisconnectReason::ReadLimit { limit: 16 }),
        "{reason:?}"
    );
    assert_eq!(
        s.peer.recv_close().await,
        (1009, "read limited at 17 bytes".to_owned())
    );
}

#[tokio::test]
async fn a_ping_from_the_peer_is_answered_and_keeps_the_connection_alive() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .keepalive(Duration::from_secs(100), Duration::from_secs(10))
        .build()
        .unwrap();
    let s = serve(&server).await;
    settle().await;
    rt.advance_and_settle(Duration::from_secs(9)).await;
    s.peer.send(Message::Ping("p".into()));
    assert_eq!(s.peer.recv().await, Some(Message::Pong("p".into())));
    // 9 s after the ping: 18 s in, past the first idle deadline.
    rt.advance_and_settle(Duration::from_secs(9)).await;
    assert_eq!(rec.reason_count(), 0);
    s.peer.assert_silent().await;
    rt.advance_and_settle(Duration::from_secs(1)).await;
    assert_eq!(
        s.peer.answer_close().await,
        (1001, "idle timeout".to_owned())
    );
    assert!(matches!(
        rec.disconnected().await,
        DisconnectReason::IdleTimeout
    ));
}

#[tokio::test]
async fn a_handler_can_close_its_own_connection() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .on("bye", |conn: Conn, _: Event| async move {
            conn.emit("farewell", "").unwrap();
            conn.close();
            "unsent"
        })
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("bye||1");
    assert_eq!(s.peer.recv_text().await, "farewell||0");
    // The close wins over the reply: nothing is sent after a close frame.
    assert_eq!(s.peer.answer_close().await, (1000, String::new()));
    assert!(rec.disconnected().await.is_normal());
    assert!(s.peer.sent_after_close().is_empty());
}

#[tokio::test]
async fn what_a_handler_emits_before_returning_is_sent_before_its_reply() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on("job", |conn: Conn, _: Event| async move {
            conn.emit("progress", "50%").unwrap();
            "done"
        })
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("job||1");
    assert_eq!(s.peer.recv_text().await, "progress||0||50%");
    assert_eq!(s.peer.recv_text().await, "__ack_job||1||done");
}
