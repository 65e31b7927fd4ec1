//! Per-connection settings of the async layer.

use std::time::Duration;

/// What happens when a connection's outbound queue is over its byte bound: the peer
/// reads more slowly than the application sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Close the connection with code 1008 (the default): a peer that cannot keep up
    /// would otherwise see silent gaps.
    #[default]
    Disconnect,
    /// Drop the new frame and report [`EmitError::QueueFull`](crate::EmitError::QueueFull)
    /// to its sender (broadcasts skip that member).
    DropNew,
}

/// Settings shared by every connection of a server or client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnConfig {
    /// The protocol settings: encoding, ack timeout and bound, read limit, keepalive.
    pub session: etp_proto::Config,
    /// How many handlers may run at once per connection. When the bound is reached the
    /// connection stops reading (TCP backpressure). 1 handles events strictly in order.
    /// Default: 64.
    pub handler_concurrency: usize,
    /// Bytes that may wait to be written to one connection. Default: 4 MiB.
    pub outbound_limit: usize,
    /// What to do past `outbound_limit`. Default: disconnect.
    pub slow_consumer: SlowConsumerPolicy,
    /// How long to wait for the peer's answer to our close frame. Default: 5 s (Go).
    pub close_timeout: Duration,
    /// The socket read buffer per connection, which is also the most read per system
    /// call. Default: 4 KiB, which keeps an idle connection small; raise it (to 16
    /// KiB, say) for connections that mostly carry large messages.
    pub read_buffer_size: usize,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            session: etp_proto::Config::default(),
            handler_concurrency: 64,
            outbound_limit: 4 << 20,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            close_timeout: Duration::from_secs(5),
            read_buffer_size: 4 * 1024,
        }
    }
}
