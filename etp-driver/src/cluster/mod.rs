//! Several servers as one: room broadcasts, emits to a connection id, room joins and
//! "who is in this room" across every node behind a load balancer.
//!
//! A server built with [`ServerBuilder::cluster`](crate::ServerBuilder::cluster) is one
//! node of a cluster; a [`Broker`] carries messages between the nodes (`etp-redis`
//! uses Redis pub/sub; [`MemoryBus`] runs several nodes in one process for tests).
//! Without it a server is a cluster of one and everything below answers locally,
//! at no cost.
//!
//! How it works, and what it promises:
//!
//! * **Local state stays local.** Each node owns its connections and its room index;
//!   the broker carries operations, never a shared room registry.
//! * **Membership by heartbeat.** Each node picks a random [`NodeId`] when its server
//!   is built, says hello when its broker subscription is up (the others answer it
//!   directly), sends a heartbeat every
//!   [`heartbeat_interval`](ClusterConfig::heartbeat_interval) and bye on
//!   [`Server::shutdown`](crate::Server::shutdown). A node not heard from within
//!   [`node_timeout`](ClusterConfig::node_timeout) is dropped from the membership,
//!   and requests stop waiting for it.
//! * **Connection ids embed their node.** On a cluster node, a [`ConnId`]'s first 8
//!   bytes (the first 16 of its 32 hex characters) are the node's id and the other 8
//!   are random, so an operation on one connection goes to its node only. Servers
//!   without a cluster keep fully random ids; the text format is the same.
//! * **Encode once.** A broadcast's etp frame is encoded once by the node that sends
//!   it and travels inside a versioned envelope; every node queues the received
//!   bytes on its members untouched. A node ignores its own echoes.
//! * **Broadcast = publish, then deliver locally**: at most once across nodes. A
//!   message published while the broker is disconnected is lost (pub/sub keeps no
//!   history); the gap is counted in [`ClusterStats`] (and logged by `etp-redis`).
//! * **Gathering requests** ([`room_len`](Cluster::room_len),
//!   [`members`](Cluster::members), ...) wait at most
//!   [`request_timeout`](ClusterConfig::with_request_timeout) and return what arrived,
//!   with the nodes that did not answer in [`Gathered::missing`].
//! * **Bounded queues**: requests waiting for answers
//!   ([`max_pending_requests`](ClusterConfig::with_max_pending_requests)), emit-with-ack
//!   run for other nodes ([`max_remote_acks`](ClusterConfig::with_max_remote_acks)), the
//!   broker's own queues, and each connection's outbound bound.
//!
//! [`Rooms::broadcast`] and [`Rooms::broadcast_all`] reach every node of the cluster;
//! the other [`Rooms`] methods stay local to this node. The cluster-wide questions
//! are on [`Cluster`], from [`Server::cluster`](crate::Server::cluster) or
//! [`Rooms::cluster`].

mod broker;
mod envelope;
mod memory;
mod node;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

pub use broker::{Broker, BrokerError, Channel, Inbox};
pub use memory::{MemoryBroker, MemoryBus};
pub(crate) use node::Node;

use envelope::{AckOutcome, Answer, Query};

use crate::error::{AckError, EmitError};
use crate::hub::{Hub, Rooms};
use crate::id::ConnId;

/// A node of a cluster: 8 random bytes, shown as 16 lowercase hex characters (the
/// first 16 characters of the ids of its connections).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 8]);

impl NodeId {
    /// A fresh random node id.
    pub fn random() -> Self {
        let bytes = ConnId::random().as_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]);
        Self(bytes)
    }

    /// The node id from its 8 bytes.
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// The 8 bytes of the id.
    pub const fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// The node a connection id belongs to (meaningful for ids made by a cluster
    /// node; for other ids it names no live node).
    pub fn of(conn: ConnId) -> Self {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&conn.as_bytes()[..8]);
        Self(bytes)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// The text is not 16 hex characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseNodeIdError;

impl fmt::Display for ParseNodeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node id is 16 hexadecimal characters")
    }
}

impl std::error::Error for ParseNodeIdError {}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A node id is the first half of a connection id: parse it as one.
        if s.len() != 16 {
            return Err(ParseNodeIdError);
        }
        let conn: ConnId = format!("{s}{}", "0".repeat(16))
            .parse()
            .map_err(|_| ParseNodeIdError)?;
        Ok(Self::of(conn))
    }
}

