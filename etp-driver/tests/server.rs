//! Server-wide behaviour: rooms and broadcast, slow consumers, shutdown.

mod common;

use std::time::Duration;

use common::*;
use etp_driver::{Conn, DisconnectReason, EmitError, Event, SlowConsumerPolicy};

const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------
// Rooms and broadcast
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn broadcast_reaches_each_member_once_and_skips_the_excepted_connection() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let rooms = server.rooms();
    let a = serve(&server).await;
    let b = serve(&server).await;
    let c = serve(&server).await;
    let outsider = serve(&server).await;

    rooms.join(&a.conn, "r");
    rooms.join(&a.conn, "r"); // idempotent
    rooms.join(&a.conn, "s");
    rooms.join(&b.conn, "r");
    rooms.join(&c.conn, "s");
    assert_eq!(rooms.rooms(), ["r", "s"]);
    assert_eq!(
        (rooms.len("r"), rooms.len("s"), rooms.len("none")),
        (2, 2, 0)
    );
    assert_eq!(a.conn.rooms(), ["r", "s"]);

    let members = rooms.members(["r", "s"]);
    let mut expected = vec![a.conn.clone(), b.conn.clone(), c.conn.clone()];
    expected.sort();
    assert_eq!(members, expected, "each member once, in id order");

    let report = rooms
        .broadcast(["r", "s"], "msg", b"hi", Some(c.conn.id()))
        .unwrap();
    assert_eq!((report.queued, report.skipped), (2, 0));
    assert_eq!(a.peer.recv_text().await, "msg||0||hi");
    assert_eq!(b.peer.recv_text().await, "msg||0||hi");
    for peer in [&a.peer, &b.peer, &c.peer, &outsider.peer] {
        peer.assert_silent().await;
    }

    // Empty data: the compact encoding; everyone, except nobody.
    let report = rooms.broadcast_all("all", b"", None).unwrap();
    assert_eq!(report.queued, 4);
    for peer in [&a.peer, &b.peer, &c.peer, &outsider.peer] {
        assert_eq!(peer.recv_text().await, "all||0");
    }

    assert!(matches!(
        rooms.broadcast(["r"], "bad||name", b"", None),
        Err(EmitError::InvalidName(_))
    ));
    assert_eq!(rooms.get(b.conn.id()), Some(b.conn.clone()));
    assert_eq!(rooms.connection_count(), 4);
}

#[tokio::test]
async fn connections_leave_their_rooms_when_they_end_and_empty_rooms_disappear() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let rooms = server.rooms();
    let mut a = serve(&server).await;
    let b = serve(&server).await;
    rooms.join(&a.conn, "r");
    rooms.join(&a.conn, "solo");
    rooms.join(&b.conn, "r");

    a.peer.close_with(Some(1000), "");
    a.finished().await;
    assert_eq!(rooms.len("r"), 1);
    assert_eq!(rooms.rooms(), ["r"]);
    assert_eq!(rooms.members(["r", "solo"]), std::slice::from_ref(&b.conn));
    assert!(rooms.get(a.conn.id()).is_none());
    assert!(!rooms.leave(&a.conn, "r"));

    // A broadcast skips ended connections that are still held by the application.
    let report = rooms.broadcast(["r"], "m", b"", None).unwrap();
    assert_eq!(report.queued, 1);
    assert_eq!(b.peer.recv_text().await, "m||0");

    assert!(rooms.leave(&b.conn, "r"));
    assert!(rooms.is_empty());
    assert_eq!(server.connection_count(), 1);
}

#[tokio::test]
async fn handlers_can_join_and_leave_rooms() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on("join", |conn: Conn, e: Event| async move {
            conn.join(&String::from_utf8_lossy(e.data()));
            conn.rooms().join(",")
        })
        .on("leave", |conn: Conn, e: Event| async move {
            conn.leave(&String::from_utf8_lossy(e.data())).to_string()
        })
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("join||1||b");
    assert_eq!(s.peer.recv_text().await, "__ack_join||1||b");
    s.peer.send_text("join||2||a");
    assert_eq!(s.peer.recv_text().await, "__ack_join||2||a,b");
    s.peer.send_text("leave||3||b");
    assert_eq!(s.peer.recv_text().await, "__ack_leave||3||true");
    s.peer.send_text("leave||4||b");
    assert_eq!(s.peer.recv_text().await, "__ack_leave||4||false");
    assert_eq!(server.rooms().rooms(), ["a"]);
    server.rooms().clear("a");
    assert!(server.rooms().is_empty());
    assert!(s.conn.rooms().is_empty());
}

