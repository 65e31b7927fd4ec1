//! Standalone serving on async-std sockets.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use async_std::net::{TcpListener, TcpStream};
use etp_driver::Request;
use etp_driver::ws::{FuturesIo, WsStream};
use futures_util::FutureExt;

use crate::Server;
use crate::http::{HeadError, keep_alive_after_refusal, read_head, skip_body, write_response};

/// Serving an etp [`Server`] on async-std sockets.
pub trait ServerExt {
    /// Binds `addr` and serves WebSocket upgrades on any path until shutdown begins.
    /// (The address is resolved before binding, with the standard library's resolver.)
    fn listen(
        &self,
        addr: impl std::net::ToSocketAddrs,
    ) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Serves WebSocket upgrades from a bound listener until shutdown begins.
    fn serve(&self, listener: TcpListener) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl ServerExt for Server {
    fn listen(
        &self,
        addr: impl std::net::ToSocketAddrs,
    ) -> impl Future<Output = std::io::Result<()>> + Send {
        let addrs: std::io::Result<Vec<SocketAddr>> = addr.to_socket_addrs().map(Iterator::collect);
        async move { self.serve(TcpListener::bind(&*addrs?).await?).await }
    }

    async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let accepted = futures_util::select! {
                accepted = listener.accept().fuse() => accepted,
                () = self.shutdown_started().fuse() => return Ok(()),
            };
            match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    async_std::task::spawn(serve_tcp(self.clone(), stream, remote));
                }
                Err(err) => {
                    self.report_error(etp_driver::Error::Io(err));
                    async_io::Timer::after(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// One TCP connection: request heads until one upgrades (refused requests leave the
/// connection open for the next, as with hyper on tokio).
async fn serve_tcp(server: Server, mut stream: TcpStream, remote: SocketAddr) {
    let mut carried = Vec::new();
    loop {
        let head = futures_util::select! {
            head = read_head(&mut stream, std::mem::take(&mut carried)).fuse() => head,
            _ = async_io::Timer::after(server.handshake_timeout()).fuse() => return,
        };
        let head = match head {
            Ok(head) => head,
            Err(HeadError::Gone) => return,
            Err(HeadError::Refuse(status, text)) => {
                let mut response = http::Response::new(format!("{text}\n"));
                *response.status_mut() = status;
                let _ = write_response(&mut stream, &response, true).await;
                return;
            }
        };
        let (parts, ()) = head.request.into_parts();
        let keep = keep_alive_after_refusal(&parts);
        let accepted = match server.accept_upgrade(&parts.method, parts.version, &parts.headers) {
            // The authentication hook runs before `101`, as on tokio.
            Ok(response) => server
                .authenticate(Request::new(parts, Some(remote)))
                .await
                .map(|request| (response, request)),
            Err(err) => Err(err),
        };
        match accepted {
            Err(err) => {
                let written = write_response(&mut stream, &err.to_response(), keep.is_none()).await;
                let (Ok(()), Some(body)) = (written, keep) else {
                    return;
                };
                match skip_body(&mut stream, head.rest, body).await {
                    Some(rest) => carried = rest,
                    None => return,
                }
            }
            Ok((response, request)) => {
                let response = response.map(|()| String::new());
                if write_response(&mut stream, &response, false).await.is_err() {
                    return;
                }
                let ws = WsStream::server(FuturesIo::new(stream), &head.rest, server.conn_config());
                server.serve_connection(ws, request).await;
                return;
            }
        }
    }
}
