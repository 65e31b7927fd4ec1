//! The runtime-agnostic async layer of etp: everything between a WebSocket and the
//! application, written once for every runtime.
//!
//! * [`Runtime`]: what the layer needs from tokio, async-std or a test clock.
//! * [`Server`] / [`Client`]: handlers, hooks, limits; one driver per connection that
//!   moves frames between a [`WebSocket`] and an [`etp_proto::Session`], runs the
//!   handlers (bounded per connection, panics contained) and fires the timers.
//! * [`Conn`]: the connection handle: emit, emit with ack, ping, close, rooms, data.
//! * [`Rooms`]: the server's rooms and connections, with encode-once broadcast.
//! * [`handshake`]: Go etp's upgrade rules (statuses, messages, origin check).
//!
//! Applications use the adapters (`etp-tokio`, `etp-async-std`), which add sockets
//! and name the types without generics.
//!
//! # Features
//!
//! | feature | default here | what it adds |
//! |---|---|---|
//! | `json` | off (on in the adapters and `etp`) | [`Json<T>`] handler input and reply, `emit_json`, `emit_with_ack_json`, `broadcast_json` (serde, serde_json) |
//! | `tracing` | off | a `tracing` span per connection and per handled event |
//! | `metrics` | off | counters, gauges and a histogram through the `metrics` facade |
//!
//! With `tracing` and `metrics` off their calls are compiled out: the hot path is the
//! same code as without them.
//!
//! # Tracing
//!
//! Spans and events have the target `etp` (filter with `etp=debug`, say).
//!
//! | span | level | fields | covers |
//! |---|---|---|---|
//! | `etp.conn` | INFO | `conn_id` (32 hex digits), `side` (`server`/`client`), `path`, `remote` | the whole connection: `on_connect`, every handler, `on_disconnect` |
//! | `etp.event` | DEBUG | `event` (name), `ack_id` (only when the peer asked for a reply) | one handler's run, every poll of it; a child of `etp.conn` |
//!
//! Inside them, DEBUG events say how a connection ended (`reason`, `normal`) and
//! repeat what the error hook hears (`error`).
//!
//! # Metrics
//!
//! Names follow Prometheus conventions; install any `metrics` recorder (a Prometheus
//! exporter, say) to collect them. They count every connection of the process, server
//! and client side.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `etp_connections` | gauge | `side` | connections open now |
//! | `etp_events_in_total` | counter | | events received (acknowledgements excluded) |
//! | `etp_events_out_total` | counter | | events taken from the queues to be sent: emits, requests, broadcast copies |
//! | `etp_bytes_in_total` | counter | | WebSocket message payload bytes read |
//! | `etp_bytes_out_total` | counter | | WebSocket message payload bytes written (acks, pings, closes included) |
//! | `etp_ack_latency_seconds` | histogram | | from `emit_with_ack` to its reply (timeouts and closed connections are not recorded) |
//! | `etp_outbound_queue_bytes` | gauge | | bytes waiting in the outbound queues, summed over connections (what `outbound_limit` bounds per connection) |
//! | `etp_slow_consumer_disconnects_total` | counter | | connections closed (1008) for reading too slowly |
//! | `etp_handler_panics_total` | counter | | handlers that panicked (contained, reported) |
//! | `etp_errors_total` | counter | `kind` | everything the error hook hears, by kind: `protocol`, `handler_panic`, `hook_panic`, `handshake`, `refused`, `io`, `dial`, `decode` |
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod config;
mod conn;
mod data;
mod driver;
mod error;
mod handler;
pub mod handshake;
mod hub;
mod id;
#[cfg(feature = "json")]
mod json;
mod observe;
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
#[cfg(feature = "json")]
pub use json::{DecodeError, Json, JsonError};
pub use runtime::Runtime;
pub use server::{Server, ServerBuilder};

pub use bytes::Bytes;
pub use etp_proto as proto;
