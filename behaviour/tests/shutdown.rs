//! PROTOCOL.md section 8.8: shutdown closes every connection with 1000 at once, stops
//! accepting, waits (with a deadline) for running handlers, and reports stragglers; on
//! every runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{Client, Conn, DialError, DisconnectReason, Event, Server};

async fn shutdown_closes_every_connection_with_1000_at_once<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let test = TestServer::start(builder.build().unwrap());
    let addr = test.addr;
    let url = test.url("/ws");

    // Three raw peers that answer the close only once all three have received theirs:
    // if the server closed connections one after the other, none would ever answer.
    let closes_seen = Arc::new(AtomicUsize::new(0));
    let mut peers = Vec::new();
    for _ in 0..3 {
        let mut raw = RawSocket::connect(addr, "/ws").await;
        hooks.connects.next().await;
        let closes_seen = closes_seen.clone();
        peers.push(R::spawn_task(async move {
            let (before, close) = raw.reader.until_close().await;
            assert!(before.is_empty(), "{before:?}");
            assert_eq!(close.close(), (Some(1000), String::new()));
            closes_seen.fetch_add(1, Ordering::SeqCst);
            eventually("the other peers' close frames", || {
                closes_seen.load(Ordering::SeqCst) == 3
            })
            .await;
            raw.send(OP_CLOSE, &close.payload).await;
            // The server ends the TCP connection after the handshake.
            assert!(raw.frame().await.is_none());
        }));
    }
    let (client, mut client_hooks) = hooked_client(Client::<R>::builder());
    let client = client.build().unwrap();
    within("dial", client.dial(&url)).await.unwrap();
    hooks.connects.next().await;
    assert_eq!(test.server.connection_count(), 4);

    let dropped = within(
        "shutdown",
        test.server.shutdown(Duration::from_millis(4000)),
    )
    .await;
    assert_eq!(dropped, 0);
    assert!(test.server.is_shutting_down());
    assert_eq!(test.server.connection_count(), 0);
    within("serve() to return", test.serving).await.unwrap();
    for peer in peers {
        within("a raw peer", peer).await;
    }
    // The client saw a normal close, and so did the server for every connection.
    let (_, reason) = client_hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    for _ in 0..4 {
        let (_, reason) = hooks.disconnects.next().await;
        assert!(reason.is_normal(), "{reason:?}");
    }
    // New dials are refused: nothing listens any more.
    let again = Client::<R>::builder().build().unwrap();
    let refused = within("refused dial", again.dial(&url)).await;
    assert!(matches!(refused, Err(DialError::Io(_))), "{refused:?}");
    assert!(tcp_refused(addr).await);
    assert!(test.server.rooms().all().is_empty());
}

async fn shutdown_drops_a_peer_that_never_answers_the_close_after_the_timeout<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let test = TestServer::start(builder.build().unwrap());
    // This peer never reads, so it never answers the close frame.
    let silent = RawSocket::connect(test.addr, "/ws").await;
    let silent_conn = hooks.connects.next().await;
    let (client, mut client_hooks) = hooked_client(Client::<R>::builder());
    let client = client.build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let polite_conn = hooks.connects.next().await;

    let dropped = within(
        "shutdown with a short timeout",
        test.server.shutdown(Duration::from_millis(500)),
    )
    .await;
    assert_eq!(dropped, 1);
    assert_eq!(test.server.connection_count(), 0);
    let mut reasons = [
        hooks.disconnects.next().await,
        hooks.disconnects.next().await,
    ];
    reasons.sort_by_key(|(conn, _)| *conn != polite_conn);
    assert_eq!(reasons[0].0, polite_conn);
    assert!(reasons[0].1.is_normal(), "{:?}", reasons[0].1);
    assert_eq!(reasons[1].0, silent_conn);
    assert!(
        matches!(reasons[1].1, DisconnectReason::Shutdown),
        "{:?}",
        reasons[1].1
    );
    let (_, reason) = client_hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    within("serve() to return", test.serving).await.unwrap();
    // The silent peer got a close frame it never read, then the connection ended.
    let mut silent = silent;
    let (_, close) = silent.reader.until_close().await;
    assert_eq!(close.close().0, Some(1000));
    assert!(silent.frame().await.is_none());
}

async fn shutdown_lets_running_handlers_answer_before_closing<R: TestRuntime>() {
    let release = Gate::new();
    let started = Arc::new(AtomicUsize::new(0));
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .on("work", {
            let release = release.clone();
            let started = started.clone();
            move |_conn: Conn, _event: Event| {
                let release = release.clone();
                started.fetch_add(1, Ordering::SeqCst);
                async move {
                    release.pass().await;
                    "done"
                }
            }
        })
        .on("other", |_conn: Conn, _event: Event| async { "handled" })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.send_text("work||1").await;
    eventually("the handler to start", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;

    let mut shutting = R::spawn_task({
        let server = test.server.clone();
        async move { server.shutdown(Duration::from_secs(4)).await }
    });
    eventually("shutdown to begin", || test.server.is_shutting_down()).await;
    // While draining, a new request starts no new work and is not answered (an
    // answer would claim it was handled): the peer sees the running handler's answer
    // and then the close, nothing else.
    peer.send_text("other||2").await;
    assert!(matches!(
        peer.read(Duration::from_millis(100)).await,
        ReadOutcome::TimedOut
    ));
    assert!(!shutting.is_finished());

    release.open(1);
    assert_eq!(peer.next_text().await, "__ack_work||1||done");
    let (before, close) = peer.until_close().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(u16::from(close.unwrap().code), 1000);
    assert_eq!(within("shutdown", shutting).await, 0);
    let (_, reason) = hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    within("serve", test.serving).await.unwrap();
}

async fn shutdown_cancels_handlers_still_running_at_the_deadline<R: TestRuntime>() {
    struct Dropped(Tx<()>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.send(());
        }
    }
    let (dropped_tx, mut dropped) = channel::<()>();
    let started = Arc::new(AtomicUsize::new(0));
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .on("forever", {
            let started = started.clone();
            move |_conn: Conn, _event: Event| {
                let guard = Dropped(dropped_tx.clone());
                started.fetch_add(1, Ordering::SeqCst);
                async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                }
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let client = Client::<R>::builder().build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let asking = R::spawn_task({
        let client = client.clone();
        async move {
            client
                .emit_with_ack_timeout("forever", "", Duration::from_secs(3600))
                .await
        }
    });
    eventually("the handler to start", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    let count = within("shutdown", test.server.shutdown(Duration::from_millis(300))).await;
    assert_eq!(count, 1, "the connection with a running handler is dropped");
    dropped.next().await;
    let (_, reason) = hooks.disconnects.next().await;
    assert!(matches!(reason, DisconnectReason::Shutdown), "{reason:?}");
    // The client's request ends at once, not after an hour.
    let result = within("the client's request", asking).await;
    assert!(result.is_err(), "{result:?}");
}

async fn shutdown_without_connections_returns_at_once_and_stops_serving<R: TestRuntime>() {
    let test = TestServer::start(Server::<R>::builder().build().unwrap());
    let addr = test.addr;
    assert_eq!(test.stop().await, 0);
    assert!(tcp_refused(addr).await);
}

behaviour_suite! {
    shutdown_closes_every_connection_with_1000_at_once,
    shutdown_drops_a_peer_that_never_answers_the_close_after_the_timeout,
    shutdown_lets_running_handlers_answer_before_closing,
    shutdown_cancels_handlers_still_running_at_the_deadline,
    shutdown_without_connections_returns_at_once_and_stops_serving,
}
