//! Spans (feature `tracing`): what a subscriber sees of a scripted connection,
//! checked exactly.
//!
//! This test is alone in its binary on purpose. `tracing` caches whether a callsite is
//! enabled process-wide, from the first thread that reaches it; a test in the same
//! process running a connection without a subscriber would cache "never" for
//! `etp.conn` and this test would see no span. The subscriber is set for the test's
//! thread only; the test runs on tokio's current-thread runtime, so every connection
//! task polls there.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use etp_driver::{Conn, Event};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

// ---------------------------------------------------------------------------------
// A layer that records spans and events
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct SpanRecord {
    name: &'static str,
    fields: HashMap<String, String>,
    parent: Option<u64>,
    enters: usize,
}

#[derive(Clone, Debug)]
struct EventRecord {
    fields: HashMap<String, String>,
    /// The span the event happened in.
    span: Option<u64>,
}

#[derive(Clone, Default)]
struct Captured {
    spans: Arc<Mutex<HashMap<u64, SpanRecord>>>,
    events: Arc<Mutex<Vec<EventRecord>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Captured {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|p| p.id().into_u64());
        self.spans.lock().unwrap().insert(
            id.into_u64(),
            SpanRecord {
                name: attrs.metadata().name(),
                fields,
                parent,
                enters: 0,
            },
        );
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        if let Some(span) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            span.enters += 1;
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let span = ctx.event_span(event).map(|s| s.id().into_u64());
        self.events
            .lock()
            .unwrap()
            .push(EventRecord { fields, span });
    }
}

impl Captured {
    fn spans_named(&self, name: &str) -> Vec<(u64, SpanRecord)> {
        let mut spans: Vec<_> = self
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.name == name)
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        spans.sort_by_key(|(id, _)| *id);
        spans
    }

    fn span(&self, id: u64) -> SpanRecord {
        self.spans.lock().unwrap()[&id].clone()
    }

    /// The events whose message is `message`.
    fn events_saying(&self, message: &str) -> Vec<EventRecord> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.fields.get("message").map(String::as_str) == Some(message))
            .cloned()
            .collect()
    }
}

#[tokio::test]
async fn every_connection_and_handled_event_has_its_span() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let _subscriber = tracing::subscriber::set_default(subscriber);

    let rt = ManualRuntime::new();
    let gate = Gate::default();
    let waiting = gate.clone();
    let server = server_builder(&rt)
        .on("echo", |_: Conn, e: Event| async move {
            tracing::info!("in echo");
            e.into_data()
        })
        .on("slow", move |_: Conn, _: Event| {
            let opened = waiting.wait();
            async move {
                opened.await;
                // Polled again after waiting: still inside the event's span.
                tracing::info!("slow resumed");
                "done"
            }
        })
        .build()
        .unwrap();
    let mut s = serve(&server).await;
    s.peer.send_text("echo||7||hi");
    assert_eq!(s.peer.recv_text().await, "__ack_echo||7||hi");
    s.peer.send_text("echo||0||no ack");
    s.peer.send_text("slow||-3");
    settle().await;
    gate.open();
    assert_eq!(s.peer.recv_text().await, "__ack_slow||-3||done");

    let conns = captured.spans_named("etp.conn");
    assert_eq!(conns.len(), 1, "{conns:?}");
    let (conn_span, conn) = &conns[0];
    assert_eq!(conn.fields["conn_id"], s.conn.id().to_string());
    assert_eq!(conn.fields["side"], "server");
    assert_eq!(conn.fields["path"], "/ws");
    assert!(!conn.fields.contains_key("remote"), "no address known here");

    let events = captured.spans_named("etp.event");
    let described: Vec<(String, Option<String>)> = events
        .iter()
        .map(|(_, e)| (e.fields["event"].clone(), e.fields.get("ack_id").cloned()))
        .collect();
    assert_eq!(
        described,
        [
            ("echo".to_owned(), Some("7".to_owned())),
            ("echo".to_owned(), None),
            ("slow".to_owned(), Some("-3".to_owned())),
        ]
    );
    for (_, event) in &events {
        assert_eq!(event.parent, Some(*conn_span), "{event:?}");
        assert!(event.enters >= 1, "{event:?}");
    }
    // The slow handler was entered at least twice: its first poll and its resumption.
    assert!(events[2].1.enters >= 2, "{:?}", events[2].1);
    let in_echo = captured.events_saying("in echo");
    assert_eq!(in_echo.len(), 2);
    assert_eq!(in_echo[0].span, Some(events[0].0));
    assert_eq!(in_echo[1].span, Some(events[1].0));
    let resumed = captured.events_saying("slow resumed");
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].span, Some(events[2].0));

    // How the connection ended is told inside its span.
    s.peer.close_with(Some(1000), "bye");
    s.finished().await;
    let ended = captured.events_saying("etp connection ended");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].span, Some(*conn_span));
    assert_eq!(ended[0].fields["reason"], "closed with code 1000: bye");
    assert_eq!(ended[0].fields["normal"], "true");
    assert_eq!(captured.span(*conn_span).name, "etp.conn");

    // A client connection has its own span, marked as the client side.
    let client = client_builder(&rt).build().unwrap();
    let (_peer, client_conn, _ended) = start_client(&client);
    settle().await;
    let conns = captured.spans_named("etp.conn");
    assert_eq!(conns.len(), 2);
    let (_, client_span) = &conns[1];
    assert_eq!(client_span.fields["conn_id"], client_conn.id().to_string());
    assert_eq!(client_span.fields["side"], "client");
}
