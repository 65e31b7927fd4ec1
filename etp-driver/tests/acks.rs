//! Requests the server makes (`emit_with_ack`), nested requests, and how handlers are
//! scheduled (concurrency bound, FIFO with 1).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use etp_driver::{AckError, Conn, DisconnectReason, EmitError, Event};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

fn text(event: &Event) -> String {
    String::from_utf8_lossy(event.data()).into_owned()
}

/// Starts `emit_with_ack` on its own task.
fn ask(
    conn: &Conn,
    name: &'static str,
    data: &'static str,
) -> tokio::task::JoinHandle<Result<Bytes, AckError>> {
    let conn = conn.clone();
    tokio::spawn(async move { conn.emit_with_ack(name, data).await })
}

async fn outcome<T>(task: tokio::task::JoinHandle<T>) -> T {
    guarded("the request to end", task).await.expect("task")
}

#[tokio::test]
async fn emit_with_ack_is_resolved_by_the_peers_reply_matched_by_id_only() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;

    let first = ask(&s.conn, "ask", "question");
    assert_eq!(s.peer.recv_text().await, "ask||1||question");
    s.peer.send_text("__ack_ask||1||answer");
    assert_eq!(outcome(first).await.unwrap(), "answer");

    // The name after the prefix is not checked; a reply without data is empty.
    let second = ask(&s.conn, "ask", "");
    assert_eq!(s.peer.recv_text().await, "ask||2");
    let third = ask(&s.conn, "other", "x");
    assert_eq!(s.peer.recv_text().await, "other||3||x");
    s.peer.send_text("__ack_whatever||3||three");
    s.peer.send_text("__ack_ask||2");
    assert_eq!(outcome(third).await.unwrap(), "three");
    assert_eq!(outcome(second).await.unwrap(), "");

    // A duplicate reply is dropped silently; the connection stays.
    s.peer.send_text("__ack_ask||2||again");
    s.peer.assert_silent().await;
    assert!(!s.conn.is_closed());
    assert_eq!(rt.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn emit_with_ack_times_out_after_the_ack_timeout_and_not_before() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .ack_timeout(Duration::from_secs(10))
        .on("ping", |_: Conn, _: Event| async { "pong" })
        .build()
        .unwrap();
    let s = serve(&server).await;

    let request = ask(&s.conn, "ask", "q");
    assert_eq!(s.peer.recv_text().await, "ask||1||q");
    rt.advance_and_settle(Duration::from_millis(9_999)).await;
    assert!(!request.is_finished(), "timed out early");
    rt.advance_and_settle(Duration::from_millis(1)).await;
    assert_eq!(outcome(request).await, Err(AckError::TimedOut));

    // A late reply is dropped; the connection keeps serving.
    s.peer.send_text("__ack_ask||1||late");
    s.peer.send_text("ping||7");
    assert_eq!(s.peer.recv_text().await, "__ack_ping||7||pong");
    assert_eq!(rec.reason_count(), 0);

    // A per-call timeout overrides the default.
    let conn = s.conn.clone();
    let short = tokio::spawn(async move {
        conn.emit_with_ack_timeout("ask", "short", Duration::from_secs(2))
            .await
    });
    assert_eq!(s.peer.recv_text().await, "ask||2||short");
    rt.advance_and_settle(Duration::from_millis(1_999)).await;
    assert!(!short.is_finished());
    rt.advance_and_settle(Duration::from_millis(1)).await;
    assert_eq!(outcome(short).await, Err(AckError::TimedOut));
}

#[tokio::test]
async fn pending_acks_fail_at_once_when_the_peer_drops_the_stream() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec.server(server_builder(&rt)).build().unwrap();
    let s = serve(&server).await;

    let requests: Vec<_> = (0..3).map(|_| ask(&s.conn, "ask", "q")).collect();
    for id in 1..=3 {
        assert_eq!(s.peer.recv_text().await, format!("ask||{id}||q"));
    }
    s.peer.close_stream();
    for request in requests {
        assert_eq!(outcome(request).await, Err(AckError::ConnectionClosed));
    }
    assert_eq!(rt.elapsed(), Duration::ZERO, "nobody advanced the clock");
    assert!(matches!(
        rec.disconnected().await,
        DisconnectReason::ConnectionLost
    ));
    // After the end: fails at once, nothing sent.
    assert_eq!(
        s.conn.emit_with_ack("ask", "late").await,
        Err(AckError::Emit(EmitError::Closed))
    );
}

