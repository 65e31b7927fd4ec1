//! Raw peers that check exact bytes, the same under every runtime.
//!
//! They use blocking std sockets (read and write timeouts of [`GUARD`]) and run each
//! operation on a thread of its own ([`blocking`]): the runtime under test never
//! blocks on them, and they need no runtime at all.
//!
//! * [`WsPeer`]: a WebSocket peer (sync tungstenite), client or server role, that
//!   sends and reads exact messages and answers pings and closes as tungstenite does.
//! * [`RawSocket`]: a hand-written WebSocket client over a bare `TcpStream`, for what
//!   tungstenite refuses to send (invalid UTF-8 in text, unmasked frames, oversized
//!   messages written while reading) and for peers that stop reading or never answer.
//! * [`http_exchange`]: one raw HTTP/1.1 request and its response.
//! * [`RawListener`]: a listener for testing the client against a raw server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;

pub use tungstenite::Message;
pub use tungstenite::protocol::CloseFrame;
pub use tungstenite::protocol::frame::coding::CloseCode;

use crate::wait::{GUARD, blocking};

/// Continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// A sample `Sec-WebSocket-Key` (RFC 6455's).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Gives a blocking stream the guard's read and write timeouts.
fn guard_stream(stream: &TcpStream) {
    stream
        .set_read_timeout(Some(GUARD))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(GUARD))
        .expect("set a write timeout");
    let _ = stream.set_nodelay(true);
}

/// A blocking TCP connection to `addr` with the guard's timeouts.
pub async fn tcp_connect(addr: SocketAddr) -> TcpStream {
    blocking("tcp connect", move || {
        let stream = TcpStream::connect_timeout(&addr, GUARD).expect("tcp connect");
        guard_stream(&stream);
        stream
    })
    .await
}

/// True when a TCP connection to `addr` is refused (nothing listens there).
pub async fn tcp_refused(addr: SocketAddr) -> bool {
    blocking("tcp connect", move || {
        TcpStream::connect_timeout(&addr, GUARD).is_err()
    })
    .await
}

// ---------------------------------------------------------------------------------
// A WebSocket peer (sync tungstenite)
// ---------------------------------------------------------------------------------

type Ws = tungstenite::WebSocket<TcpStream>;

/// What one read of a [`WsPeer`] got.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A message (pings and pongs included; tungstenite answers pings by itself).
    Message(Message),
    /// The stream ended after a close handshake.
    Ended,
    /// The read failed.
    Failed(tungstenite::Error),
    /// Nothing arrived in time.
    TimedOut,
}

/// A WebSocket peer: exact messages in and out, no etp logic.
#[derive(Debug)]
pub struct WsPeer {
    /// `None` only while an operation runs on its thread (or after one panicked).
    ws: Option<Ws>,
}

impl WsPeer {
    /// Connects to `url` (a `ws://` URL) as a client; asserts `101`.
    pub async fn connect(url: &str) -> Self {
        let request = url.into_client_request().expect("a ws:// URL");
        let authority = request
            .uri()
            .authority()
            .expect("a URL with a host")
            .as_str()
            .to_owned();
        let addr: SocketAddr = authority.parse().expect("an ip:port authority");
        Self::handshake(tcp_connect(addr).await, request).await
    }

    /// The client handshake of `request` over an open stream; asserts `101`.
    pub async fn handshake(stream: TcpStream, request: http::Request<()>) -> Self {
        blocking("raw websocket handshake", move || {
            guard_stream(&stream);
            let (ws, response) =
                tungstenite::client(request, stream).expect("raw websocket handshake");
            assert_eq!(response.status(), 101);
            Self { ws: Some(ws) }
        })
        .await
    }

    /// The server handshake over an accepted stream; returns the peer and the upgrade
    /// request's headers.
    pub async fn accept(stream: TcpStream) -> (Self, http::HeaderMap) {
        blocking("raw server handshake", move || {
            guard_stream(&stream);
            let mut seen = http::HeaderMap::new();
            #[allow(clippy::result_large_err)] // tungstenite's callback signature
            let callback = |request: &tungstenite::handshake::server::Request, response| {
                seen = request.headers().clone();
                Ok(response)
            };
            let ws = tungstenite::accept_hdr(stream, callback).expect("raw server handshake");
            (Self { ws: Some(ws) }, seen)
        })
        .await
    }

