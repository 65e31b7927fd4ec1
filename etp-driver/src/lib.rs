//! The runtime-agnostic async layer of etp: everything between a WebSocket and the
//! application, written once for every runtime.
//!
//! * [`Runtime`]: what the layer needs from tokio, async-std or a test clock.
//! * [`Server`] / [`Client`]: handlers, hooks, limits; one driver per connection that
//!   moves frames between a [`WebSocket`] and an [`etp_proto::Session`], runs the
//!   handlers (bounded per connection, panics contained) and fires the timers.
//! * [`Conn`]: the connection handle: emit, emit with ack, ping, close, rooms, data.
//! * [`Rooms`]: the server's rooms and connections, with encode-once broadcast.
//! * [`cluster`]: several servers as one (rooms, broadcasts, emits to any
//!   connection id) through a broker such as Redis (`etp-redis`).
//! * [`handshake`]: Go etp's upgrade rules (statuses, messages, origin check).
//!
//! Applications use the adapters (`etp-tokio`, `etp-async-std`), which add sockets
//! and name the types without generics.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
pub mod cluster;
mod config;
mod conn;
mod data;
mod driver;
mod error;
mod handler;
pub mod handshake;
mod hub;
mod id;
mod runtime;
mod server;
mod tracker;

pub use client::{Backoff, Client, ClientBuilder, DialError, Ended};
pub use config::{ConnConfig, SlowConsumerPolicy};
pub use conn::{Conn, Request};
pub use data::ConnData;
pub use driver::WebSocket;
pub use error::{AckError, DisconnectReason, EmitError, Error};
pub use handler::{BoxFuture, BuildError, Event, Handler, IntoAck};
pub use handshake::{HandshakeError, OriginPolicy};
pub use hub::{BroadcastReport, Rooms};
pub use id::{ConnId, ParseConnIdError};
pub use runtime::Runtime;
pub use server::{Server, ServerBuilder};

pub use bytes::Bytes;
pub use etp_proto as proto;
