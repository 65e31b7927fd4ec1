//! The errors of the async layer: what a caller gets back ([`EmitError`], [`AckError`]),
//! why a connection ended ([`DisconnectReason`]) and what the error hook hears
//! ([`Error`]).

use std::fmt;
use std::sync::Arc;

use etp_proto::{NameError, ProtocolError};

use crate::handshake::HandshakeError;

/// An event could not be queued for sending; nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EmitError {
    /// The connection is closed (or the client is not connected): "client closed" in Go.
    Closed,
    /// The event name cannot be sent as given.
    InvalidName(NameError),
    /// The connection's outbound queue is over its byte bound and the slow-consumer
    /// policy drops new frames.
    QueueFull {
        /// The configured bound in bytes.
        limit: usize,
    },
    /// The connection is over its outbound byte bound and the slow-consumer policy
    /// disconnects it: it is closing with code 1008.
    SlowConsumer,
    /// As many acknowledgements as allowed are already awaited on this connection.
    TooManyPendingAcks {
        /// The configured bound.
        limit: usize,
    },
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("connection closed"),
            Self::InvalidName(err) => write!(f, "invalid event name: {err}"),
            Self::QueueFull { limit } => write!(
                f,
                "outbound queue full ({limit} bytes): the peer reads too slowly; frame dropped"
            ),
            Self::SlowConsumer => f.write_str(
                "the peer reads too slowly: outbound queue over its bound, disconnecting",
            ),
            Self::TooManyPendingAcks { limit } => write!(
                f,
                "too many acknowledgements awaited ({limit}); wait for replies or raise max_pending_acks"
            ),
        }
    }
}

impl std::error::Error for EmitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidName(err) => Some(err),
            _ => None,
        }
    }
}

impl From<NameError> for EmitError {
    fn from(err: NameError) -> Self {
        Self::InvalidName(err)
    }
}

/// An acknowledgement did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AckError {
    /// The request was never sent.
    Emit(EmitError),
    /// The deadline passed first.
    TimedOut,
    /// The connection ended first (the request fails at once, not at its deadline).
    ConnectionClosed,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Emit(err) => fmt::Display::fmt(err, f),
            Self::TimedOut => f.write_str("acknowledgement timed out"),
            Self::ConnectionClosed => {
                f.write_str("connection closed before the acknowledgement arrived")
            }
        }
    }
}

impl std::error::Error for AckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Emit(err) => Some(err),
            _ => None,
        }
    }
}

impl From<EmitError> for AckError {
    fn from(err: EmitError) -> Self {
        Self::Emit(err)
    }
}

/// Why a connection ended, as the disconnect hook hears it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// A close frame arrived: the peer closed, or answered our close. `code` is
    /// 1005 when the frame carried no code.
    Closed {
        /// The close code.
        code: u16,
        /// The close reason text.
        reason: String,
    },
    /// The TCP connection ended without a close frame.
    ConnectionLost,
    /// We closed and the peer did not answer within the close timeout.
    CloseTimedOut {
        /// The code we sent.
        code: u16,
    },
    /// A message exceeded the read limit; closed with 1009.
    ReadLimit {
        /// The limit in bytes.
        limit: usize,
    },
    /// Nothing arrived within the idle timeout; closed with 1001.
    IdleTimeout,
    /// The peer read too slowly for the outbound bound; closed with 1008.
    SlowConsumer,
    /// The peer broke the WebSocket protocol (1002), or sent invalid UTF-8 in a text
    /// message (1007).
    WebSocket(Arc<tungstenite::Error>),
    /// An IO error on the socket.
    Io(Arc<std::io::Error>),
    /// The server shut down before the connection closed by itself.
    Shutdown,
}

impl DisconnectReason {
    /// True only when a close frame with code 1000 arrived, as Go's `IsNormalClose`.
    pub fn is_normal(&self) -> bool {
        matches!(self, Self::Closed { code: 1000, .. })
    }

    /// The close code received, if a close frame arrived.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Closed { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The close reason received, if a close frame arrived.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Closed { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The IO error, if the socket failed.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Self::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed { code, reason } if reason.is_empty() => {
                write!(f, "closed with code {code}")
            }
            Self::Closed { code, reason } => write!(f, "closed with code {code}: {reason}"),
            Self::ConnectionLost => f.write_str("connection lost without a close frame"),
            Self::CloseTimedOut { code } => {
                write!(
                    f,
                    "closed with code {code}; the peer never answered the close"
                )
            }
            Self::ReadLimit { limit } => {
                write!(f, "read limited at {} bytes", limit.saturating_add(1))
            }
            Self::IdleTimeout => f.write_str("nothing received within the idle timeout"),
            Self::SlowConsumer => f.write_str("the peer read too slowly (outbound queue full)"),
            Self::WebSocket(err) => write!(f, "websocket protocol error: {err}"),
            Self::Io(err) => write!(f, "io error: {err}"),
            Self::Shutdown => f.write_str("server shut down"),
        }
    }
}

/// Something went wrong that the application should hear about (the error hook).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent a malformed frame; the connection stays open.
    Protocol(ProtocolError),
    /// A handler panicked; the request (if any) was answered with empty data.
    HandlerPanicked {
        /// The event name.
        event: String,
        /// The panic message.
        message: String,
    },
    /// A hook panicked.
    HookPanicked {
        /// Which hook: `"on_connect"` or `"on_disconnect"`.
        hook: &'static str,
        /// The panic message.
        message: String,
    },
    /// A WebSocket upgrade was refused (no connection exists yet).
    Handshake(HandshakeError),
    /// The authentication hook refused an upgrade (no connection exists yet): the
    /// client got this status and message.
    Refused(HandshakeError),
    /// Accepting a TCP connection or upgrading it failed.
    Io(std::io::Error),
    /// A client's reconnection attempt failed (it will try again per its backoff).
    Dial(crate::DialError),
    /// An event's data was not JSON of the type its handler takes (feature `json`).
    /// The handler did not run; a request got an empty acknowledgement; the
    /// connection stays open.
    #[cfg(feature = "json")]
    Decode(crate::DecodeError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(err) => fmt::Display::fmt(err, f),
            Self::HandlerPanicked { event, message } => {
                write!(f, "handler for event {event:?} panicked: {message}")
            }
            Self::HookPanicked { hook, message } => write!(f, "{hook} hook panicked: {message}"),
            Self::Handshake(err) => write!(f, "websocket upgrade refused: {err}"),
            Self::Refused(err) => {
                write!(
                    f,
                    "websocket upgrade refused by the authentication hook: {err}"
                )
            }
            Self::Io(err) => write!(f, "io error: {err}"),
            Self::Dial(err) => write!(f, "reconnection failed: {err}"),
            #[cfg(feature = "json")]
            Self::Decode(err) => fmt::Display::fmt(err, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Protocol(err) => Some(err),
            Self::Handshake(err) | Self::Refused(err) => Some(err),
            #[cfg(feature = "json")]
            Self::Decode(err) => Some(err),
            Self::Io(err) => Some(err),
            Self::Dial(err) => Some(err),
            _ => None,
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