    /// Runs `op` on the socket, on a thread of its own.
    async fn with<T: Send + 'static>(
        &mut self,
        what: &'static str,
        op: impl FnOnce(&mut Ws) -> T + Send + 'static,
    ) -> T {
        let mut ws = self
            .ws
            .take()
            .expect("the raw peer is unusable: an earlier operation on it failed");
        let (ws, output) = blocking(what, move || {
            let output = op(&mut ws);
            (ws, output)
        })
        .await;
        self.ws = Some(ws);
        output
    }

    /// Sends `message` (and flushes).
    pub async fn send(&mut self, message: Message) {
        self.with("raw send", move |ws| ws.send(message))
            .await
            .expect("raw send failed");
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await;
    }

    /// Reads one message, waiting at most `timeout`.
    pub async fn read(&mut self, timeout: Duration) -> ReadOutcome {
        let timeout = timeout.max(Duration::from_millis(1));
        self.with("raw read", move |ws| {
            let _ = ws.get_ref().set_read_timeout(Some(timeout));
            let outcome = match ws.read() {
                Ok(message) => ReadOutcome::Message(message),
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    ReadOutcome::Ended
                }
                Err(tungstenite::Error::Io(err)) if is_timeout(&err) => ReadOutcome::TimedOut,
                Err(err) => ReadOutcome::Failed(err),
            };
            let _ = ws.get_ref().set_read_timeout(Some(GUARD));
            outcome
        })
        .await
    }

    /// The next message of any kind; `None` once the stream ended. Fails the test on
    /// a read error or after [`GUARD`].
    pub async fn next(&mut self) -> Option<Message> {
        match self.read(GUARD).await {
            ReadOutcome::Message(message) => Some(message),
            ReadOutcome::Ended => None,
            ReadOutcome::Failed(err) => panic!("raw peer read failed: {err}"),
            ReadOutcome::TimedOut => panic!("timed out after {GUARD:?} waiting for a message"),
        }
    }

    /// The next message, which must be a text message.
    pub async fn next_text(&mut self) -> String {
        match self.next().await {
            Some(Message::Text(text)) => text.as_str().to_owned(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Sends `frame` and returns the text reply.
    pub async fn ask(&mut self, frame: &str) -> String {
        self.send_text(frame).await;
        self.next_text().await
    }

    /// Reads until a close frame arrives (data messages before it are returned), then
    /// reads on until the stream ends so that tungstenite answers the close.
    pub async fn until_close(&mut self) -> (Vec<Message>, Option<CloseFrame>) {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Some(Message::Close(frame)) => {
                    loop {
                        match self.read(GUARD).await {
                            ReadOutcome::Message(_) => {}
                            ReadOutcome::Ended | ReadOutcome::Failed(_) => break,
                            ReadOutcome::TimedOut => {
                                panic!("timed out waiting for the end of the stream")
                            }
                        }
                    }
                    return (before, frame);
                }
                Some(message) => before.push(message),
                None => panic!("stream ended without a close frame; got {before:?}"),
            }
        }
    }

    /// Starts the close handshake (a close frame without a code), ignoring errors.
    pub async fn close(&mut self) {
        self.with("raw close", |ws| {
            let _ = ws.close(None);
            let _ = ws.flush();
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------
// A hand-written WebSocket client over a bare TCP stream
// ---------------------------------------------------------------------------------

/// One frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode.
    pub opcode: u8,
    /// Whether the frame was masked (a server must not mask).
    pub masked: bool,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code and reason of a close frame.
    pub fn close(&self) -> (Option<u16>, String) {
        assert_eq!(self.opcode, OP_CLOSE, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (None, String::new());
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let reason = String::from_utf8_lossy(&self.payload[2..]).into_owned();
        (Some(code), reason)
    }

    /// The payload as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.payload.clone()).expect("utf-8 payload")
    }
}

/// A blocking reader with a buffer: HTTP heads and frames.
#[derive(Debug)]
struct Reading {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Reading {
    /// Reads up to the empty line that ends an HTTP head; keeps what follows.
    fn head(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "connection closed before the response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) if is_timeout(&err) => {
                    panic!("timed out after {GUARD:?} waiting for a response head")
                }
                Err(err) => panic!("reading the response head failed: {err}"),
            }
        }
    }

    /// Fills the buffer to `n` bytes; false on end of stream or a reset. Fails the test
    /// when nothing arrives for [`GUARD`].
    fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(got) => self.buf.extend_from_slice(&chunk[..got]),
                Err(err) if is_timeout(&err) => {
                    panic!("timed out after {GUARD:?} waiting for bytes from the server")
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// The next frame; `None` when the stream ended (or was reset) first.
    fn frame(&mut self) -> Option<RawFrame> {
        if !self.fill(2) {
            return None;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7f {
            126 => {
                if !self.fill(4) {
                    return None;
                }
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                if !self.fill(10) {
                    return None;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked { 4 } else { 0 };
        let total = at + mask + usize::try_from(len).expect("frame length");
        if !self.fill(total) {
            return None;
        }
        let key: Option<[u8; 4]> = masked.then(|| {
            let k = [
                self.buf[at],
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
            ];
            at += 4;
            k
        });
        let mut payload = self.buf[at..total].to_vec();
        if let Some(key) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        self.buf.drain(..total);
        Some(RawFrame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            masked,
            payload,
        })
    }
}

/// The reading half of a [`RawSocket`].
#[derive(Debug)]
pub struct RawReader {
    reading: Arc<Mutex<Reading>>,
}

/// The writing half of a [`RawSocket`].
#[derive(Debug)]
pub struct RawWriter {
    stream: Arc<TcpStream>,
}

/// A WebSocket client written by hand over a `TcpStream`.
#[derive(Debug)]
pub struct RawSocket {
    /// Reads frames.
    pub reader: RawReader,
    /// Writes frames.
    pub writer: RawWriter,
    /// The client's end of the connection.
    pub local_addr: SocketAddr,
}

impl RawSocket {
    /// Opens a TCP connection and performs the upgrade on `path`; asserts `101`.
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        let stream = tcp_connect(addr).await;
        let path = path.to_owned();
        blocking("raw upgrade", move || {
            let local_addr = stream.local_addr().expect("local addr");
            let request = upgrade_request("GET", addr, &path, "");
            (&stream)
                .write_all(request.as_bytes())
                .expect("write upgrade");
            let writer = RawWriter {
                stream: Arc::new(stream.try_clone().expect("clone the stream")),
            };
            let mut reading = Reading {
                stream,
                buf: Vec::new(),
            };
            let head = reading.head();
            assert!(
                head.starts_with("HTTP/1.1 101"),
                "upgrade refused: {head:?}"
            );
            Self {
                reader: RawReader {
                    reading: Arc::new(Mutex::new(reading)),
                },
                writer,
                local_addr,
            }
        })
        .await
    }

    /// Opens a TCP connection without sending anything (for raw HTTP).
    pub async fn connect_raw(addr: SocketAddr) -> Self {
        let stream = tcp_connect(addr).await;
        let local_addr = stream.local_addr().expect("local addr");
        let writer = RawWriter {
            stream: Arc::new(stream.try_clone().expect("clone the stream")),
        };
        let reading = Reading {
            stream,
            buf: Vec::new(),
        };
        Self {
            reader: RawReader {
                reading: Arc::new(Mutex::new(reading)),
            },
            writer,
            local_addr,
        }
    }

    /// Writes one masked, final frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.writer.send(opcode, payload).await.expect("raw write");
    }

    /// The next frame from the server; `None` when the TCP stream ended first.
    pub async fn frame(&mut self) -> Option<RawFrame> {
        self.reader.frame().await
    }
}

impl RawReader {
    async fn with<T: Send + 'static>(
        &mut self,
        what: &'static str,
        op: impl FnOnce(&mut Reading) -> T + Send + 'static,
    ) -> T {
        let reading = self.reading.clone();
        blocking(what, move || {
            let mut reading = reading.lock().unwrap_or_else(PoisonError::into_inner);
            op(&mut reading)
        })
        .await
    }

    /// The next frame from the server; `None` when the TCP stream ended (or was reset)
    /// first.
    pub async fn frame(&mut self) -> Option<RawFrame> {
        self.with("a raw frame", Reading::frame).await
    }

    /// Reads frames until a close frame; returns the frames before it and the close.
    pub async fn until_close(&mut self) -> (Vec<RawFrame>, RawFrame) {
        self.with("a close frame", |reading| {
            let mut before = Vec::new();
            loop {
                match reading.frame() {
                    Some(frame) if frame.opcode == OP_CLOSE => return (before, frame),
                    Some(frame) => before.push(frame),
                    None => panic!("stream ended without a close frame after {before:?}"),
                }
            }
        })
        .await
    }
}

impl RawWriter {
    /// Writes one masked, final frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        self.send_frame(true, opcode, payload, true).await
    }

    /// Writes one frame, masked or not (clients must mask; RFC 6455).
    pub async fn send_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
        masked: bool,
    ) -> std::io::Result<()> {
        self.write_raw(&encode_frame(fin, opcode, payload, masked))
            .await
    }

    /// Writes `frame` over and over, without blocking, until the socket takes no more
    /// for `quiet` (the server stopped reading and every buffer in between is full) or
    /// `max_bytes` went out. Returns how many frames were written whole and the unsent
    /// rest of the one cut short (empty if none was); write the rest to complete it.
    pub async fn flood(
        &mut self,
        frame: &[u8],
        max_bytes: usize,
        quiet: Duration,
    ) -> (usize, Vec<u8>) {
        let stream = self.stream.clone();
        let frame = frame.to_vec();
        blocking("a flood of frames", move || {
            stream.set_nonblocking(true).expect("non-blocking");
            let (mut whole, mut written, mut at) = (0usize, 0usize, 0usize);
            let mut stalled_since: Option<Instant> = None;
            while written < max_bytes {
                match (&*stream).write(&frame[at..]) {
                    Ok(n) => {
                        stalled_since = None;
                        written += n;
                        at += n;
                        if at == frame.len() {
                            whole += 1;
                            at = 0;
                        }
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        let since = *stalled_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= quiet {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(err) => panic!("flood write failed: {err}"),
                }
            }
            stream.set_nonblocking(false).expect("blocking again");
            let rest = if at == 0 {
                Vec::new()
            } else {
                frame[at..].to_vec()
            };
            (whole, rest)
        })
        .await
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stream = self.stream.clone();
        let bytes = bytes.to_vec();
        blocking("a raw write", move || {
            (&*stream).write_all(&bytes)?;
            (&*stream).flush()
        })
        .await
    }
}

/// Encodes a client frame (masked with a fixed key when `masked`).
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | u8::try_from(n).expect("small")),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&u16::try_from(n).expect("u16").to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A close frame payload: code and reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes `bytes` on a new connection to `addr`, then reads until `expected` appears in
/// what comes back (or the connection ends, or [`GUARD`] passes); returns all of it.
pub async fn send_and_read_until(addr: SocketAddr, bytes: Vec<u8>, expected: &[u8]) -> Vec<u8> {
    let stream = tcp_connect(addr).await;
    let expected = expected.to_vec();
    blocking("a raw exchange", move || {
        (&stream).write_all(&bytes).expect("raw write");
        let deadline = Instant::now() + GUARD;
        let mut got = Vec::new();
        while find(&got, &expected).is_none() && Instant::now() < deadline {
            let mut chunk = [0u8; 4096];
            match (&stream).read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        got
    })
    .await
}

// ---------------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------------

/// A raw HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The status line and headers, without the final empty line.
    pub head: String,
    /// The body (per `Content-Length`; none for `101`).
    pub body: String,
}

impl HttpResponse {
    /// The value of a header (case-insensitive name); the first if repeated.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// Every value of a header (case-insensitive name), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .collect()
    }

    /// The status line.
    pub fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }
}

