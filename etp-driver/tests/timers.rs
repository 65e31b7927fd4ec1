//! Everything the manual clock drives: keepalive, the close handshake's deadline,
//! pings.

mod common;

use std::time::Duration;

use common::*;
use etp_driver::{Conn, DisconnectReason, EmitError, Event, Server};
use tungstenite::Message;

const SECOND: Duration = Duration::from_secs(1);

/// One connection, settled, on a server with a 10 s keepalive interval and a 25 s
/// idle timeout, on a manual clock. Keep the server: dropping it ends the connection.
async fn served_with_keepalive() -> (ManualRuntime, Recorder, Server<ManualRuntime>, Served) {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .keepalive(10 * SECOND, 25 * SECOND)
        .build()
        .unwrap();
    let s = serve(&server).await;
    settle().await;
    (rt, rec, server, s)
}

#[tokio::test]
async fn keepalive_pings_after_the_interval_and_pongs_keep_the_connection_open() {
    let (rt, rec, _server, s) = served_with_keepalive().await;

    rt.advance_and_settle(Duration::from_millis(9_999)).await;
    s.peer.assert_silent().await;
    rt.advance_and_settle(Duration::from_millis(1)).await;
    assert!(matches!(s.peer.recv().await, Some(Message::Ping(_))));

    // Answer every ping well past the first idle deadline (25 s).
    for _ in 0..5 {
        s.peer.send(Message::Pong(Default::default()));
        settle().await;
        rt.advance_and_settle(10 * SECOND).await;
        assert!(matches!(s.peer.recv().await, Some(Message::Ping(_))));
    }
    assert_eq!(rt.elapsed(), 60 * SECOND);
    assert_eq!(rec.reason_count(), 0);
    assert!(!s.conn.is_closed());
}

#[tokio::test]
async fn any_message_counts_as_life_for_the_keepalive() {
    let (rt, rec, _server, s) = served_with_keepalive().await;
    // A frame every 9 s: no ping is ever needed.
    for _ in 0..6 {
        rt.advance_and_settle(9 * SECOND).await;
        s.peer.send_text("tick||0");
        settle().await;
    }
    s.peer.assert_silent().await;
    assert_eq!(rec.reason_count(), 0);
}

/// Traffic moves the keepalive's deadlines later with every read; the armed sleep
/// stays, fires early, finds nothing due and is armed once for the new deadline. A
/// deadline that comes earlier (an acknowledgement's timeout) is armed at once.
#[tokio::test]
async fn traffic_does_not_arm_a_sleep_per_read_and_an_earlier_deadline_still_fires() {
    let (rt, rec, _server, s) = served_with_keepalive().await;
    let armed = rt.sleeps_armed();
    for _ in 0..9 {
        rt.advance_and_settle(SECOND).await;
        s.peer.send_text("tick||0");
        settle().await;
    }
    assert_eq!(
        rt.sleeps_armed(),
        armed,
        "no sleep armed while traffic flows"
    );
    // The sleep armed at the start (ping due at 10 s) fires; the ping is now due at
    // 19 s (last read at 9 s): no ping, one new sleep.
    rt.advance_and_settle(SECOND).await;
    s.peer.assert_silent().await;
    assert_eq!(rt.sleeps_armed(), armed + 1);

    // An acknowledgement due in 1 s, before the armed keepalive sleep (19 s).
    let conn = s.conn.clone();
    let request = tokio::spawn(async move { conn.emit_with_ack_timeout("q", "", SECOND).await });
    settle().await;
    assert!(matches!(s.peer.recv().await, Some(Message::Text(_))));
    rt.advance_and_settle(SECOND).await;
    assert!(
        request.is_finished(),
        "the acknowledgement due in 1 s did not end then"
    );
    let answer = request.await.unwrap();
    assert!(
        matches!(answer, Err(etp_driver::AckError::TimedOut)),
        "{answer:?}"
    );
    s.peer.assert_silent().await;
    assert_eq!(rec.reason_count(), 0);
}

#[tokio::test]
async fn keepalive_closes_with_1001_when_nothing_arrives_within_the_idle_timeout() {
    let (rt, rec, _server, mut s) = served_with_keepalive().await;

    rt.advance_and_settle(10 * SECOND).await;
    assert!(matches!(s.peer.recv().await, Some(Message::Ping(_))));
    rt.advance_and_settle(10 * SECOND).await;
    assert!(matches!(s.peer.recv().await, Some(Message::Ping(_))));
    rt.advance_and_settle(Duration::from_millis(4_999)).await;
    s.peer.assert_silent().await;
    assert_eq!(rec.reason_count(), 0);

    rt.advance_and_settle(Duration::from_millis(1)).await;
    assert_eq!(
        s.peer.answer_close().await,
        (1001, "idle timeout".to_owned())
    );
    let reason = rec.disconnected().await;
    assert!(
        matches!(reason, DisconnectReason::IdleTimeout),
        "{reason:?}"
    );
    assert!(!reason.is_normal());
    s.finished().await;
}

