//! The transport between the nodes of a cluster, and the inbox it delivers into.

use std::fmt;
use std::sync::Weak;

use bytes::Bytes;

use super::NodeId;
use super::node::Node;

/// Where a message goes: every node, or one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Every node of the cluster (broadcasts, membership, gathering requests). The
    /// publishing node receives its own message too and ignores it.
    All,
    /// One node (emits and targeted requests to its connections, answers to it).
    Node(NodeId),
}

/// Carries envelopes between the nodes of a cluster.
///
/// `etp-redis` implements it with Redis pub/sub; [`MemoryBus`](super::MemoryBus) with
/// in-process queues. A broker only moves opaque bytes: the cluster logic (membership,
/// routing, requests, timeouts) is the same whatever carries them.
///
/// Delivery is at most once and in order per publisher: a message published while the
/// broker is disconnected is dropped, not replayed (pub/sub keeps no history).
pub trait Broker: Send + Sync + 'static {
    /// Starts carrying messages for `node`: from now on everything published on
    /// [`Channel::All`] and on `Channel::Node(node)` is handed to `inbox`, and
    /// [`Inbox::connected`] is called each time the subscription is (re)established.
    /// Called once, when the server is built; the broker runs its own tasks.
    fn start(&self, node: NodeId, inbox: Inbox);

    /// Hands `payload` to the broker for `channel` without waiting. An error means the
    /// message is dropped: the broker's bounded queue is full, or it is disconnected.
    fn publish(&self, channel: Channel, payload: Bytes) -> Result<(), BrokerError>;

    /// Stops the broker after what was published so far has been handed on (best
    /// effort): the node is leaving the cluster.
    fn stop(&self);
}

/// A message could not be handed to the broker; it was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker's outbound queue holds as many messages as it allows.
    QueueFull {
        /// The queue's bound, in messages.
        limit: usize,
    },
    /// The broker has no connection to its server right now (it is reconnecting).
    Disconnected,
    /// The broker was stopped (the node left the cluster).
    Stopped,
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull { limit } => write!(
                f,
                "broker queue full ({limit} messages): the broker is slower than the publishers; message dropped"
            ),
            Self::Disconnected => {
                f.write_str("broker disconnected (reconnecting); message dropped")
            }
            Self::Stopped => f.write_str("broker stopped: this node has left the cluster"),
        }
    }
}

impl std::error::Error for BrokerError {}

/// Where a [`Broker`] delivers what it receives for one node. Cheap to clone; does
/// nothing once the node's server is gone.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) node: Weak<Node>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("alive", &(self.node.strong_count() > 0))
            .finish()
    }
}

impl Inbox {
    /// Handles one received envelope. Never waits: deliveries are queued on the local
    /// connections, answers are handed back to the broker, and requests that must
    /// wait (an emit-with-ack) run as tasks on the server's runtime.
    pub fn deliver(&self, envelope: Bytes) {
        if let Some(node) = self.node.upgrade() {
            node.receive(envelope);
        }
    }

    /// The subscription is established (first time, or again after a loss): the node
    /// announces itself so that every node knows it at once. After a loss, the time
    /// without a subscription is counted as a gap in the node's stats, since pub/sub
    /// may have lost messages meanwhile.
    pub fn connected(&self) {
        if let Some(node) = self.node.upgrade() {
            node.broker_connected();
        }
    }

    /// The connection to the broker's server was lost; the broker is reconnecting.
    pub fn disconnected(&self) {
        if let Some(node) = self.node.upgrade() {
            node.broker_disconnected();
        }
    }

    /// Runs `task` on the server's runtime (for brokers that need a task of their own
    /// without knowing the runtime); dropped if the node is gone.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(node) = self.node.upgrade() {
            node.spawn(Box::pin(task));
        }
    }

    /// True once the node is gone (its server dropped): the broker may stop.
    pub fn is_closed(&self) -> bool {
        self.node.strong_count() == 0
    }
}
