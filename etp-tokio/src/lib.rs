//! etp on tokio: the server (standalone, inside hyper, or mounted in axum) and the
//! client (ws, wss, http, https). The server speaks WebSocket with etp's own framing
//! ([`etp_driver::ws`]) after hyper's upgrade; the client with tokio-tungstenite.
//!
//! ```no_run
//! use etp_tokio::{ClientExt, Conn, Event, Server, ServerExt, Client};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     .on("hello", |_conn: Conn, event: Event| async move {
//!         format!("hello, {}", String::from_utf8_lossy(event.data()))
//!     })
//!     .on_connect(|conn| async move { conn.join("lobby"); })
//!     .build()?;
//! tokio::spawn({
//!     let server = server.clone();
//!     async move { server.listen("127.0.0.1:8080").await }
//! });
//!
//! let client = Client::builder().build()?;
//! client.dial("ws://127.0.0.1:8080/ws").await?;
//! let answer = client.emit_with_ack("hello", "world").await?;
//! assert_eq!(answer, "hello, world");
//! server.rooms().broadcast(["lobby"], "news", b"hi all", None)?;
//! server.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "axum")]
pub mod axum;
mod client;
mod runtime;
mod server;
mod transport;
mod upgrade;

pub use client::ClientExt;
pub use runtime::TokioRuntime;
pub use server::ServerExt;
pub use upgrade::upgrade;

pub use etp_driver::{
    AckError, Backoff, BroadcastReport, BuildError, Bytes, Call, Conn, ConnConfig, ConnData,
    ConnId, DialError, DisconnectReason, EmitError, Ended, Error, Event, Handler, HandshakeError,
    IntoAck, OriginPolicy, Request, Rooms, SlowConsumerPolicy, proto,
};
#[cfg(feature = "json")]
pub use etp_driver::{DecodeError, Json, JsonError};

/// The etp server on tokio.
pub type Server = etp_driver::Server<TokioRuntime>;
/// Configures a [`Server`].
pub type ServerBuilder = etp_driver::ServerBuilder<TokioRuntime>;
/// The etp client on tokio.
pub type Client = etp_driver::Client<TokioRuntime>;
/// Configures a [`Client`].
pub type ClientBuilder = etp_driver::ClientBuilder<TokioRuntime>;
