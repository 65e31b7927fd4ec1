//! The Redis pub/sub broker: one subscription connection, one publishing connection,
//! each reconnected on its own.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etp_driver::cluster::{Broker, BrokerError, Channel, Inbox, NodeId};
use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::RedisConfig;
use crate::config::hide_password;

/// Redis could not be reached when the broker was created.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a Redis URL.
    InvalidUrl(redis::RedisError),
    /// Redis did not answer a PING (not running, wrong address, refused, auth).
    Unreachable {
        /// The URL tried (without its password).
        url: String,
        /// What the client saw.
        source: redis::RedisError,
    },
    /// Redis did not answer within the connect timeout.
    TimedOut {
        /// The URL tried (without its password).
        url: String,
        /// The connect timeout.
        timeout: Duration,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(err) => write!(f, "invalid Redis URL: {err}"),
            Self::Unreachable { url, source } => {
                write!(f, "cannot reach Redis at {url}: {source}")
            }
            Self::TimedOut { url, timeout } => {
                write!(f, "Redis at {url} did not answer within {timeout:?}")
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidUrl(err) | Self::Unreachable { source: err, .. } => Some(err),
            Self::TimedOut { .. } => None,
        }
    }
}

/// Counters of a [`RedisBroker`] (the node's own are in
/// [`ClusterStats`](etp_driver::cluster::ClusterStats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Messages Redis accepted (PUBLISH answered).
    pub published: u64,
    /// Messages refused because the outbound queue was full.
    pub dropped_queue_full: u64,
    /// Messages lost because the publishing connection failed while sending them.
    pub dropped_on_error: u64,
    /// Times the subscription was established again after a loss.
    pub resubscriptions: u64,
}

/// What the publishing task is handed.
enum Outgoing {
    Message {
        channel: Channel,
        payload: Bytes,
    },
    /// Send what is queued, then end.
    Stop,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_on_error: AtomicU64,
    resubscriptions: AtomicU64,
}

struct Inner {
    client: redis::Client,
    config: RedisConfig,
    /// The URL without its password, for messages.
    shown_url: String,
    queue: mpsc::Sender<Outgoing>,
    queue_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// The subscription is up.
    connected: AtomicBool,
    stopped: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The runtime `connect` ran on: the broker's tasks run there.
    runtime: tokio::runtime::Handle,
    counters: Counters,
}

/// A [`Broker`] over Redis pub/sub, for `ServerBuilder::cluster`.
///
/// Each node subscribes to `{prefix}:all` (broadcasts, membership, gathering
/// requests) and `{prefix}:node:{its id}` (operations on its connections, answers).
/// Publishing never waits: messages go into a bounded queue that one task sends in
/// pipelines over its own connection. Both connections reconnect with backoff; the
/// subscription is renewed and the node says hello again, and the time without it is
/// logged (a `tracing` warning) and counted, since pub/sub may have lost messages
/// meanwhile.
///
/// Its tasks run on the tokio runtime [`connect`](Self::connect) was awaited on.
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("url", &self.inner.shown_url)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Checks that Redis answers at `config`'s URL and returns the broker; it starts
    /// when the server is built with it.
    pub async fn connect(config: RedisConfig) -> Result<Self, ConnectError> {
        let client = redis::Client::open(config.url.as_str()).map_err(ConnectError::InvalidUrl)?;
        let shown_url = hide_password(&config.url);
        let timeout = config.connect_timeout;
        let ping = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&connection_config(&config))
                .await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await
        };
        match tokio::time::timeout(timeout, ping).await {
            Err(_) => {
                return Err(ConnectError::TimedOut {
                    url: shown_url,
                    timeout,
                });
            }
            Ok(Err(source)) => {
                return Err(ConnectError::Unreachable {
                    url: shown_url,
                    source,
                });
            }
            Ok(Ok(())) => {}
        }
        let (queue, queue_rx) = mpsc::channel(config.queue_capacity);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                shown_url,
                queue,
                queue_rx: Mutex::new(Some(queue_rx)),
                connected: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
                tasks: Mutex::new(Vec::new()),
                runtime: tokio::runtime::Handle::current(),
                counters: Counters::default(),
            }),
        })
    }

    /// True while the subscription is up.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// The broker's counters.
    pub fn stats(&self) -> RedisStats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisStats {
            published: load(&c.published),
            dropped_queue_full: load(&c.dropped_queue_full),
            dropped_on_error: load(&c.dropped_on_error),
            resubscriptions: load(&c.resubscriptions),
        }
    }
}

