//! Observability: `tracing` spans (feature `tracing`) and `metrics` counters, gauges
//! and histograms (feature `metrics`).
//!
//! The rest of the crate calls these functions unconditionally; with a feature off
//! they are empty and inline to nothing, so the hot path pays nothing for them.
//! The names, kinds and meaning of every metric are in the crate documentation
//! (the `metrics` section), and tested in `tests/spans.rs` and `tests/metrics.rs`.

#[cfg(feature = "metrics")]
use std::time::Duration;

use crate::conn::Conn;
use crate::error::{DisconnectReason, Error};

/// Which end of a connection this process is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    Server,
    Client,
}

impl Side {
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// Counts a connection as open for as long as it lives (dropped however the
/// connection's future ends, even cancelled).
pub(crate) struct ConnGauge {
    #[cfg(feature = "metrics")]
    side: Side,
}

impl ConnGauge {
    #[inline]
    pub(crate) fn open(side: Side) -> Self {
        #[cfg(feature = "metrics")]
        metrics::gauge!("etp_connections", "side" => side.as_str()).increment(1.0);
        #[cfg(not(feature = "metrics"))]
        let _ = side;
        Self {
            #[cfg(feature = "metrics")]
            side,
        }
    }
}

impl Drop for ConnGauge {
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        metrics::gauge!("etp_connections", "side" => self.side.as_str()).decrement(1.0);
    }
}

/// A connection ended for `reason`.
#[inline]
pub(crate) fn connection_ended(reason: &DisconnectReason) {
    #[cfg(feature = "metrics")]
    if matches!(reason, DisconnectReason::SlowConsumer) {
        metrics::counter!("etp_slow_consumer_disconnects_total").increment(1);
    }
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "etp", reason = %reason, normal = reason.is_normal(), "etp connection ended");
    #[cfg(not(any(feature = "metrics", feature = "tracing")))]
    let _ = reason;
}

/// An error went to the error hook (or would have, without one).
#[inline]
pub(crate) fn error_reported(error: &Error) {
    #[cfg(feature = "metrics")]
    {
        let kind = match error {
            Error::Protocol(_) => "protocol",
            Error::HandlerPanicked { .. } => "handler_panic",
            Error::HookPanicked { .. } => "hook_panic",
            Error::Handshake(_) => "handshake",
            Error::Refused(_) => "refused",
            Error::Io(_) => "io",
            Error::Dial(_) => "dial",
            #[cfg(feature = "json")]
            Error::Decode(_) => "decode",
        };
        metrics::counter!("etp_errors_total", "kind" => kind).increment(1);
        if matches!(error, Error::HandlerPanicked { .. }) {
            metrics::counter!("etp_handler_panics_total").increment(1);
        }
    }
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "etp", error = %error, "etp error");
    #[cfg(not(any(feature = "metrics", feature = "tracing")))]
    let _ = error;
}

/// One event received (acknowledgements are not events).
#[inline]
pub(crate) fn event_in() {
    #[cfg(feature = "metrics")]
    metrics::counter!("etp_events_in_total").increment(1);
}

/// One event taken from a connection's queue to be sent (emit, request, broadcast).
#[inline]
pub(crate) fn event_out() {
    #[cfg(feature = "metrics")]
    metrics::counter!("etp_events_out_total").increment(1);
}

/// A WebSocket message of `len` payload bytes was read.
#[inline]
pub(crate) fn bytes_in(len: usize) {
    #[cfg(feature = "metrics")]
    metrics::counter!("etp_bytes_in_total").increment(len as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = len;
}

/// A WebSocket message of `len` payload bytes was handed to the socket.
#[inline]
pub(crate) fn bytes_out(len: usize) {
    #[cfg(feature = "metrics")]
    metrics::counter!("etp_bytes_out_total").increment(len as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = len;
}

/// `bytes` joined (positive) or left (negative) the outbound queues.
#[inline]
pub(crate) fn queue_changed(bytes: usize, joined: bool) {
    #[cfg(feature = "metrics")]
    {
        let gauge = metrics::gauge!("etp_outbound_queue_bytes");
        if joined {
            gauge.increment(bytes as f64);
        } else {
            gauge.decrement(bytes as f64);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (bytes, joined);
}

/// When an acknowledgement was asked for: measures the wait until its reply.
pub(crate) struct AckTimer {
    #[cfg(feature = "metrics")]
    start: std::time::Instant,
}

impl AckTimer {
    #[inline]
    pub(crate) fn start() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            start: std::time::Instant::now(),
        }
    }

    /// The reply arrived: records the wait. Failed waits (timeouts, closed
    /// connections) are not latencies and are not recorded.
    #[inline]
    pub(crate) fn replied(self) {
        #[cfg(feature = "metrics")]
        record_ack_latency(self.start.elapsed());
    }
}

#[cfg(feature = "metrics")]
fn record_ack_latency(wait: Duration) {
    metrics::histogram!("etp_ack_latency_seconds").record(wait.as_secs_f64());
}

/// The span of one connection: every hook, handler and event span of the connection
/// runs inside it.
#[cfg(feature = "tracing")]
pub(crate) fn conn_span(conn: &Conn, side: Side) -> tracing::Span {
    let request = conn.request();
    tracing::info_span!(
        target: "etp",
        "etp.conn",
        conn_id = %conn.id(),
        side = side.as_str(),
        path = request.uri().path(),
        remote = request.remote_addr().map(tracing::field::display),
    )
}

/// Runs `future` inside the connection's span (as is, without `tracing`).
#[inline]
pub(crate) fn in_conn_span<F: std::future::Future>(
    conn: &Conn,
    side: Side,
    future: F,
) -> impl std::future::Future<Output = F::Output> + use<F> {
    #[cfg(feature = "tracing")]
    {
        use tracing::Instrument;
        future.instrument(conn_span(conn, side))
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (conn, side);
        future
    }
}

/// The span of one handled event: its name and, when the peer asked for a reply,
/// the ack id. Zero-sized without `tracing`.
pub(crate) struct EventSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl EventSpan {
    #[inline]
    pub(crate) fn new(name: &[u8], ack_id: Option<u64>) -> Self {
        #[cfg(feature = "tracing")]
        {
            // Go's ack ids are signed: show them as the peer wrote them.
            let ack_id = ack_id.map(|id| id as i64);
            Self {
                span: tracing::debug_span!(
                    target: "etp",
                    "etp.event",
                    event = %String::from_utf8_lossy(name),
                    ack_id,
                ),
            }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (name, ack_id);
            Self {}
        }
    }

    /// Runs `f` inside the span.
    #[inline]
    pub(crate) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        #[cfg(feature = "tracing")]
        {
            self.span.in_scope(f)
        }
        #[cfg(not(feature = "tracing"))]
        f()
    }
}
