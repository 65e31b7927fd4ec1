//! The sans-IO core of etp, the event transport protocol over WebSocket.
//!
//! etp carries named events with optional acknowledgements, one frame per WebSocket
//! message: `eventName||ackId||eventData`. This crate speaks it byte for byte like Go's
//! `txix-open/etp` v3/v4 and its JavaScript client, and does nothing else: no IO, no
//! clock, no tasks. Bytes and commands go in, [`Output`]s come out, and you own the
//! socket, the timers and the threads. The async server and client are built on it.
//!
//! * [`Frame`]: the codec (`||` grammar, Go `Atoi` ack ids, Go error messages).
//! * [`Session`]: one connection's state: acknowledgements, their deadlines,
//!   keepalive, close. Its docs hold the drive contract.
//! * [`Rooms`]: a registry of room memberships for broadcasts.
//!
//! # One complete loop
//!
//! Below, a server and a client each drive a [`Session`] over a blocking
//! [`tungstenite`](https://docs.rs/tungstenite) socket on loopback. The client asks
//! `hello` with an acknowledgement; the server's handler answers it and emits `news`;
//! the client closes once it has both. The same loop, with a different `match` on
//! events, is all an embedding needs.
//!
//! ```
//! use std::io::ErrorKind;
//! use std::net::{TcpListener, TcpStream};
//! use std::time::{Duration, Instant};
//!
//! use bytes::Bytes;
//! use etp_proto::{Config, Event, Output, Session};
//! use tungstenite::protocol::CloseFrame;
//! use tungstenite::{Error, Message, WebSocket};
//!
//! /// Drives `session` over `ws` until the connection ends. `on_output` is the
//! /// application: it sees every output the loop does not handle itself.
//! fn drive(
//!     ws: &mut WebSocket<TcpStream>,
//!     session: &mut Session<&'static str>,
//!     mut on_output: impl FnMut(&mut Session<&'static str>, Output<&'static str>),
//! ) -> Result<(), Error> {
//!     loop {
//!         // Carry out every output, in order.
//!         while let Some(output) = session.poll_output() {
//!             match output {
//!                 Output::Transmit(frame) => match std::str::from_utf8(&frame) {
//!                     Ok(_) => ws.send(Message::Text(frame.try_into()?))?,
//!                     Err(_) => ws.send(Message::Binary(frame))?,
//!                 },
//!                 Output::Ping => ws.send(Message::Ping(Bytes::new()))?,
//!                 Output::Close(reason) => ws.close(Some(CloseFrame {
//!                     code: reason.code().into(),
//!                     reason: reason.wire_reason().into(),
//!                 }))?,
//!                 other => on_output(session, other),
//!             }
//!         }
//!         // Arm the timer: here, as the socket's read timeout.
//!         let wait = session.poll_timeout().map(|at| {
//!             at.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
//!         });
//!         ws.get_ref().set_read_timeout(wait)?;
//!         // Feed the next input.
//!         let now = Instant::now();
//!         match ws.read() {
//!             Ok(Message::Text(text)) => report(session.handle_message(text.into(), now)),
//!             Ok(Message::Binary(data)) => report(session.handle_message(data, now)),
//!             Ok(Message::Pong(_)) => session.handle_pong(now),
//!             Ok(_) => {} // tungstenite answers pings and close frames itself
//!             Err(Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
//!                 session.handle_timeout(now)
//!             }
//!             Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
//!                 session.handle_transport_closed(now);
//!                 while let Some(output) = session.poll_output() {
//!                     on_output(session, output);
//!                 }
//!                 return Ok(());
//!             }
//!             Err(e) => return Err(e),
//!         }
//!     }
//! }
//!
//! fn report(result: Result<(), etp_proto::ProtocolError>) {
//!     if let Err(e) = result {
//!         eprintln!("peer error: {e}");
//!     }
//! }
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//!
//! let server = std::thread::spawn(move || -> Result<(), Error> {
//!     let (tcp, _) = listener.accept()?;
//!     let mut ws = tungstenite::accept(tcp).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
//!     let mut session = Session::new(Config::default(), Instant::now());
//!     drive(&mut ws, &mut session, |session, output| {
//!         if let Output::Event(Event { name, data, reply, .. }) = output {
//!             assert_eq!(name, "hello");
//!             if let Some(reply) = reply {
//!                 let mut answer = b"hello, ".to_vec();
//!                 answer.extend_from_slice(&data.unwrap_or_default());
//!                 session.ack(reply, &answer).unwrap();
//!             }
//!             session.emit(b"news", b"etp speaks Rust").unwrap();
//!         }
//!     })
//! });
//!
//! let tcp = TcpStream::connect(addr)?;
//! let url = format!("ws://{addr}/ws");
//! let (mut ws, _) = tungstenite::client(url, tcp).map_err(|e| std::io::Error::other(e.to_string()))?;
//! let mut session = Session::new(Config::default(), Instant::now());
//! session.emit_with_ack(b"hello", b"world", "hello request", None, Instant::now())?;
//! let (mut answer, mut news) = (None, None);
//! drive(&mut ws, &mut session, |session, output| {
//!     match output {
//!         Output::AckResolved { ctx, data } => {
//!             assert_eq!(ctx, "hello request");
//!             answer = data;
//!         }
//!         Output::Event(event) => news = event.data,
//!         other => panic!("unexpected {other:?}"),
//!     }
//!     if answer.is_some() && news.is_some() {
//!         session.close();
//!     }
//! })?;
//! server.join().unwrap()?;
//! assert_eq!(answer.unwrap(), "hello, world");
//! assert_eq!(news.unwrap(), "etp speaks Rust");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ack_id;
mod acks;
mod config;
mod error;
mod frame;
mod go_quote;
mod output;
mod rooms;
mod session;

#[doc(hidden)]
pub mod __fuzz;

pub use acks::MAX_ACK_ID;
pub use config::Config;
pub use error::{ProtocolError, SendError};
pub use frame::{
    ACK_PREFIX, Encoding, Frame, FrameError, NameError, encode_ack_reply, encode_event,
    validate_event_name,
};
pub use output::{AckFailure, CloseReason, Event, EventMessage, Output, Received, ReplyToken};
pub use rooms::Rooms;
pub use session::Session;
