//! How the driver runs a handler: a handler that finishes without waiting is answered
//! in the same turn, and a panic is reported under the event's name whichever path the
//! handler took (finished at once, waited, the fallback for unknown events).

mod common;

use common::*;
use etp_driver::{Conn, Error, Event};

fn panics(rec: &Recorder) -> Vec<(String, String)> {
    rec.errors()
        .iter()
        .map(|e| match e {
            Error::HandlerPanicked { event, message } => (event.clone(), message.clone()),
            other => panic!("unexpected error {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_panic_in_the_first_poll_or_in_the_fallback_is_reported_under_the_events_name() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .on("boom_at_once", |_: Conn, _: Event| async {
            if true {
                panic!("at once");
            }
        })
        .on_unknown_event(|_: Conn, e: Event| async move {
            if e.data() == b"panic" {
                panic!("fallback for {}", e.name());
            }
            e.into_data()
        })
        .build()
        .unwrap();
    let s = serve(&server).await;

    s.peer.send_text("boom_at_once||1||x");
    assert_eq!(s.peer.recv_text().await, "__ack_boom_at_once||1");
    s.peer.send_text("nobody||2||panic");
    assert_eq!(s.peer.recv_text().await, "__ack_nobody||2");
    s.peer.send_text("boom_at_once||0");
    s.peer.send_text("someone_else||3||echo");
    assert_eq!(s.peer.recv_text().await, "__ack_someone_else||3||echo");
    eventually("three panics were reported", || rec.errors().len() == 3).await;
    s.peer.assert_silent().await;

    assert_eq!(
        panics(&rec),
        [
            ("boom_at_once".to_owned(), "at once".to_owned()),
            ("nobody".to_owned(), "fallback for nobody".to_owned()),
            ("boom_at_once".to_owned(), "at once".to_owned()),
        ]
    );
    assert!(!s.conn.is_closed());
}

#[tokio::test]
async fn a_fallback_that_waits_and_then_panics_is_reported_under_the_events_name() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .on_unknown_event(|_: Conn, e: Event| async move {
            tokio::task::yield_now().await;
            if true {
                panic!("late fallback for {}", e.name());
            }
        })
        .build()
        .unwrap();
    let s = serve(&server).await;

    s.peer.send_text("late||4||x");
    assert_eq!(s.peer.recv_text().await, "__ack_late||4");
    eventually("the panic was reported", || rec.errors().len() == 1).await;
    assert_eq!(
        panics(&rec),
        [("late".to_owned(), "late fallback for late".to_owned())]
    );
}

#[tokio::test]
async fn what_a_handler_emits_before_returning_goes_out_before_its_reply() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on("twice", |conn: Conn, e: Event| async move {
            conn.emit("first", e.into_data()).unwrap();
            conn.emit("second", &b""[..]).unwrap();
            "reply"
        })
        .on("quiet", |_: Conn, _: Event| async { "only the reply" })
        .build()
        .unwrap();
    let s = serve(&server).await;

    s.peer.send_text("twice||5||d");
    assert_eq!(s.peer.recv_text().await, "first||0||d");
    assert_eq!(s.peer.recv_text().await, "second||0");
    assert_eq!(s.peer.recv_text().await, "__ack_twice||5||reply");
    s.peer.send_text("quiet||6");
    assert_eq!(s.peer.recv_text().await, "__ack_quiet||6||only the reply");
    s.peer.assert_silent().await;
}