/// Timings and bounds of a cluster node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    heartbeat_interval: Duration,
    node_timeout: Duration,
    request_timeout: Duration,
    max_pending_requests: usize,
    max_remote_acks: usize,
}

impl Default for ClusterConfig {
    /// Heartbeat every 5 s, dead after 15 s, requests wait 5 s, 1024 pending requests,
    /// 1024 remote acks.
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            node_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(5),
            max_pending_requests: 1024,
            max_remote_acks: 1024,
        }
    }
}

/// The heartbeat timings cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterConfigError {
    /// The heartbeat interval is zero.
    ZeroHeartbeat,
    /// The node timeout is shorter than two heartbeats: one late heartbeat would make
    /// a live node look dead.
    TimeoutTooShort {
        /// The heartbeat interval asked for.
        interval: Duration,
        /// The node timeout asked for.
        timeout: Duration,
    },
}

impl fmt::Display for ClusterConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroHeartbeat => f.write_str("the heartbeat interval must be above zero"),
            Self::TimeoutTooShort { interval, timeout } => write!(
                f,
                "node timeout {timeout:?} is under two heartbeat intervals ({interval:?} each); \
                 use at least {:?}",
                *interval * 2
            ),
        }
    }
}

impl std::error::Error for ClusterConfigError {}

impl ClusterConfig {
    /// Heartbeat every `interval`; a node not heard from for `node_timeout` is dead.
    /// The timeout must be at least two intervals.
    pub fn heartbeat(
        mut self,
        interval: Duration,
        node_timeout: Duration,
    ) -> Result<Self, ClusterConfigError> {
        if interval.is_zero() {
            return Err(ClusterConfigError::ZeroHeartbeat);
        }
        if node_timeout < interval * 2 {
            return Err(ClusterConfigError::TimeoutTooShort {
                interval,
                timeout: node_timeout,
            });
        }
        self.heartbeat_interval = interval;
        self.node_timeout = node_timeout;
        Ok(self)
    }

    /// How long a gathering request waits for the other nodes' answers (and how much
    /// longer than its own timeout a remote emit-with-ack waits).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many requests may wait for answers at once; one more fails with
    /// [`ClusterError::TooManyRequests`].
    pub fn with_max_pending_requests(mut self, limit: usize) -> Self {
        self.max_pending_requests = limit;
        self
    }

    /// How many emit-with-ack this node runs for other nodes at once; one more is
    /// answered with [`ClusterError::RemoteBusy`].
    pub fn with_max_remote_acks(mut self, limit: usize) -> Self {
        self.max_remote_acks = limit;
        self
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// How long a silent node is still considered alive.
    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }

    /// The answer deadline of gathering requests.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The bound on requests waiting for answers.
    pub fn max_pending_requests(&self) -> usize {
        self.max_pending_requests
    }

    /// The bound on emit-with-ack run for other nodes.
    pub fn max_remote_acks(&self) -> usize {
        self.max_remote_acks
    }
}

/// What a gathering request collected: the value over every node that answered, and
/// the nodes that did not answer in time (or died meanwhile), sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gathered<T> {
    /// The combined answers (this node's included).
    pub value: T,
    /// Live nodes that were asked and gave no answer.
    pub missing: Vec<NodeId>,
}

impl<T> Gathered<T> {
    /// True when every node asked answered.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Counters of a cluster node (monotonic since the server was built).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Envelopes handed to the broker.
    pub published: u64,
    /// Envelopes the broker refused (queue full, disconnected): dropped.
    pub publish_failed: u64,
    /// Envelopes received (own echoes included).
    pub received: u64,
    /// Envelopes that could not be decoded, ignored.
    pub malformed: u64,
    /// Envelopes of another envelope version, ignored.
    pub foreign_version: u64,
    /// Times the broker lost its connection.
    pub disconnects: u64,
    /// Times the broker subscribed again after a loss.
    pub reconnects: u64,
    /// The last time without a subscription (messages may have been lost in it).
    pub last_gap: Option<Duration>,
    /// All the time spent without a subscription.
    pub total_gap: Duration,
    /// Nodes that joined the membership.
    pub nodes_joined: u64,
    /// Nodes dropped after the node timeout (died without bye).
    pub nodes_lost: u64,
    /// Nodes that said bye.
    pub nodes_left: u64,
    /// Remote emit-with-ack refused because `max_remote_acks` were running.
    pub remote_acks_refused: u64,
    /// Requests that reached their timeout with nodes still silent.
    pub requests_timed_out: u64,
}