#[tokio::test]
async fn an_idle_peer_that_never_answers_the_close_still_ends_as_idle() {
    let (rt, rec, _server, mut s) = served_with_keepalive().await;
    rt.advance_and_settle(25 * SECOND).await;
    rt.advance_and_settle(25 * SECOND).await;
    loop {
        match s.peer.recv().await {
            Some(Message::Ping(_)) => continue,
            Some(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1001);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    rt.advance_and_settle(5 * SECOND).await;
    let reason = rec.disconnected().await;
    assert!(
        matches!(reason, DisconnectReason::IdleTimeout),
        "{reason:?}"
    );
    s.finished().await;
}

#[tokio::test]
async fn a_busy_handler_does_not_make_a_live_peer_look_idle() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let gate = Gate::default();
    let handler_gate = gate.clone();
    let server = rec
        .server(server_builder(&rt))
        .handler_concurrency(1)
        .keepalive(10 * SECOND, 25 * SECOND)
        .on("slow", move |_: Conn, _: Event| handler_gate.wait())
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("slow||0");
    s.peer.send_text("slow||0");
    settle().await;
    // The peer is alive: it answers every ping the server sends.
    for _ in 0..4 {
        rt.advance_and_settle(10 * SECOND).await;
        while let Some(message) = s.peer.try_recv() {
            assert!(matches!(message, Message::Ping(_)), "{message:?}");
            s.peer.send(Message::Pong(Default::default()));
        }
        settle().await;
    }
    assert_eq!(rec.reason_count(), 0, "closed as idle: {:?}", rec.reasons());
    gate.open();
}

#[tokio::test]
async fn close_sends_1000_with_an_empty_reason_and_ends_normally_after_the_echo() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec.server(server_builder(&rt)).build().unwrap();
    let mut s = serve(&server).await;
    s.conn.emit("before", "x").unwrap();
    s.conn.close();
    s.conn.close();
    assert_eq!(s.peer.recv_text().await, "before||0||x");
    assert_eq!(s.peer.answer_close().await, (1000, String::new()));
    let reason = rec.disconnected().await;
    assert!(
        matches!(&reason, DisconnectReason::Closed { code: 1000, reason } if reason.is_empty()),
        "{reason:?}"
    );
    assert!(reason.is_normal());
    assert!(s.conn.is_closed());
    assert_eq!(s.conn.emit("after", "x"), Err(EmitError::Closed));
    assert!(s.peer.sent_after_close().is_empty());
    assert_eq!(rt.elapsed(), Duration::ZERO);
    s.finished().await;
}

#[tokio::test]
async fn close_times_out_when_the_peer_never_answers() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec.server(server_builder(&rt)).build().unwrap();
    let mut s = serve(&server).await;
    s.conn.close();
    assert_eq!(s.peer.recv_close().await, (1000, String::new()));
    rt.advance_and_settle(Duration::from_millis(4_999)).await;
    assert_eq!(rec.reason_count(), 0);
    assert!(!s.peer.is_dropped());
    rt.advance_and_settle(Duration::from_millis(1)).await;
    let reason = rec.disconnected().await;
    assert!(
        matches!(reason, DisconnectReason::CloseTimedOut { code: 1000 }),
        "{reason:?}"
    );
    assert!(!reason.is_normal());
    s.finished().await;
    assert!(s.peer.is_dropped());
}

#[tokio::test]
async fn a_custom_close_timeout_is_used() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let mut config = etp_driver::ConnConfig::default();
    config.close_timeout = 2 * SECOND;
    let server = rec
        .server(server_builder(&rt))
        .conn_config(config)
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.conn.close();
    assert_eq!(s.peer.recv_close().await.0, 1000);
    rt.advance_and_settle(Duration::from_millis(1_999)).await;
    assert_eq!(rec.reason_count(), 0);
    rt.advance_and_settle(Duration::from_millis(1)).await;
    assert!(matches!(
        rec.disconnected().await,
        DisconnectReason::CloseTimedOut { code: 1000 }
    ));
}

#[tokio::test]
async fn ping_waits_for_the_pong() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;
    let conn = s.conn.clone();
    let ping = tokio::spawn(async move { conn.ping().await });
    assert!(matches!(s.peer.recv().await, Some(Message::Ping(_))));
    settle().await;
    assert!(!ping.is_finished());
    s.peer.send(Message::Pong(Default::default()));
    assert_eq!(guarded("the pong", ping).await.unwrap(), Ok(()));

    // A ping still waiting when the connection ends fails.
    let conn = s.conn.clone();
    let ping = tokio::spawn(async move { conn.ping().await });
    assert!(matches!(s.peer.recv().await, Some(Message::Ping(_))));
    s.peer.close_stream();
    assert_eq!(
        guarded("the ping to fail", ping).await.unwrap(),
        Err(EmitError::Closed)
    );
    assert_eq!(s.conn.ping().await, Err(EmitError::Closed));
}
