//! The byte stream under a WebSocket, as the codec needs it.

use std::cell::RefCell;
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
}

impl<T> FuturesIo<T> {
    /// Wraps `io`.
    pub fn new(io: T) -> Self {
        Self { io }
    }
}

/// Reads of up to this many bytes go through the thread's scratch.
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    /// Zeroed once per thread: `futures-io` reads into initialised memory only, and
    /// copying what a read returned costs less than zeroing the read's room in the
    /// buffer before every read (most reads return a few frames, or nothing). One per
    /// thread rather than per connection: a read copies out of it before it returns,
    /// so connections never hold it, and many connections share one warm buffer.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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
        if max <= SCRATCH_LEN {
            let through_scratch = SCRATCH.try_with(|scratch| {
                // Taken only if `io` is itself a transport reading through it.
                let mut scratch = scratch.try_borrow_mut().ok()?;
                if scratch.is_empty() {
                    scratch.resize(SCRATCH_LEN, 0);
                }
                let polled = Pin::new(&mut self.io).poll_read(cx, &mut scratch[..max]);
                if let Poll::Ready(Ok(read)) = polled
                    && read > 0
                {
                    // The buffer grows only when data came: an idle connection keeps
                    // no read buffer.
                    buf.reserve(max);
                    buf.extend_from_slice(&scratch[..read.min(max)]);
                }
                Some(polled)
            });
            if let Ok(Some(polled)) = through_scratch {
                return polled;
            }
        }
        // A read larger than the scratch (a read buffer configured larger), or no
        // scratch to be had: read into the buffer itself, zeroing the room first.
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
        let data: Vec<u8> = (0..=255).cycle().take(2 * SCRATCH_LEN + 171).collect();
        let mut io = FuturesIo::new(futures_util::io::Cursor::new(data.clone()));
        let mut buf = BytesMut::from(&b"kept"[..]);
        assert_eq!(read(&mut io, &mut buf, 100), 100, "through the scratch");
        let sized = SCRATCH.with(|scratch| scratch.borrow().len());
        assert_eq!(sized, SCRATCH_LEN, "sized once, at its first use");
        assert_eq!(
            read(&mut io, &mut buf, SCRATCH_LEN),
            SCRATCH_LEN,
            "at its size"
        );
        assert_eq!(
            read(&mut io, &mut buf, SCRATCH_LEN + 1),
            SCRATCH_LEN + 1,
            "one byte more goes straight into the buffer"
        );
        // With the scratch taken (a transport read inside another), reads go
        // straight into the buffer too.
        let nested = SCRATCH.with(|scratch| {
            let _taken = scratch.borrow_mut();
            read(&mut io, &mut buf, 60)
        });
        assert_eq!(nested, 60);
        assert_eq!(read(&mut io, &mut buf, 100), 10, "the rest");
        assert_eq!(read(&mut io, &mut buf, 100), 0, "the end of the stream");
        assert_eq!(&buf[..4], b"kept");
        assert_eq!(&buf[4..], &data[..]);
    }
}