// ---------------------------------------------------------------------------------
// Slow consumers
// ---------------------------------------------------------------------------------

const KIB: usize = 1024;

/// Emits 1 KiB frames, letting the driver run after each, until one is refused.
/// Returns how many were accepted and the refusal.
async fn emit_until_refused(conn: &Conn) -> (usize, EmitError) {
    let data = "x".repeat(KIB);
    for accepted in 0..10_000 {
        match conn.emit("big", data.clone()) {
            Ok(()) => settle().await,
            Err(err) => return (accepted, err),
        }
    }
    panic!("10,000 frames were accepted by a peer that never reads");
}

/// A server whose only connection's peer stopped reading, with the driver's buffers
/// and the per-connection bound full: `emit` was just refused.
async fn stalled(
    policy: SlowConsumerPolicy,
) -> (
    ManualRuntime,
    Recorder,
    etp_driver::Server<ManualRuntime>,
    Served,
    usize,
    EmitError,
) {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .outbound_limit(8 * KIB, policy)
        .on("ev", |_: Conn, _: Event| async { "handled" })
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.set_capacity(1);
    let (accepted, refused) = emit_until_refused(&s.conn).await;
    (rt, rec, server, s, accepted, refused)
}

#[tokio::test]
async fn a_peer_that_never_reads_fills_the_bound_and_new_frames_are_dropped() {
    let (_rt, rec, _server, s, accepted, refused) = stalled(SlowConsumerPolicy::DropNew).await;
    assert_eq!(refused, EmitError::QueueFull { limit: 8 * KIB });
    // The driver buffers a bounded amount itself (its write high-water mark) before
    // the per-connection bound applies.
    assert!(accepted > 8, "accepted {accepted}");
    assert!(
        accepted < 400,
        "accepted {accepted}: the driver buffers without bound"
    );
    settle().await;
    assert!(!s.conn.is_closed());
    assert_eq!(rec.reason_count(), 0);
    // Still refused while nothing moves; small frames still fit the bound's slack.
    assert_eq!(
        s.conn.emit("big", "x".repeat(KIB)),
        Err(EmitError::QueueFull { limit: 8 * KIB })
    );
}

#[tokio::test]
async fn a_slow_reader_that_catches_up_receives_every_accepted_frame() {
    let (_rt, _rec, _server, s, accepted, _) = stalled(SlowConsumerPolicy::DropNew).await;
    s.peer.set_capacity(usize::MAX);
    for _ in 0..accepted {
        assert!(s.peer.recv_text().await.starts_with("big||0||x"));
    }
    s.peer.assert_silent().await;
    s.conn.emit("again", "").unwrap();
    assert_eq!(s.peer.recv_text().await, "again||0");
}

#[tokio::test]
async fn a_slow_reader_that_catches_up_gets_its_events_handled() {
    let (_rt, _rec, _server, s, accepted, _) = stalled(SlowConsumerPolicy::DropNew).await;
    s.peer.send_text("ev||1");
    settle().await;
    s.peer.set_capacity(usize::MAX);
    let mut texts = Vec::new();
    while texts.len() <= accepted {
        texts.push(s.peer.recv_text().await);
    }
    assert!(
        texts.contains(&"__ack_ev||1||handled".to_owned()),
        "no reply"
    );
}

#[tokio::test]
async fn a_broadcast_skips_a_member_over_its_bound_and_still_reaches_the_others() {
    let (_rt, _rec, server, slow, _, _) = stalled(SlowConsumerPolicy::DropNew).await;
    let fast = serve(&server).await;
    server.rooms().join(&slow.conn, "r");
    server.rooms().join(&fast.conn, "r");
    let data = "n".repeat(KIB);
    let report = server
        .rooms()
        .broadcast(["r"], "news", data.as_bytes(), None)
        .unwrap();
    assert_eq!((report.queued, report.skipped), (1, 1));
    assert_eq!(fast.peer.recv_text().await, format!("news||0||{data}"));
    assert!(!slow.conn.is_closed());
}

#[tokio::test]
async fn a_peer_that_never_reads_is_disconnected_with_the_disconnect_policy() {
    let (rt, rec, _server, s, _, refused) = stalled(SlowConsumerPolicy::Disconnect).await;
    assert_eq!(refused, EmitError::SlowConsumer);
    eventually("the connection is closing", || s.conn.is_closed()).await;
    assert_eq!(s.conn.emit("more", ""), Err(EmitError::Closed));
    // `Conn` marks itself closed at once; let the driver take the order and start its
    // close before the clock moves.
    settle().await;
    // Its close frame cannot get through either: the close timeout ends it.
    rt.advance_and_settle(5 * SECOND).await;
    let reason = rec.disconnected().await;
    assert!(
        matches!(reason, DisconnectReason::SlowConsumer),
        "{reason:?}"
    );
    assert!(!reason.is_normal());
}

