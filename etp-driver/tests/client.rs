//! The client side, and building servers and clients.

mod common;

use std::time::Duration;

use common::*;
use etp_driver::{AckError, BuildError, Client, Conn, DisconnectReason, EmitError, Event};
use tungstenite::Message;

fn text(event: &Event) -> String {
    String::from_utf8_lossy(event.data()).into_owned()
}

async fn ended(mut ended: etp_driver::Ended) -> DisconnectReason {
    guarded("the connection to end", async move { ended.reason().await })
        .await
        .expect("the client task reports how the connection ended")
}

#[tokio::test]
async fn client_calls_fail_with_closed_before_start_and_after_disconnect() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let client = rec.client(client_builder(&rt)).build().unwrap();

    assert!(!client.is_connected());
    assert!(client.conn().is_none());
    assert_eq!(client.emit("ev", "x"), Err(EmitError::Closed));
    assert_eq!(
        client.emit_with_ack("ev", "x").await,
        Err(AckError::Emit(EmitError::Closed))
    );
    assert_eq!(client.ping().await, Err(EmitError::Closed));

    let (peer, conn, receiver) = start_client(&client);
    assert!(client.is_connected());
    assert_eq!(client.conn(), Some(conn.clone()));
    client.emit("ev", "x").unwrap();
    assert_eq!(peer.recv_text().await, "ev||0||x");
    assert_eq!(conn.request().uri().path(), "/ws");

    let asked = tokio::spawn({
        let client = client.clone();
        async move { client.emit_with_ack("ask", "q").await }
    });
    assert_eq!(peer.recv_text().await, "ask||1||q");
    peer.send_text("__ack_ask||1||a");
    assert_eq!(guarded("the ack", asked).await.unwrap().unwrap(), "a");

    peer.close_with(Some(1000), "server going");
    let reason = ended(receiver).await;
    assert!(
        matches!(&reason, DisconnectReason::Closed { code: 1000, reason } if reason == "server going"),
        "{reason:?}"
    );
    assert_eq!(rec.reasons().len(), 1, "the hook ran before the receiver");
    assert!(!client.is_connected());
    assert!(client.conn().is_none());
    assert_eq!(client.emit("ev", "late"), Err(EmitError::Closed));
    assert_eq!(
        client.emit_with_ack("ev", "late").await,
        Err(AckError::Emit(EmitError::Closed))
    );
    assert!(peer.is_dropped());
}

#[tokio::test]
async fn client_handlers_answer_server_requests() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let seen = rec.clone();
    let client = client_builder(&rt)
        .on(
            "q",
            |_: Conn, e: Event| async move { format!("a:{}", text(&e)) },
        )
        .on("note", move |_: Conn, e: Event| {
            seen.push(text(&e));
            async {}
        })
        .build()
        .unwrap();
    let (peer, _conn, _receiver) = start_client(&client);
    peer.send_text("q||4||x");
    assert_eq!(peer.recv_text().await, "__ack_q||4||a:x");
    peer.send_text("unknown||5");
    assert_eq!(peer.recv_text().await, "__ack_unknown||5");
    peer.send_text("note||0||n");
    eventually("the note was handled", || rec.log() == ["n"]).await;
    peer.assert_silent().await;
}

#[tokio::test]
async fn client_close_sends_1000_and_ends_normally() {
    let rt = ManualRuntime::new();
    let client: Client<ManualRuntime> = client_builder(&rt).build().unwrap();
    let (peer, conn, receiver) = start_client(&client);
    client.close();
    assert_eq!(peer.answer_close().await, (1000, String::new()));
    assert!(ended(receiver).await.is_normal());
    assert!(conn.is_closed());
    assert!(!client.is_connected());
}

#[tokio::test]
async fn client_close_times_out_without_an_answer() {
    let rt = ManualRuntime::new();
    let client: Client<ManualRuntime> = client_builder(&rt).build().unwrap();
    let (peer, _conn, mut receiver) = start_client(&client);
    client.close();
    assert_eq!(peer.recv_close().await.0, 1000);
    rt.advance_and_settle(Duration::from_millis(4_999)).await;
    assert!(receiver.try_reason().is_none());
    rt.advance_and_settle(Duration::from_millis(1)).await;
    assert!(matches!(
        ended(receiver).await,
        DisconnectReason::CloseTimedOut { code: 1000 }
    ));
}

#[tokio::test]
async fn client_hooks_run_connect_first_and_disconnect_once() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let (on_connect, on_event) = (rec.clone(), rec.clone());
    let client = rec
        .client(client_builder(&rt))
        .on_connect(move |_: Conn| {
            let rec = on_connect.clone();
            async move { rec.push("connect") }
        })
        .on("ev", move |_: Conn, _: Event| {
            on_event.push("event");
            async {}
        })
        .build()
        .unwrap();
    let (peer, _conn, receiver) = start_client(&client);
    peer.send_text("ev||1");
    assert_eq!(peer.recv_text().await, "__ack_ev||1");
    peer.close_stream();
    assert!(matches!(
        ended(receiver).await,
        DisconnectReason::ConnectionLost
    ));
    assert_eq!(
        rec.log(),
        [
            "connect",
            "event",
            "disconnect connection lost without a close frame"
        ]
    );
}

