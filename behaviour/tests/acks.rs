//! PROTOCOL.md sections 4 and 8 (2 to 5): acknowledgements across real sockets,
//! nested both ways, many at once, failing at once, timing out; panics contained;
//! bounded handler concurrency; on every runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{AckError, Client, Conn, EmitError, Error, Event, Server};
use futures_util::future::join_all;

/// Both directions of a nested request, with `concurrency` handlers per connection on
/// both sides.
async fn nested_both_ways<R: TestRuntime>(concurrency: Option<usize>) {
    let mut server = Server::<R>::builder()
        // The server asks the client inside the handler of the client's request.
        .on("outer", |conn: Conn, event: Event| async move {
            let who = conn
                .emit_with_ack("whoami", "")
                .await
                .expect("the client answers while the server handler waits");
            format!(
                "{} from {}",
                String::from_utf8_lossy(event.data()),
                String::from_utf8_lossy(&who)
            )
        })
        .on("inner", |_conn: Conn, event: Event| async move {
            format!("server saw {}", String::from_utf8_lossy(event.data()))
        });
    let mut client = Client::<R>::builder()
        .on("whoami", |_conn: Conn, _event: Event| async {
            "the client"
        })
        // The client asks the server inside the handler of the server's request.
        .on("outer", |conn: Conn, event: Event| async move {
            let answer = conn
                .emit_with_ack("inner", event.into_data())
                .await
                .expect("the server answers while the client handler waits");
            format!("client got [{}]", String::from_utf8_lossy(&answer))
        });
    if let Some(limit) = concurrency {
        server = server.handler_concurrency(limit);
        client = client.handler_concurrency(limit);
    }
    let (server, mut hooks) = hooked(server);
    let test = TestServer::start(server.build().unwrap());
    let client = client.build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let server_conn = hooks.connects.next().await;

    for round in 0..3 {
        let answer = within(
            "client -> server -> client",
            client.emit_with_ack("outer", "hi"),
        )
        .await
        .unwrap();
        assert_eq!(answer, "hi from the client", "round {round}");
        let answer = within(
            "server -> client -> server",
            server_conn.emit_with_ack("outer", "yo"),
        )
        .await
        .unwrap();
        assert_eq!(answer, "client got [server saw yo]", "round {round}");
    }
    if concurrency == Some(1) {
        // Crossing requests (both sides inside a handler at once, each waiting for the
        // other's handler slot) cannot both be served when each side runs one handler
        // at a time: strict FIFO is the documented meaning of 1.
        client.close();
        test.stop().await;
        return;
    }
    // Both at once.
    let (a, b) = within("both at once", async {
        futures_util::join!(
            client.emit_with_ack("outer", "x"),
            server_conn.emit_with_ack("outer", "y")
        )
    })
    .await;
    assert_eq!(a.unwrap(), "x from the client");
    assert_eq!(b.unwrap(), "client got [server saw y]");
    client.close();
    test.stop().await;
}

async fn nested_requests_in_both_directions_do_not_deadlock<R: TestRuntime>() {
    nested_both_ways::<R>(None).await;
}

async fn nested_requests_in_both_directions_do_not_deadlock_with_one_handler_at_a_time<
    R: TestRuntime,
>() {
    nested_both_ways::<R>(Some(1)).await;
}

async fn two_thousand_concurrent_requests_on_one_connection_each_get_their_own_reply<
    R: TestRuntime,
