//! A server's WebSocket over a [`Transport`]: reads messages, writes frames, answers
//! pings and closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tungstenite::error::{Error, ProtocolError};
use tungstenite::protocol::frame::coding::{Control, OpCode};
use tungstenite::{Message, protocol::CloseFrame};

use super::decoder::Decoder;
use super::frame::{self, MAX_CONTROL_PAYLOAD, write_header};
use super::transport::Transport;
use crate::ConnConfig;

/// Written bytes waiting in the stream above which it takes no more messages until
/// the socket took some.
const WRITE_BUFFER: usize = 8 * 1024;
/// The most read per system call while a large frame arrives, and so the most memory
/// a frame's stated length reserves before its bytes are there.
const MAX_READ: usize = 64 * 1024;
/// Write-buffer capacity kept after a flush; more is given back, so that one large
/// message does not stay with the connection for good.
const KEEP_WRITE_CAPACITY: usize = 64 * 1024;

/// How far the close handshake is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// The peer's close frame was read and our echo queued: the handshake ends when
    /// the echo is written.
    ClosedByPeer,
    /// Our close frame was queued; reading goes on until the peer's answer.
    ClosedByUs,
    /// The peer answered our close: the handshake is over.
    Acknowledged,
    /// The handshake is over and the echo written.
    Done,
}

/// The server's side of a WebSocket (RFC 6455) over a [`Transport`], without
/// extensions: a stream of received messages and a sink of messages to send, as the
/// [`Server`](crate::Server) drives it.
///
/// It behaves as tungstenite's server stream does, with fewer copies and no zeroing of
/// its read buffer (on transports that read into spare capacity):
///
/// * frames from the client must be masked; reserved bits and opcodes, fragmented or
///   oversized control frames, frames out of sequence and text that is not UTF-8 end
///   the stream with tungstenite's error for them;
/// * a message (all of its fragments) larger than the read limit ends the stream with
///   `Capacity(MessageTooLong)`, found from the frame header before its payload is
///   read;
/// * a ping is answered with a pong at the next flush (only the latest ping's, as
///   tungstenite does); the peer's close is echoed, and the stream ends once the echo
///   is written;
/// * a socket that ends without a close frame is
///   `Protocol(ResetWithoutClosingHandshake)`.
#[derive(Debug)]
pub struct WsStream<T> {
    io: T,
    read: BytesMut,
    read_size: usize,
    decoder: Decoder,
    out: Vec<u8>,
    /// Bytes at the start of `out` already written.
    written: usize,
    /// The answer to the latest ping, not yet in `out`.
    pong: Option<Bytes>,
    state: State,
    /// Reading ended with an error (reported once). Writing may go on: a close frame
    /// can still tell the peer why.
    read_failed: bool,
}

impl<T: Transport> WsStream<T> {
    /// The server's side of a connection whose upgrade was answered: `received` are
    /// bytes the client sent after its request head (the start of its first frames).
    /// The read limit and read buffer size are `config`'s.
    pub fn server(io: T, received: &[u8], config: &ConnConfig) -> Self {
        Self {
            io,
            read: BytesMut::from(received),
            read_size: config.read_buffer_size.max(frame::MAX_HEADER_LEN),
            decoder: Decoder::new(config.session.read_limit.unwrap_or(usize::MAX)),
            out: Vec::new(),
            written: 0,
            pong: None,
            state: State::Open,
            read_failed: false,
        }
    }

    /// The transport.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The transport, to change its settings. Reading or writing it directly would
    /// break the framing.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    fn buffered(&self) -> usize {
        self.out.len() - self.written
    }

    /// Writes `out` to the transport until all of it is taken.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match ready!(self.io.poll_write(cx, &self.out[self.written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        self.out.clear();
        self.written = 0;
        if self.out.capacity() > KEEP_WRITE_CAPACITY {
            self.out.shrink_to(WRITE_BUFFER);
        }
        Poll::Ready(Ok(()))
    }

    /// Appends one frame to `out`.
    fn encode(&mut self, fin: bool, opcode: u8, parts: [&[u8]; 2]) {
        // Written bytes are dropped before the buffer grows past them.
        if self.written > 0 && self.written >= self.out.len() / 2 {
            self.out.drain(..self.written);
            self.written = 0;
        }
        let len = parts[0].len() + parts[1].len();
        self.out.reserve(frame::MAX_HEADER_LEN + len);
        write_header(&mut self.out, fin, opcode, len);
        self.out.extend_from_slice(parts[0]);
        self.out.extend_from_slice(parts[1]);
    }

    /// Appends a control frame, which must be final and at most 125 bytes long (RFC
    /// 6455, 5.5).
    fn encode_control(&mut self, fin: bool, opcode: u8, parts: [&[u8]; 2]) -> Result<(), Error> {
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame.into());
        }
        if parts[0].len() + parts[1].len() > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlFrameTooBig.into());
        }
        self.encode(true, opcode, parts);
        Ok(())
    }

    fn encode_close(&mut self, frame: Option<&CloseFrame>) -> Result<(), Error> {
        match frame {
            None => self.encode_control(true, frame::CLOSE, [&[], &[]]),
            Some(frame) => {
                let code = u16::from(frame.code).to_be_bytes();
                self.encode_control(true, frame::CLOSE, [&code, frame.reason.as_bytes()])
            }
        }
    }

    /// Our close frame is queued: no pong follows it, and nothing else may.
    fn closing(&mut self) {
        self.pong = None;
        self.state = State::ClosedByUs;
    }

    /// Notes what a received message means for the connection: pings are answered,
    /// the peer's close is echoed.
    fn on_received(&mut self, message: &Message) {
        match message {
            Message::Ping(data) if self.state == State::Open => self.pong = Some(data.clone()),
            Message::Close(frame) => match self.state {
                State::Open => {
                    self.pong = None;
                    // Only a frame that read without error gets here: its reason fits.
                    let _ = self.encode_close(frame.as_ref());
                    self.state = State::ClosedByPeer;
                }
                State::ClosedByUs => self.state = State::Acknowledged,
                _ => {}
            },
            _ => {}
        }
    }
}