#[tokio::test]
async fn a_slow_consumer_that_catches_up_finds_a_1008_close_after_the_frames() {
    let (_rt, rec, _server, s, _, refused) = stalled(SlowConsumerPolicy::Disconnect).await;
    assert_eq!(refused, EmitError::SlowConsumer);
    s.peer.set_capacity(usize::MAX);
    assert_eq!(
        s.peer.answer_close().await,
        (1008, "slow consumer".to_owned())
    );
    let reason = rec.disconnected().await;
    assert!(
        matches!(reason, DisconnectReason::SlowConsumer),
        "{reason:?}"
    );
}

#[tokio::test]
async fn one_large_frame_on_an_idle_connection_does_not_disconnect_a_fast_peer() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .outbound_limit(KIB, SlowConsumerPolicy::Disconnect)
        .build()
        .unwrap();
    let s = serve(&server).await;
    settle().await;
    let _ = s.conn.emit("large", "y".repeat(2 * KIB));
    settle().await;
    assert_eq!(rec.reason_count(), 0, "{:?}", rec.reasons());
    assert!(
        !s.conn.is_closed(),
        "a fast, idle peer was closed as a slow consumer"
    );
}

// ---------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------

fn upgrade_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("host", "example.test"),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    headers
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1000_at_once_and_refuses_upgrades() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec.server(server_builder(&rt)).build().unwrap();
    let accepted = server.accept_upgrade(
        &http::Method::GET,
        http::Version::HTTP_11,
        &upgrade_headers(),
    );
    assert_eq!(
        accepted.unwrap().status(),
        http::StatusCode::SWITCHING_PROTOCOLS
    );

    let mut served = Vec::new();
    for _ in 0..3 {
        served.push(serve(&server).await);
    }
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(10 * SECOND).await }
    });
    // Every connection gets its close before any peer answered: concurrently.
    for s in &served {
        assert_eq!(s.peer.recv_close().await, (1000, String::new()));
    }
    assert!(server.is_shutting_down());
    let refused = server
        .accept_upgrade(
            &http::Method::GET,
            http::Version::HTTP_11,
            &upgrade_headers(),
        )
        .unwrap_err();
    assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(!shutdown.is_finished());

    for s in &served {
        s.peer.send(tungstenite::Message::Close(Some(
            tungstenite::protocol::CloseFrame {
                code: 1000.into(),
                reason: "".into(),
            },
        )));
        s.peer.close_stream();
    }
    assert_eq!(guarded("shutdown", shutdown).await.unwrap(), 0);
    assert_eq!(rt.elapsed(), Duration::ZERO);
    assert_eq!(server.connection_count(), 0);
    let reasons = rec.reasons();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons.iter().all(DisconnectReason::is_normal),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn shutdown_drops_connections_that_never_answer_after_its_timeout() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec.server(server_builder(&rt)).build().unwrap();
    let polite = serve(&server).await;
    let mut silent = serve(&server).await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(2 * SECOND).await }
    });
    assert_eq!(polite.peer.answer_close().await.0, 1000);
    assert_eq!(silent.peer.recv_close().await.0, 1000);
    eventually("the polite peer is gone", || rec.reason_count() == 1).await;

    rt.advance_and_settle(Duration::from_millis(1_999)).await;
    assert!(!shutdown.is_finished());
    rt.advance_and_settle(Duration::from_millis(1)).await;
    assert_eq!(guarded("shutdown", shutdown).await.unwrap(), 1);
    silent.finished().await;
    let reasons = rec.reasons();
    assert!(reasons[0].is_normal());
    assert!(
        matches!(reasons[1], DisconnectReason::Shutdown),
        "{reasons:?}"
    );
    assert_eq!(server.connection_count(), 0);
}

