//! The versioned envelope nodes exchange through the broker.
//!
//! Layout (all integers big-endian, every length a `u32`):
//!
//! ```text
//! version u8 (= 1) | kind u8 | sender node id [8] | body
//! ```
//!
//! A broadcast's and an emit's etp frame is the tail of the envelope: it was encoded
//! once by the publishing node and every receiving node queues a slice of the
//! received buffer on its members, untouched. Decoding never allocates more than the
//! input holds: every count and length is checked against the bytes that remain.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::NodeId;
use crate::id::ConnId;

/// The envelope version this code writes and reads.
pub(crate) const VERSION: u8 = 1;

/// Sender header: version, kind, node id.
const HEADER: usize = 2 + 8;

/// One message between nodes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// A node started (or its broker connection came back): others answer with a
    /// heartbeat sent to it alone, so that it learns the membership at once.
    Hello,
    /// A node is alive.
    Heartbeat,
    /// A node is shutting down: forget it now rather than after the timeout.
    Bye,
    /// Deliver `frame` to the members of `rooms` (every connection when `None`),
    /// except `except`.
    Broadcast {
        rooms: Option<Vec<String>>,
        except: Option<ConnId>,
        frame: Bytes,
    },
    /// Deliver `frame` to one connection of the receiving node.
    Emit { conn: ConnId, frame: Bytes },
    /// A question the receiving node answers with a [`Message::Response`].
    Request { id: u64, query: Query },
    /// The answer to request `id`.
    Response { id: u64, answer: Answer },
}

/// What a request asks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Query {
    /// How many connections the node has.
    ConnectionCount,
    /// How many of the node's connections are in `room`.
    RoomLen(String),
    /// The rooms the node has.
    Rooms,
    /// The node's connections in any of `rooms`.
    Members(Vec<String>),
    /// Put a connection of the node in a room.
    Join { conn: ConnId, room: String },
    /// Take a connection of the node out of a room.
    Leave { conn: ConnId, room: String },
    /// Emit with ack to a connection of the node and return its answer.
    Ack {
        conn: ConnId,
        timeout_ms: u32,
        name: String,
        data: Bytes,
    },
}

/// A node's answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Count(u64),
    Rooms(Vec<String>),
    Members(Vec<ConnId>),
    /// Join or leave: whether the connection was found (join) or was in the room
    /// (leave).
    Done(bool),
    /// Join or leave: the node has no such connection.
    NotFound,
    Ack(AckOutcome),
}

/// How an emit-with-ack on the owning node ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    Acked(Bytes),
    TimedOut,
    Closed,
    NotFound,
    /// The node already runs as many remote acks as it allows.
    Busy {
        limit: u32,
    },
    /// The emit could not be queued there (queue full, too many pending acks...).
    Failed(String),
}

/// Why an envelope could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Fewer bytes than the fields need.
    Truncated,
    /// Written by a newer (or foreign) version of this code.
    Version(u8),
    /// A kind byte this version does not know.
    Kind(u8),
    /// A room or event name that is not UTF-8.
    Utf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("envelope truncated"),
            Self::Version(v) => write!(f, "envelope version {v}, this node reads {VERSION}"),
            Self::Kind(k) => write!(f, "unknown envelope kind {k}"),
            Self::Utf8 => f.write_str("room or event name is not UTF-8"),
        }
    }
}

mod kind {
    pub(super) const HELLO: u8 = 1;
    pub(super) const HEARTBEAT: u8 = 2;
    pub(super) const BYE: u8 = 3;
    pub(super) const BROADCAST: u8 = 4;
    pub(super) const EMIT: u8 = 5;
    pub(super) const REQUEST: u8 = 6;
    pub(super) const RESPONSE: u8 = 7;
}

mod query {
    pub(super) const COUNT: u8 = 1;
    pub(super) const ROOM_LEN: u8 = 2;
    pub(super) const ROOMS: u8 = 3;
    pub(super) const MEMBERS: u8 = 4;
    pub(super) const JOIN: u8 = 5;
    pub(super) const LEAVE: u8 = 6;
    pub(super) const ACK: u8 = 7;
}

mod answer {
    pub(super) const COUNT: u8 = 1;
    pub(super) const ROOMS: u8 = 2;
    pub(super) const MEMBERS: u8 = 3;
    pub(super) const DONE: u8 = 4;
    pub(super) const ACK: u8 = 5;
    pub(super) const NOT_FOUND: u8 = 6;
}

mod outcome {
    pub(super) const ACKED: u8 = 0;
    pub(super) const TIMED_OUT: u8 = 1;
    pub(super) const CLOSED: u8 = 2;
    pub(super) const NOT_FOUND: u8 = 3;
    pub(super) const BUSY: u8 = 4;
    pub(super) const FAILED: u8 = 5;
}

