//! etp on async-std: the standalone server, with etp's own WebSocket framing
//! ([`etp_driver::ws`]), and the client (ws, wss, http, https) over async-tungstenite.
//! The same API as `etp-tokio`, under the same names.
//!
//! async-std is no longer maintained upstream. This adapter only needs async-std's
//! executor and the async-io reactor that smol shares, so it also runs under smol (the
//! test suite drives it there too).
//!
//! ```no_run
//! use etp_async_std::{Client, ClientExt, Conn, Event, Server, ServerExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     .on("hello", |_conn: Conn, event: Event| async move {
//!         format!("hello, {}", String::from_utf8_lossy(event.data()))
//!     })
//!     .build()?;
//! async_std::task::spawn({
//!     let server = server.clone();
//!     async move { server.listen("127.0.0.1:8080").await }
//! });
//! let client = Client::builder().build()?;
//! client.dial("ws://127.0.0.1:8080/ws").await?;
//! assert_eq!(client.emit_with_ack("hello", "world").await?, "hello, world");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod http;
mod runtime;
mod server;

pub use client::ClientExt;
pub use runtime::{AsyncStdRuntime, Sleep};
pub use server::ServerExt;

pub use etp_driver::{
    AckError, Backoff, BroadcastReport, BuildError, Bytes, Call, Conn, ConnConfig, ConnData,
    ConnId, DialError, DisconnectReason, EmitError, Ended, Error, Event, Handler, HandshakeError,
    IntoAck, OriginPolicy, Request, Rooms, SlowConsumerPolicy, proto,
};
#[cfg(feature = "json")]
pub use etp_driver::{DecodeError, Json, JsonError};

/// The etp server on async-std.
pub type Server = etp_driver::Server<AsyncStdRuntime>;
/// Configures a [`Server`].
pub type ServerBuilder = etp_driver::ServerBuilder<AsyncStdRuntime>;
/// The etp client on async-std.
pub type Client = etp_driver::Client<AsyncStdRuntime>;
/// Configures a [`Client`].
pub type ClientBuilder = etp_driver::ClientBuilder<AsyncStdRuntime>;
