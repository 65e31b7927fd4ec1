//! An in-process broker: several cluster nodes in one process, for tests and examples.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::StreamExt;

use super::NodeId;
use super::broker::{Broker, BrokerError, Channel, Inbox};

/// What a node's queue carries.
enum Item {
    Envelope(Bytes),
    Connected,
    Disconnected,
}

/// One node's subscription: a queue bounded in messages, drained by a task on the
/// node's runtime.
struct Subscriber {
    queue: mpsc::UnboundedSender<Item>,
    queued: Arc<AtomicUsize>,
    /// Cut off from the bus, as if its process had died: nothing in, nothing out.
    isolated: bool,
}

struct State {
    subscribers: HashMap<NodeId, Subscriber>,
    /// The bus is "down" (a simulated broker outage): publishing fails.
    down: bool,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    dropped: AtomicU64,
}

/// A broker in memory: every [`MemoryBroker`] made from the same bus reaches the
/// others, in order per publisher, through per-node queues of at most `capacity`
/// messages (a message for a full queue is dropped and counted, as a Redis server
/// drops a subscriber that falls too far behind).
///
/// It can also play the failures a real broker has: [`isolate`](Self::isolate) a node
/// (its process died: no bye), or take the whole bus down and up again
/// ([`outage`](Self::outage), [`restore`](Self::restore)).
///
/// ```
/// use etp_driver::cluster::MemoryBus;
///
/// let bus = MemoryBus::new();
/// let (a, b) = (bus.broker(), bus.broker());
/// // ServerBuilder::cluster(a, ClusterConfig::default()), and the same with b.
/// # drop((a, b));
/// ```
#[derive(Clone)]
pub struct MemoryBus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("nodes", &self.lock().subscribers.len())
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// The default bound of each node's queue, in messages.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// A bus whose node queues hold [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY)
    /// messages.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A bus whose node queues hold `capacity` messages each.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    subscribers: HashMap::new(),
                    down: false,
                }),
                capacity,
                dropped: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A broker for one more node.
    pub fn broker(&self) -> MemoryBroker {
        MemoryBroker {
            bus: self.clone(),
            node: OnceLock::new(),
        }
    }

    /// Cuts `node` off, as if its process had died: it hears nothing and nothing it
    /// publishes arrives; the others drop it after their node timeout.
    pub fn isolate(&self, node: NodeId) {
        if let Some(subscriber) = self.lock().subscribers.get_mut(&node) {
            subscriber.isolated = true;
        }
    }

    /// Takes the bus down: every node hears that its broker is disconnected, and
    /// publishing fails until [`restore`](Self::restore).
    pub fn outage(&self) {
        let mut state = self.lock();
        state.down = true;
        for subscriber in state.subscribers.values() {
            let _ = subscriber.queue.unbounded_send(Item::Disconnected);
        }
    }

    /// Brings the bus back: every node hears that its broker is connected again.
    pub fn restore(&self) {
        let mut state = self.lock();
        state.down = false;
        for subscriber in state.subscribers.values() {
            let _ = subscriber.queue.unbounded_send(Item::Connected);
        }
    }

    /// Messages dropped because a node's queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn publish(&self, from: NodeId, channel: Channel, payload: Bytes) -> Result<(), BrokerError> {
        let state = self.lock();
        if state.down {
            return Err(BrokerError::Disconnected);
        }
        let Some(sender) = state.subscribers.get(&from) else {
            return Err(BrokerError::Stopped);
        };
        if sender.isolated {
            // A dead process's messages go nowhere; it cannot tell.
            return Ok(());
        }
        let targets = state.subscribers.iter().filter(|(node, s)| {
            !s.isolated && (channel == Channel::All || channel == Channel::Node(**node))
        });
        for (_, subscriber) in targets {
            let queued = subscriber.queued.fetch_add(1, Ordering::AcqRel);
            if queued >= self.shared.capacity {
                subscriber.queued.fetch_sub(1, Ordering::AcqRel);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let _ = subscriber
                .queue
                .unbounded_send(Item::Envelope(payload.clone()));
        }
        Ok(())
    }
}

