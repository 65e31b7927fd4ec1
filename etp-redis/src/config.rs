//! Where the Redis server is and how the broker talks to it.

use std::fmt;
use std::time::Duration;

/// Settings of a [`RedisBroker`](crate::RedisBroker).
///
/// ```
/// use std::time::Duration;
/// use etp_redis::RedisConfig;
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379/")
///     .channel_prefix("chat")
///     .queue_capacity(8192);
/// assert_eq!(config.url(), "redis://127.0.0.1:6379/");
/// # let _ = Duration::ZERO;
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) queue_capacity: usize,
    pub(crate) batch: usize,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) ping_interval: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: show where it points, not who logs in.
        let url = hide_password(&self.url);
        f.debug_struct("RedisConfig")
            .field("url", &url)
            .field("prefix", &self.prefix)
            .field("queue_capacity", &self.queue_capacity)
            .field("batch", &self.batch)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("connect_timeout", &self.connect_timeout)
            .field("ping_interval", &self.ping_interval)
            .finish()
    }
}

impl RedisConfig {
    /// The default bound of the outbound queue, in messages.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;

    /// Talks to the Redis server at `url` (`redis://[user:password@]host:port[/db]`),
    /// with channels named `etp:*`, an outbound queue of
    /// [`DEFAULT_QUEUE_CAPACITY`](Self::DEFAULT_QUEUE_CAPACITY) messages sent in
    /// pipelines of up to 256, reconnection backoff from 50 ms to 2 s, a 2 s connect
    /// timeout and a liveness ping on the subscription every 5 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "etp".to_owned(),
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            batch: 256,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(5),
        }
    }

    /// The Redis URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Names the channels `{prefix}:all` and `{prefix}:node:{node id}`, so that several
    /// applications (or clusters) can share one Redis server.
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many messages may wait to be published; past it, publishing fails with
    /// [`BrokerError::QueueFull`](etp_driver::cluster::BrokerError::QueueFull) and
    /// the message is dropped. At least 1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// How many queued messages go to Redis in one pipeline (at least 1).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The first and the longest wait between reconnection attempts (doubling in
    /// between).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// How long connecting (and each liveness ping) may take before it counts as
    /// failed.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often the subscription is pinged, so that a connection that died silently
    /// is noticed and replaced.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    pub(crate) fn all_channel(&self) -> String {
        format!("{}:all", self.prefix)
    }

    pub(crate) fn node_channel(&self, node: etp_driver::cluster::NodeId) -> String {
        format!("{}:node:{node}", self.prefix)
    }
}

/// `url` without its credentials, for messages and logs.
pub(crate) fn hide_password(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((scheme_user, host)) => {
            let scheme = scheme_user.split_once("://").map_or("redis", |(s, _)| s);
            format!("{scheme}://***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let config = RedisConfig::new("redis://user:secret@10.0.0.1:6379/0");
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("redis://***@10.0.0.1:6379/0"), "{shown}");
    }

    #[test]
    fn bounds_are_at_least_one() {
        let config = RedisConfig::new("redis://127.0.0.1/")
            .queue_capacity(0)
            .batch(0);
        assert_eq!((config.queue_capacity, config.batch), (1, 1));
    }
}
