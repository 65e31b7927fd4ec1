//! Loopback harness for the etp-tokio integration tests.
//!
//! * [`TestServer`]: an etp server serving an ephemeral `127.0.0.1` port.
//! * [`Hooks`]: channels that record connects, disconnects and errors.
//! * [`WsPeer`]: a raw tokio-tungstenite client that sends and reads exact messages.
//! * [`RawSocket`]: a hand-written WebSocket client over a bare `TcpStream`, for what
//!   tungstenite refuses to send (invalid UTF-8 in text, unmasked frames, oversized
//!   messages written while reading) and for peers that stop reading or never answer.
//! * [`http_exchange`]: one raw HTTP/1.1 request and its response.
//!
//! Every wait is bounded by [`GUARD`], so that a broken library fails a test instead
//! of hanging it.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use etp_tokio::{Conn, DisconnectReason, Error, Server, ServerBuilder, ServerExt};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The longest any single wait may take before the test fails.
pub const GUARD: Duration = Duration::from_secs(5);

/// Awaits `future`, failing the test if it takes longer than [`GUARD`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {GUARD:?} waiting for {what}"),
    }
}

/// Polls `check` until it holds, failing the test after [`GUARD`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------
// Recording channels
// ---------------------------------------------------------------------------------

/// The receiving end of a recording channel.
pub struct Rx<T>(pub mpsc::UnboundedReceiver<T>);

impl<T> Rx<T> {
    /// The next recorded value, failing the test after [`GUARD`].
    pub async fn next(&mut self) -> T {
        within("a recorded value", self.0.recv())
            .await
            .expect("recording channel closed")
    }

    /// A value recorded already, if any.
    pub fn try_next(&mut self) -> Option<T> {
        self.0.try_recv().ok()
    }
}

/// A recording channel.
pub fn channel<T>() -> (mpsc::UnboundedSender<T>, Rx<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, Rx(rx))
}

/// What the hooks of a server or client heard.
pub struct Hooks {
    pub connects: Rx<Conn>,
    pub disconnects: Rx<(Conn, DisconnectReason)>,
    pub errors: Rx<(Option<Conn>, Error)>,
}

/// Installs recording connect, disconnect and error hooks on a server builder.
pub fn hooked(builder: ServerBuilder) -> (ServerBuilder, Hooks) {
    let (connect_tx, connects) = channel();
    let (disconnect_tx, disconnects) = channel();
    let (error_tx, errors) = channel();
    let builder = builder
        .on_connect(move |conn| {
            let _ = connect_tx.send(conn);
            async {}
        })
        .on_disconnect(move |conn, reason| {
            let _ = disconnect_tx.send((conn, reason));
            async {}
        })
        .on_error(move |conn, err| {
            let _ = error_tx.send((conn, err));
        });
    (
        builder,
        Hooks {
            connects,
            disconnects,
            errors,
        },
    )
}

/// Installs recording hooks on a client builder.
pub fn hooked_client(builder: etp_tokio::ClientBuilder) -> (etp_tokio::ClientBuilder, Hooks) {
    let (connect_tx, connects) = channel();
    let (disconnect_tx, disconnects) = channel();
    let (error_tx, errors) = channel();
    let builder = builder
        .on_connect(move |conn| {
            let _ = connect_tx.send(conn);
            async {}
        })
        .on_disconnect(move |conn, reason| {
            let _ = disconnect_tx.send((conn, reason));
            async {}
        })
        .on_error(move |conn, err| {
            let _ = error_tx.send((conn, err));
        });
    (
        builder,
        Hooks {
            connects,
            disconnects,
            errors,
        },
    )
}

// ---------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------

/// An etp server serving `127.0.0.1:0`.
pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    pub serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Serves `server` on a fresh ephemeral port.
    pub async fn start(server: Server) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(server, listener)
    }

    /// Serves `server` on an already bound listener.
    pub fn serve(server: Server, listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.serve(listener).await }
        });
        Self {
            server,
            addr,
            serving,
        }
    }

    /// `ws://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Shuts the server down and waits for `serve` to return.
    pub async fn stop(self) -> usize {
        let dropped = within("shutdown", self.server.shutdown(GUARD)).await;
        within("serve() to return", self.serving)
            .await
            .expect("serve task panicked")
            .expect("serve returned an error");
        dropped
    }

    /// Shuts down while `peer` reads (so that it answers the close), asserting that
    /// the peer saw a normal close; returns how many connections were dropped.
    pub async fn stop_with(self, peer: &mut WsPeer) -> usize {
        let (dropped, (_, close)) = tokio::join!(self.stop(), peer.until_close());
        let close = close.expect("a close frame with a code");
        assert_eq!(u16::from(close.code), 1000);
        dropped
    }
}

// ---------------------------------------------------------------------------------
// A raw WebSocket peer (tokio-tungstenite)
// ---------------------------------------------------------------------------------

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A raw WebSocket client: exact messages in and out, no etp logic.
pub struct WsPeer {
    pub ws: WsStream,
}