/// Broadcast flags.
const HAS_EXCEPT: u8 = 1;
const ALL_CONNECTIONS: u8 = 2;

/// Encodes `message` as sent by `sender`.
pub(crate) fn encode(sender: NodeId, message: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER + body_hint(message));
    out.put_u8(VERSION);
    out.put_u8(match message {
        Message::Hello => kind::HELLO,
        Message::Heartbeat => kind::HEARTBEAT,
        Message::Bye => kind::BYE,
        Message::Broadcast { .. } => kind::BROADCAST,
        Message::Emit { .. } => kind::EMIT,
        Message::Request { .. } => kind::REQUEST,
        Message::Response { .. } => kind::RESPONSE,
    });
    out.put_slice(sender.as_bytes());
    match message {
        Message::Hello | Message::Heartbeat | Message::Bye => {}
        Message::Broadcast {
            rooms,
            except,
            frame,
        } => {
            let flags =
                except.map_or(0, |_| HAS_EXCEPT) | rooms.as_ref().map_or(ALL_CONNECTIONS, |_| 0);
            out.put_u8(flags);
            if let Some(except) = except {
                out.put_slice(except.as_bytes());
            }
            if let Some(rooms) = rooms {
                put_strings(&mut out, rooms);
            }
            out.put_slice(frame);
        }
        Message::Emit { conn, frame } => {
            out.put_slice(conn.as_bytes());
            out.put_slice(frame);
        }
        Message::Request { id, query } => {
            out.put_u64(*id);
            put_query(&mut out, query);
        }
        Message::Response { id, answer } => {
            out.put_u64(*id);
            put_answer(&mut out, answer);
        }
    }
    out.freeze()
}

fn body_hint(message: &Message) -> usize {
    match message {
        Message::Broadcast { rooms, frame, .. } => {
            1 + 16 + frame.len() + rooms.as_ref().map_or(0, |r| strings_len(r))
        }
        Message::Emit { frame, .. } => 16 + frame.len(),
        _ => 64,
    }
}

fn strings_len(strings: &[String]) -> usize {
    4 + strings.iter().map(|s| 4 + s.len()).sum::<usize>()
}

