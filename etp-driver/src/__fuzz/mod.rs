//! The checker behind the `driver` fuzz target and its seed replay test. Not a public
//! API: anything here may change without notice.
//!
//! [`driver`] reads arbitrary bytes as a small program: a server connection is run
//! over an in-memory WebSocket (`ws`) on a single-threaded executor with a manual
//! clock (`exec`), and the program sends it WebSocket messages (well-formed etp
//! frames, raw bytes, replies, pings, closes, errors), makes the server emit and
//! request acknowledgements, moves the clock, stops and resumes the peer's reading,
//! closes and shuts down. After every step, and after a final teardown, it checks:
//!
//! * nothing panics and no task spins (every settle is bounded in polls);
//! * at most `handler_concurrency` handlers run at once;
//! * every acknowledgement the server requested ends exactly once: with the data the
//!   peer replied for that id, with a timeout not before its deadline, or with
//!   [`AckError::ConnectionClosed`] once the connection is closed; none is left
//!   pending at the end;
//! * every request the peer made gets at most one reply, with the handler's data;
//! * the connection ends within a bounded time once the peer goes away: the
//!   disconnect hook ran exactly once, the connection left the rooms, its handlers
//!   were dropped (cancelled) and every task finished.

mod exec;
pub mod framing;
mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tungstenite::Message;
use tungstenite::error::{Error as WsError, ProtocolError as WsProtocolError};

use crate::{AckError, ConnConfig, Event, Server, ServerBuilder, SlowConsumerPolicy};

use exec::{Executor, FuzzRuntime};
pub use framing::framing;
use ws::{FakeWs, Peer};

/// Peer request ids at or above this are the program's own (unique); lower ones may
/// come from raw bytes and repeat.
const OWN_IDS: u64 = 1_000_000;
/// The read limit when the program asks for a small one.
const SMALL_READ_LIMIT: usize = 64;
/// The most operations one input runs.
const MAX_STEPS: usize = 256;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads the input byte by byte; missing bytes read as 0.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = usize::from(self.byte()) % (max + 1);
        let n = n.min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken.to_vec()
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// What became of one acknowledgement the server requested.
#[derive(Debug, Clone)]
struct Request {
    issued_at: Duration,
    /// The per-call or default timeout.
    timeout: Duration,
    /// The wire id, once the peer saw the frame.
    id: Option<u64>,
    outcome: Option<(Duration, Result<Bytes, AckError>)>,
}

/// Handler bookkeeping shared with the handlers.
#[derive(Default)]
struct Handlers {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    /// Handler futures alive (dropped when finished or cancelled).
    alive: AtomicUsize,
}

struct Alive(Arc<Handlers>);

