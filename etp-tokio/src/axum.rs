//! Mounting the etp server in an axum 0.8 `Router`.
//!
//! ```no_run
//! # async fn run(server: etp_tokio::Server) -> std::io::Result<()> {
//! let app = axum::Router::new().route("/ws", etp_tokio::axum::route(server));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
//!
//! Extensions that earlier layers put on the request (an authenticated user, say)
//! reach the connection as [`Request::extensions`](etp_driver::Request::extensions).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{MethodRouter, any};

use crate::Server;

/// A route that upgrades requests on its path into etp connections of `server` (any
/// method is routed here, so that a wrong one gets etp's 405 rather than axum's).
pub fn route<S: Clone + Send + Sync + 'static>(server: Server) -> MethodRouter<S> {
    any(move |request: axum::extract::Request| {
        let server = server.clone();
        async move {
            let remote = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0);
            crate::upgrade::<_, Body>(&server, request, remote).await
        }
    })
}
