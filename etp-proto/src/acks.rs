//! The table of acknowledgements we await: ids, caller contexts and deadlines.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

/// The largest ack id we hand out: a JavaScript peer holds ids in an f64, which is
/// exact up to 2^53 - 1.
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// One awaited acknowledgement.
#[derive(Debug)]
struct Pending<C> {
    ctx: C,
    deadline: Instant,
}

/// Awaited acknowledgements by id, with their deadlines in a min-heap.
///
/// Ids grow from 1 and are not reused until [`MAX_ACK_ID`] wraps, so a late reply
/// cannot resolve a newer request. The heap is cleaned lazily: an entry whose id was
/// resolved stays until it reaches the top or the heap is rebuilt, which happens once
/// stale entries outnumber live ones, so the heap stays within twice the table.
#[derive(Debug)]
pub(crate) struct AckTable<C> {
    pending: HashMap<u64, Pending<C>, BuildHasherDefault<IdHasher>>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
    limit: usize,
}

impl<C> AckTable<C> {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            pending: HashMap::default(),
            deadlines: BinaryHeap::new(),
            next_id: 1,
            limit,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.pending.len() >= self.limit
    }

    /// Registers a request; the caller checked [`is_full`](Self::is_full).
    pub(crate) fn insert(&mut self, ctx: C, deadline: Instant) -> u64 {
        let id = self.allocate_id();
        self.pending.insert(id, Pending { ctx, deadline });
        self.deadlines.push(Reverse((deadline, id)));
        id
    }

    fn allocate_id(&mut self) -> u64 {
        loop {
            let id = self.next_id;
            self.next_id = if id >= MAX_ACK_ID { 1 } else { id + 1 };
            // Only after 2^53 requests can an id come round again; skip any still awaited.
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Removes and returns the request with this id, if it is still awaited.
    pub(crate) fn remove(&mut self, id: u64) -> Option<C> {
        let pending = self.pending.remove(&id)?;
        self.discard_stale();
        Some(pending.ctx)
    }

    /// Removes every request whose context fails `keep`; returns how many.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&C) -> bool) -> usize {
        let before = self.pending.len();
        self.pending.retain(|_, pending| keep(&pending.ctx));
        self.discard_stale();
        before - self.pending.len()
    }

    /// The earliest deadline of an awaited request.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        // `discard_stale` keeps a live entry at the top.
        self.deadlines
            .peek()
            .map(|Reverse((deadline, _))| *deadline)
    }

    /// Removes and returns one request whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(u64, C)> {
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if deadline > now {
                return None;
            }
            self.deadlines.pop();
            if self.is_live(deadline, id) {
                let pending = self.pending.remove(&id)?;
                self.discard_stale();
                return Some((id, pending.ctx));
            }
        }
        None
    }

    /// Removes every request, in id order.
    pub(crate) fn drain(&mut self) -> Vec<(u64, C)> {
        self.deadlines.clear();
        let mut all: Vec<_> = self.pending.drain().map(|(id, p)| (id, p.ctx)).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    fn is_live(&self, deadline: Instant, id: u64) -> bool {
        self.pending
            .get(&id)
            .is_some_and(|p| p.deadline == deadline)
    }

    fn discard_stale(&mut self) {
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if self.is_live(deadline, id) {
                break;
            }
            self.deadlines.pop();
        }
        if self.deadlines.len() > 2 * self.pending.len() + 32 {
            // In place: rebuilding with `collect` allocates a new heap each time.
            let pending = &self.pending;
            self.deadlines.retain(|Reverse((deadline, id))| {
                pending.get(id).is_some_and(|p| p.deadline == *deadline)
            });
        }
    }

    #[cfg(test)]
    pub(crate) fn set_next_id(&mut self, id: u64) {
        self.next_id = id;
    }

    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.deadlines.len()
    }
}

/// Fibonacci hashing for our sequential ids: one multiply, and it spreads the
/// entropy into the high bits that the hash table uses for its tag bytes.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in byte by byte.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests need some Instant to start from
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ids_wrap_below_2_pow_53_and_skip_awaited_ones() {
        let now = Instant::now();
        let mut table = AckTable::new(10);
        let first = table.insert((), now);
        assert_eq!(first, 1);
        table.set_next_id(MAX_ACK_ID);
        assert_eq!(table.insert((), now), MAX_ACK_ID);
        // 1 is still awaited, so the wrap continues at 2.
        assert_eq!(table.insert((), now), 2);
    }

    #[test]
    fn heap_stays_bounded_when_replies_arrive_out_of_order() {
        let now = Instant::now();
        let mut table = AckTable::new(usize::MAX);
        // The oldest request never resolves, so the heap top is never stale: only the
        // rebuild keeps the heap from growing with every request.
        table.insert((), now + Duration::from_secs(3600));
        for i in 0..10_000u64 {
            let id = table.insert((), now + Duration::from_secs(7200 + i));
            assert!(table.remove(id).is_some());
            assert!(table.heap_len() <= 2 * table.len() + 33);
        }
    }

    #[test]
    fn expired_requests_come_out_in_deadline_order() {
        let now = Instant::now();
        let mut table = AckTable::new(10);
        let late = table.insert("late", now + Duration::from_secs(2));
        let early = table.insert("early", now + Duration::from_secs(1));
        assert_eq!(table.next_deadline(), Some(now + Duration::from_secs(1)));
        assert_eq!(table.pop_expired(now), None);
        let at = now + Duration::from_secs(2);
        assert_eq!(table.pop_expired(at), Some((early, "early")));
        assert_eq!(table.pop_expired(at), Some((late, "late")));
        assert_eq!(table.pop_expired(at), None);
        assert_eq!(table.next_deadline(), None);
    }
}