/// A cluster-wide operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterError {
    /// No live connection with this id on its node.
    NotFound {
        /// The connection id asked for.
        conn: ConnId,
    },
    /// The connection id's node is not a live member (it died or left, or the id was
    /// not made by a cluster node).
    UnknownNode {
        /// The connection id asked for.
        conn: ConnId,
        /// The node its id names.
        node: NodeId,
    },
    /// The owning node did not answer within the timeout (or died meanwhile).
    NoAnswer {
        /// The node asked.
        node: NodeId,
    },
    /// As many requests as allowed already wait for answers on this node.
    TooManyRequests {
        /// The configured bound.
        limit: usize,
    },
    /// The owning node already runs as many emit-with-ack for other nodes as allowed.
    RemoteBusy {
        /// The node asked.
        node: NodeId,
        /// Its bound.
        limit: u32,
    },
    /// The message could not be handed to the broker.
    Broker(BrokerError),
    /// The event could not be emitted (invalid name, closed, queue full...).
    Emit(EmitError),
    /// The acknowledgement did not arrive (timed out, connection closed).
    Ack(AckError),
    /// The owning node could not queue the emit-with-ack; its reason.
    Remote {
        /// The node asked.
        node: NodeId,
        /// What went wrong there.
        message: String,
    },
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { conn } => write!(f, "no live connection {conn}"),
            Self::UnknownNode { conn, node } => write!(
                f,
                "connection {conn} belongs to node {node}, which is not a live member of the cluster"
            ),
            Self::NoAnswer { node } => {
                write!(f, "node {node} did not answer in time (or died meanwhile)")
            }
            Self::TooManyRequests { limit } => write!(
                f,
                "{limit} cluster requests already wait for answers; wait for them or raise max_pending_requests"
            ),
            Self::RemoteBusy { node, limit } => write!(
                f,
                "node {node} already runs {limit} emit-with-ack for other nodes; retry later"
            ),
            Self::Broker(err) => write!(f, "cluster broker: {err}"),
            Self::Emit(err) => fmt::Display::fmt(err, f),
            Self::Ack(err) => fmt::Display::fmt(err, f),
            Self::Remote { node, message } => write!(f, "on node {node}: {message}"),
        }
    }
}

impl std::error::Error for ClusterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Broker(err) => Some(err),
            Self::Emit(err) => Some(err),
            Self::Ack(err) => Some(err),
            _ => None,
        }
    }
}

impl From<EmitError> for ClusterError {
    fn from(err: EmitError) -> Self {
        Self::Emit(err)
    }
}

/// The cluster as one server: emits to any connection id, joins and leaves for any
/// connection, and room questions answered by every node. Cheap to clone.
///
/// On a server without a cluster, every operation is answered locally.
#[derive(Clone, Debug)]
pub struct Cluster {
    hub: Arc<Hub>,
}

/// Where a connection lives.
enum Owner<'a> {
    Local,
    Remote(&'a Node, NodeId),
}

impl Rooms {
    /// The cluster this server is a node of (a cluster of one without a broker).
    pub fn cluster(&self) -> Cluster {
        Cluster {
            hub: self.hub.clone(),
        }
    }
}

impl Cluster {
    fn node(&self) -> Option<&Node> {
        self.hub.node.as_deref()
    }

    fn local(&self) -> Rooms {
        Rooms {
            hub: self.hub.clone(),
        }
    }

    /// This node's id; `None` on a server without a cluster.
    pub fn node_id(&self) -> Option<NodeId> {
        self.node().map(Node::id)
    }

    /// The live nodes this node knows, itself included, sorted (empty without a
    /// cluster).
    pub fn nodes(&self) -> Vec<NodeId> {
        self.node().map(Node::nodes).unwrap_or_default()
    }

    /// Resolves once at least `count` nodes (this one included) are live: true, or
    /// false at once without a cluster (when `count` > 1) or once this node has left.
    /// Bound it with your runtime's timeout.
    pub async fn wait_for_nodes(&self, count: usize) -> bool {
        match self.node() {
            Some(node) => node.wait_for_nodes(count).await,
            None => count <= 1,
        }
    }

    /// This node's counters (all zero without a cluster).
    pub fn stats(&self) -> ClusterStats {
        self.node().map(Node::stats).unwrap_or_default()
    }

    /// The configuration of this node (`None` without a cluster).
    pub fn config(&self) -> Option<&ClusterConfig> {
        self.node().map(Node::config)
    }

