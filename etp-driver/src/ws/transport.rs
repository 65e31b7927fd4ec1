//! The byte stream under a WebSocket, as the codec needs it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};

/// A connected byte stream (a TCP socket, an upgraded HTTP connection, TLS) that a
/// [`WsStream`](super::WsStream) speaks WebSocket over. The adapters implement it for
/// their runtime's sockets; [`FuturesIo`] covers every `futures-io` socket.
pub trait Transport: Send + Unpin + 'static {
    /// Reads what is ready, appending at most `max` bytes to `buf` (whose spare
    /// capacity is at least `max`). `Ok(0)` is the end of the stream.
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        max: usize,
    ) -> Poll<io::Result<usize>>;

    /// Writes some of `buf`: how many bytes were taken.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Flushes what the stream itself buffers.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Shuts the writing half down.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// A socket with the `futures-io` traits (async-std's, smol's, async-io's) as a
/// [`Transport`].
#[derive(Debug)]
pub struct FuturesIo<T>(pub T);

impl<T> Transport for FuturesIo<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        // `futures-io` reads into initialised memory only: zero what may be read.
        buf.resize(len + max, 0);
        let polled = Pin::new(&mut self.0).poll_read(cx, &mut buf[len..]);
        let read = match polled {
            Poll::Ready(Ok(read)) => read.min(max),
            _ => 0,
        };
        buf.truncate(len + read);
        polled
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
