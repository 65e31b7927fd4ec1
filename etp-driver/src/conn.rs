//! The connection handle the application holds: emit, ask, ping, close, rooms, data.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{self, AtomicBool, AtomicUsize};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};

use crate::config::{ConnConfig, SlowConsumerPolicy};
use crate::data::ConnData;
use crate::error::{AckError, EmitError, Error};
use crate::handler::Registry;
use crate::hub::Hub;
use crate::id::ConnId;
use crate::message::EncodedFrame;
use crate::observe;
use crate::outbox::Outbox;

/// Frames the application asks a connection's driver to send, in order, bounded in
/// bytes.
pub(crate) enum Command {
    Emit {
        name: Bytes,
        data: Bytes,
        cost: usize,
    },
    EmitWithAck {
        name: Bytes,
        data: Bytes,
        cost: usize,
        timeout: Option<Duration>,
        reply: AckSender,
    },
    Encoded {
        frame: EncodedFrame,
        cost: usize,
    },
}

impl Command {
    /// The bytes this command holds against the outbound bound.
    pub(crate) fn cost(&self) -> usize {
        match self {
            Self::Emit { cost, .. }
            | Self::EmitWithAck { cost, .. }
            | Self::Encoded { cost, .. } => *cost,
        }
    }
}

/// Orders about the connection itself. They travel apart from the frames so that a
/// backlog of frames (a peer that does not read) can never hold them up.
pub(crate) enum Control {
    Ping(oneshot::Sender<()>),
    /// Close with 1000 once in-flight handlers are done (server shutdown) or at once.
    Close {
        drain: bool,
    },
    /// The outbound bound was crossed under [`SlowConsumerPolicy::Disconnect`].
    SlowConsumer,
    /// Stop now, without a close handshake (shutdown deadline passed).
    Abort,
}

/// The driver's ends of a connection's two queues.
pub(crate) struct Receivers {
    pub(crate) commands: Arc<Outbox>,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
}

/// Where the driver sends the outcome of one `emit_with_ack`.
pub(crate) type AckSender = oneshot::Sender<Result<Bytes, AckError>>;

/// Name, separators and the longest ack id: what a frame adds to its data.
const FRAME_OVERHEAD: usize = 2 + 20 + 2;

/// The upgrade request a connection was opened with.
#[derive(Debug)]
pub struct Request {
    pub(crate) parts: http::request::Parts,
    pub(crate) remote_addr: Option<SocketAddr>,
}

impl Request {
    /// A request from its parts and the peer's address.
    ///
    /// The URI and header values are copied: a server's parser hands out slices of its
    /// read buffer, and holding one would keep that whole buffer (8 KiB in hyper)
    /// alive for the connection's life.
    pub fn new(mut parts: http::request::Parts, remote_addr: Option<SocketAddr>) -> Self {
        parts.headers = parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let value = http::HeaderValue::from_bytes(value.as_bytes()).ok()?;
                Some((name.clone(), value))
            })
            .collect();
        if let Ok(uri) = http::Uri::try_from(parts.uri.to_string()) {
            parts.uri = uri;
        }
        Self { parts, remote_addr }
    }

    /// The request method (`GET` for every accepted upgrade).
    pub fn method(&self) -> &http::Method {
        &self.parts.method
    }

    /// The request URI, with the query string.
    pub fn uri(&self) -> &http::Uri {
        &self.parts.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.parts.headers
    }

    /// Values that earlier layers (an axum/tower middleware) attached to the request.
    pub fn extensions(&self) -> &http::Extensions {
        &self.parts.extensions
    }

    /// The extensions, to attach values: an authentication hook
    /// ([`ServerBuilder::authenticate`](crate::ServerBuilder::authenticate)) puts the
    /// authenticated user here for `on_connect` and the handlers.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.parts.extensions
    }

    /// The peer's address, when the transport knows it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The value of one query parameter (first occurrence, not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.uri()
            .query()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

pub(crate) struct ConnInner {
    id: ConnId,
    request: Request,
    data: ConnData,
    commands: Arc<Outbox>,
    control: mpsc::UnboundedSender<Control>,
    /// Set after each control order is queued; lets the driver skip the channel on
    /// the reply path, where it looks for orders a handler gave before returning.
    control_sent: AtomicBool,
    /// Bytes queued in `commands` and not yet applied by the driver.
    queued: AtomicUsize,
    outbound_limit: usize,
    policy: SlowConsumerPolicy,
    closed: AtomicBool,
    hub: Option<Weak<Hub>>,
    /// Where errors found outside the driver (a typed handler's decode failure) go.
    registry: Arc<Registry>,
}

