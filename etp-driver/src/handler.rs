//! Event handlers, hooks, and the registry that holds them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use etp_proto::EventMessage;

use crate::config::ConnConfig;
use crate::conn::Conn;
use crate::error::{DisconnectReason, Error};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An event as a handler receives it: name and data read in place from the received
/// message, which the event holds whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    message: EventMessage,
}

impl Event {
    /// An event from its name and data (`None`: the frame had no data part). Data
    /// that is not empty is copied after the name into one buffer, the form received
    /// events have.
    pub fn new(name: Bytes, data: Option<Bytes>) -> Self {
        Self {
            message: EventMessage::new(name, data),
        }
    }

    /// A received event, its message whole.
    pub(crate) fn received(message: EventMessage) -> Self {
        Self { message }
    }

    /// The event name as bytes.
    pub fn name_bytes(&self) -> &[u8] {
        self.message.name()
    }

    /// The event name as text (invalid UTF-8 replaced).
    pub fn name(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.message.name())
    }

    /// The data (empty when the frame had none).
    pub fn data(&self) -> &[u8] {
        self.message.data_or_empty()
    }

    /// True when the frame had a data part (`name||id||data`, even empty), false for
    /// the 2-part form `name||id`.
    pub fn has_data(&self) -> bool {
        self.message.data().is_some()
    }

    /// The data as a shared buffer, without copying.
    pub fn into_data(self) -> Bytes {
        self.message.into_data().unwrap_or_default()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .field("data_len", &self.message.data().map(<[u8]>::len))
            .finish()
    }
}

/// What a handler may return: the acknowledgement's data, sent when the peer asked
/// for one (and ignored otherwise).
pub trait IntoAck {
    /// The reply data.
    fn into_ack(self) -> Bytes;
}

impl IntoAck for () {
    fn into_ack(self) -> Bytes {
        Bytes::new()
    }
}

impl IntoAck for Bytes {
    fn into_ack(self) -> Bytes {
        self
    }
}

impl IntoAck for Vec<u8> {
    fn into_ack(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoAck for String {
    fn into_ack(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoAck for &'static str {
    fn into_ack(self) -> Bytes {
        Bytes::from_static(self.as_bytes())
    }
}

impl IntoAck for &'static [u8] {
    fn into_ack(self) -> Bytes {
        Bytes::from_static(self)
    }
}

impl<T: IntoAck> IntoAck for Option<T> {
    fn into_ack(self) -> Bytes {
        self.map(IntoAck::into_ack).unwrap_or_default()
    }
}

/// What calling a [`Handler`] gives: the acknowledgement data at once, or a future of
/// it that the connection runs.
pub enum Call {
    /// The handler finished: its acknowledgement data.
    Done(Bytes),
    /// The handler runs on: the connection polls this and answers with its output.
    Async(BoxFuture<Bytes>),
}

impl Call {
    /// The async form's call: `future`, boxed, its output turned into ack data.
    pub(crate) fn of_future<Fut>(future: Fut) -> Self
    where
        Fut: Future + Send + 'static,
        Fut::Output: IntoAck,
    {
        Self::Async(Box::pin(async move { future.await.into_ack() }))
    }
}

/// An event handler: a function of the connection and the event whose result is the
/// acknowledgement data.
///
/// Two forms, told apart by the connection argument:
///
/// * **async**, `Fn(Conn, Event) -> impl Future<Output = impl IntoAck>`: may await
///   (an acknowledgement from the peer, a database). A future that finishes on its first
///   poll is answered at once; one that waits runs beside the connection's other
///   handlers (up to `handler_concurrency`).
/// * **immediate**, `Fn(&Conn, Event) -> impl IntoAck`: runs to completion on the
///   connection's task while the event is read, with no future to allocate and no
///   connection handle to clone: the cheapest form, for handlers that only compute,
///   emit, join rooms or broadcast. It must not block: the connection reads nothing
///   else until it returns.
///
/// With the `json` feature the same two forms take `Json<T>` instead of `Event`, which
/// decodes the data first. `Args` only tells the forms apart; the registry stores and
/// calls them all the same way.
///
/// ```
/// use etp_driver::{Conn, Event, Handler};
///
/// async fn hello(conn: Conn, event: Event) -> String {
///     format!("hello {}, you sent {} bytes", conn.id(), event.data().len())
/// }
/// fn echo(_conn: &Conn, event: Event) -> etp_driver::Bytes {
///     event.into_data()
/// }
/// fn assert_handler<A>(_: impl Handler<A>) {}
/// assert_handler(hello);
/// assert_handler(echo);
/// assert_handler(|_conn: Conn, _event: Event| async {});
/// assert_handler(|conn: &Conn, _event: Event| conn.id().to_string());
/// ```
pub trait Handler<Args = (Conn, Event)>: Send + Sync + 'static {
    /// Runs the handler for one event.
    fn call(&self, conn: &Conn, event: Event) -> Call;
}

impl<F, Fut> Handler<(Conn, Event)> for F
where
    F: Fn(Conn, Event) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoAck,
{
    fn call(&self, conn: &Conn, event: Event) -> Call {
        Call::of_future(self(conn.clone(), event))
    }
}

impl<F, R> Handler<fn(&Conn, Event)> for F
where
    F: Fn(&Conn, Event) -> R + Send + Sync + 'static,
    R: IntoAck,
{
    #[inline]
    fn call(&self, conn: &Conn, event: Event) -> Call {
        Call::Done(self(conn, event).into_ack())
    }
}

/// A handler of any argument form, stored as the one form the registry holds. The
/// call goes straight to the wrapped handler (no extra allocation or indirection).
pub(crate) struct Erased<H, A> {
    handler: H,
    // `fn() -> A`: the wrapper is Send and Sync whatever `A` is.
    form: PhantomData<fn() -> A>,
}

impl<H: Handler<A>, A: 'static> Erased<H, A> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            form: PhantomData,
        }
    }
}

