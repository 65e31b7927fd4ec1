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
//! * [`ws`]: the server's WebSocket framing after the upgrade.
//!
//! Applications use the adapters (`etp-tokio`, `etp-async-std`), which add sockets
//! and name the types without generics.
//!
//! # Memory bounds
//!
//! Nothing a peer sends makes a connection's memory grow without bound. Per
//! connection (server and client alike; the builder methods exist on both):
//!
//! | what | bound (default) | set with | at the bound |
//! | --- | --- | --- | --- |
//! | request head before the upgrade (adapters' `serve`) | 100 headers, about 400 KiB | fixed (hyper's limits) | `431`/`400`, connection closed |
//! | time to send the request head | 10 s | [`ServerBuilder::handshake_timeout`] | connection dropped without an answer |
//! | socket read buffer | 4 KiB | [`ConnConfig::read_buffer_size`] | reads that much per system call (the server up to 64 KiB while a larger frame arrives) |
//! | one inbound message (frames, or assembled from fragments) | 1 MiB | `read_limit` | close 1009, [`DisconnectReason::ReadLimit`]; the server refuses from the frame header, before the payload is read |
//! | handlers running at once | 64 | `handler_concurrency` | events wait in the backlog |
//! | events waiting for a handler (backlog) | `max(handler_concurrency, 16)` events; while an acknowledgement is awaited, reading goes on up to 1 MiB of waiting events (so the reply is not stuck behind them) | fixed | the connection stops reading the socket: TCP backpressure stalls the peer |
//! | acknowledgements awaited (pending acks) | 1024 | `max_pending_acks` | `emit_with_ack` fails with [`EmitError::TooManyPendingAcks`] |
//! | how long each ack is awaited | 30 s | `ack_timeout`, or per call | [`AckError::TimedOut`] |
//! | bytes queued to send (emits, replies, broadcasts) | 4 MiB | `outbound_limit` | the [`SlowConsumerPolicy`]: close 1008 (default) or refuse the frame ([`EmitError::QueueFull`]) |
//! | bytes handed to the socket but not yet written | 256 KiB in the driver, then 8 KiB and one message in the server's [`ws::WsStream`] (4 MiB in tungstenite's write buffer on the client) | fixed | the driver stops taking new work until the socket drains |
//! | pongs owed to a peer's pings | one (only the latest ping's pong is kept) | fixed | older pongs are replaced |
//! | a silent or half-open peer | none by default | `keepalive(interval, idle_timeout)` | close 1001, [`DisconnectReason::IdleTimeout`] |
//! | a close the peer never answers | 5 s | [`ConnConfig::close_timeout`] | connection dropped, [`DisconnectReason::CloseTimedOut`] |
//! | shutdown | the timeout given to [`Server::shutdown`] | per call | remaining connections dropped |
//!
//! So a connection's worst case is about read limit + backlog + outbound limit +
//! write buffers (about 10 MiB with the defaults), plus what its handlers allocate;
//! an idle connection takes a few KiB (see BENCHMARKS.md). The bounds are exercised
//! at and one past their value by the test suites and the `driver` fuzz target.
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
#[cfg(feature = "json")]
mod json;
mod message;
mod observe;
mod outbox;
mod runtime;
mod server;
mod tracker;
pub mod ws;

#[doc(hidden)]
pub mod __fuzz;

pub use client::{Backoff, Client, ClientBuilder, DialError, Ended};
pub use config::{ConnConfig, SlowConsumerPolicy};
pub use conn::{Conn, Request};
pub use data::ConnData;
pub use driver::WebSocket;
pub use error::{AckError, DisconnectReason, EmitError, Error};
pub use handler::{BoxFuture, BuildError, Call, Event, Handler, IntoAck};
pub use handshake::{HandshakeError, OriginPolicy};
pub use hub::{BroadcastReport, Rooms};
pub use id::{ConnId, ParseConnIdError};
#[cfg(feature = "json")]
pub use json::{DecodeError, Json, JsonError};
pub use message::as_received;
pub use runtime::Runtime;
pub use server::{DEFAULT_HANDSHAKE_TIMEOUT, Server, ServerBuilder};

pub use bytes::Bytes;
pub use etp_proto as proto;