/// One etp connection: a cheap, cloneable handle (server side or client side).
///
/// Emitting never waits for the network: frames are queued for the connection's
/// driver, bounded in bytes by [`ConnConfig::outbound_limit`]. Handles stay valid after
/// the connection ends; their commands then fail with [`EmitError::Closed`].
#[derive(Clone)]
pub struct Conn {
    inner: Arc<ConnInner>,
}

impl Conn {
    pub(crate) fn new(
        request: Request,
        registry: &Arc<Registry>,
        hub: Option<Weak<Hub>>,
    ) -> (Self, Receivers) {
        let config: &ConnConfig = &registry.config;
        let commands = Arc::new(Outbox::default());
        let (control, control_rx) = mpsc::unbounded();
        let inner = ConnInner {
            id: hub
                .as_ref()
                .and_then(Weak::upgrade)
                .map_or_else(ConnId::random, |hub| hub.new_conn_id()),
            request,
            data: ConnData::default(),
            commands: commands.clone(),
            control,
            control_sent: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            outbound_limit: config.outbound_limit,
            policy: config.slow_consumer,
            closed: AtomicBool::new(false),
            hub,
            registry: registry.clone(),
        };
        let receivers = Receivers {
            commands,
            control: control_rx,
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            receivers,
        )
    }

    /// The connection id: 32 lowercase hex characters when displayed.
    pub fn id(&self) -> ConnId {
        self.inner.id
    }

    /// The upgrade request: URI with query, headers, extensions, remote address.
    pub fn request(&self) -> &Request {
        &self.inner.request
    }

    /// The per-connection data store.
    pub fn data(&self) -> &ConnData {
        &self.inner.data
    }

