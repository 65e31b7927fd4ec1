//! Immediate handlers (`Fn(&Conn, Event) -> impl IntoAck`, no future) over real
//! sockets, on every runtime: the same frames, order and failure handling as async
//! handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{Client, Conn, Error, Event, Server};

async fn immediate_handlers_answer_with_the_exact_go_frames<R: TestRuntime>() {
    let counted = Arc::new(AtomicUsize::new(0));
    let counter = counted.clone();
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .on("echo", |_conn: &Conn, event: Event| event.into_data())
        .on("nothing", |_conn: &Conn, _event: Event| {})
        .on("count", move |_conn: &Conn, _event: Event| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .on("whoami", |conn: &Conn, _event: Event| conn.id().to_string())
        .on_unknown_event(|_conn: &Conn, event: Event| format!("no {}", event.name()))
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let conn = hooks.connects.next().await;
    assert_eq!(peer.ask("echo||1||x").await, "__ack_echo||1||x");
    assert_eq!(peer.ask("echo||2||a||b").await, "__ack_echo||2||a||b");
    assert_eq!(peer.ask("nothing||3||x").await, "__ack_nothing||3");
    assert_eq!(
        peer.ask("whoami||4").await,
        format!("__ack_whoami||4||{}", conn.id())
    );
    assert_eq!(peer.ask("what||5||x").await, "__ack_what||5||no what");
    // Events without an ack id run the handler and get no reply: the next frame the
    // peer reads is the answer to its next request.
    for _ in 0..3 {
        peer.send_text("count||0||x").await;
    }
    peer.send_text("count||0").await;
    assert_eq!(peer.ask("echo||6||after").await, "__ack_echo||6||after");
    assert_eq!(counted.load(Ordering::SeqCst), 4);
    assert!(hooks.errors.try_next().is_none());
    test.stop_with(&mut peer).await;
}

async fn what_an_immediate_handler_sends_leaves_before_its_reply<R: TestRuntime>() {
    let server = Server::<R>::builder()
        .on("greet", |conn: &Conn, event: Event| {
            conn.emit("first", event.into_data()).unwrap();
            conn.join("lobby");
            conn.emit("second", "b").unwrap();
            "done"
        })
        .on("shout", |conn: &Conn, event: Event| {
            let rooms = conn.server_rooms().expect("a server connection");
            let report = rooms
                .broadcast(["lobby"], "heard", event.data(), None)
                .unwrap();
            report.queued.to_string()
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.send_text("greet||1||a").await;
    assert_eq!(peer.next_text().await, "first||0||a");
    assert_eq!(peer.next_text().await, "second||0||b");
    assert_eq!(peer.next_text().await, "__ack_greet||1||done");
    // The join took effect: the broadcast reaches this peer, before the reply.
    peer.send_text("shout||2||hi").await;
    assert_eq!(peer.next_text().await, "heard||0||hi");
    assert_eq!(peer.next_text().await, "__ack_shout||2||1");
    test.stop_with(&mut peer).await;
}

async fn a_panicking_immediate_handler_is_contained_and_answered_empty<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .on("boom", |_conn: &Conn, _event: Event| -> &'static str {
            panic!("kaboom, immediately")
        })
        .on("echo", |_conn: &Conn, event: Event| event.into_data())
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let conn = hooks.connects.next().await;
    assert_eq!(peer.ask("boom||1||x").await, "__ack_boom||1");
    let (on, err) = hooks.errors.next().await;
    assert_eq!(on.map(|c| c.id()), Some(conn.id()));
    match err {
        Error::HandlerPanicked { event, message } => {
            assert_eq!(event, "boom");
            assert_eq!(message, "kaboom, immediately");
        }
        other => panic!("expected HandlerPanicked, got {other:?}"),
    }
    // A panic without a request: reported, nothing sent.
    peer.send_text("boom||0||x").await;
    assert!(matches!(
        hooks.errors.next().await.1,
        Error::HandlerPanicked { .. }
    ));
    assert_eq!(peer.ask("echo||2||alive").await, "__ack_echo||2||alive");
    assert!(hooks.disconnects.try_next().is_none());
    test.stop_with(&mut peer).await;
}

async fn the_client_runs_immediate_handlers<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let test = TestServer::start(builder.build().unwrap());
    let client = Client::<R>::builder()
        .on("whoami", |_conn: &Conn, event: Event| {
            format!(
                "the client, asked {}",
                String::from_utf8_lossy(event.data())
            )
        })
        .build()
        .unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let server_conn = hooks.connects.next().await;
    let answer = within("ack", server_conn.emit_with_ack("whoami", "nicely"))
        .await
        .unwrap();
    assert_eq!(answer, "the client, asked nicely");
    client.close();
    test.stop().await;
}

behaviour_suite! {
    immediate_handlers_answer_with_the_exact_go_frames,
    what_an_immediate_handler_sends_leaves_before_its_reply,
    a_panicking_immediate_handler_is_contained_and_answered_empty,
    the_client_runs_immediate_handlers,
}
