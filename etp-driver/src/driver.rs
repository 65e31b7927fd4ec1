//! The per-connection driver: one future that moves bytes between a WebSocket and a
//! [`Session`], runs the handlers, fires the timers, and reports how the connection
//! ended.
//!
//! Reading and writing never block each other: each turn of [`Driver::poll_run`]
//! takes what is ready from every source (commands, finished handlers, the socket,
//! the timer), feeds the socket as much as it accepts, and flushes once per batch.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::stream::FuturesUnordered;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use etp_proto::{
    AckFailure, CloseReason, EventMessage, Output, ProtocolError, Received, ReplyToken, Session,
};

use crate::conn::{AckSender, Command, Conn, Control, Receivers};
use crate::error::{AckError, DisconnectReason, Error, panic_message};
use crate::handler::{BoxFuture, Call, Event, Registry};
use crate::message::{EncodedFrame, payload_len};
use crate::observe::{self, EventSpan};
use crate::outbox::Outbox;
use crate::runtime::Runtime;

/// A WebSocket as the driver needs it: a stream of received messages and a sink of
/// messages to send: the servers' [`WsStream`](crate::ws::WsStream), the clients'
/// tokio-tungstenite or async-tungstenite `WebSocketStream`.
///
/// The driver sends text as a ready, final text frame (`Message::Frame`), which
/// both write exactly like `Message::Text`: its bytes were checked for UTF-8
/// once, and `Message::Text` would check them again. A sink that is neither
/// can turn such frames back with [`as_received`](crate::as_received).
pub trait WebSocket:
    Stream<Item = Result<Message, tungstenite::Error>>
    + Sink<Message, Error = tungstenite::Error>
    + Send
    + Unpin
    + 'static
{
}

impl<T> WebSocket for T where
    T: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Send
        + Unpin
        + 'static
{
}

/// Messages read per turn before the other sources get a look in.
const READ_BATCH: usize = 32;
/// Bytes waiting for the socket above which the driver stops taking new work.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Received events that may wait for a handler slot, at least. Reading goes on while
/// they wait, so that a handler blocked on an acknowledgement from the peer still
/// receives it when the peer sent other events first.
const MIN_BACKLOG: usize = 16;
/// While acknowledgements are awaited, reading goes on past a full backlog until the
/// waiting events hold this many bytes: a handler blocked on the peer's reply must
/// not stall behind events the peer sent first. Counted with per-event overhead.
const MAX_BACKLOG_BYTES_WHILE_AWAITING: usize = 1 << 20;
/// What one waiting event costs besides its name and data (the event, its buffer's
/// bookkeeping).
const BACKLOG_EVENT_OVERHEAD: usize = 128;
/// Turns of the loop per poll before yielding to other tasks.
const TURNS_PER_POLL: usize = 16;

/// One running handler: its future, and the request it must answer.
struct HandlerTask {
    future: BoxFuture<Bytes>,
    reply: Option<ReplyToken>,
    name: Bytes,
    /// Entered while the handler runs (zero-sized without `tracing`).
    span: EventSpan,
}

/// What a finished handler leaves behind.
struct HandlerDone {
    reply: Option<ReplyToken>,
    outcome: Result<Bytes, String>,
    name: Bytes,
}

impl Future for HandlerTask {
    type Output = HandlerDone;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerDone> {
        let this = &mut *self;
        // A panicking handler is contained here and reported; the request it owed an
        // answer still gets one (empty).
        let future = &mut this.future;
        let polled = this
            .span
            .in_scope(|| std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))));
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(data)) => Ok(data),
            Err(panic) => Err(panic_message(&*panic)),
        };
        Poll::Ready(HandlerDone {
            reply: this.reply.take(),
            outcome,
            name: std::mem::take(&mut this.name),
        })
    }
}

/// How far along the close is.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Shutdown asked for: finish the running handlers, then close with 1000.
    Draining,
    /// Our close frame is queued or sent; waiting for the peer's until the deadline.
    Closing {
        deadline: Instant,
    },
}

