//! The per-connection protocol state machine.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::acks::AckTable;
use crate::config::Config;
use crate::error::{ProtocolError, SendError};
use crate::frame::{self, ACK_PREFIX, Layout};
use crate::output::{AckFailure, CloseReason, Output, Received, ReplyToken};

/// Capacity kept for encoding outbound frames; frames are split off it, so one
/// allocation serves many small frames.
const ENCODE_CHUNK: usize = 4096;

/// One etp connection's protocol state: frames in, commands in, outputs out.
///
/// A `Session` does no IO, reads no clock and spawns nothing. Its methods come in four
/// kinds:
///
/// * **Inputs** (`handle_*`) feed it what happened: [`handle_message`](Self::handle_message)
///   for every WebSocket data message (text or binary), or
///   [`receive`](Self::receive), which returns the event instead of queuing it (a
///   driver that dispatches each event as it reads saves a trip through the queue),
///   [`handle_pong`](Self::handle_pong)
///   for every pong (or other sign of life), [`handle_timeout`](Self::handle_timeout)
///   when the timer from `poll_timeout` fires, and
///   [`handle_transport_closed`](Self::handle_transport_closed) when the socket is gone.
/// * **Commands** come from the application: [`emit`](Self::emit),
///   [`emit_with_ack`](Self::emit_with_ack), [`ack`](Self::ack),
///   [`send_encoded`](Self::send_encoded), [`cancel_ack`](Self::cancel_ack),
///   [`retain_acks`](Self::retain_acks) and [`close`](Self::close).
/// * **Outputs** (`poll_*`) say what to do: [`poll_output`](Self::poll_output) yields
///   [`Output`]s in order, [`poll_timeout`](Self::poll_timeout) the next deadline.
/// * **Getters** (`&self`) report state: [`is_closed`](Self::is_closed),
///   [`pending_acks`](Self::pending_acks), [`config`](Self::config).
///
/// # The drive contract
///
/// 1. Create the session with [`Session::new`] when the WebSocket opens.
/// 2. After **every** input or command, drain [`poll_output`](Self::poll_output) until
///    it returns `None`, carrying out each output in order:
///    * [`Output::Transmit`]: send the bytes as one WebSocket message (text when they
///      are valid UTF-8, binary otherwise: Go peers accept both);
///    * [`Output::Event`]: run the handler for the name; if the event carries a
///      [`ReplyToken`], answer it with [`ack`](Self::ack) (with empty data when there
///      is no handler: every ack request is answered);
///    * [`Output::AckResolved`] / [`Output::AckFailed`]: complete the request whose
///      context `C` comes back;
///    * [`Output::Ping`]: send a WebSocket ping;
///    * [`Output::Close`]: send a close frame with the reason's code and text, then stop
///      reading once the peer's close arrives.
/// 3. Then ask [`poll_timeout`](Self::poll_timeout) and arm one timer for that instant
///    (replacing the previous one); when it fires, call
///    [`handle_timeout`](Self::handle_timeout) and go to step 2.
/// 4. When the socket ends for any reason, call
///    [`handle_transport_closed`](Self::handle_transport_closed) and drain once more:
///    awaited acknowledgements fail at once with [`AckFailure::ConnectionClosed`].
///
/// Every [`emit_with_ack`](Self::emit_with_ack) that returns `Ok` ends exactly once: in
/// `AckResolved`, in `AckFailed`, or by [`cancel_ack`](Self::cancel_ack) /
/// [`retain_acks`](Self::retain_acks).
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use etp_proto::{Config, Output, Session};
///
/// let now = Instant::now();
/// let mut session: Session<&str> = Session::new(Config::default(), now);
///
/// // A command, then drain.
/// let id = session.emit_with_ack(b"hello", b"world", "my request", None, now).unwrap();
/// assert!(matches!(session.poll_output(), Some(Output::Transmit(f)) if f == "hello||1||world"));
/// assert!(session.poll_output().is_none());
/// assert_eq!(session.poll_timeout(), Some(now + Duration::from_secs(30)));
///
/// // An input (the peer's reply), then drain.
/// session.handle_message(Bytes::from_static(b"__ack_hello||1||hi"), now).unwrap();
/// match session.poll_output() {
///     Some(Output::AckResolved { ctx, data }) => {
///         assert_eq!(ctx, "my request");
///         assert_eq!(data.unwrap(), "hi");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(id, 1);
/// assert_eq!(session.poll_timeout(), None);
/// ```
#[derive(Debug)]
pub struct Session<C> {
    config: Config,
    open: bool,
    outputs: VecDeque<Output<C>>,
    encode_buf: BytesMut,
    acks: AckTable<C>,
    keepalive: Keepalive,
}

