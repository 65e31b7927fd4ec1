//! The checker behind the `framing` fuzz target: the server's WebSocket framing
//! ([`WsStream`]) against tungstenite's, on the same bytes from a client.
//!
//! The first input byte sets the read limit (1 to 1,021 bytes), the second how many
//! bytes each read returns (1 to 64); the rest is what the client sent, then the end
//! of the stream. Both sides read messages until they stop. The checks:
//!
//! * nothing panics, and the stream ends (an error or the end) within a bounded
//!   number of polls, never waiting on a socket that has no more to give;
//! * the messages are tungstenite's, in order. tungstenite checks a fragmented text
//!   message's UTF-8 as its fragments arrive and so may fail sooner: when its error is
//!   a UTF-8 one, its messages need only be the first of ours;
//! * no message is over the read limit (but a close read as 1002, whose reason is ours);
//! * every ping is answered with a pong of its data at the next flush, and a close
//!   with its echo before the stream ends.

use std::io::{self, Cursor, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::{Sink, Stream};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error, Message};

use crate::ConnConfig;
use crate::ws::{Transport, WsStream};

/// An in-memory socket: reads hand out `input` a few bytes at a time, then the end of
/// the stream; writes are kept, or refused (`Pending`) while `blocked`.
#[derive(Debug, Default)]
pub struct MemTransport {
    /// Bytes still to be read.
    pub input: Vec<u8>,
    /// The most one read returns.
    pub chunk: usize,
    /// Reads answer `Pending` (no data yet) rather than the end of the stream once
    /// `input` is used up.
    pub open: bool,
    /// Everything written.
    pub written: Vec<u8>,
    /// Writes answer `Pending` while set.
    pub blocked: bool,
}

impl Transport for MemTransport {
    fn poll_read_buf(
        &mut self,
        _cx: &mut Context<'_>,
        buf: &mut BytesMut,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        if self.input.is_empty() && self.open {
            return Poll::Pending;
        }
        let n = self.input.len().min(self.chunk.max(1)).min(max);
        buf.extend_from_slice(&self.input[..n]);
        self.input.drain(..n);
        Poll::Ready(Ok(n))
    }

    fn poll_write(&mut self, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.blocked {
            return Poll::Pending;
        }
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A blocking socket for tungstenite: reads from the input, writes are dropped.
struct Duplex(Cursor<Vec<u8>>);

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Polls once with a waker that does nothing.
pub fn poll_once<T>(poll: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
    poll(&mut Context::from_waker(
        futures_util::task::noop_waker_ref(),
    ))
}

/// One frame as a client sends it: masked with `mask`, the length in the shortest
/// encoding.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 | opcode } else { opcode }];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => match u16::try_from(n) {
            Ok(n) => {
                out.push(0x80 | 126);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Err(_) => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        },
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The server stream over `input`, read `chunk` bytes at a time, with `limit`.
pub fn server_stream(input: Vec<u8>, chunk: usize, limit: usize) -> WsStream<MemTransport> {
    let mut config = ConnConfig::default();
    config.session.read_limit = Some(limit);
    let transport = MemTransport {
        input,
        chunk,
        ..MemTransport::default()
    };
    WsStream::server(transport, &[], &config)
}

/// What tungstenite's server reads from `input`: its messages and its final error.
fn tungstenite_reads(input: &[u8], limit: usize) -> (Vec<Message>, Error) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let mut ws = WebSocket::from_raw_socket(
        Duplex(Cursor::new(input.to_vec())),
        Role::Server,
        Some(config),
    );
    let mut messages = Vec::new();
    // Every message takes at least two bytes of input.
    for _ in 0..input.len() + 2 {
        match ws.read() {
            Ok(message) => messages.push(message),
            Err(err) => return (messages, err),
        }
    }
    panic!("tungstenite did not stop");
}

/// The fuzz target's check (see the module documentation).
pub fn framing(data: &[u8]) {
    let [limit, chunk, input @ ..] = data else {
        return;
    };
    let limit = 1 + usize::from(*limit) * 4;
    let chunk = 1 + usize::from(*chunk % 64);
    let mut ws = server_stream(input.to_vec(), chunk, limit);
    let mut ours = Vec::new();
    let mut ended = false;
    // Every message takes at least two bytes, every read at least one.
    for _ in 0..2 * input.len() + 4 {
        let Poll::Ready(next) = poll_once(|cx| Pin::new(&mut ws).poll_next(cx)) else {
            panic!("the stream waits on a socket that has ended");
        };
        let message = match next {
            None | Some(Err(_)) => {
                ended = true;
                break;
            }
            Some(Ok(message)) => message,
        };
        // A close with a code no endpoint may send reads as tungstenite's 1002 "Protocol
        // violation", whatever the limit.
        assert!(
            message.len() <= limit || matches!(message, Message::Close(_)),
            "a message of {} bytes",
            message.len()
        );
        let before = ws.get_ref().written.len();
        let Poll::Ready(Ok(())) = poll_once(|cx| Pin::new(&mut ws).poll_flush(cx)) else {
            panic!("a flush to a socket that takes everything did not finish");
        };
        let sent = &ws.get_ref().written[before..];
        match &message {
            Message::Ping(data) => {
                assert_eq!(sent[..2], [0x8A, data.len() as u8], "the pong's header");
                assert_eq!(sent[2..], data[..], "the pong's data");
            }
            Message::Close(frame) => {
                let echo: Vec<u8> = match frame {
                    None => vec![0x88, 0],
                    Some(frame) => {
                        let mut echo = vec![0x88, 2 + frame.reason.len() as u8];
                        echo.extend_from_slice(&u16::from(frame.code).to_be_bytes());
                        echo.extend_from_slice(frame.reason.as_bytes());
                        echo
                    }
                };
                assert_eq!(sent, &echo[..], "the close echo");
            }
            _ => assert!(sent.is_empty(), "{} bytes written unasked", sent.len()),
        }
        ours.push(message);
    }
    assert!(ended, "the stream did not end");
    let (theirs, error) = tungstenite_reads(input, limit);
    if matches!(error, Error::Utf8(_)) {
        assert!(
            ours.starts_with(&theirs),
            "ours {ours:?}\ntungstenite's {theirs:?} then {error}"
        );
    } else {
        assert_eq!(ours, theirs, "tungstenite ended with {error}");
    }
}
