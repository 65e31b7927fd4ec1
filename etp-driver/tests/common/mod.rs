//! Test harness for the driver: a manual clock ([`ManualRuntime`]), an in-memory
//! WebSocket ([`FakeWs`] and its test-side [`Peer`]) that emulates the parts of
//! tokio-tungstenite the driver relies on, and recorders for hooks.
//!
//! Nothing here opens a socket or sleeps in real time: timers fire only when a test
//! calls [`ManualRuntime::advance`]. Every wait on the driver is guarded by a real-time
//! `tokio::time::timeout` so that a broken driver fails a test instead of hanging it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::{Sink, Stream};
use tungstenite::Message;
use tungstenite::error::{Error as WsError, ProtocolError as WsProtocolError};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use etp_driver::{
    Client, ClientBuilder, Conn, DisconnectReason, Error, Request, Runtime, Server, ServerBuilder,
};

/// How long a test waits (in real time) for the driver before declaring it stuck.
pub(crate) const GUARD: Duration = Duration::from_secs(5);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------
// The manual clock
// ---------------------------------------------------------------------------------

struct Clock {
    now: Instant,
    start: Instant,
    next_sleeper: u64,
    sleepers: HashMap<u64, Waker>,
}

/// A [`Runtime`] whose clock only moves when the test says so. Tasks are tokio tasks.
#[derive(Clone)]
pub(crate) struct ManualRuntime {
    clock: Arc<Mutex<Clock>>,
}

impl Default for ManualRuntime {
    fn default() -> Self {
        let now = Instant::now();
        Self {
            clock: Arc::new(Mutex::new(Clock {
                now,
                start: now,
                next_sleeper: 0,
                sleepers: HashMap::new(),
            })),
        }
    }
}

impl ManualRuntime {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward and wakes every sleeper (each re-checks its deadline).
    pub(crate) fn advance(&self, by: Duration) {
        let wakers: Vec<Waker> = {
            let mut clock = lock(&self.clock);
            clock.now += by;
            clock.sleepers.drain().map(|(_, waker)| waker).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Moves the clock, then lets the woken tasks run.
    pub(crate) async fn advance_and_settle(&self, by: Duration) {
        self.advance(by);
        settle().await;
    }

    /// Time since the runtime was created, on the manual clock.
    pub(crate) fn elapsed(&self) -> Duration {
        let clock = lock(&self.clock);
        clock.now - clock.start
    }

    /// How many sleeps have waited for the clock so far (each counted once, when it
    /// first found its deadline ahead).
    pub(crate) fn sleeps_armed(&self) -> u64 {
        lock(&self.clock).next_sleeper
    }

    /// How many sleeps are currently waiting for the clock.
    pub(crate) fn sleepers(&self) -> usize {
        lock(&self.clock).sleepers.len()
    }
}

/// The future of [`ManualRuntime::sleep_until`].
pub(crate) struct ManualSleep {
    clock: Arc<Mutex<Clock>>,
    deadline: Instant,
    key: Option<u64>,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut clock = lock(&this.clock);
        if clock.now >= this.deadline {
            if let Some(key) = this.key.take() {
                clock.sleepers.remove(&key);
            }
            return Poll::Ready(());
        }
        let key = match this.key {
            Some(key) => key,
            None => {
                let key = clock.next_sleeper;
                clock.next_sleeper += 1;
                this.key = Some(key);
                key
            }
        };
        clock.sleepers.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.clock).sleepers.remove(&key);
        }
    }
}

impl Runtime for ManualRuntime {
    type Sleep = ManualSleep;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(tokio::spawn(future));
    }

    fn sleep_until(&self, deadline: Instant) -> ManualSleep {
        ManualSleep {
            clock: self.clock.clone(),
            deadline,
            key: None,
        }
    }

    fn now(&self) -> Instant {
        lock(&self.clock).now
    }
}

// ---------------------------------------------------------------------------------
// Letting the driver run
// ---------------------------------------------------------------------------------

/// Lets every other task on the (current-thread) runtime run for a while.
pub(crate) async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

/// Waits (yielding, bounded by [`GUARD`] in real time) until `condition` holds.
#[track_caller]
pub(crate) fn eventually<'a>(
    what: &'a str,
    mut condition: impl FnMut() -> bool + 'a,
) -> impl Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let waited = tokio::time::timeout(GUARD, async {
            while !condition() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        if waited.is_err() {
            panic!("{caller}: timed out waiting until {what}");
        }
    }
}