impl<H: Handler<A>, A: 'static> Handler for Erased<H, A> {
    #[inline]
    fn call(&self, conn: &Conn, event: Event) -> Call {
        self.handler.call(conn, event)
    }
}

pub(crate) type ConnectHook = Arc<dyn Fn(Conn) -> BoxFuture<()> + Send + Sync>;
pub(crate) type DisconnectHook = Arc<dyn Fn(Conn, DisconnectReason) -> BoxFuture<()> + Send + Sync>;
pub(crate) type ErrorHook = Arc<dyn Fn(Option<Conn>, Error) + Send + Sync>;

/// A multiply-rotate hash over event names, a word at a time (FxHash's mixing): names
/// are short and looked up once per event. The table only holds names the application
/// registered; a peer's names are only looked up, so it cannot make collisions pile
/// up, and the DoS-resistant default hasher would buy nothing here for a few percent
/// of a small event's time.
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl NameHasher {
    const SEED: u64 = 0x517c_c1b7_2722_0a95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.add(u64::from_le_bytes(le));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut le = [0u8; 8];
            le[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(le));
        }
    }

    // The slice's length prefix: one word, not eight bytes.
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// A handler and the name it was registered under.
pub(crate) type NamedHandler = (Box<[u8]>, Arc<dyn Handler>);

/// Handlers by event name. A handful of names (most applications) are found fastest
/// by comparing them in turn, by their keys; more are hashed.
#[derive(Clone)]
pub(crate) enum HandlerTable {
    /// `keys[i]` is the key of `entries[i].0`. The keys sit apart from the names so
    /// that a lookup reads one small array, and follows a pointer to a registered
    /// name only for names longer than a key holds.
    Few {
        keys: Vec<NameKey>,
        entries: Vec<NamedHandler>,
    },
    Many(HashMap<Box<[u8]>, Arc<dyn Handler>, BuildHasherDefault<NameHasher>>),
}

impl HandlerTable {
    /// Up to this many names are compared in turn: below it the comparisons cost less
    /// than hashing the name.
    const FEW: usize = 8;

    /// Registers `handler` under `name`, replacing any handler of that name.
    pub(crate) fn insert(&mut self, name: Box<[u8]>, handler: Arc<dyn Handler>) {
        match self {
            Self::Few { keys, entries } => {
                if let Some(entry) = entries.iter_mut().find(|(n, _)| *n == name) {
                    entry.1 = handler;
                } else if entries.len() < Self::FEW {
                    keys.push(NameKey::of(&name));
                    entries.push((name, handler));
                } else {
                    let mut map: HashMap<_, _, _> = entries.drain(..).collect();
                    map.insert(name, handler);
                    *self = Self::Many(map);
                }
            }
            Self::Many(map) => {
                map.insert(name, handler);
            }
        }
    }