#[tokio::test]
async fn close_fails_pending_acks_at_once_before_the_peer_answers_the_close() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;
    let request = ask(&s.conn, "ask", "q");
    assert_eq!(s.peer.recv_text().await, "ask||1||q");
    s.conn.close();
    assert_eq!(s.peer.recv_close().await, (1000, String::new()));
    assert_eq!(outcome(request).await, Err(AckError::ConnectionClosed));
    assert_eq!(rt.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn requests_over_the_pending_bound_fail_with_too_many_pending_acks() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).max_pending_acks(2).build().unwrap();
    let s = serve(&server).await;
    let first = ask(&s.conn, "ask", "1");
    let second = ask(&s.conn, "ask", "2");
    assert_eq!(s.peer.recv_text().await, "ask||1||1");
    assert_eq!(s.peer.recv_text().await, "ask||2||2");
    let third = ask(&s.conn, "ask", "3");
    assert_eq!(
        outcome(third).await,
        Err(AckError::Emit(EmitError::TooManyPendingAcks { limit: 2 }))
    );
    s.peer.assert_silent().await;
    // Once one is answered there is room again.
    s.peer.send_text("__ack_ask||1||one");
    assert_eq!(outcome(first).await.unwrap(), "one");
    let fourth = ask(&s.conn, "ask", "4");
    assert_eq!(s.peer.recv_text().await, "ask||3||4");
    s.peer.send_text("__ack_ask||3||four");
    s.peer.send_text("__ack_ask||2||two");
    assert_eq!(outcome(fourth).await.unwrap(), "four");
    assert_eq!(outcome(second).await.unwrap(), "two");
}

#[tokio::test]
async fn invalid_event_names_are_refused_locally() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;
    for name in ["a||b", "ends|", "__ack_x"] {
        assert!(
            matches!(s.conn.emit(name, "x"), Err(EmitError::InvalidName(_))),
            "{name}"
        );
        assert!(
            matches!(
                s.conn.emit_with_ack(name, "x").await,
                Err(AckError::Emit(EmitError::InvalidName(_)))
            ),
            "{name}"
        );
    }
    s.peer.assert_silent().await;
}

