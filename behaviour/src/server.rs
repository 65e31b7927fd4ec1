//! The server under test and the hooks' recordings.

use std::net::SocketAddr;

use etp_driver::{ClientBuilder, Conn, DisconnectReason, Error, Runtime, Server, ServerBuilder};

use crate::raw::WsPeer;
use crate::runtime::{Task, TestRuntime};
use crate::wait::{GUARD, Rx, channel, within};

/// What the hooks of a server or client heard.
#[derive(Debug)]
pub struct Hooks {
    /// Every connection, as the connect hook saw it.
    pub connects: Rx<Conn>,
    /// Every end, as the disconnect hook saw it.
    pub disconnects: Rx<(Conn, DisconnectReason)>,
    /// Every error, as the error hook heard it.
    pub errors: Rx<(Option<Conn>, Error)>,
}

macro_rules! install_hooks {
    ($builder:expr) => {{
        let (connect_tx, connects) = channel();
        let (disconnect_tx, disconnects) = channel();
        let (error_tx, errors) = channel();
        let builder = $builder
            .on_connect(move |conn| {
                connect_tx.send(conn);
                async {}
            })
            .on_disconnect(move |conn, reason| {
                disconnect_tx.send((conn, reason));
                async {}
            })
            .on_error(move |conn, err| {
                error_tx.send((conn, err));
            });
        (
            builder,
            Hooks {
                connects,
                disconnects,
                errors,
            },
        )
    }};
}

/// Installs recording connect, disconnect and error hooks on a server builder.
pub fn hooked<R: Runtime>(builder: ServerBuilder<R>) -> (ServerBuilder<R>, Hooks) {
    install_hooks!(builder)
}

/// Installs recording connect, disconnect and error hooks on a client builder.
pub fn hooked_client<R: Runtime>(builder: ClientBuilder<R>) -> (ClientBuilder<R>, Hooks) {
    install_hooks!(builder)
}

/// An etp server serving a `127.0.0.1` port with the adapter's `serve`.
#[derive(Debug)]
pub struct TestServer<R: TestRuntime> {
    /// The server.
    pub server: Server<R>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The accept loop; ends once shutdown has begun.
    pub serving: Task<std::io::Result<()>>,
}

impl<R: TestRuntime> TestServer<R> {
    /// Serves `server` on a fresh ephemeral port (from inside the test's runtime).
    pub fn start(server: Server<R>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        Self::serve(server, listener)
    }

    /// Serves `server` on an already bound listener.
    pub fn serve(server: Server<R>, listener: std::net::TcpListener) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let serving = R::serve(&server, listener);
        Self {
            server,
            addr,
            serving,
        }
    }

    /// `ws://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Shuts the server down and waits for `serve` to return; returns how many
    /// connections had to be dropped.
    pub async fn stop(self) -> usize {
        let dropped = within("shutdown", self.server.shutdown(GUARD)).await;
        within("serve() to return", self.serving)
            .await
            .expect("serve returned an error");
        dropped
    }

    /// Shuts down while `peer` reads (so that it answers the close), asserting that
    /// the peer saw a normal close; returns how many connections were dropped.
    pub async fn stop_with(self, peer: &mut WsPeer) -> usize {
        let (dropped, (_, close)) = futures_util::join!(self.stop(), peer.until_close());
        let close = close.expect("a close frame with a code");
        assert_eq!(u16::from(close.code), 1000);
        dropped
    }
}