/// When we last heard from the peer and last pinged it.
#[derive(Debug)]
struct Keepalive {
    last_received: Instant,
    last_ping: Option<Instant>,
}

impl<C> Session<C> {
    /// A session for a WebSocket that opened at `now`.
    pub fn new(config: Config, now: Instant) -> Self {
        Self {
            acks: AckTable::new(config.max_pending_acks),
            config,
            open: true,
            outputs: VecDeque::new(),
            encode_buf: BytesMut::new(),
            keepalive: Keepalive {
                last_received: now,
                last_ping: None,
            },
        }
    }

    // ---- getters ----

    /// The settings this session was created with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True once the session was closed (by [`close`](Self::close), the transport, an
    /// idle timeout or a fatal protocol error). Commands then fail with
    /// [`SendError::Closed`] and inbound messages are ignored.
    pub fn is_closed(&self) -> bool {
        !self.open
    }

    /// How many acknowledgements are awaited.
    pub fn pending_acks(&self) -> usize {
        self.acks.len()
    }

    /// True when [`poll_output`](Self::poll_output) has something to return.
    #[inline]
    pub fn has_output(&self) -> bool {
        !self.outputs.is_empty()
    }

    // ---- inputs ----

    /// Feeds one received WebSocket data message (text or binary).
    ///
    /// An event becomes [`Output::Event`]; a reply (`__ack_` name) resolves the request
    /// with that id and is never dispatched; a reply whose id is not awaited (unknown,
    /// late or duplicate) is dropped silently. A malformed frame returns
    /// [`ProtocolError::Frame`] and the session stays usable; a message over the read
    /// limit returns [`ProtocolError::MessageTooLarge`] and closes the session.
    /// Messages that arrive after the session closed are ignored.
    pub fn handle_message(&mut self, message: Bytes, now: Instant) -> Result<(), ProtocolError> {
        if let Some(received) = self.receive(message, now)? {
            self.outputs.push_back(Output::Event(received.into_event()));
        }
        Ok(())
    }

    /// [`handle_message`](Self::handle_message), except that an event is returned
    /// to the caller instead of being queued as [`Output::Event`]: for drivers that
    /// dispatch each event as it is read. The event keeps its message whole
    /// ([`EventMessage`](crate::EventMessage)); [`Received::into_event`] cuts it as
    /// `handle_message` does.
    ///
    /// Everything else is as in `handle_message`: a reply resolves its request (an
    /// [`Output::AckResolved`]), a frame over the read limit closes the session. The
    /// event comes after every output queued before this call, so a driver that
    /// drains [`poll_output`](Self::poll_output) before each call keeps their order.
    // Inlined into a driver's read loop, the parse shares the loop's registers and the
    // event is built in the caller's frame: 2 % fewer instructions per small event.
    #[inline(always)]
    pub fn receive(
        &mut self,
        message: Bytes,
        now: Instant,
    ) -> Result<Option<Received>, ProtocolError> {
        if !self.open {
            return Ok(None);
        }
        self.keepalive.last_received = now;
        if let Some(limit) = self.config.read_limit
            && message.len() > limit
        {
            let len = message.len();
            self.close_with(CloseReason::MessageTooLarge { limit });
            return Err(ProtocolError::MessageTooLarge { limit, len });
        }
        let layout = Layout::of(&message, true)?;
        if message.starts_with(ACK_PREFIX) {
            if let Some(ctx) = self.acks.remove(layout.ack_id) {
                // A reply's name is not needed: its data is taken without cutting.
                let data = layout.message(message).into_data();
                self.outputs.push_back(Output::AckResolved { ctx, data });
            }
            return Ok(None);
        }
        let id = layout.ack_id;
        let reply = (id != 0).then(|| match layout.head_end {
            Some(end) => ReplyToken::from_head(message.slice(..end), layout.name_end, id),
            None => ReplyToken::new(message.slice(..layout.name_end), id),
        });
        Ok(Some(Received {
            message: layout.message(message),
            reply,
        }))
    }