/// Awaits `future` for at most [`GUARD`] in real time.
#[track_caller]
pub(crate) fn guarded<'a, F: Future + 'a>(
    what: &'a str,
    future: F,
) -> impl Future<Output = F::Output> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(GUARD, future).await {
            Ok(output) => output,
            Err(_) => panic!("{caller}: timed out waiting for {what}"),
        }
    }
}

// ---------------------------------------------------------------------------------
// The in-memory WebSocket
// ---------------------------------------------------------------------------------

#[derive(Default)]
struct WsState {
    /// Peer -> driver, in order.
    inbound: VecDeque<Result<Message, WsError>>,
    /// After `inbound` drains, the stream ends (`None`).
    inbound_ended: bool,
    read_waker: Option<Waker>,

    /// Driver -> peer, accepted by `start_send` but not flushed yet (tungstenite's
    /// write buffer).
    unflushed: VecDeque<Message>,
    /// Driver -> peer, flushed: what the peer can read (the socket buffer).
    outbound: VecDeque<Message>,
    /// How many messages `outbound + unflushed` may hold before `poll_ready` says
    /// Pending (the peer does not read). `usize::MAX`: unbounded.
    capacity: usize,
    write_waker: Option<Waker>,
    peer_waker: Option<Waker>,

    /// Control frames tungstenite answers by itself (pong, close echo); they leave
    /// with the next flush or read.
    automatic: VecDeque<Message>,
    /// The driver sent a close frame.
    close_sent: bool,
    /// The driver read a close frame.
    close_received: bool,
    /// Messages the driver tried to send after a close frame went either way.
    sent_after_close: Vec<Message>,
    /// The driver dropped its end.
    dropped: bool,
    flushes: usize,
    messages_sent: usize,
}

impl WsState {
    fn wake_peer(&mut self) {
        if let Some(waker) = self.peer_waker.take() {
            waker.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }

    fn wake_reader(&mut self) {
        if let Some(waker) = self.read_waker.take() {
            waker.wake();
        }
    }

    /// Moves automatic answers and buffered writes to the peer, as far as the
    /// capacity allows (automatic answers always go). True when everything went.
    fn flush(&mut self) -> bool {
        let mut moved = !self.automatic.is_empty();
        self.outbound.extend(self.automatic.drain(..));
        while self.outbound.len() < self.capacity {
            let Some(message) = self.unflushed.pop_front() else {
                break;
            };
            self.outbound.push_back(message);
            moved = true;
        }
        if moved {
            self.wake_peer();
        }
        self.unflushed.is_empty()
    }
}

/// The driver's end of an in-memory WebSocket. Behaves like tokio-tungstenite's
/// `WebSocketStream` where the driver can tell: pings and close frames are answered
/// automatically, nothing can be sent after a close frame went either way, writes
/// reach the peer only when flushed, and `poll_ready` blocks when the peer does not
/// read (bounded capacity).
pub(crate) struct FakeWs {
    state: Arc<Mutex<WsState>>,
}

/// The test's end of a [`FakeWs`].
#[derive(Clone)]
pub(crate) struct Peer {
    state: Arc<Mutex<WsState>>,
}

/// A connected pair: the driver's socket and the test's peer.
pub(crate) fn fake_ws() -> (FakeWs, Peer) {
    let state = Arc::new(Mutex::new(WsState {
        capacity: usize::MAX,
        ..WsState::default()
    }));
    (
        FakeWs {
            state: state.clone(),
        },
        Peer { state },
    )
}

impl Stream for FakeWs {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = lock(&self.state);
        // tungstenite flushes its automatic answers on every read.
        state.flush();
        let Some(item) = state.inbound.pop_front() else {
            if state.inbound_ended {
                return Poll::Ready(None);
            }
            state.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        match &item {
            Ok(Message::Close(frame)) => {
                if !state.close_sent && !state.close_received {
                    // The peer closed first: tungstenite echoes the frame.
                    state.automatic.push_back(Message::Close(frame.clone()));
                }
                state.close_received = true;
            }
            Ok(Message::Ping(data)) if !state.close_sent && !state.close_received => {
                state.automatic.push_back(Message::Pong(data.clone()));
            }
            _ => {}
        }
        Poll::Ready(Some(item))
    }
}

impl Sink<Message> for FakeWs {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let mut state = lock(&self.state);
        if state.outbound.len() + state.unflushed.len() < state.capacity {
            return Poll::Ready(Ok(()));
        }
        // Blocked: try to flush the blockage away, as tokio-tungstenite does.
        state.flush();
        if state.outbound.len() + state.unflushed.len() < state.capacity {
            return Poll::Ready(Ok(()));
        }
        state.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        // What the peer reads, as tungstenite would write it.
        let message = etp_driver::as_received(message);
        let mut state = lock(&self.state);
        if state.close_sent || state.close_received {
            state.sent_after_close.push(message);
            return Err(WsError::Protocol(WsProtocolError::SendAfterClosing));
        }
        if matches!(message, Message::Close(_)) {
            state.close_sent = true;
        }
        state.messages_sent += 1;
        state.unflushed.push_back(message);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let mut state = lock(&self.state);
        state.flushes += 1;
        if state.flush() {
            Poll::Ready(Ok(()))
        } else {
            state.write_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.poll_flush(cx)
    }
}

impl Drop for FakeWs {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.dropped = true;
        state.wake_peer();
    }
}

