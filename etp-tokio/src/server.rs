//! Standalone serving: accept TCP connections and speak HTTP/1.1 with upgrades.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::Server;

/// Serving an etp [`Server`] on tokio sockets.
pub trait ServerExt {
    /// Binds `addr` and serves WebSocket upgrades on any path until shutdown begins.
    fn listen(
        &self,
        addr: impl ToSocketAddrs + Send,
    ) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Serves WebSocket upgrades from an already bound listener until shutdown begins.
    /// Connections that are open then are closed by [`Server::shutdown`].
    fn serve(&self, listener: TcpListener) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl ServerExt for Server {
    async fn listen(&self, addr: impl ToSocketAddrs + Send) -> std::io::Result<()> {
        self.serve(TcpListener::bind(addr).await?).await
    }

    async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = self.shutdown_started() => return Ok(()),
            };
            match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_http(self.clone(), stream, remote));
                }
                // Out of file descriptors and the like: report, pause briefly, go on.
                Err(err) => {
                    self.report_error(etp_driver::Error::Io(err));
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// One HTTP/1.1 connection: a single upgrade request is expected, anything else is
/// refused with the handshake's status.
async fn serve_http(server: Server, stream: tokio::net::TcpStream, remote: SocketAddr) {
    let handshake_timeout = server.handshake_timeout();
    let service = service_fn(move |request: http::Request<Incoming>| {
        let server = server.clone();
        async move {
            Ok::<_, Infallible>(
                crate::upgrade::<_, Full<Bytes>>(&server, request, Some(remote)).await,
            )
        }
    });
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // A client that sends half a request and stalls is dropped.
        .header_read_timeout(handshake_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    // Errors here are the peer's (a reset, a malformed request): nothing to report.
    let _ = connection.await;
}