/// One node's end of a [`MemoryBus`].
pub struct MemoryBroker {
    bus: MemoryBus,
    node: OnceLock<NodeId>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("node", &self.node.get())
            .finish_non_exhaustive()
    }
}

impl Broker for MemoryBroker {
    fn start(&self, node: NodeId, inbox: Inbox) {
        if self.node.set(node).is_err() {
            return;
        }
        let (queue, mut items) = mpsc::unbounded();
        let queued = Arc::new(AtomicUsize::new(0));
        let mut state = self.bus.lock();
        if !state.down {
            let _ = queue.unbounded_send(Item::Connected);
        }
        state.subscribers.insert(
            node,
            Subscriber {
                queue,
                queued: queued.clone(),
                isolated: false,
            },
        );
        drop(state);
        let pump_inbox = inbox.clone();
        inbox.spawn(async move {
            while let Some(item) = items.next().await {
                match item {
                    Item::Envelope(envelope) => {
                        queued.fetch_sub(1, Ordering::AcqRel);
                        pump_inbox.deliver(envelope);
                    }
                    Item::Connected => pump_inbox.connected(),
                    Item::Disconnected => pump_inbox.disconnected(),
                }
                if pump_inbox.is_closed() {
                    return;
                }
            }
        });
    }

    fn publish(&self, channel: Channel, payload: Bytes) -> Result<(), BrokerError> {
        let Some(node) = self.node.get() else {
            return Err(BrokerError::Stopped);
        };
        self.bus.publish(*node, channel, payload)
    }

    fn stop(&self) {
        if let Some(node) = self.node.get() {
            // Dropping the queue's sender ends the pump once it has drained.
            self.bus.lock().subscribers.remove(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Weak;

    use super::*;

    /// An inbox whose node is gone: nothing drains the queue, so the test controls
    /// exactly what it holds.
    fn detached() -> Inbox {
        Inbox { node: Weak::new() }
    }

    #[test]
    fn a_node_queue_holds_exactly_its_capacity() {
        let bus = MemoryBus::with_capacity(3);
        let (a, b) = (bus.broker(), bus.broker());
        let (node_a, node_b) = (NodeId::from_bytes([1; 8]), NodeId::from_bytes([2; 8]));
        a.start(node_a, detached());
        b.start(node_b, detached());
        for _ in 0..3 {
            a.publish(Channel::Node(node_b), Bytes::from_static(b"m"))
                .expect("published");
        }
        assert_eq!(bus.dropped(), 0, "at the bound");
        // One past: the publisher is not refused (the bus took it), the slow node's
        // copy is dropped and counted.
        a.publish(Channel::Node(node_b), Bytes::from_static(b"m"))
            .expect("published");
        assert_eq!(bus.dropped(), 1);
        // `All` reaches the publisher's own queue too: 1 of 3 there, b is full.
        a.publish(Channel::All, Bytes::from_static(b"m"))
            .expect("published");
        assert_eq!(bus.dropped(), 2);
    }

    #[test]
    fn outages_isolation_and_stop_are_reported_to_publishers() {
        let bus = MemoryBus::new();
        let (a, b) = (bus.broker(), bus.broker());
        assert_eq!(
            a.publish(Channel::All, Bytes::new()),
            Err(BrokerError::Stopped),
            "not started"
        );
        let node_a = NodeId::from_bytes([1; 8]);
        a.start(node_a, detached());
        b.start(NodeId::from_bytes([2; 8]), detached());
        bus.outage();
        assert_eq!(
            a.publish(Channel::All, Bytes::new()),
            Err(BrokerError::Disconnected)
        );
        bus.restore();
        assert_eq!(a.publish(Channel::All, Bytes::new()), Ok(()));
        // A dead process cannot tell that nobody hears it.
        bus.isolate(node_a);
        assert_eq!(a.publish(Channel::All, Bytes::new()), Ok(()));
        a.stop();
        assert_eq!(
            a.publish(Channel::All, Bytes::new()),
            Err(BrokerError::Stopped)
        );
    }
}