fn put_len(out: &mut BytesMut, len: usize) {
    // Lengths come from in-memory values; a single value over 4 GiB cannot be published
    // through any broker this code talks to, so saturating keeps decoding safe.
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_str(out: &mut BytesMut, s: &str) {
    put_len(out, s.len());
    out.put_slice(s.as_bytes());
}

fn put_strings(out: &mut BytesMut, strings: &[String]) {
    put_len(out, strings.len());
    for s in strings {
        put_str(out, s);
    }
}

fn put_query(out: &mut BytesMut, q: &Query) {
    match q {
        Query::ConnectionCount => out.put_u8(query::COUNT),
        Query::RoomLen(room) => {
            out.put_u8(query::ROOM_LEN);
            put_str(out, room);
        }
        Query::Rooms => out.put_u8(query::ROOMS),
        Query::Members(rooms) => {
            out.put_u8(query::MEMBERS);
            put_strings(out, rooms);
        }
        Query::Join { conn, room } | Query::Leave { conn, room } => {
            out.put_u8(match q {
                Query::Join { .. } => query::JOIN,
                _ => query::LEAVE,
            });
            out.put_slice(conn.as_bytes());
            put_str(out, room);
        }
        Query::Ack {
            conn,
            timeout_ms,
            name,
            data,
        } => {
            out.put_u8(query::ACK);
            out.put_slice(conn.as_bytes());
            out.put_u32(*timeout_ms);
            put_str(out, name);
            out.put_slice(data);
        }
    }
}

fn put_answer(out: &mut BytesMut, a: &Answer) {
    match a {
        Answer::Count(n) => {
            out.put_u8(answer::COUNT);
            out.put_u64(*n);
        }
        Answer::Rooms(rooms) => {
            out.put_u8(answer::ROOMS);
            put_strings(out, rooms);
        }
        Answer::Members(ids) => {
            out.put_u8(answer::MEMBERS);
            put_len(out, ids.len());
            for id in ids {
                out.put_slice(id.as_bytes());
            }
        }
        Answer::Done(done) => {
            out.put_u8(answer::DONE);
            out.put_u8(u8::from(*done));
        }
        Answer::NotFound => out.put_u8(answer::NOT_FOUND),
        Answer::Ack(result) => {
            out.put_u8(answer::ACK);
            match result {
                AckOutcome::Acked(data) => {
                    out.put_u8(outcome::ACKED);
                    out.put_slice(data);
                }
                AckOutcome::TimedOut => out.put_u8(outcome::TIMED_OUT),
                AckOutcome::Closed => out.put_u8(outcome::CLOSED),
                AckOutcome::NotFound => out.put_u8(outcome::NOT_FOUND),
                AckOutcome::Busy { limit } => {
                    out.put_u8(outcome::BUSY);
                    out.put_u32(*limit);
                }
                AckOutcome::Failed(message) => {
                    out.put_u8(outcome::FAILED);
                    out.put_slice(message.as_bytes());
                }
            }
        }
    }
}

/// A received envelope: who sent it and what it says.
pub(crate) fn decode(envelope: &Bytes) -> Result<(NodeId, Message), DecodeError> {
    let mut r = Reader {
        buf: envelope,
        pos: 0,
    };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let kind = r.u8()?;
    let sender = NodeId::from_bytes(r.array()?);
    let message = match kind {
        kind::HELLO => Message::Hello,
        kind::HEARTBEAT => Message::Heartbeat,
        kind::BYE => Message::Bye,
        kind::BROADCAST => {
            let flags = r.u8()?;
            let except = match flags & HAS_EXCEPT {
                0 => None,
                _ => Some(ConnId::from_bytes(r.array()?)),
            };
            let rooms = match flags & ALL_CONNECTIONS {
                0 => Some(r.strings()?),
                _ => None,
            };
            Message::Broadcast {
                rooms,
                except,
                frame: r.rest(),
            }
        }
        kind::EMIT => Message::Emit {
            conn: ConnId::from_bytes(r.array()?),
            frame: r.rest(),
        },
        kind::REQUEST => Message::Request {
            id: r.u64()?,
            query: r.query()?,
        },
        kind::RESPONSE => Message::Response {
            id: r.u64()?,
            answer: r.answer()?,
        },
        other => return Err(DecodeError::Kind(other)),
    };
    Ok((sender, message))
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.u32()?).map_err(|_| DecodeError::Truncated)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8)
    }

    /// A count of items each at least `min` bytes long, checked against what remains
    /// so that a forged count cannot make us reserve memory the input does not back.
    fn count(&mut self, min: usize) -> Result<usize, DecodeError> {
        let n = self.len()?;
        let remaining = self.buf.len() - self.pos;
        if n.checked_mul(min).is_none_or(|need| need > remaining) {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    fn strings(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.count(4)?;
        (0..n).map(|_| self.string()).collect()
    }

    fn rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        rest
    }

    fn query(&mut self) -> Result<Query, DecodeError> {
        Ok(match self.u8()? {
            query::COUNT => Query::ConnectionCount,
            query::ROOM_LEN => Query::RoomLen(self.string()?),
            query::ROOMS => Query::Rooms,
            query::MEMBERS => Query::Members(self.strings()?),
            query::JOIN => Query::Join {
                conn: ConnId::from_bytes(self.array()?),
                room: self.string()?,
            },
            query::LEAVE => Query::Leave {
                conn: ConnId::from_bytes(self.array()?),
                room: self.string()?,
            },
            query::ACK => Query::Ack {
                conn: ConnId::from_bytes(self.array()?),
                timeout_ms: self.u32()?,
                name: self.string()?,
                data: self.rest(),
            },
            other => return Err(DecodeError::Kind(other)),
        })
    }

    fn answer(&mut self) -> Result<Answer, DecodeError> {
        Ok(match self.u8()? {
            answer::COUNT => Answer::Count(self.u64()?),
            answer::ROOMS => Answer::Rooms(self.strings()?),
            answer::MEMBERS => {
                let n = self.count(16)?;
                let ids = (0..n)
                    .map(|_| self.array().map(ConnId::from_bytes))
                    .collect::<Result<_, _>>()?;
                Answer::Members(ids)
            }
            answer::DONE => Answer::Done(self.u8()? != 0),
            answer::NOT_FOUND => Answer::NotFound,
            answer::ACK => Answer::Ack(match self.u8()? {
                outcome::ACKED => AckOutcome::Acked(self.rest()),
                outcome::TIMED_OUT => AckOutcome::TimedOut,
                outcome::CLOSED => AckOutcome::Closed,
                outcome::NOT_FOUND => AckOutcome::NotFound,
                outcome::BUSY => AckOutcome::Busy { limit: self.u32()? },
                outcome::FAILED => {
                    AckOutcome::Failed(String::from_utf8_lossy(&self.rest()).into_owned())
                }
                other => return Err(DecodeError::Kind(other)),
            }),
            other => return Err(DecodeError::Kind(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeId {
        NodeId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8])
    }

    fn round_trip(message: Message) {
        let bytes = encode(node(), &message);
        assert_eq!(decode(&bytes), Ok((node(), message)));
        // Every strict prefix is refused as truncated (or, for the variants whose tail
        // is free-form, read as a shorter tail) and never panics.
        for cut in 0..bytes.len() {
            let _ = decode(&bytes.slice(..cut));
        }
    }

    #[test]
    fn every_message_round_trips() {
        let conn = ConnId::from_bytes([9; 16]);
        round_trip(Message::Hello);
        round_trip(Message::Heartbeat);
        round_trip(Message::Bye);
        round_trip(Message::Broadcast {
            rooms: Some(vec!["a".into(), "βeta".into(), String::new()]),
            except: Some(conn),
            frame: Bytes::from_static(b"news||hi"),
        });
        round_trip(Message::Broadcast {
            rooms: None,
            except: None,
            frame: Bytes::from_static(b"x||"),
        });
        round_trip(Message::Emit {
            conn,
            frame: Bytes::from_static(b"e||d"),
        });
        for query in [
            Query::ConnectionCount,
            Query::RoomLen("r".into()),
            Query::Rooms,
            Query::Members(vec!["r".into(), "s".into()]),
            Query::Join {
                conn,
                room: "r".into(),
            },
            Query::Leave {
                conn,
                room: "r".into(),
            },
            Query::Ack {
                conn,
                timeout_ms: 1500,
                name: "ask".into(),
                data: Bytes::from_static(b"payload"),
            },
        ] {
            round_trip(Message::Request { id: 7, query });
        }
        for answer in [
            Answer::Count(u64::MAX),
            Answer::Rooms(vec!["x".into()]),
            Answer::Members(vec![conn, ConnId::from_bytes([0; 16])]),
            Answer::Done(true),
            Answer::Done(false),
            Answer::NotFound,
            Answer::Ack(AckOutcome::Acked(Bytes::from_static(b"ok"))),
            Answer::Ack(AckOutcome::TimedOut),
            Answer::Ack(AckOutcome::Closed),
            Answer::Ack(AckOutcome::NotFound),
            Answer::Ack(AckOutcome::Busy { limit: 3 }),
            Answer::Ack(AckOutcome::Failed("queue full".into())),
        ] {
            round_trip(Message::Response {
                id: u64::MAX,
                answer,
            });
        }
    }

    #[test]
    fn the_frame_is_a_slice_of_the_envelope() {
        let frame = Bytes::from_static(b"news||hello");
        let bytes = encode(
            node(),
            &Message::Broadcast {
                rooms: Some(vec!["lobby".into()]),
                except: None,
                frame: frame.clone(),
            },
        );
        let Ok((_, Message::Broadcast { frame: got, .. })) = decode(&bytes) else {
            panic!("not a broadcast");
        };
        assert_eq!(got, frame);
        // Same memory as the envelope: passed through, not copied.
        let start = bytes.len() - frame.len();
        assert_eq!(got.as_ptr(), bytes[start..].as_ptr());
    }

    #[test]
    fn bad_envelopes_are_refused_precisely() {
        assert_eq!(decode(&Bytes::new()), Err(DecodeError::Truncated));
        let mut bytes = encode(node(), &Message::Hello).to_vec();
        bytes[0] = 2;
        assert_eq!(decode(&bytes.into()), Err(DecodeError::Version(2)));
        let mut bytes = encode(node(), &Message::Hello).to_vec();
        bytes[1] = 99;
        assert_eq!(decode(&bytes.into()), Err(DecodeError::Kind(99)));
        let mut bytes = encode(
            node(),
            &Message::Request {
                id: 1,
                query: Query::RoomLen("ab".into()),
            },
        )
        .to_vec();
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        assert_eq!(decode(&bytes.into()), Err(DecodeError::Utf8));
    }

    #[test]
    fn a_forged_count_is_refused_without_allocating_for_it() {
        let mut bytes = encode(
            node(),
            &Message::Request {
                id: 1,
                query: Query::Members(Vec::new()),
            },
        )
        .to_vec();
        let len = bytes.len();
        bytes[len - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&bytes.into()), Err(DecodeError::Truncated));
        let mut bytes = encode(
            node(),
            &Message::Response {
                id: 1,
                answer: Answer::Members(Vec::new()),
            },
        )
        .to_vec();
        let len = bytes.len();
        bytes[len - 4..].copy_from_slice(&1u32.to_be_bytes());
        // One id announced, fifteen bytes short of it.
        bytes.extend_from_slice(&[0; 15]);
        assert_eq!(decode(&bytes.into()), Err(DecodeError::Truncated));
    }
}
