//! Per-session settings.

use std::time::Duration;

use crate::frame::Encoding;

/// Settings of one [`Session`](crate::Session).
///
/// Start from [`Config::default`] and change the fields you need:
///
/// ```
/// use std::time::Duration;
/// use etp_proto::{Config, Encoding};
///
/// let mut config = Config::default();
/// config.encoding = Encoding::ThreePart; // talking to the JS client
/// config.ack_timeout = Duration::from_secs(5);
/// config.ping_interval = Some(Duration::from_secs(20));
/// config.idle_timeout = Some(Duration::from_secs(60));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// How frames with empty data are written. Default: [`Encoding::Compact`] (Go's bytes).
    pub encoding: Encoding,
    /// How long an acknowledgement is awaited when
    /// [`emit_with_ack`](crate::Session::emit_with_ack) gets no per-call timeout.
    /// Default: 30 seconds.
    pub ack_timeout: Duration,
    /// The most acknowledgements awaited at once; one more request fails with
    /// [`SendError::TooManyPendingAcks`](crate::SendError::TooManyPendingAcks).
    /// Default: 1024.
    pub max_pending_acks: usize,
    /// The longest message accepted, in bytes; a longer one closes the session with
    /// code 1009, as in Go. `None` accepts any length. Default: 1 MiB (1,048,576).
    ///
    /// A WebSocket library usually enforces its own limit before the message is even
    /// assembled; set both to the same value.
    pub read_limit: Option<usize>,
    /// Send a ping when nothing has been received for this long. Default: `None`.
    pub ping_interval: Option<Duration>,
    /// Close with [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout) when
    /// nothing (no message, no pong) has been received for this long. Pair it with a
    /// shorter `ping_interval` so that a live but quiet peer is not dropped.
    /// Default: `None`.
    pub idle_timeout: Option<Duration>,
}

impl Config {
    /// Go etp's default read limit: 1 MiB.
    pub const DEFAULT_READ_LIMIT: usize = 1 << 20;
}

impl Default for Config {
    fn default() -> Self {
        Self {
            encoding: Encoding::Compact,
            ack_timeout: Duration::from_secs(30),
            max_pending_acks: 1024,
            read_limit: Some(Self::DEFAULT_READ_LIMIT),
            ping_interval: None,
            idle_timeout: None,
        }
    }
}