#[tokio::test]
async fn a_new_start_replaces_the_previous_connection() {
    let rt = ManualRuntime::new();
    let client: Client<ManualRuntime> = client_builder(&rt).build().unwrap();
    let (first, first_conn, first_ended) = start_client(&client);
    let (second, second_conn, _second_ended) = start_client(&client);
    assert_eq!(first.answer_close().await, (1000, String::new()));
    assert!(ended(first_ended).await.is_normal());
    assert!(first_conn.is_closed());
    // The old connection ending does not disconnect the client from the new one.
    assert_eq!(client.conn(), Some(second_conn));
    client.emit("ev", "").unwrap();
    assert_eq!(second.recv_text().await, "ev||0");
}

#[tokio::test]
async fn client_ping_waits_for_the_pong() {
    let rt = ManualRuntime::new();
    let client: Client<ManualRuntime> = client_builder(&rt).build().unwrap();
    let (peer, _conn, _receiver) = start_client(&client);
    let ping = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    assert!(matches!(peer.recv().await, Some(Message::Ping(_))));
    peer.send(Message::Pong(Default::default()));
    assert_eq!(guarded("the pong", ping).await.unwrap(), Ok(()));
}

#[tokio::test]
async fn client_requests_time_out_on_the_manual_clock() {
    let rt = ManualRuntime::new();
    let client: Client<ManualRuntime> = client_builder(&rt)
        .ack_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let (peer, _conn, _receiver) = start_client(&client);
    let asked = tokio::spawn({
        let client = client.clone();
        async move { client.emit_with_ack("ask", "").await }
    });
    assert_eq!(peer.recv_text().await, "ask||1");
    rt.advance_and_settle(Duration::from_millis(2_999)).await;
    assert!(!asked.is_finished());
    rt.advance_and_settle(Duration::from_millis(1)).await;
    assert_eq!(
        guarded("the timeout", asked).await.unwrap(),
        Err(AckError::TimedOut)
    );
}

#[tokio::test]
async fn invalid_handler_names_make_build_fail() {
    let rt = ManualRuntime::new();
    for name in ["a||b", "ends|", "__ack_x"] {
        let server = server_builder(&rt)
            .on("fine", |_: Conn, _: Event| async {})
            .on(name, |_: Conn, _: Event| async {})
            .build();
        match server {
            Err(BuildError::InvalidEventName { event, .. }) => assert_eq!(event, name),
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => panic!("a server with a handler for {name:?} was built"),
        }
        let client = client_builder(&rt)
            .on(name, |_: Conn, _: Event| async {})
            .build();
        assert!(
            matches!(client, Err(BuildError::InvalidEventName { ref event, .. }) if event == name),
            "{name}"
        );
    }
    // The first invalid name is reported.
    let err = server_builder(&rt)
        .on("x||1", |_: Conn, _: Event| async {})
        .on("y||2", |_: Conn, _: Event| async {})
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("\"x||1\""), "{err}");
    // Names that look odd but travel fine: empty, a single `|` inside, `__ack` alone.
    for name in ["", "a|b", "__ack", "ünï"] {
        assert!(
            server_builder(&rt)
                .on(name, |_: Conn, _: Event| async {})
                .build()
                .is_ok(),
            "{name:?}"
        );
    }
}

#[tokio::test]
async fn keep_connected_redials_with_backoff_after_a_lost_connection_and_stops_after_close() {
    use std::sync::{Arc, Mutex};

    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let client = rec.client(client_builder(&rt)).build().unwrap();
    let (first, _conn, receiver) = start_client(&client);

    // The first redial fails, the second succeeds; the test keeps the new peer.
    let attempts = Arc::new(Mutex::new(0usize));
    let dialed: Arc<Mutex<Option<Peer>>> = Arc::default();
    let dial = {
        let (attempts, dialed) = (attempts.clone(), dialed.clone());
        move || {
            let (attempts, dialed) = (attempts.clone(), dialed.clone());
            async move {
                let attempt = {
                    let mut attempts = attempts.lock().unwrap();
                    *attempts += 1;
                    *attempts
                };
                if attempt == 1 {
                    return Err(etp_driver::DialError::Io(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        "refused",
                    )));
                }
                let (ws, peer) = fake_ws();
                *dialed.lock().unwrap() = Some(peer);
                Ok((ws, request_for("ws://example.test/ws")))
            }
        }
    };
    let backoff = etp_driver::Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(4),
        max_attempts: Some(5),
    };
    let keeper = tokio::spawn({
        let client = client.clone();
        async move { client.keep_connected(receiver, backoff, dial).await }
    });

    first.close_stream();
    eventually("the first connection ended", || rec.reason_count() == 1).await;
    assert!(!client.is_connected());
    settle().await;
    assert_eq!(
        *attempts.lock().unwrap(),
        0,
        "dialed before the backoff delay"
    );
    // Delays have jitter (half to all of 1 s, then of 2 s): advancing by the full
    // delay always reaches the attempt.
    rt.advance_and_settle(Duration::from_secs(1)).await;
    assert_eq!(*attempts.lock().unwrap(), 1);
    assert!(matches!(
        rec.errors().last(),
        Some(etp_driver::Error::Dial(etp_driver::DialError::Io(err))) if err.kind() == std::io::ErrorKind::ConnectionRefused
    ));
    rt.advance_and_settle(Duration::from_secs(2)).await;
    assert_eq!(*attempts.lock().unwrap(), 2);
    assert!(client.is_connected());
    let second = dialed.lock().unwrap().clone().expect("dialed");
    client.emit("back", "").unwrap();
    assert_eq!(second.recv_text().await, "back||0");

    // After close, no more redials.
    client.close();
    assert_eq!(second.answer_close().await.0, 1000);
    guarded("keep_connected to return", keeper).await.unwrap();
    rt.advance_and_settle(Duration::from_secs(60)).await;
    assert_eq!(*attempts.lock().unwrap(), 2);
}