/// Sends `request` (a complete HTTP/1.1 request head) on a new connection and reads the
/// response: the head, and the body per `Content-Length` (none for `101`).
pub async fn http_exchange(addr: SocketAddr, request: &str) -> HttpResponse {
    http_exchange_keeping(addr, request).await.0
}

/// [`http_exchange`], also returning the connection (to see what the server does with
/// it afterwards, or to send more on it).
pub async fn http_exchange_keeping(addr: SocketAddr, request: &str) -> (HttpResponse, RawSocket) {
    let stream = tcp_connect(addr).await;
    let request = request.to_owned();
    blocking("an http exchange", move || {
        (&stream).write_all(request.as_bytes()).expect("write");
        let local_addr = stream.local_addr().expect("local addr");
        let writer = RawWriter {
            stream: Arc::new(stream.try_clone().expect("clone the stream")),
        };
        let mut reading = Reading {
            stream,
            buf: Vec::new(),
        };
        let head = reading.head();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let mut response = HttpResponse {
            status,
            head,
            body: String::new(),
        };
        if status != 101 {
            let len: usize = response
                .header("content-length")
                .map(|v| v.parse().expect("content-length"))
                .unwrap_or(0);
            assert!(reading.fill(len), "body cut short");
            response.body = String::from_utf8_lossy(&reading.buf[..len]).into_owned();
            reading.buf.drain(..len);
        }
        let socket = RawSocket {
            reader: RawReader {
                reading: Arc::new(Mutex::new(reading)),
            },
            writer,
            local_addr,
        };
        (response, socket)
    })
    .await
}