impl Peer {
    fn state(&self) -> MutexGuard<'_, WsState> {
        lock(&self.state)
    }

    fn push(&self, item: Result<Message, WsError>) {
        let mut state = self.state();
        assert!(!state.inbound_ended, "the peer already ended its stream");
        state.inbound.push_back(item);
        state.wake_reader();
    }

    /// Sends one WebSocket message to the driver.
    pub(crate) fn send(&self, message: Message) {
        self.push(Ok(message));
    }

    /// Sends one text message (an etp frame) to the driver.
    pub(crate) fn send_text(&self, text: &str) {
        self.send(Message::text(text));
    }

    /// Makes the driver's stream yield an error.
    pub(crate) fn send_error(&self, error: WsError) {
        self.push(Err(error));
    }

    /// Ends the driver's stream (`None`) after what was sent: the connection is gone.
    pub(crate) fn close_stream(&self) {
        let mut state = self.state();
        state.inbound_ended = true;
        state.wake_reader();
    }

    /// The TCP connection drops without a close frame, exactly as tokio-tungstenite
    /// reports it: `Err(Protocol(ResetWithoutClosingHandshake))`, then the end.
    pub(crate) fn reset(&self) {
        self.send_error(WsError::Protocol(
            WsProtocolError::ResetWithoutClosingHandshake,
        ));
        self.close_stream();
    }

    /// The peer closes: a close frame (`code: None` is a frame without a code, read
    /// as 1005), then the stream ends once the driver read it (tungstenite ends the
    /// stream after the echo).
    pub(crate) fn close_with(&self, code: Option<u16>, reason: &str) {
        let frame = code.map(|code| CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        });
        self.send(Message::Close(frame));
        self.close_stream();
    }

    /// The next message the driver sent (flushed), waiting at most [`GUARD`]; `None`
    /// once the driver dropped its end and everything was read.
    #[track_caller]
    pub(crate) fn recv(&self) -> impl Future<Output = Option<Message>> + '_ {
        self.recv_at(std::panic::Location::caller())
    }

    async fn recv_at(&self, caller: &'static std::panic::Location<'static>) -> Option<Message> {
        {
            let next = std::future::poll_fn(|cx| {
                let mut state = self.state();
                if let Some(message) = state.outbound.pop_front() {
                    state.wake_writer();
                    return Poll::Ready(Some(message));
                }
                if state.dropped {
                    return Poll::Ready(None);
                }
                state.peer_waker = Some(cx.waker().clone());
                Poll::Pending
            });
            match tokio::time::timeout(GUARD, next).await {
                Ok(message) => message,
                Err(_) => panic!("{caller}: the driver sent nothing within {GUARD:?}"),
            }
        }
    }

    /// The next message, which must be a text message; returns its text.
    #[track_caller]
    pub(crate) fn recv_text(&self) -> impl Future<Output = String> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.recv_at(caller).await {
                Some(Message::Text(text)) => text.as_str().to_owned(),
                other => panic!("{caller}: expected a text message, got {other:?}"),
            }
        }
    }

    /// The next message, which must be a close frame; returns `(code, reason)`.
    #[track_caller]
    pub(crate) fn recv_close(&self) -> impl Future<Output = (u16, String)> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.recv_at(caller).await {
                Some(Message::Close(Some(frame))) => {
                    (u16::from(frame.code), frame.reason.as_str().to_owned())
                }
                other => panic!("{caller}: expected a close frame, got {other:?}"),
            }
        }
    }

    /// Waits for the driver's close frame, answers it with the same frame, and ends
    /// the stream (the close handshake as tungstenite completes it). Returns the code
    /// and reason.
    #[track_caller]
    pub(crate) fn answer_close(&self) -> impl Future<Output = (u16, String)> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let frame = loop {
                match self.recv_at(caller).await {
                    Some(Message::Close(frame)) => break frame,
                    Some(_) => continue,
                    None => panic!("{caller}: the driver ended without a close frame"),
                }
            };
            let (code, reason) = frame
                .as_ref()
                .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                .unwrap_or((1005, String::new()));
            self.send(Message::Close(frame));
            self.close_stream();
            (code, reason)
        }
    }

    /// A message already flushed, without waiting.
    pub(crate) fn try_recv(&self) -> Option<Message> {
        let mut state = self.state();
        let message = state.outbound.pop_front();
        if message.is_some() {
            state.wake_writer();
        }
        message
    }

    /// Lets the driver run, then checks it sent nothing.
    #[track_caller]
    pub(crate) fn assert_silent(&self) -> impl Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            settle().await;
            let state = self.state();
            assert!(
                state.outbound.is_empty(),
                "{caller}: expected no message, the driver sent {:?}",
                state.outbound
            );
        }
    }

    /// Every text message already flushed, without waiting.
    pub(crate) fn drain_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(message) = self.try_recv() {
            match message {
                Message::Text(text) => out.push(text.as_str().to_owned()),
                other => panic!("expected only text messages, got {other:?}"),
            }
        }
        out
    }

    /// Limits how many messages may wait unread for the peer (a slow reader).
    pub(crate) fn set_capacity(&self, capacity: usize) {
        let mut state = self.state();
        state.capacity = capacity;
        state.wake_writer();
    }

    /// Messages the peer sent that the driver has not read yet.
    pub(crate) fn unread_by_driver(&self) -> usize {
        self.state().inbound.len()
    }

    /// Messages flushed and not yet read by the peer.
    pub(crate) fn unread(&self) -> usize {
        self.state().outbound.len()
    }

    /// Messages the driver tried to send after a close frame went either way.
    pub(crate) fn sent_after_close(&self) -> Vec<Message> {
        self.state().sent_after_close.clone()
    }

    /// True once the driver dropped its end of the socket.
    pub(crate) fn is_dropped(&self) -> bool {
        self.state().dropped
    }

    /// How many messages the driver handed to the socket.
    pub(crate) fn messages_sent(&self) -> usize {
        self.state().messages_sent
    }
}