/// Drives one connection. Created by the server or client, run by [`Driver::run`].
pub(crate) struct Driver<S, R: Runtime> {
    runtime: R,
    ws: S,
    session: Session<AckSender>,
    conn: Conn,
    commands: Arc<Outbox>,
    /// Commands taken from `commands` and not yet applied (reading them stopped at
    /// the write high-water mark), oldest first.
    taken: VecDeque<Command>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Control orders that arrived while a hook ran, applied when the loop starts.
    deferred: VecDeque<Control>,
    registry: Arc<Registry>,
    handlers: FuturesUnordered<HandlerTask>,
    max_handlers: usize,
    /// Events read while every handler slot was taken; reading pauses when it is full.
    backlog: VecDeque<Received>,
    max_backlog: usize,
    backlog_bytes: usize,
    writes: VecDeque<Message>,
    write_bytes: usize,
    /// Broadcasts handed to the session, in order, their message kind decided once
    /// for every member; used when the session gives their bytes back.
    broadcasts: VecDeque<EncodedFrame>,
    needs_flush: bool,
    /// The socket answered Pending during this poll (its waker is registered).
    socket_drained: bool,
    timer: Option<(Instant, Pin<Box<R::Sleep>>)>,
    pings: VecDeque<oneshot::Sender<()>>,
    phase: Phase,
    /// Why the connection is ending, once known; reported when the socket is done.
    reason: Option<DisconnectReason>,
    /// The peer's close frame was read.
    peer_closed: bool,
}

impl<S: WebSocket, R: Runtime> Driver<S, R> {
    pub(crate) fn new(
        runtime: R,
        ws: S,
        conn: Conn,
        receivers: Receivers,
        registry: Arc<Registry>,
    ) -> Self {
        let session = Session::new(registry.config.session.clone(), runtime.now());
        let max_handlers = registry.config.handler_concurrency.max(1);
        Self {
            runtime,
            ws,
            session,
            conn,
            commands: receivers.commands,
            taken: VecDeque::new(),
            control: receivers.control,
            deferred: VecDeque::new(),
            registry,
            handlers: FuturesUnordered::new(),
            max_handlers,
            backlog: VecDeque::new(),
            max_backlog: max_handlers.max(MIN_BACKLOG),
            backlog_bytes: 0,
            writes: VecDeque::new(),
            write_bytes: 0,
            broadcasts: VecDeque::new(),
            needs_flush: false,
            socket_drained: false,
            timer: None,
            pings: VecDeque::new(),
            phase: Phase::Open,
            reason: None,
            peer_closed: false,
        }
    }

