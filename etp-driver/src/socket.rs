//! A WebSocket over a non-blocking byte stream, polled with the driver's own context.
//!
//! tokio-tungstenite's and async-tungstenite's `WebSocketStream` reach the socket
//! through a proxy: every read, write and flush first registers the caller's waker in
//! an `AtomicWaker` per direction, and the socket only ever sees the proxy's waker.
//! The driver is one task that owns its socket, so the proxy buys nothing: here the
//! socket is polled with the task's context directly. What the stream does with
//! messages (framing, masking, control frames, the close handshake, limits) is
//! tungstenite's, unchanged.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{Sink, Stream};
use tungstenite::Message;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

/// A WebSocket over `T` (a TCP or TLS stream, after the HTTP upgrade) for the driver:
/// a [`Stream`] of received messages and a [`Sink`] of messages to send, as
/// [`WebSocket`](crate::WebSocket) needs.
///
/// It behaves as tokio-tungstenite's `WebSocketStream` does, without the per-call
/// waker proxy. The runtime adapters use it for the server side.
pub struct WsStream<T> {
    io: T,
    ws: WebSocketContext,
    /// The stream has returned its end or a fatal error: it is fused.
    ended: bool,
    /// False after a write that could not be flushed: `poll_ready` flushes first.
    ready: bool,
    /// The close frame is queued; closing only flushes now.
    closing: bool,
}

impl<T> WsStream<T> {
    /// A WebSocket over `io`, whose upgrade handshake is complete.
    pub fn new(io: T, role: Role, config: WebSocketConfig) -> Self {
        Self::with_context(io, WebSocketContext::new(role, Some(config)))
    }

    /// A WebSocket over `io` when `part` was read from it after the handshake (the
    /// first bytes of the first frame). tungstenite keeps `part` as its read buffer,
    /// so give it the capacity of [`WebSocketConfig::read_buffer_size`].
    pub fn from_partially_read(io: T, part: Vec<u8>, role: Role, config: WebSocketConfig) -> Self {
        Self::with_context(
            io,
            WebSocketContext::from_partially_read(part, role, Some(config)),
        )
    }

    fn with_context(io: T, ws: WebSocketContext) -> Self {
        Self {
            io,
            ws,
            ended: false,
            ready: true,
            closing: false,
        }
    }
}

impl<T> std::fmt::Debug for WsStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream")
            .field("ended", &self.ended)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

/// The byte stream seen through `std::io` for tungstenite, polled with `cx`:
/// `Pending` becomes `WouldBlock`, with `cx`'s waker registered by the stream.
struct Io<'a, 'b, T> {
    io: &'a mut T,
    cx: &'a mut Context<'b>,
}

fn would_block<R>(poll: Poll<io::Result<R>>) -> io::Result<R> {
    match poll {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl<T: AsyncRead + Unpin> Read for Io<'_, '_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.io).poll_read(self.cx, buf))
    }
}

impl<T: AsyncWrite + Unpin> Write for Io<'_, '_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.io).poll_write(self.cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        would_block(Pin::new(&mut *self.io).poll_flush(self.cx))
    }
}

/// tungstenite's result as a poll: `WouldBlock` means the socket registered the
/// waker and will wake the task.
fn pending_on_would_block<R>(result: Result<R, WsError>) -> Poll<Result<R, WsError>> {
    match result {
        Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        other => Poll::Ready(other),
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> WsStream<T> {
    fn io<'a, 'b>(
        &'a mut self,
        cx: &'a mut Context<'b>,
    ) -> (&'a mut WebSocketContext, Io<'a, 'b, T>) {
        (
            &mut self.ws,
            Io {
                io: &mut self.io,
                cx,
            },
        )
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream for WsStream<T> {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let (ws, mut io) = self.io(cx);
        match std::task::ready!(pending_on_would_block(ws.read(&mut io))) {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(err) => {
                self.ended = true;
                if matches!(err, WsError::AlreadyClosed | WsError::ConnectionClosed) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(err)))
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsStream<T> {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        // A write could not get through: flush the blockage away first.
        let (ws, mut io) = self.io(cx);
        let result = std::task::ready!(pending_on_would_block(ws.flush(&mut io)));
        self.ready = true;
        Poll::Ready(result)
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        // `Sink::start_send` has no context. tungstenite writes to the socket here only
        // when its buffer is full; if the socket is not ready, the waker it registers is
        // a no-op one, and `poll_ready` or `poll_flush`, which must come next, poll it
        // again with the task's context.
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let (ws, mut io) = self.io(&mut cx);
        match ws.write(&mut io, message) {
            Ok(()) => {
                self.ready = true;
                Ok(())
            }
            // Queued, not sent: `poll_ready` flushes before taking more.
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                self.ready = false;
                Ok(())
            }
            Err(err) => {
                self.ready = true;
                Err(err)
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let (ws, mut io) = self.io(cx);
        let result = std::task::ready!(pending_on_would_block(ws.flush(&mut io)));
        self.ready = true;
        match result {
            // The close handshake has just completed: flushing did its job.
            Err(WsError::ConnectionClosed) => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.ready = true;
        let closing = self.closing;
        let (ws, mut io) = self.io(cx);
        // Once the close frame is queued, flushing drives the handshake on.
        let result = if closing {
            ws.flush(&mut io)
        } else {
            ws.close(&mut io, None)
        };
        match result {
            Ok(()) | Err(WsError::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                self.closing = true;
                Poll::Pending
            }
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}
