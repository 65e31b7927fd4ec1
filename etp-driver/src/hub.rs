//! The server's registry of live connections and their rooms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use etp_proto::{Encoding, Rooms as Registry};

use crate::conn::Conn;
use crate::error::EmitError;
use crate::id::ConnId;
use crate::message::EncodedFrame;

/// Live connections by id, and room memberships.
///
/// Two locks, never held together: `conns` for lookups, `rooms` for membership.
#[derive(Debug)]
pub(crate) struct Hub {
    conns: Mutex<HashMap<ConnId, Conn>>,
    rooms: Mutex<Registry<Conn>>,
    encoding: Encoding,
    /// This server's place in a cluster, when it has one.
    pub(crate) node: Option<Arc<crate::cluster::Node>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every operation leaves the maps consistent, so a panic elsewhere cannot poison
    // their meaning.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    pub(crate) fn new(encoding: Encoding, node: Option<Arc<crate::cluster::Node>>) -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            rooms: Mutex::new(Registry::new()),
            encoding,
            node,
        }
    }

    /// A fresh connection id; on a cluster node it starts with the node's id.
    pub(crate) fn new_conn_id(&self) -> ConnId {
        self.node
            .as_ref()
            .map_or_else(ConnId::random, |node| node.new_conn_id())
    }

    pub(crate) fn register(&self, conn: &Conn) {
        lock(&self.conns).insert(conn.id(), conn.clone());
    }

    /// Removes a connection from every room and from the registry.
    pub(crate) fn unregister(&self, conn: &Conn) {
        lock(&self.rooms).leave_all(conn);
        lock(&self.conns).remove(&conn.id());
    }

    pub(crate) fn join(&self, room: &str, conn: &Conn) {
        lock(&self.rooms).join(room, conn.clone());
    }

    pub(crate) fn leave(&self, room: &str, conn: &Conn) -> bool {
        lock(&self.rooms).leave(room, conn)
    }

    pub(crate) fn rooms_of(&self, conn: &Conn) -> Vec<String> {
        lock(&self.rooms)
            .rooms_of(conn)
            .map(str::to_owned)
            .collect()
    }
}

/// The rooms and connections of one server (Go's `srv.Rooms()`).
///
/// A room exists only while it has members; every connection leaves all its rooms
/// when it ends (after the disconnect hook). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Rooms {
    pub(crate) hub: Arc<Hub>,
}

/// What a broadcast did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastReport {
    /// Connections the frame was queued for.
    pub queued: usize,
    /// Connections skipped because they had closed or were over their outbound bound.
    pub skipped: usize,
    /// On a cluster node: the broker refused the frame (queue full, disconnected), so
    /// the other nodes' members did not get it. Always false without a cluster.
    pub unpublished: bool,
}

impl Rooms {
    /// The live connection with this id.
    pub fn get(&self, id: ConnId) -> Option<Conn> {
        lock(&self.hub.conns).get(&id).cloned()
    }

    /// Every live connection, in id order.
    pub fn all(&self) -> Vec<Conn> {
        let mut all: Vec<Conn> = lock(&self.hub.conns).values().cloned().collect();
        all.sort();
        all
    }

    /// How many connections are live.
    pub fn connection_count(&self) -> usize {
        lock(&self.hub.conns).len()
    }

    /// Puts `conn` in `room` (idempotent).
    pub fn join(&self, conn: &Conn, room: &str) {
        conn.join(room);
    }

    /// Takes `conn` out of `room`; true if it was there.
    pub fn leave(&self, conn: &Conn, room: &str) -> bool {
        self.hub.leave(room, conn)
    }

    /// How many connections are in `room`.
    pub fn len(&self, room: &str) -> usize {
        lock(&self.hub.rooms).len(room)
    }

    /// True when no room exists.
    pub fn is_empty(&self) -> bool {
        lock(&self.hub.rooms).is_empty()
    }

    /// The rooms that exist (have members), sorted.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.hub.rooms).rooms().map(str::to_owned).collect()
    }

    /// The members of one or several rooms, each connection once, in id order.
    pub fn members<'a>(&self, rooms: impl IntoIterator<Item = &'a str>) -> Vec<Conn> {
        lock(&self.hub.rooms)
            .members_of_any(rooms)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Removes a room; its former members stay connected.
    pub fn clear(&self, room: &str) -> Vec<Conn> {
        lock(&self.hub.rooms).clear(room)
    }

    /// Removes every room.
    pub fn clear_all(&self) {
        lock(&self.hub.rooms).clear_all();
    }

    /// Emits `event` to every member of `rooms` (each connection once), except the
    /// connection `except`. The frame is encoded once and queued on each member without
    /// waiting: a slow member is handled by its slow-consumer policy and never delays
    /// the others.
    ///
    /// On a [cluster](crate::cluster) node the frame is first published to the other
    /// nodes, which deliver it to their members (at most once), then delivered here;
    /// the report counts this node's members.
    pub fn broadcast<'a>(
        &self,
        rooms: impl IntoIterator<Item = &'a str>,
        event: &str,
        data: &[u8],
        except: Option<ConnId>,
    ) -> Result<BroadcastReport, EmitError> {
        let frame = self.encode(event, data)?;
        let Some(node) = &self.hub.node else {
            let members = self.members(rooms);
            return Ok(deliver(&frame, members.iter(), except));
        };
        let rooms: Vec<&str> = rooms.into_iter().collect();
        let names = rooms.iter().map(|r| (*r).to_owned()).collect();
        let published = node.publish_broadcast(&frame, Some(names), except);
        let members = self.members(rooms);
        let mut report = deliver(&frame, members.iter(), except);
        report.unpublished = published.is_err();
        Ok(report)
    }

    /// Emits `event` to every live connection except `except`, encoding it once (on
    /// every node of a [cluster](crate::cluster), as [`broadcast`](Self::broadcast)).
    pub fn broadcast_all(
        &self,
        event: &str,
        data: &[u8],
        except: Option<ConnId>,
    ) -> Result<BroadcastReport, EmitError> {
        let frame = self.encode(event, data)?;
        let published = self
            .hub
            .node
            .as_ref()
            .map(|node| node.publish_broadcast(&frame, None, except));
        let all = self.all();
        let mut report = deliver(&frame, all.iter(), except);
        report.unpublished = published.is_some_and(|p| p.is_err());
        Ok(report)
    }

    fn encode(&self, event: &str, data: &[u8]) -> Result<Bytes, EmitError> {
        let mut buf = BytesMut::new();
        etp_proto::encode_event(event.as_bytes(), 0, data, self.hub.encoding, &mut buf)?;
        Ok(buf.freeze())
    }
}

/// Queues `frame` on each member except `except`, deciding its message kind once;
/// members that are gone or over their bound miss it (their slow-consumer policy
/// applies) and count as skipped.
pub(crate) fn deliver<'a>(
    frame: &Bytes,
    members: impl Iterator<Item = &'a Conn>,
    except: Option<ConnId>,
) -> BroadcastReport {
    let mut report = BroadcastReport::default();
    let frame = EncodedFrame::new(frame.clone());
    for conn in members.filter(|c| Some(c.id()) != except) {
        match conn.send_encoded(frame.clone()) {
            Ok(()) => report.queued += 1,
            Err(_) => report.skipped += 1,
        }
    }
    report
}