/// The server's handler asks the peer and waits for the answer before replying.
async fn nested_request(concurrency: Option<usize>) {
    let rt = ManualRuntime::new();
    let mut builder = server_builder(&rt).on("outer", |conn: Conn, e: Event| async move {
        let inner = conn
            .emit_with_ack("inner", format!("about {}", text(&e)))
            .await;
        format!(
            "outer got {:?}",
            inner.map(|b| String::from_utf8_lossy(&b).into_owned())
        )
    });
    if let Some(limit) = concurrency {
        builder = builder.handler_concurrency(limit);
    }
    let server = builder.build().unwrap();
    let s = serve(&server).await;

    s.peer.send_text("outer||1||x");
    assert_eq!(s.peer.recv_text().await, "inner||1||about x");
    s.peer.send_text("__ack_inner||1||yes");
    assert_eq!(
        s.peer.recv_text().await,
        "__ack_outer||1||outer got Ok(\"yes\")"
    );
    // And again, to see that nothing is left stuck.
    s.peer.send_text("outer||2||y");
    assert_eq!(s.peer.recv_text().await, "inner||2||about y");
    s.peer.send_text("__ack_inner||2||sure");
    assert_eq!(
        s.peer.recv_text().await,
        "__ack_outer||2||outer got Ok(\"sure\")"
    );
    assert_eq!(rt.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn a_handler_can_ask_the_peer_and_await_the_answer_before_replying() {
    nested_request(None).await;
}

#[tokio::test]
async fn a_nested_request_works_with_handler_concurrency_1() {
    nested_request(Some(1)).await;
}

#[tokio::test]
async fn a_server_request_answered_by_a_peer_that_asks_back_first() {
    // The server asks; the peer, before answering, asks the server; the server's
    // handler answers; then the peer answers the server's request.
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on("lookup", |_: Conn, e: Event| async move {
            format!("value of {}", text(&e))
        })
        .build()
        .unwrap();
    let s = serve(&server).await;
    let request = ask(&s.conn, "compute", "a");
    assert_eq!(s.peer.recv_text().await, "compute||1||a");
    s.peer.send_text("lookup||1||k");
    assert_eq!(s.peer.recv_text().await, "__ack_lookup||1||value of k");
    s.peer.send_text("__ack_compute||1||done");
    assert_eq!(outcome(request).await.unwrap(), "done");
}

#[tokio::test]
async fn a_nested_request_does_not_deadlock_when_another_event_arrives_before_its_answer() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .handler_concurrency(1)
        .on("outer", |conn: Conn, _: Event| async move {
            let inner = conn.emit_with_ack("inner", "").await;
            format!(
                "{:?}",
                inner.map(|b| String::from_utf8_lossy(&b).into_owned())
            )
        })
        .on("other", |_: Conn, _: Event| async { "other done" })
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("outer||1");
    assert_eq!(s.peer.recv_text().await, "inner||1");
    // The peer sends an unrelated request, then answers the inner request.
    s.peer.send_text("other||2");
    s.peer.send_text("__ack_inner||1||yes");
    settle().await;
    assert_eq!(
        s.peer.drain_texts(),
        ["__ack_outer||1||Ok(\"yes\")", "__ack_other||2||other done"],
        "nothing may wait for the ack timeout"
    );
}

#[tokio::test]
async fn two_thousand_concurrent_requests_each_get_their_own_reply() {
    const N: usize = 2_000;
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).max_pending_acks(4_096).build().unwrap();
    let s = serve(&server).await;

    let mut requests: FuturesUnordered<_> = (0..N)
        .map(|i| {
            let conn = s.conn.clone();
            tokio::spawn(async move { (i, conn.emit_with_ack("req", i.to_string()).await) })
        })
        .collect();

    let mut frames = Vec::with_capacity(N);
    for _ in 0..N {
        let frame = s.peer.recv_text().await;
        let mut parts = frame.splitn(3, "||");
        assert_eq!(parts.next(), Some("req"));
        let id: u64 = parts.next().unwrap().parse().unwrap();
        let i: usize = parts.next().unwrap().parse().unwrap();
        frames.push((id, i));
    }
    let mut ids: Vec<u64> = frames.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N, "every request has its own id");

    // Answer in reverse order, each with data only its request can expect.
    for (id, i) in frames.iter().rev() {
        s.peer.send_text(&format!("__ack_req||{id}||reply {i}"));
    }
    let mut answered = 0;
    while let Some(done) = guarded("the requests", requests.next()).await {
        let (i, result) = done.expect("task");
        assert_eq!(result.unwrap(), format!("reply {i}"));
        answered += 1;
    }
    assert_eq!(answered, N);
    assert_eq!(rt.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn with_handler_concurrency_1_events_are_handled_one_at_a_time_in_order() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let gates: Vec<Gate> = (0..4).map(|_| Gate::default()).collect();
    let (log, handler_gates) = (rec.clone(), gates.clone());
    let server = server_builder(&rt)
        .handler_concurrency(1)
        .on("job", move |_: Conn, e: Event| {
            let (log, i) = (log.clone(), text(&e));
            let gate = handler_gates[i.parse::<usize>().unwrap()].clone();
            async move {
                log.push(format!("start {i}"));
                gate.wait().await;
                log.push(format!("end {i}"));
                format!("done {i}")
            }
        })
        .build()
        .unwrap();
    let s = serve(&server).await;

    for i in 0..4 {
        s.peer.send_text(&format!("job||{}||{i}", i + 1));
    }
    s.peer.assert_silent().await;
    assert_eq!(rec.log(), ["start 0"]);

    // Opening a later gate first changes nothing: job 1 has not started.
    gates[2].open();
    s.peer.assert_silent().await;
    assert_eq!(rec.log(), ["start 0"]);

    gates[0].open();
    assert_eq!(s.peer.recv_text().await, "__ack_job||1||done 0");
    s.peer.assert_silent().await;
    assert_eq!(rec.log(), ["start 0", "end 0", "start 1"]);

    gates[1].open();
    assert_eq!(s.peer.recv_text().await, "__ack_job||2||done 1");
    assert_eq!(s.peer.recv_text().await, "__ack_job||3||done 2");
    s.peer.assert_silent().await;
    gates[3].open();
    assert_eq!(s.peer.recv_text().await, "__ack_job||4||done 3");
    assert_eq!(
        rec.log(),
        [
            "start 0", "end 0", "start 1", "end 1", "start 2", "end 2", "start 3", "end 3"
        ]
    );
}