>() {
    let server = Server::<R>::builder()
        .on("echo", |_conn: Conn, event: Event| async move {
            // Answer out of order: some handlers yield before answering.
            if event.data().last().is_some_and(|b| b % 3 == 0) {
                yield_now().await;
            }
            event.into_data()
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let client = Client::<R>::builder()
        .max_pending_acks(4096)
        .build()
        .unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let requests = (0..2000).map(|i| {
        let client = client.clone();
        async move {
            let data = format!("request {i}");
            let answer = client.emit_with_ack("echo", data.clone()).await;
            (data, answer)
        }
    });
    let results = within("2000 replies", join_all(requests)).await;
    assert_eq!(results.len(), 2000);
    for (data, answer) in results {
        assert_eq!(answer.expect("a reply"), data);
    }
    client.close();
    test.stop().await;
}

async fn requests_beyond_max_pending_acks_fail_with_too_many_pending_acks<R: TestRuntime>() {
    let release = Gate::new();
    let held = Arc::new(AtomicUsize::new(0));
    let server = Server::<R>::builder()
        .on("hold", {
            let release = release.clone();
            let held = held.clone();
            move |_conn: Conn, _event: Event| {
                let release = release.clone();
                held.fetch_add(1, Ordering::SeqCst);
                async move {
                    release.pass().await;
                }
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let client = Client::<R>::builder().max_pending_acks(2).build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let first = R::spawn_task({
        let client = client.clone();
        async move { client.emit_with_ack("hold", "").await }
    });
    let second = R::spawn_task({
        let client = client.clone();
        async move { client.emit_with_ack("hold", "").await }
    });
    // Wait until both are on the wire (the server holds two handlers).
    eventually("two held requests", || held.load(Ordering::SeqCst) == 2).await;
    let third = within("third", client.emit_with_ack("hold", "")).await;
    assert!(
        matches!(
            third,
            Err(AckError::Emit(EmitError::TooManyPendingAcks { limit: 2 }))
        ),
        "{third:?}"
    );
    release.open(2);
    assert!(within("first", first).await.is_ok());
    assert!(within("second", second).await.is_ok());
    client.close();
    test.stop().await;
}

async fn pending_acks_fail_at_once_when_the_server_closes_the_connection<R: TestRuntime>() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let server = Server::<R>::builder()
        .on("never", {
            let in_flight = in_flight.clone();
            move |_conn: Conn, _event: Event| {
                in_flight.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>()
            }
        })
        .on(
            "kill",
            |conn: Conn, _event: Event| async move { conn.close() },
        )
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let (client, mut client_hooks) = hooked_client(Client::<R>::builder());
    let client = client.build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let waiting: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            R::spawn_task(async move {
                client
                    .emit_with_ack_timeout("never", "", Duration::from_secs(3600))
                    .await
            })
        })
        .collect();
    // All ten are pending once the server runs ten handlers for them.
    eventually("ten requests in flight", || {
        in_flight.load(Ordering::SeqCst) == 10
    })
    .await;
    client.emit("kill", "").unwrap();
    for task in waiting {
        let result = within("a failed request", task).await;
        assert!(
            matches!(result, Err(AckError::ConnectionClosed)),
            "{result:?}"
        );
    }
    let (_, reason) = client_hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    // Emitting on the ended connection fails at once too.
    let late = client
        .emit_with_ack_timeout("never", "", Duration::from_secs(3600))
        .await;
    assert!(
        matches!(late, Err(AckError::Emit(EmitError::Closed))),
        "{late:?}"
    );
    test.stop().await;
}

async fn pending_acks_fail_at_once_when_the_tcp_connection_drops<R: TestRuntime>() {
    let listener = RawListener::new();
    let url = listener.url();
    let client = Client::<R>::builder().build().unwrap();
    let (accepted, dialed) = futures_util::join!(listener.accept(), client.dial(&url));
    dialed.unwrap();
    let (mut ws, _) = accepted;
    let waiting = R::spawn_task({
        let client = client.clone();
        async move {
            client
                .emit_with_ack_timeout("q", "", Duration::from_secs(3600))
                .await
        }
    });
    assert_eq!(ws.next_text().await, "q||1");
    drop(ws);
    let result = within("the failed request", waiting).await;
    assert!(
        matches!(result, Err(AckError::ConnectionClosed)),
        "{result:?}"
    );
}

async fn an_ack_times_out_with_a_per_call_deadline<R: TestRuntime>() {
    let server = Server::<R>::builder()
        .on("never", |_conn: Conn, _event: Event| {
            std::future::pending::<()>()
        })
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let client = Client::<R>::builder().build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let result = within(
        "the timeout",
        client.emit_with_ack_timeout("never", "", Duration::from_millis(100)),
    )
    .await;
    assert!(matches!(result, Err(AckError::TimedOut)), "{result:?}");
    // The connection is still fine.
    assert_eq!(
        within("echo", client.emit_with_ack("echo", "still here"))
            .await
            .unwrap(),
        "still here"
    );
    client.close();
    test.stop().await;
}

async fn an_ack_times_out_with_the_configured_default<R: TestRuntime>() {
    let listener = RawListener::new();
    let url = listener.url();
    let client = Client::<R>::builder()
        .ack_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let (accepted, dialed) = futures_util::join!(listener.accept(), client.dial(&url));
    dialed.unwrap();
    let (mut ws, _) = accepted;
    let result = within("the timeout", client.emit_with_ack("q", "")).await;
    assert!(matches!(result, Err(AckError::TimedOut)), "{result:?}");
    // A late reply is dropped silently; the next request gets its own reply.
    assert_eq!(ws.next_text().await, "q||1");
    ws.send_text("__ack_q||1||late").await;
    let asking = R::spawn_task({
        let client = client.clone();
        async move { client.emit_with_ack("q", "").await }
    });
    assert_eq!(ws.next_text().await, "q||2");
    ws.send_text("__ack_q||2||fresh").await;
    assert_eq!(within("ack", asking).await.unwrap(), "fresh");
    client.close();
}

async fn a_panicking_handler_is_contained_and_its_request_answered_empty<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .on("boom", |_conn: Conn, event: Event| {
            if event.data() == b"sync" {
                panic!("kaboom before the future");
            }
            async move {
                yield_now().await;
                if event.data() == b"async" {
                    panic!("kaboom inside the future");
                }
                "no panic"
            }
        })
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let conn = hooks.connects.next().await;
    for (i, (data, message)) in [
        ("async", "kaboom inside the future"),
        ("sync", "kaboom before the future"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = i + 1;
        assert_eq!(
            peer.ask(&format!("boom||{id}||{data}")).await,
            format!("__ack_boom||{id}")
        );
        let (on, err) = hooks.errors.next().await;
        assert_eq!(on.map(|c| c.id()), Some(conn.id()));
        match &err {
            Error::HandlerPanicked { event, message: m } => {
                assert_eq!(event, "boom");
                assert_eq!(m, message);
            }
            other => panic!("expected HandlerPanicked, got {other:?}"),
        }
    }
    // The same connection keeps working, and so do others.
    assert_eq!(peer.ask("echo||3||alive").await, "__ack_echo||3||alive");
    let mut other = WsPeer::connect(&test.url("/ws")).await;
    assert_eq!(other.ask("echo||1||me too").await, "__ack_echo||1||me too");
    assert!(hooks.disconnects.try_next().is_none());
    drop(other);
    test.stop_with(&mut peer).await;
}

async fn a_panicking_error_hook_does_not_take_the_connection_down<R: TestRuntime>() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = Server::<R>::builder()
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .on_error({
            let calls = calls.clone();
            move |_conn, _err| {
                calls.fetch_add(1, Ordering::SeqCst);
                panic!("the error hook itself fails");
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.send_text("garbage").await;
    assert_eq!(peer.ask("echo||1||ok").await, "__ack_echo||1||ok");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    test.stop_with(&mut peer).await;
}

async fn one_handler_at_a_time_answers_strictly_in_order<R: TestRuntime>() {
    let server = Server::<R>::builder()
        .handler_concurrency(1)
        .on("work", |_conn: Conn, event: Event| async move {
            // Earlier events take longer: with more concurrency they would finish last.
            let n: u64 = String::from_utf8_lossy(event.data()).parse().unwrap();
            R::sleep(Duration::from_millis(5 * (5 - n))).await;
            event.into_data()
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    for n in 0..5 {
        peer.send_text(&format!("work||{}||{n}", n + 1)).await;
    }
    for n in 0..5 {
        assert_eq!(
            peer.next_text().await,
            format!("__ack_work||{}||{n}", n + 1)
        );
    }
    test.stop_with(&mut peer).await;
}

async fn handlers_run_concurrently_by_default<R: TestRuntime>() {
    // The first request waits for the second: only concurrent handlers can finish.
    let gate = Gate::new();
    let server = Server::<R>::builder()
        .on("wait", {
            let gate = gate.clone();
            move |_conn: Conn, _event: Event| {
                let gate = gate.clone();
                async move {
                    gate.pass().await;
                    "waited"
                }
            }
        })
        .on("open", {
            let gate = gate.clone();
            move |_conn: Conn, _event: Event| {
                let gate = gate.clone();
                async move {
                    gate.open(1);
                    "opened"
                }
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.send_text("wait||1").await;
    peer.send_text("open||2").await;
    let mut replies = vec![peer.next_text().await, peer.next_text().await];
    replies.sort();
    assert_eq!(replies, ["__ack_open||2||opened", "__ack_wait||1||waited"]);
    test.stop_with(&mut peer).await;
}

async fn the_servers_pending_acks_fail_at_once_when_the_peer_drops<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let test = TestServer::start(builder.build().unwrap());
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    let conn = hooks.connects.next().await;
    let asking = R::spawn_task({
        let conn = conn.clone();
        async move {
            conn.emit_with_ack_timeout("q", "", Duration::from_secs(3600))
                .await
        }
    });
    assert_eq!(raw.frame().await.unwrap().text(), "q||1");
    drop(raw);
    let result = within("the failed request", asking).await;
    assert!(
        matches!(result, Err(AckError::ConnectionClosed)),
        "{result:?}"
    );
    let (_, reason) = hooks.disconnects.next().await;
    assert!(!reason.is_normal());
    test.stop().await;
}

async fn a_handler_waiting_for_an_ack_gets_it_behind_many_queued_events<R: TestRuntime>() {
    let server = Server::<R>::builder()
        .handler_concurrency(1)
        .on("ask", |conn: Conn, _event: Event| async move {
            match conn
                .emit_with_ack_timeout("q", "", Duration::from_millis(1500))
                .await
            {
                Ok(data) => format!("ok {}", String::from_utf8_lossy(&data)),
                Err(err) => format!("err {err}"),
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.send_text("ask||1").await;
    assert_eq!(peer.next_text().await, "q||1");
    // The peer (a Go peer, say) emits more events before it answers: Go would read on.
    for _ in 0..40 {
        peer.send_text("other||0").await;
    }
    peer.send_text("__ack_q||1||yes").await;
    assert_eq!(peer.next_text().await, "__ack_ask||1||ok yes");
    test.stop_with(&mut peer).await;
}

behaviour_suite! {
    nested_requests_in_both_directions_do_not_deadlock,
    nested_requests_in_both_directions_do_not_deadlock_with_one_handler_at_a_time,
    two_thousand_concurrent_requests_on_one_connection_each_get_their_own_reply,
    requests_beyond_max_pending_acks_fail_with_too_many_pending_acks,
    pending_acks_fail_at_once_when_the_server_closes_the_connection,
    pending_acks_fail_at_once_when_the_tcp_connection_drops,
    an_ack_times_out_with_a_per_call_deadline,
    an_ack_times_out_with_the_configured_default,
    a_panicking_handler_is_contained_and_its_request_answered_empty,
    a_panicking_error_hook_does_not_take_the_connection_down,
    one_handler_at_a_time_answers_strictly_in_order,
    handlers_run_concurrently_by_default,
    the_servers_pending_acks_fail_at_once_when_the_peer_drops,
    a_handler_waiting_for_an_ack_gets_it_behind_many_queued_events,
}