    /// The handler registered under `name`, with the name as registered.
    // Left to the compiler, which keeps it out of the driver's dispatch. Forced
    // inline it saved 19 instructions per event and lost 8-15 % of one connection's
    // fire rate (pinned): on this path code layout moves the time more than the count.
    pub(crate) fn get(&self, name: &[u8]) -> Option<(&[u8], &Arc<dyn Handler>)> {
        match self {
            Self::Few { keys, entries } => {
                let key = NameKey::of(name);
                keys.iter()
                    .zip(entries)
                    .find(|(k, (n, _))| {
                        **k == key && (name.len() <= NameKey::EXACT || **n == *name)
                    })
                    .map(|(_, (n, handler))| (&**n, handler))
            }
            Self::Many(map) => map.get_key_value(name).map(|(n, handler)| (&**n, handler)),
        }
    }
}

/// An event name's length and up to 16 of its bytes, in two words: names of up to
/// [`EXACT`](Self::EXACT) bytes are equal exactly when their keys are; longer names
/// with equal keys must still be compared in full.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct NameKey {
    len: usize,
    head: u64,
    tail: u64,
}

impl NameKey {
    /// The longest name a key tells apart from every other.
    const EXACT: usize = 16;

    /// Two overlapping loads cover 4 to 16 bytes without a loop or a `memcpy` call.
    #[inline(always)]
    fn of(name: &[u8]) -> Self {
        fn word<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
            bytes[at..at + N].try_into().expect("N bytes")
        }
        let len = name.len();
        let (head, tail) = match len {
            8.. => (
                u64::from_le_bytes(word(name, 0)),
                u64::from_le_bytes(word(name, len - 8)),
            ),
            4..=7 => {
                let first = u32::from_le_bytes(word(name, 0));
                let last = u32::from_le_bytes(word(name, len - 4));
                (u64::from(first) | u64::from(last) << 32, 0)
            }
            _ => (name.iter().fold(0, |key, &b| key << 8 | u64::from(b)), 0),
        };
        Self { len, head, tail }
    }
}

impl Default for HandlerTable {
    fn default() -> Self {
        Self::Few {
            keys: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// A handler found for an event, and the name it was registered under (`None` for the
/// fallback).
pub(crate) type FoundHandler<'a> = (&'a Arc<dyn Handler>, Option<&'a [u8]>);

/// Handlers, hooks and settings shared by every connection of a server or client.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    pub(crate) handlers: HandlerTable,
    pub(crate) unknown: Option<Arc<dyn Handler>>,
    pub(crate) on_connect: Option<ConnectHook>,
    pub(crate) on_disconnect: Option<DisconnectHook>,
    pub(crate) on_error: Option<ErrorHook>,
    pub(crate) config: ConnConfig,
    /// The first invalid registration, reported by `build`.
    pub(crate) invalid: Option<BuildError>,
}

/// A server or client could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A handler was registered under a name that cannot travel on the wire.
    InvalidEventName {
        /// The name given to `on`.
        event: String,
        /// Why it cannot be used.
        error: etp_proto::NameError,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEventName { event, error } => {
                write!(f, "cannot register a handler for {event:?}: {error}")
            }
        }
    }
}

impl std::error::Error for BuildError {}

impl Registry {
    /// The handler for an event name with the name it was registered under, or the
    /// fallback (registered under no name).
    pub(crate) fn handler(&self, name: &[u8]) -> Option<FoundHandler<'_>> {
        match self.handlers.get(name) {
            Some((registered, handler)) => Some((handler, Some(registered))),
            None => self.unknown.as_ref().map(|handler| (handler, None)),
        }
    }

    pub(crate) fn report(&self, conn: Option<&Conn>, error: Error) {
        crate::observe::error_reported(&error);
        if let Some(hook) = &self.on_error {
            // The error hook is the last line of reporting: a panic inside it must not
            // take the connection down with it.
            let hook = hook.clone();
            let conn = conn.cloned();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(conn, error)));
        }
    }
}