impl WsPeer {
    /// Connects to `url` (a `ws://` URL).
    pub async fn connect(url: &str) -> Self {
        let (ws, response) = within(
            "raw websocket connect",
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("raw websocket handshake");
        assert_eq!(response.status(), 101);
        Self { ws }
    }

    pub async fn send(&mut self, message: Message) {
        within("raw send", self.ws.send(message))
            .await
            .expect("raw send failed");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await;
    }

    /// The next message of any kind; `None` once the stream ended.
    pub async fn next(&mut self) -> Option<Message> {
        match within("a message from the server", self.ws.next()).await {
            None => None,
            Some(Ok(message)) => Some(message),
            Some(Err(err)) => panic!("raw peer read failed: {err}"),
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
                    // Let tungstenite flush the echo and see the end of the stream.
                    while let Some(Ok(_)) = within("end of stream", self.ws.next()).await {}
                    return (before, frame);
                }
                Some(message) => before.push(message),
                None => panic!("stream ended without a close frame; got {before:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// A hand-written WebSocket client over a bare TCP stream
// ---------------------------------------------------------------------------------

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A sample `Sec-WebSocket-Key` (RFC 6455's).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// One frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
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

    pub fn text(&self) -> String {
        String::from_utf8(self.payload.clone()).expect("utf-8 payload")
    }
}

/// The reading half of a [`RawSocket`].
pub struct RawReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
}

/// The writing half of a [`RawSocket`].
pub struct RawWriter {
    write: OwnedWriteHalf,
}

/// A WebSocket client written by hand over a `TcpStream`.
pub struct RawSocket {
    pub reader: RawReader,
    pub writer: RawWriter,
    pub local_addr: SocketAddr,
}

impl RawSocket {
    /// Opens a TCP connection and performs the upgrade on `path`; asserts `101`.
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        let stream = within("tcp connect", TcpStream::connect(addr))
            .await
            .expect("tcp connect");
        let local_addr = stream.local_addr().expect("local addr");
        let (read, mut write) = stream.into_split();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        );
        within("write upgrade", write.write_all(request.as_bytes()))
            .await
            .expect("write upgrade");
        let mut reader = RawReader {
            read,
            buf: Vec::new(),
        };
        let head = reader.read_head().await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "upgrade refused: {head:?}"
        );
        Self {
            reader,
            writer: RawWriter { write },
            local_addr,
        }
    }

    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.writer.send(opcode, payload).await.expect("raw write");
    }

    pub async fn frame(&mut self) -> Option<RawFrame> {
        self.reader.frame().await
    }
}

impl RawReader {
    /// Reads the HTTP response head (up to the empty line), keeping what follows.
    async fn read_head(&mut self) -> String {
        within("http response head", async {
            loop {
                if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    return head;
                }
                let mut chunk = [0u8; 4096];
                let n = self.read.read(&mut chunk).await.expect("read head");
                assert!(n > 0, "connection closed before the response head");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }

    /// Fills the buffer to `n` bytes; false on end of stream or a reset.
    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 64 * 1024];
            match self.read.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(got) => self.buf.extend_from_slice(&chunk[..got]),
            }
        }
        true
    }

    /// The next frame from the server; `None` when the TCP stream ended (or was reset)
    /// first.
    pub async fn frame(&mut self) -> Option<RawFrame> {
        within("a raw frame", async {
            if !self.fill(2).await {
                return None;
            }
            let (b0, b1) = (self.buf[0], self.buf[1]);
            let masked = b1 & 0x80 != 0;
            let (len, mut at) = match b1 & 0x7f {
                126 => {
                    if !self.fill(4).await {
                        return None;
                    }
                    (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
                }
                127 => {
                    if !self.fill(10).await {
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
            if !self.fill(total).await {
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
        })
        .await
    }

    /// Reads frames until a close frame; returns the frames before it and the close.
    pub async fn until_close(&mut self) -> (Vec<RawFrame>, RawFrame) {
        let mut before = Vec::new();
        loop {
            match self.frame().await {
                Some(frame) if frame.opcode == OP_CLOSE => return (before, frame),
                Some(frame) => before.push(frame),
                None => panic!("stream ended without a close frame after {before:?}"),
            }
        }
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
        let bytes = encode_frame(fin, opcode, payload, masked);
        self.write.write_all(&bytes).await?;
        self.write.flush().await
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------------

/// A raw HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends `request` (a complete HTTP/1.1 request head) on a new connection and reads the
/// response: the head, and the body per `Content-Length` (none for `101`).
pub async fn http_exchange(addr: SocketAddr, request: &str) -> HttpResponse {
    within("an http exchange", async {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        let (read, mut write) = stream.into_split();
        write.write_all(request.as_bytes()).await.expect("write");
        let mut reader = RawReader {
            read,
            buf: Vec::new(),
        };
        let head = reader.read_head().await;
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
            assert!(reader.fill(len).await, "body cut short");
            response.body = String::from_utf8_lossy(&reader.buf[..len]).into_owned();
        }
        drop(write);
        response
    })
    .await
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
// A raw WebSocket server (tokio-tungstenite), for testing the client's bytes
// ---------------------------------------------------------------------------------

pub type ServerWs = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A listener on `127.0.0.1:0` and its `ws://` URL.
pub async fn raw_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/raw", listener.local_addr().expect("addr"));
    (listener, url)
}

/// Accepts one WebSocket connection, returning it and the upgrade request's headers.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
pub async fn raw_accept(listener: &tokio::net::TcpListener) -> (ServerWs, http::HeaderMap) {
    within("raw accept", async {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut seen = http::HeaderMap::new();
        let callback = |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                        response| {
            seen = request.headers().clone();
            Ok(response)
        };
        let ws = tokio_tungstenite::accept_hdr_async(stream, callback)
            .await
            .expect("raw server handshake");
        (ws, seen)
    })
    .await
}

/// The next text message a raw server reads.
pub async fn server_next_text(ws: &mut ServerWs) -> String {
    match within("a message from the client", ws.next()).await {
        Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}