    /// Runs `hook` (the connect hook) before the loop starts, giving up if the
    /// connection is aborted meanwhile (shutdown past its deadline). Other control
    /// orders wait for the loop.
    pub(crate) async fn before_start(&mut self, hook: impl Future<Output = ()>) {
        let hook = std::pin::pin!(hook);
        let mut hook = Some(hook);
        std::future::poll_fn(|cx| {
            if let Some(running) = hook.as_mut()
                && running.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            while let Poll::Ready(Some(control)) = self.control.poll_next_unpin(cx) {
                let abort = matches!(control, Control::Abort);
                self.deferred.push_back(control);
                if abort {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await;
    }

    /// Runs the connection until it ends. In-flight handlers are not polled after this
    /// returns; dropping the driver cancels them.
    pub(crate) async fn run(&mut self) -> DisconnectReason {
        let reason = std::future::poll_fn(|cx| self.poll_run(cx)).await;
        self.finish();
        reason
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<DisconnectReason> {
        self.socket_drained = false;
        // Once per poll, before any look at the queue: a command queued after a look
        // then wakes this task.
        self.commands.register(cx);
        for _ in 0..TURNS_PER_POLL {
            let mut progress = self.poll_control(cx);
            progress |= self.poll_commands();
            progress |= self.poll_handlers(cx);
            match self.poll_read(cx) {
                ControlFlow::Break(reason) => return Poll::Ready(reason),
                // Reading may have started handlers: they must be polled before we
                // sleep, since starting one wakes nobody.
                ControlFlow::Continue(read) => progress |= read,
            }
            progress |= self.drain_outputs();
            match self.poll_write(cx) {
                ControlFlow::Break(reason) => return Poll::Ready(reason),
                // Room in the socket may let commands and reads resume: look again.
                ControlFlow::Continue(wrote) => progress |= wrote,
            }
            match self.poll_timer(cx) {
                Poll::Ready(Some(reason)) => return Poll::Ready(reason),
                Poll::Ready(None) => progress = true,
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Still busy: let other tasks run, and come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Applies control orders; nothing holds them up.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Some(control) = self.deferred.pop_front() {
            self.apply_control(control);
            progress = true;
        }
        while let Poll::Ready(Some(control)) = self.control.poll_next_unpin(cx) {
            self.apply_control(control);
            progress = true;
        }
        progress
    }

    /// Applies queued commands while the socket keeps up.
    fn poll_commands(&mut self) -> bool {
        let mut progress = false;
        while self.write_bytes < WRITE_HIGH_WATER {
            // At the end the push to come wakes us (registered in `poll_run`).
            let Some(command) = self.next_command() else {
                break;
            };
            progress = true;
            self.apply(command);
        }
        progress
    }

    /// Applies everything already queued, whatever the socket's backlog: a handler's
    /// emits and close must take effect before its reply, as they were issued first.
    fn apply_queued(&mut self) {
        if self.conn.take_control_sent() {
            while let Ok(control) = self.control.try_recv() {
                self.apply_control(control);
            }
        }
        // Most handlers queue nothing; the count says so without touching the channel.
        if self.conn.has_queued() {
            self.apply_queued_commands();
        }
    }

    /// Takes every queued frame into the session (so a close that follows them keeps
    /// its place behind them).
    fn apply_queued_commands(&mut self) {
        while let Some(command) = self.next_command() {
            self.apply(command);
        }
    }

    /// The oldest command not yet applied: from the batch already taken, else from
    /// the outbox.
    fn next_command(&mut self) -> Option<Command> {
        if self.taken.is_empty() {
            // The queued-bytes count rises before a push: at zero the outbox is empty
            // and need not be locked.
            if !self.conn.has_queued() || !self.commands.take(&mut self.taken) {
                return None;
            }
        }
        self.taken.pop_front()
    }

    fn apply(&mut self, command: Command) {
        self.conn.dequeued(command.cost());
        observe::event_out();
        match command {
            // A frame queued just before the connection closed is dropped with it, as
            // bytes written to a closing socket would be.
            Command::Emit { name, data, .. } => drop(self.session.emit(&name, &data)),
            Command::Encoded { frame, .. } => {
                if self.session.send_encoded(frame.bytes().clone()).is_ok() {
                    // The session gives the bytes back in order with its own frames;
                    // `drain_outputs` recognises them by their memory.
                    self.broadcasts.push_back(frame);
                }
            }
            Command::EmitWithAck {
                name,
                data,
                timeout,
                reply,
                ..
            } => {
                let limit = self.session.config().max_pending_acks;
                if self.session.pending_acks() >= limit {
                    // Callers that gave up (dropped their future) free their slots.
                    self.session.retain_acks(|reply| !reply.is_canceled());
                }
                if self.session.is_closed() {
                    let _ = reply.send(Err(AckError::ConnectionClosed));
                } else if self.session.pending_acks() >= limit {
                    let _ = reply.send(Err(crate::EmitError::TooManyPendingAcks { limit }.into()));
                } else {
                    // Cannot fail now: open, under the bound, name checked by `Conn`.
                    let now = self.runtime.now();
                    let _ = self
                        .session
                        .emit_with_ack(&name, &data, reply, timeout, now);
                }
            }
        }
    }

    fn apply_control(&mut self, control: Control) {
        match control {
            Control::Ping(done) => {
                if self.phase == Phase::Open {
                    self.queue(Message::Ping(Bytes::new()));
                    self.pings.push_back(done);
                }
            }
            Control::Close { drain: false } => {
                // What was emitted before `close()` goes out before the close frame.
                self.apply_queued_commands();
                self.session.close();
            }
            Control::Close { drain: true } => {
                if self.phase == Phase::Open {
                    self.phase = Phase::Draining;
                }
            }
            Control::SlowConsumer => self.close_abnormally(
                CloseCode::Policy,
                "slow consumer",
                DisconnectReason::SlowConsumer,
            ),
            Control::Abort => {
                self.reason.get_or_insert(DisconnectReason::Shutdown);
                self.phase = Phase::Closing {
                    deadline: self.runtime.now(),
                };
            }
        }
    }

    /// Collects finished handlers and answers their requests.
    fn poll_handlers(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Poll::Ready(Some(done)) = self.handlers.poll_next_unpin(cx) {
            progress = true;
            self.finish_handler(done);
        }
        while self.handlers.len() < self.max_handlers {
            let Some(event) = self.pop_backlog() else {
                break;
            };
            self.dispatch(event);
            progress = true;
        }
        if self.phase == Phase::Draining && self.handlers.is_empty() && self.backlog.is_empty() {
            self.apply_queued_commands();
            self.session.close();
            progress = true;
        }
        progress
    }

    /// Answers a finished handler's request (after what it queued before returning).
    fn finish_handler(&mut self, done: HandlerDone) {
        let data = match done.outcome {
            Ok(data) => data,
            Err(message) => {
                let event = String::from_utf8_lossy(&done.name).into_owned();
                self.registry
                    .report(Some(&self.conn), Error::HandlerPanicked { event, message });
                Bytes::new()
            }
        };
        if let Some(reply) = done.reply {
            self.apply_queued();
            let _ = self.session.ack(reply, &data);
        }
    }

    /// Reads messages while handlers and the socket keep up: whether any was read, or
    /// why the socket is done.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> ControlFlow<DisconnectReason, bool> {
        let mut read = false;
        // One clock reading per batch: messages read together arrived together.
        let mut batch_now = None;
        // An event read now is dispatched at once (`Session::receive`): what the
        // session queued before it goes first.
        self.drain_outputs();
        for _ in 0..READ_BATCH {
            // Once the socket said Pending its waker is registered: asking again in
            // the same poll costs a failed read (a syscall on some runtimes).
            if self.reading_paused() || self.socket_drained {
                break;
            }
            let message = match self.ws.poll_next_unpin(cx) {
                Poll::Pending => {
                    self.socket_drained = true;
                    break;
                }
                Poll::Ready(None) => {
                    return ControlFlow::Break(self.ended(DisconnectReason::ConnectionLost));
                }
                Poll::Ready(Some(Err(err))) => return ControlFlow::Break(self.read_failed(err)),
                Poll::Ready(Some(Ok(message))) => message,
            };
            read = true;
            observe::bytes_in(message.len());
            let now = *batch_now.get_or_insert_with(|| self.runtime.now());
            match message {
                Message::Text(text) => self.handle(Bytes::from(text), now),
                Message::Binary(data) => self.handle(data, now),
                Message::Pong(_) => {
                    self.session.handle_pong(now);
                    if let Some(done) = self.pings.pop_front() {
                        let _ = done.send(());
                    }
                }
                Message::Ping(_) => {
                    // The stream queued the pong; it leaves with the next flush.
                    self.session.handle_pong(now);
                    self.needs_flush = true;
                }
                Message::Close(frame) => {
                    let (code, reason) = match frame {
                        Some(frame) => (u16::from(frame.code), frame.reason.as_str().to_owned()),
                        None => (1005, String::new()),
                    };
                    // Our own close ended in an idle timeout or read limit: keep that.
                    self.reason
                        .get_or_insert(DisconnectReason::Closed { code, reason });
                    self.session.handle_transport_closed(now);
                    // The peer is done: the conn is closing, and reading must not
                    // pause for the handlers any more, or the stream's end (next) is
                    // never seen and the connection outlives its peer.
                    self.conn.mark_closed();
                    self.peer_closed = true;
                    // The stream queued the echo; it leaves with the next flush.
                    self.needs_flush = true;
                }
                Message::Frame(_) => {}
            }
            // One message at a time through the session, so that the backlog check
            // above sees every event and the next event finds the queue empty. Most
            // messages (events) leave nothing queued: checked inline, no call.
            if self.session.has_output() {
                self.drain_outputs();
            }
        }
        ControlFlow::Continue(read)
    }

    /// True while the driver itself holds reading back: handlers or the socket are
    /// behind.
    fn reading_paused(&self) -> bool {
        if self.peer_closed {
            return false;
        }
        if self.write_bytes >= WRITE_HIGH_WATER {
            return true;
        }
        if self.backlog.len() < self.max_backlog {
            return false;
        }
        // A full backlog: keep reading (bounded in bytes) only while a reply we await
        // may be behind the waiting events.
        self.session.pending_acks() == 0 || self.backlog_bytes >= MAX_BACKLOG_BYTES_WHILE_AWAITING
    }

    fn pop_backlog(&mut self) -> Option<Received> {
        let event = self.backlog.pop_front()?;
        self.backlog_bytes -= backlog_cost(&event);
        Some(event)
    }

    fn handle(&mut self, message: Bytes, now: Instant) {
        match self.session.receive(message, now) {
            Ok(Some(event)) => self.on_event(event),
            Ok(None) => {}
            Err(ProtocolError::MessageTooLarge { limit, .. }) => {
                self.reason
                    .get_or_insert(DisconnectReason::ReadLimit { limit });
            }
            Err(err) => self.registry.report(Some(&self.conn), Error::Protocol(err)),
        }
    }

    /// Runs a received event's handler, or keeps the event until a slot is free.
    #[inline(always)]
    fn on_event(&mut self, event: Received) {
        observe::event_in();
        if self.phase == Phase::Open
            && self.handlers.len() < self.registry.config.handler_concurrency
        {
            self.dispatch(event);
        } else if self.phase == Phase::Open {
            self.backlog_bytes += backlog_cost(&event);
            self.backlog.push_back(event);
        } else {
            // Shutting down: no new work. A request read now is left unanswered: an
            // (empty) reply would tell the peer it was handled. It fails on the
            // peer's side with the connection-closed error when our close arrives.
            drop(event);
        }
    }

    /// Carries out the session's outputs.
    fn drain_outputs(&mut self) -> bool {
        let mut progress = false;
        while let Some(output) = self.session.poll_output() {
            progress = true;
            match output {
                Output::Transmit(frame) => {
                    let encoded = match self.broadcasts.pop_front() {
                        None => EncodedFrame::new(frame),
                        Some(broadcast) if broadcast.is(&frame) => broadcast,
                        // One of the session's own frames, queued before the next
                        // broadcast.
                        Some(broadcast) => {
                            self.broadcasts.push_front(broadcast);
                            EncodedFrame::new(frame)
                        }
                    };
                    self.queue(encoded.into_message());
                }
                // Not produced here (the driver reads with `Session::receive`), and
                // handled all the same should that change.
                Output::Event(event) => self.on_event(Received {
                    message: EventMessage::new(event.name, event.data),
                    reply: event.reply,
                }),
                Output::AckResolved { ctx, data } => {
                    let _ = ctx.send(Ok(data.unwrap_or_default()));
                }
                Output::AckFailed { ctx, cause } => {
                    let error = match cause {
                        AckFailure::TimedOut => AckError::TimedOut,
                        _ => AckError::ConnectionClosed,
                    };
                    let _ = ctx.send(Err(error));
                }
                Output::Ping => self.queue(Message::Ping(Bytes::new())),
                Output::Close(reason) => self.start_close(reason),
                _ => {}
            }
        }
        // Every frame the session held has left it, so every broadcast was matched;
        // clearing is only a guard against keeping a frame's memory alive.
        if !self.broadcasts.is_empty() {
            self.broadcasts.clear();
        }
        progress
    }

    fn dispatch(&mut self, event: Received) {
        let Received { message, reply } = event;
        // Borrowing the registry and the connection side by side avoids cloning the
        // handler's `Arc` per event.
        let (registry, conn) = (&self.registry, &self.conn);
        let Some((handler, registered)) = registry.handler(message.name()) else {
            if let Some(reply) = reply {
                let _ = self.session.ack(reply, b"");
            }
            return;
        };
        // The message moves into the handler's event. A panic report takes the name
        // from the registered name (a borrow), so only the fallback handler keeps a
        // reference to the message.
        let unknown = registered.is_none().then(|| message.clone());
        // Most handlers finish without waiting: call and poll once, here, inside one
        // `catch_unwind`, and answer at once without a task. One that waits goes to the
        // task set, which polls it again with a real waker (replacing the no-op waker
        // it saw here).
        let span = EventSpan::new(message.name(), reply.as_ref().map(ReplyToken::id));
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let started = span.in_scope(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                match handler.call(conn, Event::received(message)) {
                    Call::Done(data) => Ok(data),
                    Call::Async(mut future) => match future.as_mut().poll(&mut cx) {
                        Poll::Ready(data) => Ok(data),
                        Poll::Pending => Err(future),
                    },
                }
            }))
        });
        let event_name = || match (registered, &unknown) {
            (Some(registered), _) => Bytes::copy_from_slice(registered),
            (None, message) => message
                .as_ref()
                .map_or_else(Bytes::new, |m| Bytes::copy_from_slice(m.name())),
        };
        match started {
            Ok(Ok(data)) => {
                if let Some(reply) = reply {
                    // After what the handler queued before returning.
                    self.apply_queued();
                    let _ = self.session.ack(reply, &data);
                }
            }
            Ok(Err(future)) => {
                let name = event_name();
                self.handlers.push(HandlerTask {
                    future,
                    reply,
                    name,
                    span,
                });
            }
            Err(panic) => {
                let event = String::from_utf8_lossy(&event_name()).into_owned();
                let message = panic_message(&*panic);
                self.registry
                    .report(Some(&self.conn), Error::HandlerPanicked { event, message });
                if let Some(reply) = reply {
                    self.apply_queued();
                    let _ = self.session.ack(reply, b"");
                }
            }
        }
    }

    fn queue(&mut self, message: Message) {
        self.write_bytes += payload_len(&message);
        self.writes.push_back(message);
    }

    fn start_close(&mut self, reason: CloseReason) {
        match reason {
            CloseReason::IdleTimeout => {
                self.reason.get_or_insert(DisconnectReason::IdleTimeout);
            }
            CloseReason::MessageTooLarge { limit } => {
                self.reason
                    .get_or_insert(DisconnectReason::ReadLimit { limit });
            }
            _ => {}
        }
        let frame = CloseFrame {
            code: CloseCode::from(reason.code()),
            reason: reason.wire_reason().into(),
        };
        self.send_close(frame);
    }

    /// Closes for a reason the protocol session does not know (slow consumer, a
    /// WebSocket violation): the session ends as if the transport had gone.
    fn close_abnormally(&mut self, code: CloseCode, text: &'static str, reason: DisconnectReason) {
        self.reason.get_or_insert(reason);
        self.session.handle_transport_closed(self.runtime.now());
        self.send_close(CloseFrame {
            code,
            reason: text.into(),
        });
    }

    fn send_close(&mut self, frame: CloseFrame) {
        if matches!(self.phase, Phase::Closing { .. }) {
            return;
        }
        self.conn.mark_closed();
        // Nothing queued after the close frame may be sent, and pings will never be
        // answered.
        self.pings.clear();
        self.queue(Message::Close(Some(frame)));
        let deadline = self.runtime.now() + self.registry.config.close_timeout;
        self.phase = Phase::Closing { deadline };
    }

    /// Feeds queued messages to the socket and flushes once they are in: whether
    /// anything was handed over, or why the socket failed.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> ControlFlow<DisconnectReason, bool> {
        let mut wrote = false;
        while !self.writes.is_empty() {
            match self.ws.poll_ready_unpin(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(err)) => return ControlFlow::Break(self.write_failed(err)),
                Poll::Ready(Ok(())) => {}
            }
            let Some(message) = self.writes.pop_front() else {
                break;
            };
            let len = payload_len(&message);
            self.write_bytes -= len;
            observe::bytes_out(len);
            if let Err(err) = self.ws.start_send_unpin(message) {
                return ControlFlow::Break(self.write_failed(err));
            }
            self.needs_flush = true;
            wrote = true;
        }
        if self.needs_flush {
            match self.ws.poll_flush_unpin(cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(err)) => return ControlFlow::Break(self.write_failed(err)),
            }
        }
        ControlFlow::Continue(wrote)
    }

    /// Keeps one timer armed for the earliest deadline and fires it. `Ready(None)`: a
    /// deadline fired; `Ready(Some)`: the close handshake timed out.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Option<DisconnectReason>> {
        let close_deadline = match self.phase {
            Phase::Closing { deadline } => Some(deadline),
            _ => None,
        };
        let Some(deadline) = [self.session.poll_timeout(), close_deadline]
            .into_iter()
            .flatten()
            .min()
        else {
            self.timer = None;
            return Poll::Pending;
        };
        // A deadline that moved later keeps the armed sleep, which then fires early,
        // finds nothing due and is armed again for the new deadline. The keepalive's
        // deadlines move with every read: arming a new sleep whenever they changed
        // cost a timer registration per read batch.
        if self.timer.as_ref().is_none_or(|(at, _)| deadline < *at) {
            self.timer = Some((deadline, Box::pin(self.runtime.sleep_until(deadline))));
        }
        let Some((_, sleep)) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.timer = None;
        let now = self.runtime.now();
        if self.reading_paused() {
            // Unread pongs are our doing, not the peer's: do not call it idle.
            self.session.handle_pong(now);
        }
        if close_deadline.is_some_and(|at| at <= now) {
            let code = 1000;
            return Poll::Ready(Some(self.ended(DisconnectReason::CloseTimedOut { code })));
        }
        self.session.handle_timeout(now);
        Poll::Ready(None)
    }

    fn read_failed(&mut self, err: tungstenite::Error) -> DisconnectReason {
        use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
        let reason = match err {
            // A TCP connection that ended without a close frame: lost, not a violation.
            WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                DisconnectReason::ConnectionLost
            }
            WsError::Io(err) => DisconnectReason::Io(Arc::new(err)),
            WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                let limit = self.session.config().read_limit.unwrap_or(usize::MAX);
                let reason = etp_proto::CloseReason::MessageTooLarge { limit };
                self.best_effort_close(reason.code(), reason.wire_reason());
                DisconnectReason::ReadLimit { limit }
            }
            err => {
                let code = if matches!(err, WsError::Utf8(_)) {
                    1007
                } else {
                    1002
                };
                self.best_effort_close(code, String::new());
                DisconnectReason::WebSocket(Arc::new(err))
            }
        };
        self.ended(reason)
    }

    fn write_failed(&mut self, err: tungstenite::Error) -> DisconnectReason {
        let reason = match err {
            tungstenite::Error::Io(err) => DisconnectReason::Io(Arc::new(err)),
            _ => DisconnectReason::ConnectionLost,
        };
        self.ended(reason)
    }

    /// After a read error the socket is unusable for reading, but a close frame may
    /// still tell the peer why; one non-blocking attempt, no waiting.
    fn best_effort_close(&mut self, code: u16, reason: String) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        if let Poll::Ready(Ok(())) = self.ws.poll_ready_unpin(&mut cx)
            && self
                .ws
                .start_send_unpin(Message::Close(Some(frame)))
                .is_ok()
        {
            let _ = self.ws.poll_flush_unpin(&mut cx);
        }
    }

    /// The socket is done: the reason found earlier wins over how the socket ended.
    fn ended(&mut self, fallback: DisconnectReason) -> DisconnectReason {
        self.reason.take().unwrap_or(fallback)
    }

    /// Settles everything the connection owed: pending acknowledgements fail at once,
    /// queued requests fail, pings are dropped.
    fn finish(&mut self) {
        self.conn.mark_closed();
        self.session.handle_transport_closed(self.runtime.now());
        self.commands.close(&mut self.taken);
        self.control.close();
        for command in self.taken.drain(..) {
            self.conn.dequeued(command.cost());
            if let Command::EmitWithAck { reply, .. } = command {
                let _ = reply.send(Err(AckError::ConnectionClosed));
            }
        }
        // Pending pings and closes just end: their senders drop.
        while self.control.try_recv().is_ok() {}
        self.deferred.clear();
        self.writes.clear();
        self.write_bytes = 0;
        self.pings.clear();
        self.backlog.clear();
        self.backlog_bytes = 0;
        while let Some(output) = self.session.poll_output() {
            if let Output::AckFailed { ctx, .. } = output {
                let _ = ctx.send(Err(AckError::ConnectionClosed));
            }
        }
    }
}

impl<S, R: Runtime> Drop for Driver<S, R> {
    /// A driver dropped before it finished (its task cancelled) still refuses later
    /// commands and drops the queued ones, so that their callers hear
    /// `ConnectionClosed` rather than wait forever.
    fn drop(&mut self) {
        self.commands.close(&mut self.taken);
    }
}

/// What a waiting event counts against the backlog's byte bound.
fn backlog_cost(event: &Received) -> usize {
    event.message.len() + BACKLOG_EVENT_OVERHEAD
}