/// The builder methods that servers and clients share, written once.
macro_rules! hook_builder_methods {
    () => {
        /// Registers the handler for `event`; its return value is the acknowledgement
        /// data. A name that cannot be sent on the wire (containing `||`, ending with
        /// `|`, starting with `__ack_`) makes `build` fail with a clear error.
        ///
        /// The handler is async, `(Conn, Event)`, or immediate, `(&Conn, Event)`: no
        /// future, run to completion as the event is read, the cheapest form for
        /// handlers that do not wait (see `Handler`). With the `json` feature either
        /// form may take `Json<T>` instead of `Event`: the data decoded from JSON, a
        /// decode failure going to the error hook as `Error::Decode` (the handler does
        /// not run, a request gets an empty acknowledgement).
        pub fn on<A: 'static>(mut self, event: &str, handler: impl $crate::Handler<A>) -> Self {
            match etp_proto::validate_event_name(event.as_bytes()) {
                Ok(()) => {
                    self.registry.handlers.insert(
                        event.as_bytes().into(),
                        std::sync::Arc::new($crate::handler::Erased::new(handler)),
                    );
                }
                Err(err) => {
                    self.registry
                        .invalid
                        .get_or_insert($crate::BuildError::InvalidEventName {
                            event: event.to_owned(),
                            error: err,
                        });
                }
            }
            self
        }

        /// The fallback for events without a handler (Go's `OnUnknownEvent`). Without
        /// it such events are dropped (and ack requests answered with empty data).
        pub fn on_unknown_event<A: 'static>(mut self, handler: impl $crate::Handler<A>) -> Self {
            self.registry.unknown =
                Some(std::sync::Arc::new($crate::handler::Erased::new(handler)));
            self
        }

        /// Runs when a connection opens, before its first frame is read. It may emit,
        /// join rooms and fill the data store; it must not await an acknowledgement
        /// from the peer, whose reply would only be read after the hook returns.
        pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
        where
            F: Fn($crate::Conn) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = ()> + Send + 'static,
        {
            self.registry.on_connect = Some(std::sync::Arc::new(move |conn| Box::pin(hook(conn))));
            self
        }

        /// Runs exactly once when a connection ends, while it is still in its rooms.
        pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
        where
            F: Fn($crate::Conn, $crate::DisconnectReason) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = ()> + Send + 'static,
        {
            self.registry.on_disconnect = Some(std::sync::Arc::new(move |conn, reason| {
                Box::pin(hook(conn, reason))
            }));
            self
        }

        /// Hears every error: malformed frames, panics, refused upgrades (then without
        /// a connection).
        pub fn on_error<F>(mut self, hook: F) -> Self
        where
            F: Fn(Option<$crate::Conn>, $crate::Error) + Send + Sync + 'static,
        {
            self.registry.on_error = Some(std::sync::Arc::new(hook));
            self
        }

        /// The longest message accepted, in bytes (default 1 MiB); longer ones close
        /// the connection with 1009. `None`: unlimited.
        pub fn read_limit(mut self, limit: Option<usize>) -> Self {
            self.registry.config.session.read_limit = limit;
            self
        }

        /// How long `emit_with_ack` waits by default (30 s unless set).
        pub fn ack_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.registry.config.session.ack_timeout = timeout;
            self
        }

        /// The most acknowledgements awaited at once per connection (default 1024).
        pub fn max_pending_acks(mut self, limit: usize) -> Self {
            self.registry.config.session.max_pending_acks = limit;
            self
        }

        /// Handlers running at once per connection (default 64; 1 = strict order).
        /// At the bound the connection stops reading.
        pub fn handler_concurrency(mut self, limit: usize) -> Self {
            self.registry.config.handler_concurrency = limit.max(1);
            self
        }

        /// Bytes that may wait to be written per connection, and what happens past it.
        pub fn outbound_limit(mut self, bytes: usize, policy: $crate::SlowConsumerPolicy) -> Self {
            self.registry.config.outbound_limit = bytes;
            self.registry.config.slow_consumer = policy;
            self
        }

        /// Keepalive: ping after `interval` of silence; close when nothing arrived for
        /// `idle_timeout`.
        pub fn keepalive(
            mut self,
            interval: std::time::Duration,
            idle_timeout: std::time::Duration,
        ) -> Self {
            self.registry.config.session.ping_interval = Some(interval);
            self.registry.config.session.idle_timeout = Some(idle_timeout);
            self
        }

        /// Always write the third `||` (`ev||0||`), for the JavaScript client 2.0.2.
        pub fn js_compatible(mut self, on: bool) -> Self {
            self.registry.config.session.encoding = if on {
                etp_proto::Encoding::ThreePart
            } else {
                etp_proto::Encoding::Compact
            };
            self
        }

        /// Replaces every per-connection setting at once.
        pub fn conn_config(mut self, config: $crate::ConnConfig) -> Self {
            self.registry.config = config;
            self
        }
    };
}
pub(crate) use hook_builder_methods;

