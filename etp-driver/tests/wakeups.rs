//! Regression tests for lost wake-ups: the fake socket wakes the driver exactly as
//! tokio-tungstenite does (only when a message arrives, space frees up or a timer
//! fires), so every reply below must leave without any other nudge.
//!
//! (An earlier driver pushed handlers started while reading into `FuturesUnordered`
//! without polling them and did not count reading as progress, so their replies
//! waited for the next unrelated wake-up.)

mod common;

use std::time::Duration;

use common::*;
use etp_driver::{AckError, Conn, Event};

async fn only_reply(server: &etp_driver::Server<ManualRuntime>, frame: &str) -> Vec<String> {
    let s = serve(server).await;
    settle().await;
    s.peer.send_text(frame);
    // One reply must arrive without anything else happening on the connection.
    let first = s.peer.recv_text().await;
    settle().await;
    let mut all = vec![first];
    all.extend(s.peer.drain_texts());
    all
}

#[tokio::test]
async fn an_event_is_handled_without_any_further_wake_up() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on("ev", |_: Conn, e: Event| async move {
            format!("got {}", String::from_utf8_lossy(e.data()))
        })
        .build()
        .unwrap();
    assert_eq!(
        only_reply(&server, "ev||5||x").await,
        ["__ack_ev||5||got x"]
    );
}

#[tokio::test]
async fn a_fallback_event_is_handled_without_any_further_wake_up() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on_unknown_event(|_: Conn, _: Event| async { "fallback" })
        .build()
        .unwrap();
    assert_eq!(
        only_reply(&server, "who||1").await,
        ["__ack_who||1||fallback"]
    );
}

#[tokio::test]
async fn a_handler_that_yields_once_is_polled_again_by_its_own_waker() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on("ev", |_: Conn, _: Event| async {
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            "after yielding"
        })
        .build()
        .unwrap();
    assert_eq!(
        only_reply(&server, "ev||2").await,
        ["__ack_ev||2||after yielding"]
    );
}

#[tokio::test]
async fn a_backlogged_event_starts_when_the_running_handler_ends() {
    let rt = ManualRuntime::new();
    let gate = Gate::default();
    let handler_gate = gate.clone();
    let server = server_builder(&rt)
        .handler_concurrency(1)
        .on("ev", move |_: Conn, e: Event| {
            let gate = handler_gate.clone();
            let data = String::from_utf8_lossy(e.data()).into_owned();
            async move {
                gate.wait().await;
                data
            }
        })
        .build()
        .unwrap();
    let s = serve(&server).await;
    for i in 1..=5 {
        s.peer.send_text(&format!("ev||{i}||{i}"));
    }
    s.peer.assert_silent().await;
    gate.open();
    for i in 1..=5 {
        assert_eq!(s.peer.recv_text().await, format!("__ack_ev||{i}||{i}"));
    }
}

#[tokio::test]
async fn acks_and_timers_need_no_extra_wake_up() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .ack_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let s = serve(&server).await;
    let conn = s.conn.clone();
    let answered = tokio::spawn(async move { conn.emit_with_ack("q", "").await });
    assert_eq!(s.peer.recv_text().await, "q||1");
    s.peer.send_text("__ack_q||1||a");
    assert_eq!(guarded("the ack", answered).await.unwrap().unwrap(), "a");
    let conn = s.conn.clone();
    let timed_out = tokio::spawn(async move { conn.emit_with_ack("q", "").await });
    assert_eq!(s.peer.recv_text().await, "q||2");
    rt.advance_and_settle(Duration::from_secs(1)).await;
    assert_eq!(
        guarded("the timeout", timed_out).await.unwrap(),
        Err(AckError::TimedOut)
    );
}

#[tokio::test]
async fn a_slow_reader_that_catches_up_gets_everything_in_order() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;
    s.peer.set_capacity(2);
    for i in 0..50 {
        s.conn.emit("n", i.to_string()).unwrap();
    }
    settle().await;
    assert_eq!(s.peer.unread(), 2, "the socket holds two, the rest waits");
    for i in 0..50 {
        assert_eq!(s.peer.recv_text().await, format!("n||0||{i}"));
    }
}