#[tokio::test]
async fn shutdown_lets_running_handlers_finish_and_leaves_new_requests_unanswered() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let gate = Gate::default();
    let (log, handler_gate) = (rec.clone(), gate.clone());
    let server = rec
        .server(server_builder(&rt))
        .on("job", move |_: Conn, e: Event| {
            let (log, gate) = (log.clone(), handler_gate.clone());
            let data = String::from_utf8_lossy(e.data()).into_owned();
            async move {
                log.push(format!("start {data}"));
                gate.wait().await;
                format!("done {data}")
            }
        })
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("job||1||a");
    eventually("the job started", || rec.log().len() == 1).await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(10 * SECOND).await }
    });
    s.peer.assert_silent().await;

    // A new request while draining is neither run nor answered: an answer would
    // claim it was handled. (The peer's request fails when the close arrives.)
    s.peer.send_text("job||2||b");
    s.peer.assert_silent().await;
    assert_eq!(rec.log(), ["start a"]);

    gate.open();
    assert_eq!(s.peer.recv_text().await, "__ack_job||1||done a");
    assert_eq!(s.peer.answer_close().await, (1000, String::new()));
    assert_eq!(guarded("shutdown", shutdown).await.unwrap(), 0);
    assert_eq!(rt.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn shutdown_drops_a_connection_whose_handler_never_ends() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .on("stuck", |_: Conn, _: Event| std::future::pending::<()>())
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("stuck||1");
    settle().await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(3 * SECOND).await }
    });
    settle().await;
    rt.advance_and_settle(3 * SECOND).await;
    assert_eq!(guarded("shutdown", shutdown).await.unwrap(), 1);
    assert!(matches!(
        rec.disconnected().await,
        DisconnectReason::Shutdown
    ));
}

#[tokio::test]
async fn shutdown_returns_after_its_timeout_even_with_a_peer_that_never_reads() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .outbound_limit(8 * KIB, SlowConsumerPolicy::DropNew)
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.set_capacity(1);
    let _ = emit_until_refused(&s.conn).await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(2 * SECOND).await }
    });
    settle().await;
    rt.advance_and_settle(2 * SECOND).await;
    rt.advance_and_settle(5 * SECOND).await;
    assert_eq!(guarded("shutdown", shutdown).await.unwrap(), 1);
}

#[tokio::test]
async fn a_connection_arriving_during_shutdown_is_closed_at_once() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec.server(server_builder(&rt)).build().unwrap();
    let first = serve(&server).await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(10 * SECOND).await }
    });
    assert_eq!(first.peer.recv_close().await.0, 1000);
    let late = serve(&server).await;
    assert_eq!(late.peer.answer_close().await, (1000, String::new()));
    first.peer.close_with(Some(1000), "");
    assert_eq!(guarded("shutdown", shutdown).await.unwrap(), 0);
    assert_eq!(rec.reason_count(), 2);
}

#[tokio::test]
async fn shutdown_without_connections_returns_at_once() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    assert_eq!(guarded("shutdown", server.shutdown(SECOND)).await, 0);
}

#[tokio::test]
async fn shutdown_returns_after_its_timeout_even_when_a_connect_hook_hangs() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on_connect(|_: Conn| std::future::pending::<()>())
        .build()
        .unwrap();
    let _s = serve(&server).await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(SECOND).await }
    });
    settle().await;
    rt.advance_and_settle(SECOND).await;
    assert_eq!(guarded("shutdown", shutdown).await.unwrap(), 1);
}

#[tokio::test]
async fn a_dropped_serve_connection_future_leaves_no_ghost_connection() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;
    server.rooms().join(&s.conn, "r");
    s.task.abort();
    settle().await;
    assert_eq!(server.connection_count(), 0);
    assert_eq!(server.rooms().connection_count(), 0, "ghost connection");
    assert!(server.rooms().is_empty(), "ghost room member");
}

/// Commands still queued when the connection's task is dropped (never taken by the
/// driver) fail at once, and later ones are refused: nobody waits forever.
#[tokio::test]
async fn commands_queued_when_the_connection_task_is_dropped_fail_at_once() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;
    let mut ack = Box::pin(s.conn.emit_with_ack("question", "data"));
    // One poll queues the request; the driver's task does not run before the abort.
    assert!(futures_util::poll!(ack.as_mut()).is_pending());
    s.task.abort();
    assert!(matches!(
        guarded("the queued request", ack).await,
        Err(etp_driver::AckError::ConnectionClosed)
    ));
    assert!(matches!(s.conn.emit("late", "x"), Err(EmitError::Closed)));
    s.peer.assert_silent().await;
}

#[tokio::test]
async fn a_conn_config_with_zero_handler_concurrency_still_handles_events() {
    let rt = ManualRuntime::new();
    let mut config = etp_driver::ConnConfig::default();
    config.handler_concurrency = 0;
    let server = server_builder(&rt)
        .conn_config(config)
        .on("ev", |_: Conn, _: Event| async { "ok" })
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("ev||1");
    assert_eq!(s.peer.recv_text().await, "__ack_ev||1||ok");
}