    fn owner(&self, conn: ConnId) -> Result<Owner<'_>, ClusterError> {
        let Some(node) = self.node() else {
            return Ok(Owner::Local);
        };
        let owner = NodeId::of(conn);
        if owner == node.id() {
            Ok(Owner::Local)
        } else if node.is_member(owner) {
            Ok(Owner::Remote(node, owner))
        } else {
            Err(ClusterError::UnknownNode { conn, node: owner })
        }
    }

    fn local_conn(&self, conn: ConnId) -> Result<crate::Conn, ClusterError> {
        self.local()
            .get(conn)
            .ok_or(ClusterError::NotFound { conn })
    }

    /// Emits `event` to connection `conn`, on whichever node it lives. Never waits; a
    /// remote emit is at most once (it is not confirmed).
    pub fn emit_to(&self, conn: ConnId, event: &str, data: &[u8]) -> Result<(), ClusterError> {
        match self.owner(conn)? {
            Owner::Local => Ok(self
                .local_conn(conn)?
                .emit(event, Bytes::copy_from_slice(data))?),
            Owner::Remote(node, owner) => {
                let mut frame = BytesMut::new();
                etp_proto::encode_event(event.as_bytes(), 0, data, node.encoding(), &mut frame)
                    .map_err(EmitError::from)?;
                node.publish_emit(owner, conn, frame.freeze())
                    .map_err(ClusterError::Broker)
            }
        }
    }

    /// Emits `event` to connection `conn` and waits for its acknowledgement, on
    /// whichever node it lives, at most `timeout` (plus the request timeout for the
    /// way back from another node).
    pub async fn emit_with_ack_to(
        &self,
        conn: ConnId,
        event: &str,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, ClusterError> {
        match self.owner(conn)? {
            Owner::Local => self
                .local_conn(conn)?
                .emit_with_ack_timeout(event, data, timeout)
                .await
                .map_err(ClusterError::Ack),
            Owner::Remote(node, owner) => {
                etp_proto::validate_event_name(event.as_bytes()).map_err(EmitError::from)?;
                let query = Query::Ack {
                    conn,
                    timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                    name: event.to_owned(),
                    data: data.into(),
                };
                let wait = timeout.saturating_add(node.config().request_timeout());
                match one_answer(node, owner, query, wait).await? {
                    Answer::Ack(AckOutcome::Acked(data)) => Ok(data),
                    Answer::Ack(AckOutcome::TimedOut) => Err(ClusterError::Ack(AckError::TimedOut)),
                    Answer::Ack(AckOutcome::Closed) => {
                        Err(ClusterError::Ack(AckError::ConnectionClosed))
                    }
                    Answer::Ack(AckOutcome::Busy { limit }) => {
                        Err(ClusterError::RemoteBusy { node: owner, limit })
                    }
                    Answer::Ack(AckOutcome::Failed(message)) => Err(ClusterError::Remote {
                        node: owner,
                        message,
                    }),
                    _ => Err(ClusterError::NotFound { conn }),
                }
            }
        }
    }

    /// Puts connection `conn` in `room`, on whichever node it lives: true if it
    /// joined (false if it is closing).
    pub async fn join(&self, conn: ConnId, room: &str) -> Result<bool, ClusterError> {
        self.membership(conn, room, true).await
    }

    /// Takes connection `conn` out of `room`, on whichever node it lives: true if it
    /// was there.
    pub async fn leave(&self, conn: ConnId, room: &str) -> Result<bool, ClusterError> {
        self.membership(conn, room, false).await
    }

    async fn membership(&self, conn: ConnId, room: &str, join: bool) -> Result<bool, ClusterError> {
        match self.owner(conn)? {
            Owner::Local => {
                let local = self.local_conn(conn)?;
                Ok(if join {
                    local.join(room)
                } else {
                    local.leave(room)
                })
            }
            Owner::Remote(node, owner) => {
                let room = room.to_owned();
                let query = match join {
                    true => Query::Join { conn, room },
                    false => Query::Leave { conn, room },
                };
                let timeout = node.config().request_timeout();
                match one_answer(node, owner, query, timeout).await? {
                    Answer::Done(done) => Ok(done),
                    _ => Err(ClusterError::NotFound { conn }),
                }
            }
        }
    }

    /// How many connections the cluster has.
    pub async fn connection_count(&self) -> Result<Gathered<usize>, ClusterError> {
        let local = self.local().connection_count();
        self.gather(Query::ConnectionCount, local, add_count).await
    }

    /// How many connections are in `room`, over every node.
    pub async fn room_len(&self, room: &str) -> Result<Gathered<usize>, ClusterError> {
        let local = self.local().len(room);
        self.gather(Query::RoomLen(room.to_owned()), local, add_count)
            .await
    }

    /// The rooms that exist on any node, sorted, each once.
    pub async fn rooms(&self) -> Result<Gathered<Vec<String>>, ClusterError> {
        let local = self.local().rooms();
        let mut gathered = self
            .gather(Query::Rooms, local, |all, answer| {
                if let Answer::Rooms(rooms) = answer {
                    all.extend(rooms);
                }
            })
            .await?;
        gathered.value.sort();
        gathered.value.dedup();
        Ok(gathered)
    }

    /// The connections in any of `rooms`, over every node, sorted, each once.
    pub async fn members(&self, rooms: &[&str]) -> Result<Gathered<Vec<ConnId>>, ClusterError> {
        let local: Vec<ConnId> = self
            .local()
            .members(rooms.iter().copied())
            .iter()
            .map(crate::Conn::id)
            .collect();
        let query = Query::Members(rooms.iter().map(|r| (*r).to_owned()).collect());
        let mut gathered = self
            .gather(query, local, |all, answer| {
                if let Answer::Members(ids) = answer {
                    all.extend(ids);
                }
            })
            .await?;
        gathered.value.sort();
        gathered.value.dedup();
        Ok(gathered)
    }

    /// Asks every other node, folding their answers into this node's `local` value.
    /// If the request cannot be published, every other node counts as missing.
    async fn gather<T>(
        &self,
        query: Query,
        local: T,
        fold: impl Fn(&mut T, Answer),
    ) -> Result<Gathered<T>, ClusterError> {
        let mut value = local;
        let Some(node) = self.node() else {
            return Ok(Gathered {
                value,
                missing: Vec::new(),
            });
        };
        let collected = match node
            .request(None, query, node.config().request_timeout())
            .await
        {
            Ok(collected) => collected,
            Err(ClusterError::Broker(_)) => {
                let mut missing: Vec<NodeId> = node
                    .nodes()
                    .into_iter()
                    .filter(|n| *n != node.id())
                    .collect();
                missing.sort();
                return Ok(Gathered { value, missing });
            }
            Err(err) => return Err(err),
        };
        for (_, answer) in collected.answers {
            fold(&mut value, answer);
        }
        Ok(Gathered {
            value,
            missing: collected.missing,
        })
    }
}

