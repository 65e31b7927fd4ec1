//! Metrics (feature `metrics`): the values a recorder holds after a scripted
//! connection, checked exactly.
//!
//! The recorder is set for the test's thread only; the test runs on tokio's
//! current-thread runtime, so every connection task polls there.

mod common;

use std::collections::HashMap;

use common::*;
use etp_driver::{Conn, DisconnectReason, EmitError, Event, SlowConsumerPolicy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Adds up the recorder's snapshots (which reset what they report).
struct Metrics {
    snapshotter: Snapshotter,
    counters: HashMap<String, u64>,
    gauges: HashMap<String, f64>,
    histograms: HashMap<String, Vec<f64>>,
}

impl Metrics {
    fn new(snapshotter: Snapshotter) -> Self {
        Self {
            snapshotter,
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    fn update(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut name = key.name().to_owned();
            for label in key.labels() {
                name.push_str(&format!("{{{}={}}}", label.key(), label.value()));
            }
            match value {
                DebugValue::Counter(n) => *self.counters.entry(name).or_default() += n,
                DebugValue::Gauge(v) => *self.gauges.entry(name).or_default() += v.into_inner(),
                DebugValue::Histogram(values) => self
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(values.into_iter().map(|v| v.into_inner())),
            }
        }
    }

    fn counter(&mut self, name: &str) -> u64 {
        self.update();
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn gauge(&mut self, name: &str) -> f64 {
        self.update();
        self.gauges.get(name).copied().unwrap_or(0.0)
    }

    fn histogram(&mut self, name: &str) -> Vec<f64> {
        self.update();
        self.histograms.get(name).cloned().unwrap_or_default()
    }
}

#[tokio::test]
async fn the_recorder_sees_connections_events_bytes_latency_queues_and_failures() {
    let recorder = DebuggingRecorder::new();
    let mut metrics = Metrics::new(recorder.snapshotter());
    let _recorder = metrics::set_default_local_recorder(&recorder);

    let rt = ManualRuntime::new();
    let rec = Recorder::new();
    let server = rec
        .server(server_builder(&rt))
        .outbound_limit(8 * 1024, SlowConsumerPolicy::Disconnect)
        .on("echo", |_: Conn, e: Event| async move { e.into_data() })
        .on("boom", |_: Conn, e: Event| async move {
            assert!(!e.data().is_empty(), "boom");
        })
        .build()
        .unwrap();
    let mut s = serve(&server).await;
    assert_eq!(metrics.gauge("etp_connections{side=server}"), 1.0);

    // One event in (14 bytes), its ack out (20 bytes).
    s.peer.send_text("echo||1||hello");
    assert_eq!(s.peer.recv_text().await, "__ack_echo||1||hello");
    // One event out (10 bytes).
    s.conn.emit("news", "x").unwrap();
    assert_eq!(s.peer.recv_text().await, "news||0||x");
    // A request out (9 bytes) and its reply in (15 bytes): one latency, no event in.
    let conn = s.conn.clone();
    let asked = tokio::spawn(async move { conn.emit_with_ack("ask", "q").await });
    assert_eq!(s.peer.recv_text().await, "ask||1||q");
    s.peer.send_text("__ack_ask||1||a");
    assert_eq!(asked.await.unwrap().unwrap(), "a");
    // A panicking handler (7 bytes in), answered empty (13 bytes out).
    s.peer.send_text("boom||2");
    assert_eq!(s.peer.recv_text().await, "__ack_boom||2");
    // A malformed frame (3 bytes): an error, not an event.
    s.peer.send_text("bad");
    settle().await;

    assert_eq!(metrics.counter("etp_events_in_total"), 2);
    assert_eq!(metrics.counter("etp_events_out_total"), 2);
    assert_eq!(metrics.counter("etp_bytes_in_total"), 14 + 15 + 7 + 3);
    assert_eq!(metrics.counter("etp_bytes_out_total"), 20 + 10 + 9 + 13);
    assert_eq!(metrics.counter("etp_handler_panics_total"), 1);
    assert_eq!(metrics.counter("etp_errors_total{kind=handler_panic}"), 1);
    assert_eq!(metrics.counter("etp_errors_total{kind=protocol}"), 1);
    let latencies = metrics.histogram("etp_ack_latency_seconds");
    assert_eq!(latencies.len(), 1, "{latencies:?}");
    assert!(latencies[0] >= 0.0 && latencies[0] < 60.0, "{latencies:?}");
    assert_eq!(metrics.gauge("etp_outbound_queue_bytes"), 0.0);
    // A request that times out is not a latency.
    let conn = s.conn.clone();
    let timed_out = tokio::spawn(async move {
        conn.emit_with_ack_timeout("ask", "q", std::time::Duration::from_secs(1))
            .await
    });
    s.peer.recv_text().await;
    rt.advance_and_settle(std::time::Duration::from_secs(2))
        .await;
    assert!(timed_out.await.unwrap().is_err());
    assert!(metrics.histogram("etp_ack_latency_seconds").len() == 1);

    s.peer.close_with(Some(1000), "");
    s.finished().await;
    assert_eq!(metrics.gauge("etp_connections{side=server}"), 0.0);
    assert_eq!(metrics.counter("etp_slow_consumer_disconnects_total"), 0);

    // A peer that stops reading: the queue gauge holds exactly what waits, until the
    // bound disconnects it.
    let mut s = serve(&server).await;
    s.peer.set_capacity(1);
    let data = "x".repeat(1024);
    let cost = 3 + 1024 + 24; // name, data, frame overhead
    let mut refused = None;
    for _ in 0..10_000 {
        match s.conn.emit("big", data.clone()) {
            Ok(()) => settle().await,
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    assert_eq!(refused, Some(EmitError::SlowConsumer));
    // Seven frames fit under 8 KiB; the eighth crossed the bound.
    assert_eq!(metrics.gauge("etp_outbound_queue_bytes"), (7 * cost) as f64);
    s.peer.set_capacity(usize::MAX);
    assert_eq!(s.peer.answer_close().await.0, 1008);
    s.finished().await;
    assert!(
        rec.reasons()
            .iter()
            .any(|r| matches!(r, DisconnectReason::SlowConsumer))
    );
    assert_eq!(metrics.counter("etp_slow_consumer_disconnects_total"), 1);
    assert_eq!(metrics.gauge("etp_outbound_queue_bytes"), 0.0);
    assert_eq!(metrics.gauge("etp_connections{side=server}"), 0.0);
}
