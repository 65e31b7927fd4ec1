//! Errors, split by who is at fault: [`ProtocolError`] for what the peer sent,
//! [`SendError`] for how the caller used the session.

use std::fmt;

use crate::frame::{FrameError, NameError};

/// The peer sent something that breaks the etp protocol.
///
/// Returned by [`Session::handle_message`](crate::Session::handle_message). Unless
/// [`is_fatal`](Self::is_fatal) says otherwise, the session stays open and usable, as in
/// Go etp (a malformed frame goes to the error hook and the connection stays).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The message is not an etp frame. Not fatal: the message is dropped.
    Frame(FrameError),
    /// The message is longer than the configured read limit. Fatal: the session has
    /// queued [`Output::Close`](crate::Output::Close) with code 1009.
    MessageTooLarge {
        /// The configured read limit in bytes (a message of exactly this size is fine).
        limit: usize,
        /// The length of the refused message.
        len: usize,
    },
}

impl ProtocolError {
    /// True when the session closed because of this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::MessageTooLarge { .. })
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(err) => fmt::Display::fmt(err, f),
            // Go's wording (coder/websocket), which names the first refused length.
            Self::MessageTooLarge { limit, .. } => {
                write!(f, "read limited at {} bytes", limit.saturating_add(1))
            }
        }
    }
}

impl std::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Frame(err) => Some(err),
            Self::MessageTooLarge { .. } => None,
        }
    }
}

impl From<FrameError> for ProtocolError {
    fn from(err: FrameError) -> Self {
        Self::Frame(err)
    }
}

/// A command could not be carried out; nothing was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closed (closed locally, by the peer, or by a fatal error).
    Closed,
    /// The event name cannot be sent as given.
    InvalidName(NameError),
    /// As many acknowledgements as the configured bound are already awaited.
    TooManyPendingAcks {
        /// The configured bound ([`Config::max_pending_acks`](crate::Config::max_pending_acks)).
        limit: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("connection closed"),
            Self::InvalidName(err) => write!(f, "invalid event name: {err}"),
            Self::TooManyPendingAcks { limit } => write!(
                f,
                "too many acknowledgements awaited ({limit}); wait for some replies or raise max_pending_acks"
            ),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidName(err) => Some(err),
            _ => None,
        }
    }
}

impl From<NameError> for SendError {
    fn from(err: NameError) -> Self {
        Self::InvalidName(err)
    }
}