    /// True once the connection has ended (or is closing).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(atomic::Ordering::Acquire)
    }

    /// Emits an event without asking for an acknowledgement.
    pub fn emit(&self, name: &str, data: impl Into<Bytes>) -> Result<(), EmitError> {
        etp_proto::validate_event_name(name.as_bytes())?;
        let data = data.into();
        let cost = name.len() + data.len() + FRAME_OVERHEAD;
        let name = Bytes::copy_from_slice(name.as_bytes());
        self.send(Command::Emit { name, data, cost })
    }

    /// Emits an event and waits for the peer's acknowledgement, at most the configured
    /// default ack timeout. Fails at once with [`AckError::ConnectionClosed`] when the
    /// connection ends first.
    pub async fn emit_with_ack(
        &self,
        name: &str,
        data: impl Into<Bytes>,
    ) -> Result<Bytes, AckError> {
        self.request_ack(name, data.into(), None).await
    }

    /// [`emit_with_ack`](Self::emit_with_ack) with its own deadline.
    pub async fn emit_with_ack_timeout(
        &self,
        name: &str,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, AckError> {
        self.request_ack(name, data.into(), Some(timeout)).await
    }

    async fn request_ack(
        &self,
        name: &str,
        data: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Bytes, AckError> {
        etp_proto::validate_event_name(name.as_bytes()).map_err(EmitError::from)?;
        let (reply, answer) = oneshot::channel();
        let cost = name.len() + data.len() + FRAME_OVERHEAD;
        let name = Bytes::copy_from_slice(name.as_bytes());
        self.send(Command::EmitWithAck {
            name,
            data,
            cost,
            timeout,
            reply,
        })?;
        let timer = observe::AckTimer::start();
        // A dropped sender means the driver is gone: the connection ended.
        let outcome = answer.await.unwrap_or(Err(AckError::ConnectionClosed));
        if outcome.is_ok() {
            timer.replied();
        }
        outcome
    }

    /// Queues an already encoded frame (a broadcast); never waits.
    pub(crate) fn send_encoded(&self, frame: EncodedFrame) -> Result<(), EmitError> {
        // Never 0: `has_queued` relies on every queued command counting.
        let cost = frame.bytes().len().max(1);
        self.send(Command::Encoded { frame, cost })
    }

    /// Sends a WebSocket ping and waits for the pong.
    pub async fn ping(&self) -> Result<(), EmitError> {
        if self.is_closed() {
            return Err(EmitError::Closed);
        }
        let (done, pong) = oneshot::channel();
        self.control(Control::Ping(done));
        pong.await.map_err(|_| EmitError::Closed)
    }

    /// Closes the connection with code 1000. Pending acknowledgements fail at once; the
    /// disconnect hook runs when the close handshake ends. Closing twice is harmless.
    pub fn close(&self) {
        self.control(Control::Close { drain: false });
    }

    /// Joins a room of the server this connection belongs to (idempotent). False for
    /// client connections, which have no rooms, and for ended connections.
    pub fn join(&self, room: &str) -> bool {
        match self.hub() {
            Some(hub) if !self.is_closed() => {
                hub.join(room, self);
                true
            }
            _ => false,
        }
    }

    /// Leaves a room; true if the connection was in it.
    pub fn leave(&self, room: &str) -> bool {
        self.hub().is_some_and(|hub| hub.leave(room, self))
    }

    /// The rooms this connection is in, sorted.
    pub fn rooms(&self) -> Vec<String> {
        self.hub().map(|hub| hub.rooms_of(self)).unwrap_or_default()
    }

    /// The rooms of the server this connection belongs to, so that a handler can
    /// broadcast (`None` for client connections and once the server is gone).
    pub fn server_rooms(&self) -> Option<crate::Rooms> {
        self.hub().map(|hub| crate::Rooms { hub })
    }

    fn hub(&self) -> Option<Arc<Hub>> {
        self.inner.hub.as_ref()?.upgrade()
    }

    /// Queues a command against the outbound bound. A frame larger than the whole bound
    /// still goes out when nothing else waits: the bound is for peers that fall behind,
    /// not for big messages.
    fn send(&self, command: Command) -> Result<(), EmitError> {
        if self.is_closed() {
            return Err(EmitError::Closed);
        }
        let cost = command.cost();
        let inner = &self.inner;
        let before = inner.queued.fetch_add(cost, atomic::Ordering::AcqRel);
        observe::queue_changed(cost, true);
        if before > 0 && before + cost > inner.outbound_limit {
            observe::queue_changed(cost, false);
            inner.queued.fetch_sub(cost, atomic::Ordering::AcqRel);
            return Err(match inner.policy {
                SlowConsumerPolicy::DropNew => EmitError::QueueFull {
                    limit: inner.outbound_limit,
                },
                SlowConsumerPolicy::Disconnect => {
                    self.mark_closed();
                    self.control(Control::SlowConsumer);
                    EmitError::SlowConsumer
                }
            });
        }
        inner.commands.push(command).map_err(|_| {
            inner.queued.fetch_sub(cost, atomic::Ordering::AcqRel);
            observe::queue_changed(cost, false);
            EmitError::Closed
        })
    }

    /// True while commands wait for the driver: each holds its cost (never 0) in the
    /// count until the driver takes it. Cheaper than asking the channel.
    pub(crate) fn has_queued(&self) -> bool {
        self.inner.queued.load(atomic::Ordering::Acquire) != 0
    }

    /// The driver took a command off the queue.
    pub(crate) fn dequeued(&self, cost: usize) {
        self.inner.queued.fetch_sub(cost, atomic::Ordering::AcqRel);
        observe::queue_changed(cost, false);
    }

    /// Reports an error about this connection to the error hook.
    #[cfg_attr(not(feature = "json"), allow(dead_code))]
    pub(crate) fn report(&self, error: Error) {
        self.inner.registry.report(Some(self), error);
    }

    pub(crate) fn mark_closed(&self) {
        self.inner.closed.store(true, atomic::Ordering::Release);
    }

    pub(crate) fn control(&self, control: Control) {
        let _ = self.inner.control.unbounded_send(control);
        // After the send: whoever sees the flag finds the order in the channel.
        self.inner
            .control_sent
            .store(true, atomic::Ordering::Release);
    }

    /// True when a control order may have been queued since the last call.
    pub(crate) fn take_control_sent(&self) -> bool {
        // A load first: the flag is almost always clear, and a load costs less than
        // a swap.
        self.inner.control_sent.load(atomic::Ordering::Acquire)
            && self
                .inner
                .control_sent
                .swap(false, atomic::Ordering::AcqRel)
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.inner.id)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

// Connections are identified by their id: rooms order and deduplicate them by it.
impl PartialEq for Conn {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}

impl Eq for Conn {}

impl PartialOrd for Conn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Conn {
    fn cmp(&self, other: &Self) -> Ordering {
        self.inner.id.cmp(&other.inner.id)
    }
}

impl Hash for Conn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}