#[tokio::test]
async fn at_the_handler_bound_the_driver_stops_reading_the_socket() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let gate = Gate::default();
    let (log, handler_gate) = (rec.clone(), gate.clone());
    let server = server_builder(&rt)
        .handler_concurrency(2)
        .on("job", move |_: Conn, e: Event| {
            let (log, gate) = (log.clone(), handler_gate.clone());
            let i = text(&e);
            async move {
                log.push(format!("start {i}"));
                gate.wait().await;
            }
        })
        .build()
        .unwrap();
    let s = serve(&server).await;
    for i in 0..30 {
        s.peer.send_text(&format!("job||0||{i}"));
    }
    settle().await;
    assert_eq!(rec.log(), ["start 0", "start 1"]);
    // Two running and sixteen waiting for a slot (the backlog's floor): the other
    // twelve wait in the socket.
    assert_eq!(s.peer.unread_by_driver(), 12);
    s.peer.send_text("job||0||marker");
    settle().await;
    assert_eq!(s.peer.unread_by_driver(), 13);
    gate.open();
    eventually("every job ran", || rec.log().len() == 31).await;
    let log = rec.log();
    let mut expected: Vec<String> = (0..30).map(|i| format!("start {i}")).collect();
    expected.push("start marker".into());
    assert_eq!(log, expected, "handlers start in arrival order");
}

#[tokio::test]
async fn without_a_bound_of_1_handlers_run_concurrently() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let gate = Gate::default();
    let (log, handler_gate) = (rec.clone(), gate.clone());
    let server = server_builder(&rt)
        .on("job", move |_: Conn, e: Event| {
            let (log, gate) = (log.clone(), handler_gate.clone());
            let i = text(&e);
            async move {
                log.push(format!("start {i}"));
                gate.wait().await;
                format!("done {i}")
            }
        })
        .build()
        .unwrap();
    let s = serve(&server).await;
    for i in 0..3 {
        s.peer.send_text(&format!("job||{}||{i}", i + 1));
    }
    eventually("three handlers started", || rec.log().len() == 3).await;
    s.peer.assert_silent().await;
    gate.open();
    let mut replies = vec![
        s.peer.recv_text().await,
        s.peer.recv_text().await,
        s.peer.recv_text().await,
    ];
    replies.sort();
    assert_eq!(
        replies,
        [
            "__ack_job||1||done 0",
            "__ack_job||2||done 1",
            "__ack_job||3||done 2"
        ]
    );
}

#[tokio::test]
async fn an_abandoned_request_frees_its_pending_slot() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).max_pending_acks(1).build().unwrap();
    let s = serve(&server).await;
    let abandoned = ask(&s.conn, "ask", "1");
    assert_eq!(s.peer.recv_text().await, "ask||1||1");
    abandoned.abort();
    settle().await;
    let next = ask(&s.conn, "ask", "2");
    assert_eq!(s.peer.recv_text().await, "ask||2||2");
    s.peer.send_text("__ack_ask||2||ok");
    assert_eq!(outcome(next).await.unwrap(), "ok");
}