#[cfg(test)]
mod name_hasher_tests {
    use super::*;

    fn noop(_: &Conn, _: Event) {}

    /// Every name a key holds whole (up to 16 bytes): its key differs from the key of
    /// the name with any one byte changed, and from the key of its prefix.
    #[test]
    fn name_keys_tell_every_byte_apart() {
        let text = b"abcdefghijklmnopqrstu";
        for len in 0..=NameKey::EXACT {
            let name = &text[..len];
            let key = NameKey::of(name);
            for at in 0..len {
                let mut other = name.to_vec();
                other[at] ^= 0x20;
                assert_ne!(key, NameKey::of(&other), "{len} at {at}");
            }
            if len > 0 {
                assert_ne!(key, NameKey::of(&name[..len - 1]), "{len}");
            }
        }
    }

    /// Two long names with the same length, first and last eight bytes share a key;
    /// the lookup still tells them apart.
    #[test]
    fn long_names_with_one_key_are_compared_in_full() {
        let (a, b) = (&b"abcdefgh-1-ijklmnop"[..], &b"abcdefgh-2-ijklmnop"[..]);
        assert_eq!(NameKey::of(a), NameKey::of(b));
        let mut registry = Registry::default();
        let (first, second): (Arc<dyn Handler>, Arc<dyn Handler>) =
            (Arc::new(Erased::new(noop)), Arc::new(Erased::new(noop)));
        registry.handlers.insert(a.into(), first.clone());
        registry.handlers.insert(b.into(), second.clone());
        assert!(Arc::ptr_eq(registry.handler(a).expect("a").0, &first));
        assert!(Arc::ptr_eq(registry.handler(b).expect("b").0, &second));
        assert!(registry.handler(b"abcdefgh-3-ijklmnop").is_none());
    }

    /// Names on both sides of the hasher's 8-byte word boundary, and names that differ
    /// only in trailing zero bytes or length, are all found, and only under their own
    /// name: in tables of every size, compared in turn or hashed, and across the
    /// change from one to the other. Registering a name again replaces its handler.
    #[test]
    fn every_registered_name_is_found_under_its_own_name_only() {
        let names: [&[u8]; 12] = [
            b"",
            b"a",
            b"a\0",
            b"abcdefg",
            b"abcdefgh",
            b"abcdefghi",
            b"abcdefgh\0",
            b"0123456789abcdef",
            b"0123456789abcdef0",
            b"echo",
            b"ecko",
            b"count",
        ];
        let new_handler = || -> Arc<dyn Handler> { Arc::new(Erased::new(noop)) };
        for size in 0..=names.len() {
            let mut registry = Registry::default();
            let mut handlers = Vec::new();
            for name in &names[..size] {
                // A first registration that the second replaces.
                registry.handlers.insert((*name).into(), new_handler());
                let handler = new_handler();
                handlers.push(handler.clone());
                registry.handlers.insert((*name).into(), handler);
            }
            assert_eq!(
                matches!(registry.handlers, HandlerTable::Few { .. }),
                size <= HandlerTable::FEW
            );
            for (name, handler) in names.iter().zip(&handlers) {
                let (found, registered) = registry.handler(name).expect("registered");
                assert!(Arc::ptr_eq(found, handler), "{size}: {name:?}");
                assert_eq!(registered, Some(*name));
            }
            for missing in names[size..].iter().copied().chain([
                &b"b"[..],
                b"abcdefgh\0\0",
                b"\0",
                b"abcdefghij",
                b"echo\0",
            ]) {
                assert!(registry.handler(missing).is_none(), "{size}: {missing:?}");
            }
        }
    }
}