impl<T: Transport> Stream for WsStream<T> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.read_failed {
            return Poll::Ready(None);
        }
        loop {
            match this.state {
                State::Done => return Poll::Ready(None),
                State::ClosedByPeer | State::Acknowledged => {
                    // Nothing is read after the peer's close: the handshake is over
                    // once our echo (if we owe one) is out.
                    let written = ready!(this.poll_write_out(cx));
                    this.state = State::Done;
                    return Poll::Ready(written.err().map(|err| Err(Error::Io(err))));
                }
                State::Open | State::ClosedByUs => {}
            }
            match this.decoder.decode(&mut this.read) {
                Ok(Some(message)) => {
                    this.on_received(&message);
                    return Poll::Ready(Some(Ok(message)));
                }
                Ok(None) => {}
                Err(err) => {
                    this.read_failed = true;
                    return Poll::Ready(Some(Err(err)));
                }
            }
            let max = this
                .decoder
                .wanted(this.read.len())
                .clamp(this.read_size, MAX_READ.max(this.read_size));
            match ready!(this.io.poll_read_buf(cx, &mut this.read, max)) {
                Ok(0) => {
                    this.read_failed = true;
                    return Poll::Ready(Some(Err(
                        ProtocolError::ResetWithoutClosingHandshake.into()
                    )));
                }
                Ok(_) => {}
                Err(err) => {
                    this.read_failed = true;
                    return Poll::Ready(Some(Err(Error::Io(err))));
                }
            }
        }
    }
}

impl<T: Transport> Sink<Message> for WsStream<T> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.buffered() >= WRITE_BUFFER {
            if let Poll::Ready(Err(err)) = this.poll_write_out(cx) {
                return Poll::Ready(Err(Error::Io(err)));
            }
            if this.buffered() >= WRITE_BUFFER {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        let this = self.get_mut();
        match this.state {
            State::Open => {}
            // What was queued when the peer's close arrived is dropped, as the peer
            // reads nothing after its close.
            State::ClosedByPeer => return Ok(()),
            State::ClosedByUs | State::Acknowledged | State::Done => {
                return Err(ProtocolError::SendAfterClosing.into());
            }
        }
        match &message {
            Message::Text(text) => this.encode(true, frame::TEXT, [text.as_bytes(), &[]]),
            Message::Binary(data) => this.encode(true, frame::BINARY, [data, &[]]),
            Message::Ping(data) => this.encode_control(true, frame::PING, [data, &[]])?,
            Message::Pong(data) => this.encode_control(true, frame::PONG, [data, &[]])?,
            Message::Close(frame) => {
                this.encode_close(frame.as_ref())?;
                this.closing();
            }
            Message::Frame(frame) => {
                let header = frame.header();
                let parts = [frame.payload(), &[]];
                let opcode = u8::from(header.opcode);
                match header.opcode {
                    OpCode::Control(control) => {
                        this.encode_control(header.is_final, opcode, parts)?;
                        // A close is a close however it was built.
                        if control == Control::Close {
                            this.closing();
                        }
                    }
                    OpCode::Data(_) => this.encode(header.is_final, opcode, parts),
                }
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        // The pong waits while the socket is behind; a later ping replaces it.
        if this.buffered() < WRITE_BUFFER
            && let Some(data) = this.pong.take()
        {
            this.encode(true, frame::PONG, [&data, &[]]);
        }
        ready!(this.poll_write_out(cx)).map_err(Error::Io)?;
        this.io.poll_flush(cx).map_err(Error::Io)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        ready!(self.as_mut().poll_flush(cx))?;
        self.get_mut().io.poll_close(cx).map_err(Error::Io)
    }
}