// ---------------------------------------------------------------------------------
// Servers, clients, recorders
// ---------------------------------------------------------------------------------

/// An upgrade request for `/ws?x=1`.
pub(crate) fn request() -> Request {
    request_for("/ws?x=1")
}

pub(crate) fn request_for(uri: &str) -> Request {
    let parts = http::Request::builder()
        .uri(uri)
        .body(())
        .expect("valid request")
        .into_parts()
        .0;
    Request::new(parts, None)
}

/// What the hooks saw, shared with the test.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    /// Free-form lines in the order things happened.
    pub(crate) log: Arc<Mutex<Vec<String>>>,
    /// Every disconnect reason, in order.
    pub(crate) reasons: Arc<Mutex<Vec<DisconnectReason>>>,
    /// Every error the error hook heard.
    pub(crate) errors: Arc<Mutex<Vec<Error>>>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&self, line: impl Into<String>) {
        lock(&self.log).push(line.into());
    }

    pub(crate) fn log(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    pub(crate) fn reasons(&self) -> Vec<DisconnectReason> {
        lock(&self.reasons).clone()
    }

    pub(crate) fn reason_count(&self) -> usize {
        lock(&self.reasons).len()
    }

    pub(crate) fn errors(&self) -> MutexGuard<'_, Vec<Error>> {
        lock(&self.errors)
    }

    /// The only disconnect reason, once the hook ran (waits for it).
    #[track_caller]
    pub(crate) fn disconnected(&self) -> impl Future<Output = DisconnectReason> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let waited = tokio::time::timeout(GUARD, async {
                while self.reason_count() == 0 {
                    tokio::task::yield_now().await;
                }
            })
            .await;
            assert!(waited.is_ok(), "{caller}: the disconnect hook never ran");
            settle().await;
            let reasons = self.reasons();
            assert_eq!(
                reasons.len(),
                1,
                "{caller}: the disconnect hook ran more than once: {reasons:?}"
            );
            reasons[0].clone()
        }
    }

    /// Sets the error and disconnect hooks of a server builder to record here.
    pub(crate) fn server(
        &self,
        builder: ServerBuilder<ManualRuntime>,
    ) -> ServerBuilder<ManualRuntime> {
        let (errors, reasons, log) = (self.errors.clone(), self.reasons.clone(), self.log.clone());
        builder
            .on_error(move |_conn, error| lock(&errors).push(error))
            .on_disconnect(move |_conn, reason| {
                lock(&log).push(format!("disconnect {reason}"));
                lock(&reasons).push(reason);
                async {}
            })
    }

    /// Sets the error and disconnect hooks of a client builder to record here.
    pub(crate) fn client(
        &self,
        builder: ClientBuilder<ManualRuntime>,
    ) -> ClientBuilder<ManualRuntime> {
        let (errors, reasons, log) = (self.errors.clone(), self.reasons.clone(), self.log.clone());
        builder
            .on_error(move |_conn, error| lock(&errors).push(error))
            .on_disconnect(move |_conn, reason| {
                lock(&log).push(format!("disconnect {reason}"));
                lock(&reasons).push(reason);
                async {}
            })
    }
}