    /// Records a pong (or any other sign that the peer is alive) for the keepalive.
    pub fn handle_pong(&mut self, now: Instant) {
        if self.open {
            self.keepalive.last_received = now;
        }
    }

    /// Fires every deadline at or before `now`: acknowledgements time out, a keepalive
    /// ping is queued, or the session closes for idleness.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, ctx)) = self.acks.pop_expired(now) {
            self.outputs.push_back(Output::AckFailed {
                ctx,
                cause: AckFailure::TimedOut,
            });
        }
        if !self.open {
            return;
        }
        if self.idle_deadline().is_some_and(|at| at <= now) {
            self.close_with(CloseReason::IdleTimeout);
        } else if self.ping_deadline().is_some_and(|at| at <= now) {
            self.keepalive.last_ping = Some(now);
            self.outputs.push_back(Output::Ping);
        }
    }

    /// Records that the WebSocket is gone (closed by the peer, or the connection was
    /// lost): every awaited acknowledgement fails with [`AckFailure::ConnectionClosed`].
    pub fn handle_transport_closed(&mut self, _now: Instant) {
        self.open = false;
        self.fail_all_pending();
    }

    // ---- commands ----

    /// Emits an event that wants no acknowledgement (ack id 0).
    pub fn emit(&mut self, name: &[u8], data: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        frame::encode_event(
            name,
            0,
            data,
            self.config.encoding,
            self.encode_buf(name.len() + data.len()),
        )?;
        self.queue_encoded();
        Ok(())
    }

    /// Emits an event and awaits the peer's acknowledgement, returning the ack id.
    ///
    /// `ctx` comes back exactly once, in [`Output::AckResolved`] or
    /// [`Output::AckFailed`] (or from [`cancel_ack`](Self::cancel_ack)). The request
    /// times out `timeout` after `now`, or [`Config::ack_timeout`] after it when
    /// `timeout` is `None`. On error nothing is sent and `ctx` is dropped.
    pub fn emit_with_ack(
        &mut self,
        name: &[u8],
        data: &[u8],
        ctx: C,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<u64, SendError> {
        self.check_open()?;
        frame::validate_event_name(name)?;
        if self.acks.is_full() {
            return Err(SendError::TooManyPendingAcks {
                limit: self.config.max_pending_acks,
            });
        }
        // Longer timeouts are capped so that Instant cannot overflow (Duration::MAX
        // means "wait practically forever", not "panic").
        const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        let timeout = timeout.unwrap_or(self.config.ack_timeout).min(FOREVER);
        let deadline = now.checked_add(timeout).unwrap_or(now);
        let id = self.acks.insert(ctx, deadline);
        let encoding = self.config.encoding;
        let buf = self.encode_buf(name.len() + data.len());
        frame::encode(&[name], id, data, encoding, buf);
        self.queue_encoded();
        Ok(id)
    }

    /// Answers a request the peer made, with `data` as the reply (`__ack_<name>||id`).
    pub fn ack(&mut self, reply: ReplyToken, data: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        let encoding = self.config.encoding;
        let buf = self.encode_buf(frame::ACK_PREFIX.len() + reply.head.len() + data.len());
        if reply.head.len() == reply.name_len {
            frame::encode_ack_reply(reply.name(), reply.id, data, encoding, buf);
        } else {
            frame::encode_reply_from_head(&reply.head, data, encoding, buf);
        }
        self.queue_encoded();
        Ok(())
    }

    /// Queues an already encoded frame (a broadcast encoded once for many sessions),
    /// in order with everything else this session sends.
    pub fn send_encoded(&mut self, frame: Bytes) -> Result<(), SendError> {
        self.check_open()?;
        self.outputs.push_back(Output::Transmit(frame));
        Ok(())
    }

    /// Stops awaiting the acknowledgement `id` (the caller gave up on it) and returns
    /// its context; `None` when it already ended. A reply that comes later is dropped.
    pub fn cancel_ack(&mut self, id: u64) -> Option<C> {
        self.acks.remove(id)
    }

    /// Stops awaiting every acknowledgement whose context fails `keep` (say, requests
    /// whose caller has gone away) and returns how many; like
    /// [`cancel_ack`](Self::cancel_ack), they end here, and replies that come later are
    /// dropped.
    pub fn retain_acks(&mut self, keep: impl FnMut(&C) -> bool) -> usize {
        self.acks.retain(keep)
    }

    /// Closes the session with code 1000: awaited acknowledgements fail at once and
    /// [`Output::Close`] is queued. Closing a closed session does nothing.
    pub fn close(&mut self) {
        if self.open {
            self.close_with(CloseReason::Normal);
        }
    }

    // ---- outputs ----

    /// The next thing to do, in order; `None` when there is nothing left for now.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output<C>> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let acks = self.acks.next_deadline();
        if !self.open {
            return acks;
        }
        [acks, self.idle_deadline(), self.ping_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- internals ----

    fn check_open(&self) -> Result<(), SendError> {
        if self.open {
            Ok(())
        } else {
            Err(SendError::Closed)
        }
    }

    /// The encode buffer, with room for a frame whose name and data total
    /// `name_and_data_len` bytes. When it lacks room it takes a whole ENCODE_CHUNK (or
    /// the frame's size, if larger): `reserve` reclaims the old chunk when every frame
    /// split off it was dropped, and otherwise allocates a new chunk. Reserving only
    /// what the frame needs would make `BytesMut` allocate exactly one frame's worth
    /// whenever earlier frames are still queued (`BytesMut::new` records no original
    /// capacity to fall back on): two allocations per frame from then on.
    fn encode_buf(&mut self, name_and_data_len: usize) -> &mut BytesMut {
        // Two separators and the longest ack id.
        let needed = name_and_data_len + 4 + 20;
        if self.encode_buf.capacity() < needed {
            self.encode_buf.reserve(needed.max(ENCODE_CHUNK));
        }
        &mut self.encode_buf
    }

    fn queue_encoded(&mut self) {
        let frame = self.encode_buf.split().freeze();
        self.outputs.push_back(Output::Transmit(frame));
    }

    fn close_with(&mut self, reason: CloseReason) {
        self.open = false;
        self.fail_all_pending();
        self.outputs.push_back(Output::Close(reason));
    }

    fn fail_all_pending(&mut self) {
        for (_, ctx) in self.acks.drain() {
            self.outputs.push_back(Output::AckFailed {
                ctx,
                cause: AckFailure::ConnectionClosed,
            });
        }
    }

    fn idle_deadline(&self) -> Option<Instant> {
        let timeout = self.config.idle_timeout?;
        self.keepalive.last_received.checked_add(timeout)
    }

    fn ping_deadline(&self) -> Option<Instant> {
        let interval = self.config.ping_interval?;
        let since = match self.keepalive.last_ping {
            Some(ping) => ping.max(self.keepalive.last_received),
            None => self.keepalive.last_received,
        };
        since.checked_add(interval)
    }
}
