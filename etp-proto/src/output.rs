//! What a [`Session`](crate::Session) asks its driver to do.

use std::fmt;

use bytes::{Buf, Bytes};

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

/// An event as [`Session::receive`](crate::Session::receive) returns it: its message
/// whole, and the token for answering it.
#[derive(Debug)]
#[must_use]
pub struct Received {
    /// The event's name and data, in their message.
    pub message: EventMessage,
    /// Present when the peer asked for an acknowledgement, as in [`Event::reply`].
    pub reply: Option<ReplyToken>,
}

impl Received {
    /// The event with its message cut into name and data: what
    /// [`Session::handle_message`](crate::Session::handle_message) queues.
    pub fn into_event(self) -> Event {
        let (name, data) = self.message.into_parts();
        Event {
            name,
            data,
            reply: self.reply,
        }
    }
}

/// An event's name and data in one buffer, `name||id[||data]` as received, read in
/// place.
///
/// One buffer is one reference count: cutting the message into a name and a data
/// `Bytes` ([`into_parts`](Self::into_parts)) costs an atomic increment and, later,
/// a second atomic decrement, which on small events is a measurable share of a
/// server's time.
#[derive(Clone)]
pub struct EventMessage {
    bytes: Bytes,
    name_end: usize,
    /// Where the data starts; `None` for the 2-part form `name||id`.
    data_start: Option<usize>,
}

impl EventMessage {
    /// A message from a name and data, for events not read from the wire (tests,
    /// replays). Without data, or with empty data, the name's buffer is kept; other
    /// data is copied after the name into a new buffer.
    pub fn new(name: Bytes, data: Option<Bytes>) -> Self {
        let name_end = name.len();
        match data {
            None => Self {
                bytes: name,
                name_end,
                data_start: None,
            },
            Some(data) if data.is_empty() => Self {
                bytes: name,
                name_end,
                data_start: Some(name_end),
            },
            Some(data) => {
                let mut bytes = Vec::with_capacity(name_end + data.len());
                bytes.extend_from_slice(&name);
                bytes.extend_from_slice(&data);
                Self {
                    bytes: Bytes::from(bytes),
                    name_end,
                    data_start: Some(name_end),
                }
            }
        }
    }

    /// A received message and where its parts lie (found by `frame::Layout`).
    pub(crate) fn from_layout(bytes: Bytes, name_end: usize, data_start: Option<usize>) -> Self {
        Self {
            bytes,
            name_end,
            data_start,
        }
    }

    /// The event name.
    #[inline]
    pub fn name(&self) -> &[u8] {
        &self.bytes[..self.name_end]
    }

    /// The data: `None` for the 2-part frame `name||id`, `Some` (maybe empty)
    /// otherwise.
    #[inline]
    pub fn data(&self) -> Option<&[u8]> {
        self.data_start.map(|start| &self.bytes[start..])
    }

    /// The data, empty for both the 2-part form and empty data.
    #[inline]
    pub fn data_or_empty(&self) -> &[u8] {
        self.data().unwrap_or_default()
    }

    /// The name's and the data's length together: what the message holds for its
    /// handler.
    pub fn len(&self) -> usize {
        self.name_end + self.data_start.map_or(0, |start| self.bytes.len() - start)
    }

    /// True when both name and data are empty (never for a received event: its name
    /// is at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data as a shared buffer, without copying or a reference-count increment.
    #[inline]
    pub fn into_data(self) -> Option<Bytes> {
        let start = self.data_start?;
        let mut bytes = self.bytes;
        bytes.advance(start);
        Some(bytes)
    }

    /// The name and the data as shared buffers, without copying.
    pub fn into_parts(self) -> (Bytes, Option<Bytes>) {
        let mut bytes = self.bytes;
        let name = bytes.split_to(self.name_end);
        // `bytes` now starts after the name: advancing moves the data out without
        // another reference-count increment.
        let data = self.data_start.map(|start| {
            bytes.advance(start - self.name_end);
            bytes
        });
        (name, data)
    }
}

/// Messages are equal when their names and data are, however they were made.
impl PartialEq for EventMessage {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.data() == other.data()
    }
}

impl Eq for EventMessage {}

impl fmt::Debug for EventMessage {
    // Lengths, not payloads, as for `Event`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventMessage")
            .field("name", &String::from_utf8_lossy(self.name()))
            .field("data_len", &self.data().map(<[u8]>::len))
            .finish()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The three forms a message takes (no data part, empty data, data), made and
    /// received, read in place and cut, agree.
    #[test]
    fn event_messages_read_in_place_what_cutting_gives() {
        let received = |wire: &'static [u8], name_end, data_start| {
            EventMessage::from_layout(Bytes::from_static(wire), name_end, data_start)
        };
        let cases = [
            (received(b"ev||0", 2, None), &b"ev"[..], None),
            (received(b"ev||7||", 2, Some(7)), b"ev", Some(&b""[..])),
            (
                received(b"ev||7||data", 2, Some(7)),
                b"ev",
                Some(&b"data"[..]),
            ),
            (
                EventMessage::new(Bytes::from_static(b"ev"), None),
                b"ev",
                None,
            ),
            (
                EventMessage::new(Bytes::from_static(b"ev"), Some(Bytes::new())),
                b"ev",
                Some(&b""[..]),
            ),
            (
                EventMessage::new(Bytes::from_static(b"ev"), Some(Bytes::from_static(b"data"))),
                b"ev",
                Some(&b"data"[..]),
            ),
        ];
        for (message, name, data) in cases {
            assert_eq!(message.name(), name, "{message:?}");
            assert_eq!(message.data(), data, "{message:?}");
            assert_eq!(message.data_or_empty(), data.unwrap_or_default());
            assert_eq!(message.len(), name.len() + data.map_or(0, <[u8]>::len));
            assert_eq!(message.clone().into_data().as_deref(), data);
            let (cut_name, cut_data) = message.into_parts();
            assert_eq!((&cut_name[..], cut_data.as_deref()), (name, data));
        }
    }

    /// Received data is handed out without a copy: it points into the message.
    #[test]
    fn received_data_shares_the_message() {
        let wire = Bytes::from_static(b"ev||7||data");
        let base = wire.as_ptr() as usize;
        let message = EventMessage::from_layout(wire, 2, Some(7));
        assert_eq!(
            message.clone().into_data().unwrap().as_ptr() as usize,
            base + 7
        );
        let (name, data) = message.into_parts();
        assert_eq!(name.as_ptr() as usize, base);
        assert_eq!(data.unwrap().as_ptr() as usize, base + 7);
    }

    /// Equality is by name and data, not by how the message was laid out.
    #[test]
    fn event_messages_compare_by_name_and_data() {
        let made = EventMessage::new(Bytes::from_static(b"ev"), Some(Bytes::from_static(b"x")));
        let received = EventMessage::from_layout(Bytes::from_static(b"ev||12||x"), 2, Some(8));
        assert_eq!(made, received);
        let two_part = EventMessage::from_layout(Bytes::from_static(b"ev||12"), 2, None);
        let empty = EventMessage::new(Bytes::from_static(b"ev"), Some(Bytes::new()));
        assert_ne!(two_part, empty);
    }
}