/// A server connection running over a fake socket.
pub(crate) struct Served {
    pub(crate) peer: Peer,
    pub(crate) conn: Conn,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Waits until `serve_connection` returned.
    #[track_caller]
    pub(crate) fn finished(&mut self) -> impl Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match tokio::time::timeout(GUARD, &mut self.task).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => panic!("{caller}: serve_connection panicked: {err}"),
                Err(_) => panic!("{caller}: serve_connection did not return"),
            }
        }
    }
}

/// Runs one server connection over a fresh fake socket and returns once the server
/// registered it (the connect hook may still be running).
pub(crate) async fn serve(server: &Server<ManualRuntime>) -> Served {
    let (ws, peer) = fake_ws();
    serve_on(server, ws, peer).await
}

/// [`serve`] over a given socket.
pub(crate) async fn serve_on(server: &Server<ManualRuntime>, ws: FakeWs, peer: Peer) -> Served {
    let before: Vec<Conn> = server.rooms().all();
    let task = tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(ws, request()).await }
    });
    let mut found = None;
    let waited = tokio::time::timeout(GUARD, async {
        loop {
            if let Some(conn) = server
                .rooms()
                .all()
                .into_iter()
                .find(|c| !before.contains(c))
            {
                found = Some(conn);
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the server never registered the connection");
    Served {
        peer,
        conn: found.expect("found"),
        task,
    }
}

/// A server builder on `rt`.
pub(crate) fn server_builder(rt: &ManualRuntime) -> ServerBuilder<ManualRuntime> {
    ServerBuilder::with_runtime(rt.clone())
}

/// A client builder on `rt`.
pub(crate) fn client_builder(rt: &ManualRuntime) -> ClientBuilder<ManualRuntime> {
    ClientBuilder::with_runtime(rt.clone())
}

/// Starts a client connection over a fresh fake socket.
pub(crate) fn start_client(client: &Client<ManualRuntime>) -> (Peer, Conn, etp_driver::Ended) {
    let (ws, peer) = fake_ws();
    let (conn, ended) = client.start(ws, request_for("ws://example.test/ws"));
    (peer, conn, ended)
}

/// A one-shot gate a handler can wait on, opened by the test.
#[derive(Clone, Default)]
pub(crate) struct Gate {
    inner: Arc<Mutex<(bool, Vec<Waker>)>>,
}

impl Gate {
    pub(crate) fn open(&self) {
        let wakers = {
            let mut inner = lock(&self.inner);
            inner.0 = true;
            std::mem::take(&mut inner.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn wait(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let inner = self.inner.clone();
        std::future::poll_fn(move |cx| {
            let mut inner = lock(&inner);
            if inner.0 {
                Poll::Ready(())
            } else {
                inner.1.push(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}
