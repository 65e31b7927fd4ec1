//! One node of a cluster: its identity, the membership it sees, the requests it waits
//! on, and what it does with what other nodes send.
//!
//! Local state stays local: the node owns its connections and rooms (the hub); the
//! broker carries operations between nodes, never a shared registry.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::future::{Either, select};

use etp_proto::Encoding;

use super::broker::{Broker, BrokerError, Channel, Inbox};
use super::envelope::{self, AckOutcome, Answer, DecodeError, Message, Query};
use super::{ClusterConfig, ClusterError, ClusterStats, NodeId};
use crate::conn::Conn;
use crate::error::{AckError, EmitError};
use crate::hub::{Hub, Rooms, deliver};
use crate::id::ConnId;
use crate::message::EncodedFrame;
use crate::runtime::Runtime;
use crate::tracker::Waiters;

type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The server's runtime without its type, so that the hub (not generic) can hold the
/// node.
trait DynRuntime: Send + Sync + 'static {
    fn spawn(&self, task: Task);
    fn sleep_until(&self, deadline: Instant) -> Task;
    fn now(&self) -> Instant;
}

impl<R: Runtime> DynRuntime for R {
    fn spawn(&self, task: Task) {
        Runtime::spawn(self, task);
    }

    fn sleep_until(&self, deadline: Instant) -> Task {
        Box::pin(Runtime::sleep_until(self, deadline))
    }

    fn now(&self) -> Instant {
        Runtime::now(self)
    }
}

