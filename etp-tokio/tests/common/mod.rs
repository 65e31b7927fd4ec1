//! Loopback harness for etp-tokio's own integration tests: what only tokio has (the
//! axum route). The behaviour suite that runs on every runtime is the `etp-behaviour`
//! package (`behaviour/`).
//!
//! * [`Hooks`]: channels that record connects, disconnects and errors.
//! * [`WsPeer`]: a raw tokio-tungstenite client that reads exact messages.
//! * [`http_exchange`]: one raw HTTP/1.1 request and its response.
//!
//! Every wait is bounded by [`GUARD`], so that a broken library fails a test instead
//! of hanging it.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use etp_tokio::{Conn, DisconnectReason, Error, ServerBuilder};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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

/// What the hooks of a server heard.
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

    /// The next message of any kind; `None` once the stream ended.
    pub async fn next(&mut self) -> Option<Message> {
        match within("a message from the server", self.ws.next()).await {
            None => None,
            Some(Ok(message)) => Some(message),
            Some(Err(err)) => panic!("raw peer read failed: {err}"),
        }
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
// Raw HTTP
// ---------------------------------------------------------------------------------

/// A sample `Sec-WebSocket-Key` (RFC 6455's).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

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
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read head");
            assert!(n > 0, "connection closed before the response head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
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
            while buf.len() < len {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.expect("read body");
                assert!(n > 0, "body cut short");
                buf.extend_from_slice(&chunk[..n]);
            }
            response.body = String::from_utf8_lossy(&buf[..len]).into_owned();
        }
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