impl RawReader {
    /// Reads an HTTP response head (up to the empty line), keeping what follows.
    pub async fn head(&mut self) -> String {
        self.with("an http response head", Reading::head).await
    }

    /// What the server does with the connection in the next `limit`: `Some(true)` if
    /// it ends it (end of stream or reset) before sending more, `Some(false)` if more
    /// bytes arrive, `None` if neither happens (the connection is kept open, idle).
    pub async fn ends_within(&mut self, limit: Duration) -> Option<bool> {
        self.with("the end of the connection", move |reading| {
            if !reading.buf.is_empty() {
                return Some(false);
            }
            let _ = reading.stream.set_read_timeout(Some(limit));
            let mut chunk = [0u8; 1024];
            let ended = match reading.stream.read(&mut chunk) {
                Ok(0) => Some(true),
                Ok(n) => {
                    reading.buf.extend_from_slice(&chunk[..n]);
                    Some(false)
                }
                Err(err) if is_timeout(&err) => None,
                Err(_) => Some(true),
            };
            let _ = reading.stream.set_read_timeout(Some(GUARD));
            ended
        })
        .await
    }
}

/// A WebSocket upgrade request head for `path` on `addr`, with `extra` header lines
/// (each ending in `\r\n`).
pub fn upgrade_request(method: &str, addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

// ---------------------------------------------------------------------------------
// A raw server, for testing the client's bytes
// ---------------------------------------------------------------------------------

/// A listener for raw servers.
#[derive(Debug)]
pub struct RawListener {
    listener: Arc<TcpListener>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl RawListener {
    /// Listens on `127.0.0.1:0`.
    pub fn new() -> Self {
        Self::bind("127.0.0.1:0".parse().expect("an address"))
    }

    /// Listens on `addr`.
    pub fn bind(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).expect("bind");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        Self {
            listener: Arc::new(listener),
            addr,
        }
    }

    /// `ws://ADDR/raw`.
    pub fn url(&self) -> String {
        format!("ws://{}/raw", self.addr)
    }

    /// Accepts one TCP connection (within [`GUARD`]), as a blocking stream with the
    /// guard's timeouts.
    pub async fn accept_tcp(&self) -> TcpStream {
        let listener = self.listener.clone();
        blocking("raw accept", move || {
            let deadline = Instant::now() + GUARD;
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).expect("a blocking stream");
                        guard_stream(&stream);
                        return stream;
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(
                            Instant::now() < deadline,
                            "timed out after {GUARD:?} waiting for a connection"
                        );
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(err) => panic!("accept failed: {err}"),
                }
            }
        })
        .await
    }

    /// Accepts one WebSocket connection, returning it and the upgrade request's
    /// headers.
    pub async fn accept(&self) -> (WsPeer, http::HeaderMap) {
        WsPeer::accept(self.accept_tcp().await).await
    }
}

impl Default for RawListener {
    fn default() -> Self {
        Self::new()
    }
}
