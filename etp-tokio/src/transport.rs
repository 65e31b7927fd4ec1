//! tokio sockets under etp's WebSocket framing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// A tokio byte stream as an [`etp_driver::ws::Transport`]. It reads into the
/// buffer's spare capacity as it is, without zeroing it first.
#[derive(Debug)]
pub(crate) struct TokioTransport<T>(pub(crate) T);

impl<T> etp_driver::ws::Transport for TokioTransport<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        // `read_buf`'s future holds no state of its own: polling a fresh one is one
        // `poll_read` into the spare capacity.
        buf.reserve(max);
        let mut limited = buf.limit(max);
        std::pin::pin!(self.0.read_buf(&mut limited)).poll(cx)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
