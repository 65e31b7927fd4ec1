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
    /// Reads what is ready, appending at most `max` bytes to `buf` and growing it as
    /// needed. `Ok(0)` is the end of the stream.
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
pub struct FuturesIo<T> {
    io: T,
    /// Zeroed once, at the first read: `futures-io` reads into initialised memory only,
    /// and copying what a read returned costs less than zeroing the read's room in the
    /// buffer before every read (most reads return a few frames, or nothing).
    scratch: Vec<u8>,
    scratch_len: usize,
}

impl<T> FuturesIo<T> {
    /// Wraps `io`. Reads of up to `scratch_len` bytes go through a scratch buffer of
    /// that size, kept for the connection's life; larger ones (a large frame arriving)
    /// go straight into the read buffer. Give it the read size of the
    /// [`ConnConfig`](crate::ConnConfig) (`read_buffer_size`): its size is fixed here
    /// rather than by the first read, which may be for a large frame.
    pub fn new(io: T, scratch_len: usize) -> Self {
        Self {
            io,
            scratch: Vec::new(),
            scratch_len,
        }
    }
}

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
        if max <= self.scratch_len {
            if self.scratch.is_empty() {
                self.scratch = vec![0; self.scratch_len];
            }
            let polled = Pin::new(&mut self.io).poll_read(cx, &mut self.scratch[..max]);
            if let Poll::Ready(Ok(read)) = polled
                && read > 0
            {
                // The buffer grows only when data came: an idle connection keeps
                // just the scratch.
                buf.reserve(max);
                buf.extend_from_slice(&self.scratch[..read.min(max)]);
            }
            return polled;
        }
        // A large frame arriving: read into the buffer itself, zeroing the room first,
        // rather than keep a scratch that large.
        let len = buf.len();
        buf.resize(len + max, 0);
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut buf[len..]);
        let read = match polled {
            Poll::Ready(Ok(read)) => read.min(max),
            _ => 0,
        };
        buf.truncate(len + read);
        polled
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        io: &mut FuturesIo<futures_util::io::Cursor<Vec<u8>>>,
        buf: &mut BytesMut,
        max: usize,
    ) -> usize {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match io.poll_read_buf(&mut cx, buf, max) {
            Poll::Ready(Ok(read)) => read,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_append_through_the_scratch_or_directly_when_larger() {
        let data: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        let mut io = FuturesIo::new(futures_util::io::Cursor::new(data.clone()), 100);
        let mut buf = BytesMut::from(&b"kept"[..]);
        assert_eq!(
            read(&mut io, &mut buf, 5_000),
            5_000,
            "a read larger than the scratch goes straight into the buffer"
        );
        assert!(io.scratch.is_empty(), "and does not size the scratch");
        assert_eq!(
            read(&mut io, &mut buf, 100),
            100,
            "a read at its size uses it"
        );
        assert_eq!(io.scratch.len(), 100);
        assert_eq!(read(&mut io, &mut buf, 60), 60, "as does a smaller one");
        assert_eq!(
            read(&mut io, &mut buf, 101),
            101,
            "one byte more reads directly"
        );
        assert_eq!(io.scratch.len(), 100);
        assert_eq!(buf.len(), 4 + 5_261);
        assert_eq!(&buf[..4], b"kept");
        assert_eq!(&buf[4..], &data[..5_261]);
        assert_eq!(read(&mut io, &mut buf, 5_000), 4_739);
        assert_eq!(read(&mut io, &mut buf, 100), 0, "the end of the stream");
        assert_eq!(buf.len(), 4 + 10_000);
    }
}