impl Broker for RedisBroker {
    fn start(&self, node: NodeId, inbox: Inbox) {
        let Some(queue_rx) = self
            .inner
            .queue_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            // Started already: one broker serves one node.
            tracing::error!("RedisBroker::start called twice; a broker serves one server");
            return;
        };
        let runtime = &self.inner.runtime;
        let subscriber = runtime.spawn(subscribe_loop(self.inner.clone(), node, inbox));
        let publisher = runtime.spawn(publish_loop(self.inner.clone(), node, queue_rx));
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tasks.push(subscriber);
        tasks.push(publisher);
    }

    fn publish(&self, channel: Channel, payload: Bytes) -> Result<(), BrokerError> {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::Acquire) {
            return Err(BrokerError::Stopped);
        }
        if !inner.connected.load(Ordering::Acquire) {
            return Err(BrokerError::Disconnected);
        }
        inner
            .queue
            .try_send(Outgoing::Message { channel, payload })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => {
                    inner
                        .counters
                        .dropped_queue_full
                        .fetch_add(1, Ordering::Relaxed);
                    BrokerError::QueueFull {
                        limit: inner.config.queue_capacity,
                    }
                }
                mpsc::error::TrySendError::Closed(_) => BrokerError::Stopped,
            })
    }

    fn stop(&self) {
        let inner = &self.inner;
        if inner.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        inner.connected.store(false, Ordering::Release);
        let mut tasks = inner.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // The subscription ends now; the publisher sends what is queued (the bye
        // among it) and ends, unless the queue is full, in which case it ends now.
        let publisher_drains = inner.queue.try_send(Outgoing::Stop).is_ok();
        for (i, task) in tasks.drain(..).enumerate() {
            if i == 0 || !publisher_drains {
                task.abort();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

fn connection_config(config: &RedisConfig) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.connect_timeout))
}

/// Exponential backoff between attempts, reset by a success.
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(config: &RedisConfig) -> Self {
        Self {
            next: config.reconnect_min,
            min: config.reconnect_min,
            max: config.reconnect_max,
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Keeps the subscription up and hands what arrives to the node.
async fn subscribe_loop(inner: Arc<Inner>, node: NodeId, inbox: Inbox) {
    let config = &inner.config;
    let channels = [config.all_channel(), config.node_channel(node)];
    let mut backoff = Backoff::new(config);
    let mut lost_at: Option<Instant> = None;
    let mut last_error = String::new();
    loop {
        if inbox.is_closed() {
            return;
        }
        match subscribe(&inner, &channels).await {
            Ok((mut sink, mut stream)) => {
                backoff.reset();
                inner.connected.store(true, Ordering::Release);
                if let Some(since) = lost_at.take() {
                    inner
                        .counters
                        .resubscriptions
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        node = %node,
                        gap_ms = since.elapsed().as_millis() as u64,
                        "etp-redis: resubscribed to Redis at {} after {:?} without a subscription; \
                         messages published by other nodes meanwhile may be lost",
                        inner.shown_url,
                        since.elapsed()
                    );
                }
                inbox.connected();
                let cause = receive(&inner, &inbox, &mut sink, &mut stream).await;
                let Some(cause) = cause else {
                    return;
                };
                inner.connected.store(false, Ordering::Release);
                lost_at = Some(Instant::now());
                inbox.disconnected();
                tracing::warn!(
                    node = %node,
                    "etp-redis: lost the subscription to Redis at {} ({cause}); reconnecting",
                    inner.shown_url
                );
            }
            Err(err) => {
                let err = err.to_string();
                // One line per kind of failure, not one per attempt.
                if err != last_error {
                    tracing::warn!(
                        node = %node,
                        "etp-redis: cannot subscribe at {}: {err}; retrying",
                        inner.shown_url
                    );
                    last_error = err;
                }
                lost_at.get_or_insert_with(Instant::now);
            }
        }
        backoff.wait().await;
    }
}

async fn subscribe(
    inner: &Inner,
    channels: &[String; 2],
) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), redis::RedisError> {
    let attempt = async {
        let (mut sink, stream) = inner.client.get_async_pubsub().await?.split();
        sink.subscribe(channels.as_slice()).await?;
        Ok((sink, stream))
    };
    match tokio::time::timeout(inner.config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect or SUBSCRIBE timed out",
        ))),
    }
}

