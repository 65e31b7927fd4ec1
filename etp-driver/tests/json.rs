//! Typed events (feature `json`): `Json<T>` handler input and reply, `emit_json`,
//! `emit_with_ack_json`, `broadcast_json`, and every decode and encode failure.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use etp_driver::{Conn, Error, Event, Json, JsonError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Sum {
    sum: i64,
}

async fn add(_conn: Conn, Json(add): Json<Add>) -> Json<Sum> {
    Json(Sum { sum: add.a + add.b })
}

/// Starts a typed request on its own task.
fn ask_json<Resp: serde::de::DeserializeOwned + Send + 'static>(
    conn: &Conn,
    request: Add,
) -> tokio::task::JoinHandle<Result<Resp, JsonError>> {
    let conn = conn.clone();
    tokio::spawn(async move { conn.emit_with_ack_json::<_, Resp>("add", &request).await })
}

#[tokio::test]
async fn a_typed_handler_decodes_the_data_and_its_reply_is_the_json_ack() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt)
        .on("add", add)
        .on(
            "maybe",
            |_: Conn, Json(add): Json<Option<Add>>| async move { Json(add.map(|a| a.a)) },
        )
        // Raw input, typed reply.
        .on(
            "raw",
            |_: Conn, e: Event| async move { Json(e.data().len()) },
        )
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text(r#"add||1||{"a":2,"b":3}"#);
    assert_eq!(s.peer.recv_text().await, r#"__ack_add||1||{"sum":5}"#);
    // Empty data, in either form, is `null`.
    s.peer.send_text("maybe||2");
    assert_eq!(s.peer.recv_text().await, "__ack_maybe||2||null");
    s.peer.send_text("maybe||3||");
    assert_eq!(s.peer.recv_text().await, "__ack_maybe||3||null");
    s.peer.send_text(r#"maybe||4||{"a":7,"b":0}"#);
    assert_eq!(s.peer.recv_text().await, "__ack_maybe||4||7");
    s.peer.send_text("raw||5||four");
    assert_eq!(s.peer.recv_text().await, "__ack_raw||5||4");
    s.peer.assert_silent().await;
}

/// The immediate form, `Fn(&Conn, Json<T>)`: decoded the same way, answered at once,
/// and a decode failure is reported and answered empty without running it.
#[tokio::test]
async fn an_immediate_typed_handler_decodes_replies_and_reports_bad_data() {
    let rt = ManualRuntime::new();
    let recorder = Recorder::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let server = recorder
        .server(server_builder(&rt))
        .on("sub", move |_: &Conn, Json(sub): Json<Add>| {
            counted.fetch_add(1, Ordering::SeqCst);
            Json(Sum { sum: sub.a - sub.b })
        })
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text(r#"sub||1||{"a":2,"b":3}"#);
    assert_eq!(s.peer.recv_text().await, r#"__ack_sub||1||{"sum":-1}"#);
    s.peer.send_text(r#"sub||2||{"a":2}"#);
    assert_eq!(s.peer.recv_text().await, "__ack_sub||2");
    s.peer.send_text("sub||0||not json");
    s.peer.assert_silent().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(add_decode_errors(&recorder, "sub").len(), 2);
    assert!(!s.conn.is_closed());
}

/// The error hook's reports, each of which must be a failure to decode the data of
/// request `event` as `Add`; returns their messages.
fn add_decode_errors(recorder: &Recorder, event: &str) -> Vec<String> {
    recorder
        .errors()
        .iter()
        .map(|err| match err {
            Error::Decode(decode) => {
                assert_eq!(decode.event(), event);
                assert!(
                    decode.type_name().ends_with("Add"),
                    "{}",
                    decode.type_name()
                );
                assert!(!decode.is_reply());
                err.to_string()
            }
            other => panic!("expected a decode error, got {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn data_that_does_not_decode_is_reported_answered_empty_and_the_connection_stays_open() {
    let rt = ManualRuntime::new();
    let recorder = Recorder::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let server = recorder
        .server(server_builder(&rt))
        .on("add", move |_: Conn, Json(add): Json<Add>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { Json(add.a + add.b) }
        })
        .build()
        .unwrap();
    let s = serve(&server).await;

    // A missing field: the handler does not run, the request gets an empty ack.
    s.peer.send_text(r#"add||1||{"a":2}"#);
    assert_eq!(s.peer.recv_text().await, "__ack_add||1");
    // Not JSON at all, without an ack id: reported, nothing sent.
    s.peer.send_text("add||0||not json");
    s.peer.assert_silent().await;
    // No data for a type that needs some.
    s.peer.send_text("add||2");
    assert_eq!(s.peer.recv_text().await, "__ack_add||2");
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // The connection is still open and serves the next good request.
    s.peer.send_text(r#"add||3||{"a":2,"b":40}"#);
    assert_eq!(s.peer.recv_text().await, "__ack_add||3||42");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(!s.conn.is_closed());

    let messages = add_decode_errors(&recorder, "add");
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[0].starts_with("cannot decode the data of event \"add\" as JSON for ")
            && messages[0].ends_with("Add: missing field `b` at line 1 column 7"),
        "{}",
        messages[0]
    );
    assert!(messages[1].contains("expected ident"), "{}", messages[1]);
    assert!(
        messages[2].contains("invalid type: null, expected struct Add"),
        "{}",
        messages[2]
    );
}

#[tokio::test]
async fn emit_json_sends_the_encoded_value_and_refuses_what_json_cannot_hold() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;
    s.conn.emit_json("sum", &Sum { sum: 9 }).unwrap();
    assert_eq!(s.peer.recv_text().await, r#"sum||0||{"sum":9}"#);
    s.conn.emit_json("list", &[1, 2, 3][..]).unwrap();
    assert_eq!(s.peer.recv_text().await, "list||0||[1,2,3]");

    // JSON object keys must be strings: nothing is sent, the caller hears why.
    let bad: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    match s.conn.emit_json("bad", &bad) {
        Err(err @ JsonError::Encode { .. }) => {
            assert!(err.to_string().starts_with("cannot encode "), "{err}");
            assert!(err.to_string().contains("key must be a string"), "{err}");
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
    // A bad name is the emit's error, as for raw emits.
    assert!(matches!(
        s.conn.emit_json("__ack_x", &1),
        Err(JsonError::Emit(etp_driver::EmitError::InvalidName(_)))
    ));
    s.peer.assert_silent().await;
}

#[tokio::test]
async fn emit_with_ack_json_decodes_the_reply() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;
    let asked = ask_json::<Sum>(&s.conn, Add { a: 1, b: 2 });
    assert_eq!(s.peer.recv_text().await, r#"add||1||{"a":1,"b":2}"#);
    s.peer.send_text(r#"__ack_add||1||{"sum":3}"#);
    assert_eq!(asked.await.unwrap().unwrap(), Sum { sum: 3 });
    // An empty reply reads as null: fine for an Option.
    let asked = ask_json::<Option<Sum>>(&s.conn, Add { a: 0, b: 0 });
    assert_eq!(s.peer.recv_text().await, r#"add||2||{"a":0,"b":0}"#);
    s.peer.send_text("__ack_add||2");
    assert_eq!(asked.await.unwrap().unwrap(), None);
}

#[tokio::test]
async fn a_reply_that_does_not_decode_is_the_callers_error_not_a_panic() {
    let rt = ManualRuntime::new();
    let server = server_builder(&rt).build().unwrap();
    let s = serve(&server).await;
    for (id, reply, expected) in [
        (1, "__ack_add||1||{\"total\":3}", "missing field `sum`"),
        (
            2,
            "__ack_add||2||<html>",
            "expected value at line 1 column 1",
        ),
        (3, "__ack_add||3", "invalid type: null, expected struct Sum"),
    ] {
        let asked = ask_json::<Sum>(&s.conn, Add { a: 1, b: 2 });
        assert_eq!(
            s.peer.recv_text().await,
            format!(r#"add||{id}||{{"a":1,"b":2}}"#)
        );
        s.peer.send_text(reply);
        match asked.await.expect("the caller's task does not panic") {
            Err(JsonError::Decode(err)) => {
                assert_eq!(err.event(), "add");
                assert!(err.is_reply());
                assert!(err.type_name().ends_with("Sum"));
                let text = err.to_string();
                assert!(
                    text.starts_with("cannot decode the reply to event \"add\" as JSON for "),
                    "{text}"
                );
                assert!(text.contains(expected), "{text}");
            }
            other => panic!("expected a decode error for {reply}, got {other:?}"),
        }
    }
    // The connection is unaffected.
    assert!(!s.conn.is_closed());
    // Timeouts and closed connections keep their own variants.
    let asked = ask_json::<Sum>(&s.conn, Add { a: 1, b: 2 });
    s.peer.recv_text().await;
    s.conn.close();
    assert!(matches!(
        asked.await.unwrap(),
        Err(JsonError::Ack(etp_driver::AckError::ConnectionClosed))
    ));
}

#[tokio::test]
async fn a_reply_json_cannot_hold_is_a_contained_handler_panic_with_an_empty_ack() {
    let rt = ManualRuntime::new();
    let recorder = Recorder::new();
    let server = recorder
        .server(server_builder(&rt))
        .on("bad", |_: Conn, _: Json<()>| async {
            Json(HashMap::from([((1u8, 2u8), 3u8)]))
        })
        .on("add", add)
        .build()
        .unwrap();
    let s = serve(&server).await;
    s.peer.send_text("bad||1");
    assert_eq!(s.peer.recv_text().await, "__ack_bad||1");
    s.peer.send_text(r#"add||2||{"a":1,"b":1}"#);
    assert_eq!(s.peer.recv_text().await, r#"__ack_add||2||{"sum":2}"#);
    let errors = recorder.errors();
    match &errors[..] {
        [Error::HandlerPanicked { event, message }] => {
            assert_eq!(event, "bad");
            assert!(
                message.starts_with("cannot encode the reply as JSON (")
                    && message.ends_with("key must be a string"),
                "{message}"
            );
        }
        other => panic!("expected one handler panic, got {other:?}"),
    }
}

#[tokio::test]
async fn clients_and_broadcasts_speak_json_too() {
    let rt = ManualRuntime::new();
    let client = client_builder(&rt).on("add", add).build().unwrap();
    let (peer, _conn, _ended) = start_client(&client);
    client.emit_json("hello", &"ana").unwrap();
    assert_eq!(peer.recv_text().await, r#"hello||0||"ana""#);
    let asked = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .emit_with_ack_json::<_, Sum>("add", &Add { a: 5, b: 6 })
                .await
        }
    });
    assert_eq!(peer.recv_text().await, r#"add||1||{"a":5,"b":6}"#);
    peer.send_text(r#"__ack_add||1||{"sum":11}"#);
    assert_eq!(asked.await.unwrap().unwrap(), Sum { sum: 11 });
    // The client's handlers take typed input as the server's do.
    peer.send_text(r#"add||9||{"a":1,"b":2}"#);
    assert_eq!(peer.recv_text().await, r#"__ack_add||9||{"sum":3}"#);

    let server = server_builder(&rt).build().unwrap();
    let (a, b) = (serve(&server).await, serve(&server).await);
    a.conn.join("room");
    b.conn.join("room");
    let report = server
        .rooms()
        .broadcast_json(["room"], "sum", &Sum { sum: 1 }, Some(b.conn.id()))
        .unwrap();
    assert_eq!(report.queued, 1);
    assert_eq!(a.peer.recv_text().await, r#"sum||0||{"sum":1}"#);
    b.peer.assert_silent().await;
}