impl Alive {
    fn new(handlers: &Arc<Handlers>) -> Self {
        handlers.alive.fetch_add(1, Ordering::SeqCst);
        Self(handlers.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Running(Arc<Handlers>);

impl Running {
    fn new(handlers: &Arc<Handlers>) -> Self {
        let now = handlers.running.fetch_add(1, Ordering::SeqCst) + 1;
        handlers.most_at_once.fetch_max(now, Ordering::SeqCst);
        Self(handlers.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Everything one run shares between the program and the tasks.
struct World {
    exec: Executor,
    rt: FuzzRuntime,
    server: Server<FuzzRuntime>,
    conn: crate::Conn,
    peer: Peer,
    served: exec::Done,
    gate: ws::Gate,
    handlers: Arc<Handlers>,
    disconnects: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Request>>>,
    /// Replies the peer sent per wire id (the data of each).
    replies_sent: HashMap<u64, Vec<Bytes>>,
    /// The peer's own requests: id -> (event name, data), and how many replies came.
    asked: HashMap<u64, (Bytes, Bytes, usize)>,
    next_id: u64,
    concurrency: usize,
    default_ack_timeout: Duration,
}

/// Runs `data` as a program against one server connection, panicking when an
/// invariant breaks.
pub fn driver(data: &[u8]) {
    let mut input = Input { data };
    let flags = input.byte();
    let concurrency = usize::from(input.byte() % 4) + 1;
    let max_pending = usize::from(input.byte() % 8) + 1;
    let default_ack_timeout = Duration::from_millis(u64::from(input.byte() % 64) + 1);

    let exec = Executor::new();
    let rt = FuzzRuntime::new(&exec);
    let gate = ws::Gate::default();
    let handlers = Arc::new(Handlers::default());
    let disconnects = Arc::new(AtomicUsize::new(0));

    let mut config = ConnConfig {
        handler_concurrency: concurrency,
        outbound_limit: if flags & 8 != 0 { 256 } else { 4 << 20 },
        close_timeout: Duration::from_millis(50),
        ..ConnConfig::default()
    };
    config.session.max_pending_acks = max_pending;
    config.session.ack_timeout = default_ack_timeout;
    if flags & 1 != 0 {
        config.session.read_limit = Some(SMALL_READ_LIMIT);
    }
    if flags & 2 != 0 {
        config.session.ping_interval = Some(Duration::from_millis(40));
        config.session.idle_timeout = Some(Duration::from_millis(100));
    }
    if flags & 4 != 0 {
        config.session.encoding = etp_proto::Encoding::ThreePart;
    }
    if flags & 16 != 0 {
        config.slow_consumer = SlowConsumerPolicy::DropNew;
    }

    let echo = {
        let handlers = handlers.clone();
        move |_conn: crate::Conn, event: Event| {
            let alive = Alive::new(&handlers);
            let running = Running::new(&handlers);
            async move {
                let _guards = (alive, running);
                event.into_data()
            }
        }
    };
    let wait = {
        let handlers = handlers.clone();
        let gate = gate.clone();
        move |_conn: crate::Conn, event: Event| {
            let alive = Alive::new(&handlers);
            let running = Running::new(&handlers);
            let opened = gate.wait();
            async move {
                let _guards = (alive, running);
                opened.await;
                event.into_data()
            }
        }
    };
    let join = {
        let handlers = handlers.clone();
        move |conn: crate::Conn, event: Event| {
            let alive = Alive::new(&handlers);
            let running = Running::new(&handlers);
            async move {
                let _guards = (alive, running);
                conn.join("room");
                if let Some(rooms) = conn.server_rooms() {
                    let _ = rooms.broadcast(["room"], "news", event.data(), None);
                }
                event.into_data()
            }
        }
    };
    // The immediate form (no future): joins, broadcasts and echoes while the event is
    // read, so its sends must still come out before its reply.
    let mirror = {
        let handlers = handlers.clone();
        move |conn: &crate::Conn, event: Event| {
            let _guards = (Alive::new(&handlers), Running::new(&handlers));
            conn.join("room");
            if let Some(rooms) = conn.server_rooms() {
                let _ = rooms.broadcast(["room"], "news", event.data(), None);
            }
            event.into_data()
        }
    };
    let server = ServerBuilder::with_runtime(rt.clone())
        .conn_config(config)
        .on("echo", echo)
        .on("mirror", mirror)
        .on("wait", wait)
        .on("join", join)
        .on_disconnect({
            let disconnects = disconnects.clone();
            move |_conn, _reason| {
                disconnects.fetch_add(1, Ordering::SeqCst);
                async {}
            }
        })
        .on_error(|_conn, err| {
            // Every error must format without panicking.
            let _ = err.to_string();
        })
        .build()
        .expect("a valid server");

    let (fake, peer) = ws::pair();
    let served = exec.spawn_tracked(serve(server.clone(), fake));
    exec.run_until_stalled();
    let conn = match server.rooms().all().as_slice() {
        [conn] => conn.clone(),
        other => panic!("expected one registered connection, found {}", other.len()),
    };

    let mut world = World {
        exec,
        rt,
        server,
        conn,
        peer,
        served,
        gate,
        handlers,
        disconnects,
        requests: Arc::new(Mutex::new(Vec::new())),
        replies_sent: HashMap::new(),
        asked: HashMap::new(),
        next_id: OWN_IDS,
        concurrency,
        default_ack_timeout,
    };

    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        world.step(&mut input);
        world.exec.run_until_stalled();
        world.collect_outbound();
        world.check();
    }
    world.teardown();
}

async fn serve(server: Server<FuzzRuntime>, ws: FakeWs) {
    let parts = http::Request::builder()
        .uri("/ws")
        .body(())
        .expect("a valid request")
        .into_parts()
        .0;
    server
        .serve_connection(ws, crate::Request::new(parts, None))
        .await;
}

impl World {
    fn step(&mut self, input: &mut Input<'_>) {
        match input.byte() % 16 {
            // A well-formed event from the peer, maybe asking for an ack.
            0 | 1 => {
                let names: [&[u8]; 5] = [b"echo", b"wait", b"join", b"nope", b"mirror"];
                let name = Bytes::from_static(names[usize::from(input.byte()) % names.len()]);
                let data = Bytes::from(input.bytes(24));
                let id = if input.byte() % 2 == 0 {
                    0
                } else {
                    self.next_id += 1;
                    self.next_id
                };
                let mut text = name.to_vec();
                text.extend_from_slice(format!("||{id}||").as_bytes());
                text.extend_from_slice(&data);
                if id != 0 {
                    self.asked.insert(id, (name, data, 0));
                }
                self.peer.send(binary_or_text(text));
            }
            // Raw bytes as a text (maybe invalid UTF-8 as binary) message.
            2 => {
                let bytes = input.bytes(80);
                // Raw bytes may spell a reply (`__ack_||5`): note it like one.
                if let Ok(frame) = etp_proto::Frame::parse(Bytes::from(bytes.clone())) {
                    if frame.name().starts_with(b"__ack_") {
                        let data = frame.data().cloned().unwrap_or_default();
                        self.replies_sent
                            .entry(frame.ack_id())
                            .or_default()
                            .push(data);
                    }
                }
                self.peer.send(binary_or_text(bytes));
            }
            // A reply to a request of the server (or to an id it never used).
            3 => {
                let pick = input.byte();
                let data = Bytes::from(input.bytes(16));
                let ids: Vec<u64> = lock(&self.requests).iter().filter_map(|r| r.id).collect();
                let id = if ids.is_empty() || pick == 255 {
                    u64::from(pick) + 7_000
                } else {
                    ids[usize::from(pick) % ids.len()]
                };
                let mut text = format!("__ack_x||{id}||").into_bytes();
                text.extend_from_slice(&data);
                self.replies_sent.entry(id).or_default().push(data);
                self.peer.send(binary_or_text(text));
            }
            // The server asks the peer for an acknowledgement.
            4 => {
                let timeout = match input.byte() % 3 {
                    0 => None,
                    1 => Some(Duration::from_millis(7)),
                    _ => Some(Duration::from_millis(30)),
                };
                self.request(timeout);
            }
            // The server emits.
            5 => {
                let data = input.bytes(64);
                let _ = self.conn.emit("push", data);
            }
            // The clock moves.
            6 | 7 => {
                let by = Duration::from_millis(u64::from(input.byte() % 64));
                self.rt.advance(by);
            }
            // The peer stops reading after `n` more messages, or reads everything.
            8 => {
                let n = usize::from(input.byte() % 6);
                self.peer.set_capacity(if n == 5 { usize::MAX } else { n });
            }
            9 => {
                let payload = input.bytes(8);
                let message = if input.byte() % 2 == 0 {
                    Message::Ping(payload.into())
                } else {
                    Message::Pong(payload.into())
                };
                self.peer.send(message);
            }
            // The peer closes, with a code or without.
            10 => {
                let code = match input.byte() % 4 {
                    0 => None,
                    1 => Some(1000),
                    2 => Some(1001),
                    _ => Some(4000),
                };
                self.peer.close_with(code);
            }
            // The WebSocket layer fails.
            11 => {
                let error = match input.byte() % 3 {
                    0 => WsError::Protocol(WsProtocolError::ResetWithoutClosingHandshake),
                    1 => WsError::Utf8(String::from("invalid utf-8")),
                    _ => WsError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
                };
                self.peer.send_error(error);
                if input.byte() % 2 == 0 {
                    self.peer.end_stream();
                }
            }
            12 => self.gate.open(),
            13 => self.conn.close(),
            14 => {
                let timeout = Duration::from_millis(u64::from(input.byte() % 128));
                let server = self.server.clone();
                self.exec.spawn(async move {
                    server.shutdown(timeout).await;
                });
            }
            // A message at or just over the small read limit.
            _ => {
                let over = usize::from(input.byte() % 2);
                let mut text = b"echo||0||".to_vec();
                text.resize(SMALL_READ_LIMIT + over, b'x');
                self.peer.send(Message::binary(text));
            }
        }
    }

    fn request(&mut self, timeout: Option<Duration>) {
        let index = {
            let mut requests = lock(&self.requests);
            requests.push(Request {
                issued_at: self.rt.elapsed(),
                timeout: timeout.unwrap_or(self.default_ack_timeout),
                id: None,
                outcome: None,
            });
            requests.len() - 1
        };
        let conn = self.conn.clone();
        let rt = self.rt.clone();
        let requests = self.requests.clone();
        // The data names the request: requests refused locally never go out, so the
        // order on the wire alone would not tell which frame is which.
        let data = format!("q{index}");
        self.exec.spawn(async move {
            let outcome = match timeout {
                None => conn.emit_with_ack("ask", data).await,
                Some(timeout) => conn.emit_with_ack_timeout("ask", data, timeout).await,
            };
            let mut requests = lock(&requests);
            let request = &mut requests[index];
            assert!(request.outcome.is_none(), "an ack ended twice");
            request.outcome = Some((rt.elapsed(), outcome));
        });
    }

    /// Reads what the driver sent: notes the ids of its requests (in order, to the
    /// requests in order of issue) and the replies to the peer's requests.
    fn collect_outbound(&mut self) {
        for message in self.peer.take_outbound() {
            let bytes = match message {
                Message::Text(text) => Bytes::copy_from_slice(text.as_bytes()),
                Message::Binary(bytes) => bytes,
                Message::Frame(frame) => {
                    panic!("the driver sent a raw frame that is not text: {frame:?}")
                }
                _ => continue,
            };
            let Ok(frame) = etp_proto::Frame::parse(bytes) else {
                panic!("the driver sent a frame that does not parse");
            };
            let name = frame.name();
            if let Some(name) = name.strip_prefix(b"__ack_") {
                let id = frame.ack_id();
                if let Some((asked_name, data, replies)) = self.asked.get_mut(&id) {
                    assert_eq!(name, &asked_name[..], "a reply under another name");
                    *replies += 1;
                    assert_eq!(*replies, 1, "the peer's request {id} was answered twice");
                    let got = frame.data().map(|d| d.to_vec()).unwrap_or_default();
                    // Unknown events are answered empty; everything else echoes.
                    if !(&asked_name[..] == b"nope" && got.is_empty()) {
                        assert_eq!(got, data.to_vec(), "the reply to {id} is not the echo");
                    }
                }
            } else if name == b"ask" {
                let id = frame.ack_id();
                let index: usize = frame
                    .data()
                    .and_then(|d| {
                        std::str::from_utf8(&d[..])
                            .ok()?
                            .strip_prefix('q')?
                            .parse()
                            .ok()
                    })
                    .expect("a request frame the program never asked for");
                let mut requests = lock(&self.requests);
                let request = &mut requests[index];
                assert!(request.id.is_none(), "request {index} went out twice");
                request.id = Some(id);
            }
        }
    }

    fn check(&self) {
        let most = self.handlers.most_at_once.load(Ordering::SeqCst);
        assert!(
            most <= self.concurrency,
            "{most} handlers ran at once, bound {}",
            self.concurrency
        );
        for request in lock(&self.requests).iter() {
            let Some((at, outcome)) = &request.outcome else {
                continue;
            };
            match outcome {
                Ok(data) => {
                    let sent = match request.id {
                        Some(id) => self.replies_sent.get(&id).is_some_and(|s| s.contains(data)),
                        // Answered before the peer read the request: raw bytes guessed
                        // its id. The data must still be what some reply carried.
                        None => self.replies_sent.values().any(|s| s.contains(data)),
                    };
                    assert!(
                        sent,
                        "request {:?} ended with data the peer never sent for it",
                        request.id
                    );
                }
                Err(AckError::TimedOut) => assert!(
                    *at >= request.issued_at + request.timeout,
                    "an ack timed out early: issued {:?}, timeout {:?}, ended {at:?}",
                    request.issued_at,
                    request.timeout
                ),
                Err(AckError::ConnectionClosed) => assert!(
                    self.conn.is_closed(),
                    "an ack failed as closed on an open connection"
                ),
                Err(AckError::Emit(_)) => {}
            }
        }
    }

    /// The peer goes away; everything must end within a bounded time.
    fn teardown(mut self) {
        self.gate.open();
        self.peer.set_capacity(usize::MAX);
        self.peer.end_stream();
        for _ in 0..100 {
            self.exec.run_until_stalled();
            self.collect_outbound();
            if self.served.is_done() && self.exec.all_done() {
                break;
            }
            self.rt.advance(Duration::from_millis(100));
        }
        assert!(self.served.is_done(), "the connection never ended");
        assert!(self.exec.all_done(), "a task never ended");
        self.check();
        assert_eq!(
            self.disconnects.load(Ordering::SeqCst),
            1,
            "the disconnect hook must run exactly once"
        );
        let rooms = self.server.rooms();
        assert_eq!(
            rooms.connection_count(),
            0,
            "the connection is still registered"
        );
        assert!(rooms.rooms().is_empty(), "rooms outlived their members");
        assert_eq!(self.server.connection_count(), 0);
        assert!(self.conn.is_closed());
        assert_eq!(
            self.handlers.alive.load(Ordering::SeqCst),
            0,
            "handler futures outlived their connection"
        );
        for request in lock(&self.requests).iter() {
            assert!(request.outcome.is_some(), "an ack was never resolved");
        }
    }
}

/// Valid UTF-8 goes as text, anything else as binary (which etp reads the same).
fn binary_or_text(bytes: Vec<u8>) -> Message {
    match String::from_utf8(bytes) {
        Ok(text) => Message::text(text),
        Err(err) => Message::binary(err.into_bytes()),
    }
}