/// Delivers messages until the subscription fails (its cause) or the node is gone
/// (`None`). A ping every `ping_interval` notices a connection that died silently.
async fn receive(
    inner: &Inner,
    inbox: &Inbox,
    sink: &mut redis::aio::PubSubSink,
    stream: &mut redis::aio::PubSubStream,
) -> Option<String> {
    let mut ping = tokio::time::interval(inner.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Some("connection closed".to_owned());
                };
                // One copy out of the client's buffer; every local member then shares it.
                inbox.deliver(Bytes::copy_from_slice(message.get_payload_bytes()));
                if inbox.is_closed() {
                    return None;
                }
            }
            _ = ping.tick() => {
                let pong = tokio::time::timeout(
                    inner.config.connect_timeout,
                    sink.ping::<redis::Value>(),
                );
                match pong.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Some(format!("ping failed: {err}")),
                    Err(_) => return Some("ping unanswered".to_owned()),
                }
                if inbox.is_closed() {
                    return None;
                }
            }
        }
    }
}

/// Sends queued messages in pipelines, reconnecting after a failure. A batch whose
/// sending failed is dropped (counted): pub/sub is at most once.
async fn publish_loop(inner: Arc<Inner>, node: NodeId, mut queue: mpsc::Receiver<Outgoing>) {
    let config = &inner.config;
    let all = config.all_channel();
    let mut backoff = Backoff::new(config);
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut batch: Vec<Outgoing> = Vec::with_capacity(config.batch);
    loop {
        if batch.is_empty() {
            let Some(first) = queue.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < config.batch {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let stop = batch.iter().any(|o| matches!(o, Outgoing::Stop));
        let mut pipe = redis::pipe();
        let mut count = 0u64;
        for outgoing in &batch {
            if let Outgoing::Message { channel, payload } = outgoing {
                let name = match channel {
                    Channel::All => all.clone(),
                    Channel::Node(node) => config.node_channel(*node),
                };
                pipe.cmd("PUBLISH").arg(name).arg(payload.as_ref()).ignore();
                count += 1;
            }
        }
        let connection = match conn.as_mut() {
            Some(connection) => connection,
            None => match inner
                .client
                .get_multiplexed_async_connection_with_config(&connection_config(config))
                .await
            {
                Ok(connection) => conn.insert(connection),
                Err(_) if stop => return,
                Err(_) => {
                    // Messages queued while Redis is away are stale by the time it is
                    // back: drop this batch rather than deliver it late.
                    inner
                        .counters
                        .dropped_on_error
                        .fetch_add(count, Ordering::Relaxed);
                    batch.clear();
                    backoff.wait().await;
                    continue;
                }
            },
        };
        match pipe.query_async::<()>(connection).await {
            Ok(()) => {
                backoff.reset();
                inner.counters.published.fetch_add(count, Ordering::Relaxed);
            }
            Err(err) => {
                inner
                    .counters
                    .dropped_on_error
                    .fetch_add(count, Ordering::Relaxed);
                tracing::warn!(
                    node = %node,
                    "etp-redis: publishing to {} failed ({err}); {count} messages dropped, reconnecting",
                    inner.shown_url
                );
                conn = None;
            }
        }
        batch.clear();
        if stop {
            return;
        }
    }
}