fn add_count(total: &mut usize, answer: Answer) {
    if let Answer::Count(n) = answer {
        *total = total.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
    }
}

/// Asks one node and returns its answer.
async fn one_answer(
    node: &Node,
    owner: NodeId,
    query: Query,
    timeout: Duration,
) -> Result<Answer, ClusterError> {
    let collected = node.request(Some(owner), query, timeout).await?;
    collected
        .answers
        .into_iter()
        .next()
        .map(|(_, answer)| answer)
        .ok_or(ClusterError::NoAnswer { node: owner })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_print_as_16_hex_and_prefix_their_connections() {
        let node = NodeId::random();
        let text = node.to_string();
        assert_eq!(text.len(), 16);
        assert_eq!(text.parse::<NodeId>(), Ok(node));
        assert_eq!("xyz".parse::<NodeId>(), Err(ParseNodeIdError));
        assert_eq!("g".repeat(16).parse::<NodeId>(), Err(ParseNodeIdError));
        let mut bytes = [7u8; 16];
        bytes[..8].copy_from_slice(node.as_bytes());
        let conn = ConnId::from_bytes(bytes);
        assert_eq!(NodeId::of(conn), node);
        assert!(conn.to_string().starts_with(&text));
    }

    #[test]
    fn heartbeat_timings_are_checked() {
        let ms = Duration::from_millis;
        let config = ClusterConfig::default();
        assert_eq!(
            config.clone().heartbeat(ms(0), ms(10)),
            Err(ClusterConfigError::ZeroHeartbeat)
        );
        // Exactly two intervals is allowed; one millisecond less is not.
        let ok = config
            .clone()
            .heartbeat(ms(100), ms(200))
            .map(|c| c.node_timeout());
        assert_eq!(ok, Ok(ms(200)));
        assert_eq!(
            config.heartbeat(ms(100), ms(199)),
            Err(ClusterConfigError::TimeoutTooShort {
                interval: ms(100),
                timeout: ms(199)
            })
        );
    }
}