/// Counters behind [`ClusterStats`].
#[derive(Default)]
struct Counters {
    published: AtomicU64,
    publish_failed: AtomicU64,
    received: AtomicU64,
    malformed: AtomicU64,
    foreign_version: AtomicU64,
    disconnects: AtomicU64,
    reconnects: AtomicU64,
    total_gap_us: AtomicU64,
    last_gap_us: AtomicU64,
    nodes_joined: AtomicU64,
    nodes_lost: AtomicU64,
    nodes_left: AtomicU64,
    remote_acks_refused: AtomicU64,
    requests_timed_out: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A request waiting for answers.
struct Pending {
    /// Nodes asked that have not answered yet.
    waiting: Vec<NodeId>,
    answers: Vec<(NodeId, Answer)>,
    /// Nodes asked that died or left before answering.
    missing: Vec<NodeId>,
    done: Option<oneshot::Sender<()>>,
}

impl Pending {
    fn finish_if_complete(&mut self) {
        if self.waiting.is_empty()
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
    }
}

/// What a request collected: the answers, and the nodes that gave none.
pub(crate) struct Collected {
    pub(crate) answers: Vec<(NodeId, Answer)>,
    pub(crate) missing: Vec<NodeId>,
}

#[derive(Default)]
struct State {
    /// Other live nodes and when each was last heard from.
    members: HashMap<NodeId, Instant>,
    pending: HashMap<u64, Pending>,
    next_request: u64,
    /// Since when the broker has been disconnected.
    down_since: Option<Instant>,
}

pub(crate) struct Node {
    id: NodeId,
    config: ClusterConfig,
    encoding: Encoding,
    broker: Box<dyn Broker>,
    runtime: Arc<dyn DynRuntime>,
    hub: OnceLock<Weak<Hub>>,
    state: Mutex<State>,
    counters: Counters,
    /// Woken on every membership change.
    membership: Waiters,
    remote_acks: AtomicUsize,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Node {
    pub(crate) fn new<R: Runtime>(
        runtime: R,
        broker: Box<dyn Broker>,
        config: ClusterConfig,
        encoding: Encoding,
    ) -> Self {
        Self {
            id: NodeId::random(),
            config,
            encoding,
            broker,
            runtime: Arc::new(runtime),
            hub: OnceLock::new(),
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            membership: Waiters::default(),
            remote_acks: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    pub(crate) fn id(&self) -> NodeId {
        self.id
    }

    pub(crate) fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub(crate) fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// A connection id owned by this node: its node id, then 8 random bytes.
    pub(crate) fn new_conn_id(&self) -> ConnId {
        let mut bytes = *ConnId::random().as_bytes();
        bytes[..8].copy_from_slice(self.id.as_bytes());
        ConnId::from_bytes(bytes)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rooms(&self) -> Option<Rooms> {
        let hub = self.hub.get()?.upgrade()?;
        Some(Rooms { hub })
    }

    /// Attaches the node to its server's hub and starts the broker and the heartbeat.
    pub(crate) fn start(self: &Arc<Self>, hub: Weak<Hub>) {
        let _ = self.hub.set(hub);
        self.broker.start(
            self.id,
            Inbox {
                node: Arc::downgrade(self),
            },
        );
        let node = Arc::downgrade(self);
        let runtime = self.runtime.clone();
        self.runtime.spawn(Box::pin(async move {
            loop {
                let Some(interval) = node
                    .upgrade()
                    .filter(|n| !n.is_stopped())
                    .map(|n| n.config.heartbeat_interval)
                else {
                    return;
                };
                runtime.sleep_until(runtime.now() + interval).await;
                match node.upgrade() {
                    Some(node) if !node.is_stopped() => node.tick(),
                    _ => return,
                }
            }
        }));
    }

    pub(crate) fn spawn(&self, task: Task) {
        self.runtime.spawn(task);
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Says bye, stops the broker, and ends every waiting request (their nodes count
    /// as not answering).
    pub(crate) fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        self.publish_message(Channel::All, &Message::Bye).ok();
        self.broker.stop();
        let mut state = self.lock();
        state.members.clear();
        for pending in state.pending.values_mut() {
            let waiting = std::mem::take(&mut pending.waiting);
            pending.missing.extend(waiting);
            pending.finish_if_complete();
        }
        drop(state);
        self.membership.change(|| true);
    }

    /// Every live node, this one included, sorted.
    pub(crate) fn nodes(&self) -> Vec<NodeId> {
        let state = self.lock();
        let mut nodes: Vec<NodeId> = state.members.keys().copied().collect();
        drop(state);
        nodes.push(self.id);
        nodes.sort();
        nodes
    }

    pub(crate) fn is_member(&self, node: NodeId) -> bool {
        self.lock().members.contains_key(&node)
    }

    fn others(&self) -> Vec<NodeId> {
        self.lock().members.keys().copied().collect()
    }

    /// Resolves once at least `count` nodes (this one included) are live, or the node
    /// stopped.
    pub(crate) async fn wait_for_nodes(&self, count: usize) -> bool {
        let reached = || self.is_stopped() || self.lock().members.len() + 1 >= count;
        while !reached() {
            self.membership.wait_until(reached).await;
        }
        !self.is_stopped()
    }

    pub(crate) fn stats(&self) -> ClusterStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let last_gap = load(&c.last_gap_us);
        ClusterStats {
            published: load(&c.published),
            publish_failed: load(&c.publish_failed),
            received: load(&c.received),
            malformed: load(&c.malformed),
            foreign_version: load(&c.foreign_version),
            disconnects: load(&c.disconnects),
            reconnects: load(&c.reconnects),
            total_gap: Duration::from_micros(load(&c.total_gap_us)),
            last_gap: (load(&c.reconnects) > 0).then(|| Duration::from_micros(last_gap)),
            nodes_joined: load(&c.nodes_joined),
            nodes_lost: load(&c.nodes_lost),
            nodes_left: load(&c.nodes_left),
            remote_acks_refused: load(&c.remote_acks_refused),
            requests_timed_out: load(&c.requests_timed_out),
        }
    }

    fn publish_message(&self, channel: Channel, message: &Message) -> Result<(), BrokerError> {
        self.publish(channel, envelope::encode(self.id, message))
    }

    fn publish(&self, channel: Channel, envelope: Bytes) -> Result<(), BrokerError> {
        let published = self.broker.publish(channel, envelope);
        match published {
            Ok(()) => bump(&self.counters.published),
            Err(_) => bump(&self.counters.publish_failed),
        }
        published
    }

    /// Publishes a broadcast of an already encoded frame to the other nodes.
    pub(crate) fn publish_broadcast(
        &self,
        frame: &Bytes,
        rooms: Option<Vec<String>>,
        except: Option<ConnId>,
    ) -> Result<(), BrokerError> {
        if self.is_stopped() {
            return Err(BrokerError::Stopped);
        }
        let message = Message::Broadcast {
            rooms,
            except,
            frame: frame.clone(),
        };
        self.publish_message(Channel::All, &message)
    }

    /// Publishes an already encoded frame for one connection of `owner`.
    pub(crate) fn publish_emit(
        &self,
        owner: NodeId,
        conn: ConnId,
        frame: Bytes,
    ) -> Result<(), BrokerError> {
        if self.is_stopped() {
            return Err(BrokerError::Stopped);
        }
        self.publish_message(Channel::Node(owner), &Message::Emit { conn, frame })
    }

    /// Asks every other live node (or `target` alone) and waits for their answers, at
    /// most `timeout`. Nodes that die or leave meanwhile stop being waited for.
    pub(crate) async fn request(
        &self,
        target: Option<NodeId>,
        query: Query,
        timeout: Duration,
    ) -> Result<Collected, ClusterError> {
        let targets = match target {
            Some(node) => vec![node],
            None => self.others(),
        };
        if targets.is_empty() || self.is_stopped() {
            return Ok(Collected {
                answers: Vec::new(),
                missing: targets,
            });
        }
        let (done, finished) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            let limit = self.config.max_pending_requests;
            if state.pending.len() >= limit {
                return Err(ClusterError::TooManyRequests { limit });
            }
            let id = state.next_request;
            state.next_request = state.next_request.wrapping_add(1);
            state.pending.insert(
                id,
                Pending {
                    waiting: targets,
                    answers: Vec::new(),
                    missing: Vec::new(),
                    done: Some(done),
                },
            );
            id
        };
        // Removes the request however this future ends (also when it is dropped).
        let guard = PendingGuard { node: self, id };
        let channel = target.map_or(Channel::All, Channel::Node);
        self.publish_message(channel, &Message::Request { id, query })
            .map_err(ClusterError::Broker)?;
        let sleep = self.runtime.sleep_until(self.runtime.now() + timeout);
        if let Either::Right(_) = select(finished, sleep).await {
            bump(&self.counters.requests_timed_out);
        }
        Ok(guard.take())
    }

    /// One heartbeat period: say we are alive, forget nodes not heard from in time.
    fn tick(&self) {
        let _ = self.publish_message(Channel::All, &Message::Heartbeat);
        let now = self.runtime.now();
        let timeout = self.config.node_timeout;
        let dead: Vec<NodeId> = self
            .lock()
            .members
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(**seen) > timeout)
            .map(|(node, _)| *node)
            .collect();
        for node in dead {
            self.forget(node, &self.counters.nodes_lost);
        }
    }

    /// Removes `node` from the membership; requests stop waiting for it.
    fn forget(&self, node: NodeId, counter: &AtomicU64) {
        let mut state = self.lock();
        if state.members.remove(&node).is_none() {
            return;
        }
        // Counted under the lock, so that whoever sees the node gone sees it counted.
        bump(counter);
        for pending in state.pending.values_mut() {
            if let Some(at) = pending.waiting.iter().position(|n| *n == node) {
                pending.waiting.swap_remove(at);
                pending.missing.push(node);
                pending.finish_if_complete();
            }
        }
        drop(state);
        self.membership.change(|| true);
    }

    /// Records that `node` is alive.
    fn touch(&self, node: NodeId) {
        let now = self.runtime.now();
        let mut state = self.lock();
        if state.members.insert(node, now).is_none() {
            bump(&self.counters.nodes_joined);
            drop(state);
            self.membership.change(|| true);
        }
    }

    pub(crate) fn broker_connected(&self) {
        let now = self.runtime.now();
        let gap = self
            .lock()
            .down_since
            .take()
            .map(|since| now.saturating_duration_since(since));
        if let Some(gap) = gap {
            let us = u64::try_from(gap.as_micros()).unwrap_or(u64::MAX);
            bump(&self.counters.reconnects);
            self.counters.total_gap_us.fetch_add(us, Ordering::Relaxed);
            self.counters.last_gap_us.store(us, Ordering::Relaxed);
        }
        if !self.is_stopped() {
            let _ = self.publish_message(Channel::All, &Message::Hello);
        }
    }

    pub(crate) fn broker_disconnected(&self) {
        let now = self.runtime.now();
        let mut state = self.lock();
        if state.down_since.is_none() {
            state.down_since = Some(now);
            drop(state);
            bump(&self.counters.disconnects);
        }
    }

    /// Handles one envelope from the broker.
    pub(crate) fn receive(self: &Arc<Self>, envelope: Bytes) {
        if self.is_stopped() {
            return;
        }
        bump(&self.counters.received);
        let (from, message) = match envelope::decode(&envelope) {
            Ok(decoded) => decoded,
            Err(DecodeError::Version(_)) => return bump(&self.counters.foreign_version),
            Err(_) => return bump(&self.counters.malformed),
        };
        if from == self.id {
            // Our own publication, echoed by the broker.
            return;
        }
        if message == Message::Bye {
            return self.forget(from, &self.counters.nodes_left);
        }
        self.touch(from);
        match message {
            Message::Hello => {
                let _ = self.publish_message(Channel::Node(from), &Message::Heartbeat);
            }
            Message::Heartbeat | Message::Bye => {}
            Message::Broadcast {
                rooms,
                except,
                frame,
            } => {
                if let Some(local) = self.rooms() {
                    let members = match rooms {
                        Some(rooms) => local.members(rooms.iter().map(String::as_str)),
                        None => local.all(),
                    };
                    // The report is this node's business only.
                    let _ = deliver(&frame, members.iter(), except);
                }
            }
            Message::Emit { conn, frame } => {
                // At most once: a connection that is gone or over its bound misses it.
                if let Some(conn) = self.rooms().and_then(|local| local.get(conn)) {
                    let _ = conn.send_encoded(EncodedFrame::new(frame));
                }
            }
            Message::Request { id, query } => self.answer(from, id, query),
            Message::Response { id, answer } => self.collect(from, id, answer),
        }
    }

    fn collect(&self, from: NodeId, id: u64, answer: Answer) {
        let mut state = self.lock();
        let Some(pending) = state.pending.get_mut(&id) else {
            // Answered after its request timed out.
            return;
        };
        if let Some(at) = pending.waiting.iter().position(|n| *n == from) {
            pending.waiting.swap_remove(at);
            pending.answers.push((from, answer));
            pending.finish_if_complete();
        }
    }

    fn reply(&self, to: NodeId, id: u64, answer: Answer) {
        let _ = self.publish_message(Channel::Node(to), &Message::Response { id, answer });
    }

    fn answer(self: &Arc<Self>, from: NodeId, id: u64, query: Query) {
        let Some(local) = self.rooms() else {
            return;
        };
        let count = |n: usize| Answer::Count(u64::try_from(n).unwrap_or(u64::MAX));
        let answer = match query {
            Query::ConnectionCount => count(local.connection_count()),
            Query::RoomLen(room) => count(local.len(&room)),
            Query::Rooms => Answer::Rooms(local.rooms()),
            Query::Members(rooms) => Answer::Members(
                local
                    .members(rooms.iter().map(String::as_str))
                    .iter()
                    .map(Conn::id)
                    .collect(),
            ),
            Query::Join { conn, room } => match local.get(conn) {
                Some(conn) => Answer::Done(conn.join(&room)),
                None => Answer::NotFound,
            },
            Query::Leave { conn, room } => match local.get(conn) {
                Some(conn) => Answer::Done(conn.leave(&room)),
                None => Answer::NotFound,
            },
            Query::Ack {
                conn,
                timeout_ms,
                name,
                data,
            } => match local.get(conn) {
                Some(conn) => {
                    let timeout = Duration::from_millis(u64::from(timeout_ms));
                    return self.remote_ack(from, id, conn, name, data, timeout);
                }
                None => Answer::Ack(AckOutcome::NotFound),
            },
        };
        self.reply(from, id, answer);
    }

    /// Runs an emit-with-ack for another node and sends it the outcome; at most
    /// `max_remote_acks` at once.
    fn remote_ack(
        self: &Arc<Self>,
        from: NodeId,
        id: u64,
        conn: Conn,
        name: String,
        data: Bytes,
        timeout: Duration,
    ) {
        let limit = self.config.max_remote_acks;
        if self.remote_acks.fetch_add(1, Ordering::AcqRel) >= limit {
            self.remote_acks.fetch_sub(1, Ordering::AcqRel);
            bump(&self.counters.remote_acks_refused);
            let limit = u32::try_from(limit).unwrap_or(u32::MAX);
            return self.reply(from, id, Answer::Ack(AckOutcome::Busy { limit }));
        }
        let slot = RemoteAckSlot(Arc::downgrade(self));
        self.runtime.spawn(Box::pin(async move {
            let outcome = match conn.emit_with_ack_timeout(&name, data, timeout).await {
                Ok(data) => AckOutcome::Acked(data),
                Err(AckError::TimedOut) => AckOutcome::TimedOut,
                Err(AckError::ConnectionClosed | AckError::Emit(EmitError::Closed)) => {
                    AckOutcome::Closed
                }
                Err(other) => AckOutcome::Failed(other.to_string()),
            };
            if let Some(node) = slot.0.upgrade() {
                node.reply(from, id, Answer::Ack(outcome));
            }
            drop(slot);
        }));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Every handle to the server is gone without a shutdown: leave anyway.
        self.stop();
    }
}

/// One remote ack in flight; frees its slot however the task ends.
struct RemoteAckSlot(Weak<Node>);

impl Drop for RemoteAckSlot {
    fn drop(&mut self) {
        if let Some(node) = self.0.upgrade() {
            node.remote_acks.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A request's place in the pending table, removed on drop.
struct PendingGuard<'a> {
    node: &'a Node,
    id: u64,
}

impl PendingGuard<'_> {
    /// What the request collected; nodes still waited for count as missing.
    fn take(self) -> Collected {
        let pending = self.node.lock().pending.remove(&self.id);
        std::mem::forget(self);
        match pending {
            Some(mut pending) => {
                pending.missing.append(&mut pending.waiting);
                pending.missing.sort();
                Collected {
                    answers: pending.answers,
                    missing: pending.missing,
                }
            }
            None => Collected {
                answers: Vec::new(),
                missing: Vec::new(),
            },
        }
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.node.lock().pending.remove(&self.id);
    }
}
