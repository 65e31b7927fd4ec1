//! Hostile peers the fuzz target found: each case is a sequence that once left the
//! driver in a wrong state.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use etp_driver::{AckError, Conn, DisconnectReason, Event};

/// Counts handler futures alive; a dropped (cancelled) handler counts down.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A peer whose close frame is read while the backlog is full (reading went on past
/// it only because an acknowledgement was awaited): the close fails the request, and
/// the connection ends then and there, cancelling the blocked handler, instead of
/// pausing again with the close already read and the stream's end never seen.
#[tokio::test]
async fn a_close_read_past_a_full_backlog_ends_the_connection_at_once() {
    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let alive = Arc::new(AtomicUsize::new(0));
    let gate = Gate::default();
    let (counter, handler_gate) = (alive.clone(), gate.clone());
    let server = rec
        .server(server_builder(&rt))
        .handler_concurrency(1)
        .on("job", move |_: Conn, _: Event| {
            counter.fetch_add(1, Ordering::SeqCst);
            let guard = Alive(counter.clone());
            let gate = handler_gate.clone();
            async move {
                let _guard = guard;
                gate.wait().await;
            }
        })
        .build()
        .unwrap();
    let mut s = serve(&server).await;
    let asking = tokio::spawn({
        let conn = s.conn.clone();
        async move { conn.emit_with_ack("ask", "q").await }
    });
    assert_eq!(s.peer.recv_text().await, "ask||1||q");
    // One running, sixteen waiting (the backlog's floor), more behind them: read on
    // only because the reply to `ask` may be among them.
    for i in 0..40 {
        s.peer.send_text(&format!("job||0||{i}"));
    }
    settle().await;
    assert_eq!(
        s.peer.unread_by_driver(),
        0,
        "reading goes on while awaiting"
    );
    assert_eq!(alive.load(Ordering::SeqCst), 1);
    s.peer.close_with(Some(1000), "");
    let outcome = guarded("the request to fail", asking).await.unwrap();
    assert_eq!(outcome, Err(AckError::ConnectionClosed));
    assert!(
        s.conn.is_closed(),
        "a request failed as closed on an open conn"
    );
    s.finished().await;
    assert!(matches!(
        rec.disconnected().await,
        DisconnectReason::Closed { code: 1000, .. }
    ));
    assert_eq!(
        alive.load(Ordering::SeqCst),
        0,
        "the blocked handler was cancelled"
    );
    assert_eq!(server.rooms().connection_count(), 0);
}
