//! What a [`Session`](crate::Session) asks its driver to do.

use std::fmt;

use bytes::Bytes;

/// One thing for the driver to do, from [`Session::poll_output`](crate::Session::poll_output).
///
/// `C` is the context the caller stored with each
/// [`emit_with_ack`](crate::Session::emit_with_ack) request; it comes back exactly once,
/// in [`AckResolved`](Self::AckResolved) or [`AckFailed`](Self::AckFailed).
#[non_exhaustive]
pub enum Output<C> {
    /// Send these bytes as one WebSocket data message.
    Transmit(Bytes),
    /// The peer emitted an event: give it to the handler registered for its name.
    Event(Event),
    /// The peer answered one of our requests.
    AckResolved {
        /// The context stored with the request.
        ctx: C,
        /// The reply's data (`None` for a 2-part reply frame).
        data: Option<Bytes>,
    },
    /// One of our requests will never be answered.
    AckFailed {
        /// The context stored with the request.
        ctx: C,
        /// Why it ended.
        cause: AckFailure,
    },
    /// Send a WebSocket ping (keepalive); answer the pong with
    /// [`Session::handle_pong`](crate::Session::handle_pong).
    Ping,
    /// Close the WebSocket with this reason's code and text. The session is closed and
    /// every awaited acknowledgement has already failed.
    Close(CloseReason),
}

impl<C> fmt::Debug for Output<C> {
    // Lengths, not payloads, and no bound on `C`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transmit(bytes) => f.debug_tuple("Transmit").field(&bytes.len()).finish(),
            Self::Event(event) => f.debug_tuple("Event").field(event).finish(),
            Self::AckResolved { data, .. } => f
                .debug_struct("AckResolved")
                .field("data_len", &data.as_ref().map(Bytes::len))
                .finish_non_exhaustive(),
            Self::AckFailed { cause, .. } => f
                .debug_struct("AckFailed")
                .field("cause", cause)
                .finish_non_exhaustive(),
            Self::Ping => f.write_str("Ping"),
            Self::Close(reason) => f.debug_tuple("Close").field(reason).finish(),
        }
    }
}

/// An event the peer emitted. Name and data are zero-copy slices of its message.
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The event name.
    pub name: Bytes,
    /// The data: `None` for the 2-part frame `name||id`, `Some` (maybe empty) otherwise.
    pub data: Option<Bytes>,
    /// Present when the peer asked for an acknowledgement: pass it to
    /// [`Session::ack`](crate::Session::ack) with the reply data. etp answers every
    /// such request, even with empty data when no handler exists.
    pub reply: Option<ReplyToken>,
}

impl Event {
    /// The data, empty for both the 2-part form and empty data.
    pub fn data_or_empty(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("data_len", &self.data.as_ref().map(Bytes::len))
            .field("reply", &self.reply)
            .finish()
    }
}

/// What is needed to answer one ack request: the request's name and id.
///
/// Not `Clone`: a request is answered once, by passing the token to
/// [`Session::ack`](crate::Session::ack).
#[must_use = "etp answers every ack request; pass the token to Session::ack"]
pub struct ReplyToken {
    /// The request's name, or, from a received request whose ack id is spelled as Go
    /// writes ids, its `name||id` head as received (see `frame::Layout`): the
    /// reply repeats those bytes instead of formatting the id again.
    pub(crate) head: Bytes,
    pub(crate) name_len: usize,
    pub(crate) id: u64,
}

impl ReplyToken {
    /// A token for answering the request `name` with ack id `id` (for drivers that parse
    /// frames themselves).
    pub fn new(name: Bytes, id: u64) -> Self {
        Self {
            name_len: name.len(),
            head: name,
            id,
        }
    }

    /// A token from a received request's head (`name||id`, as received).
    pub(crate) fn from_head(head: Bytes, name_len: usize, id: u64) -> Self {
        Self { head, name_len, id }
    }

    /// The request's ack id as stored (two's complement of Go's `int`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The request's event name; the reply is named `__ack_` + this.
    pub fn name(&self) -> &[u8] {
        &self.head[..self.name_len]
    }
}

/// Tokens are equal when they answer the same name and id, however they were made.
impl PartialEq for ReplyToken {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.name() == other.name()
    }
}

impl Eq for ReplyToken {}

impl fmt::Debug for ReplyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReplyToken")
            .field(&crate::ack_id::WireId(self.id))
            .finish()
    }
}

/// Why an awaited acknowledgement will never come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AckFailure {
    /// The deadline passed before the peer answered.
    TimedOut,
    /// The connection ended first (closed by either side or lost).
    ConnectionClosed,
}

impl fmt::Display for AckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TimedOut => "acknowledgement timed out",
            Self::ConnectionClosed => "connection closed before the acknowledgement arrived",
        })
    }
}

impl std::error::Error for AckFailure {}

/// Why the session asks to close the WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The application called [`Session::close`](crate::Session::close).
    Normal,
    /// Nothing arrived within [`Config::idle_timeout`](crate::Config::idle_timeout).
    IdleTimeout,
    /// A message was longer than [`Config::read_limit`](crate::Config::read_limit).
    MessageTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
}

impl CloseReason {
    /// The WebSocket close code: 1000 (normal), 1001 (going away: the peer stopped
    /// answering) or 1009 (message too big), as RFC 6455 assigns them.
    pub fn code(&self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::IdleTimeout => 1001,
            Self::MessageTooLarge { .. } => 1009,
        }
    }

    /// The close frame's reason text: empty for a normal close (as Go sends it), Go's
    /// `read limited at <limit+1> bytes` for an oversized message.
    pub fn wire_reason(&self) -> String {
        match self {
            Self::Normal => String::new(),
            Self::IdleTimeout => "idle timeout".to_owned(),
            Self::MessageTooLarge { limit } => {
                format!("read limited at {} bytes", limit.saturating_add(1))
            }
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("closed by the application"),
            Self::IdleTimeout => f.write_str("nothing received within the idle timeout"),
            Self::MessageTooLarge { limit } => {
                write!(f, "read limited at {} bytes", limit.saturating_add(1))
            }
        }
    }
}
