//! Room membership registry: named groups of members used to address broadcasts.
//!
//! Pure bookkeeping: no I/O, no knowledge of connections beyond an ordered handle.

use std::collections::{BTreeMap, BTreeSet};

/// A registry of room memberships.
///
/// A room is a named set of members; a member is any handle the caller uses to
/// identify a connection (a connection id, or an `Arc`'d handle that orders by
/// id). `K`'s ordering must not change while the handle is stored.
///
/// Guarantees:
/// * a room exists only while it has at least one member;
/// * every iteration is sorted (rooms by name, members by `K`), so broadcasts and
///   logs are deterministic;
/// * both directions (room → members and member → rooms) are indexed, so
///   [`leave_all`](Rooms::leave_all) and [`rooms_of`](Rooms::rooms_of) cost
///   O(rooms of that member) rather than O(all rooms).
///
/// # Example
///
/// ```
/// use etp_proto::Rooms;
///
/// let mut rooms = Rooms::new();
/// assert!(rooms.join("lobby", 1u32));
/// assert!(rooms.join("lobby", 2));
/// assert!(rooms.join("game", 2));
/// assert!(!rooms.join("lobby", 1)); // already a member
///
/// assert_eq!(rooms.members("lobby").copied().collect::<Vec<_>>(), [1, 2]);
/// assert_eq!(rooms.rooms_of(&2).collect::<Vec<_>>(), ["game", "lobby"]);
/// assert_eq!(rooms.members_of_any(["lobby", "game"]), [&1, &2]);
///
/// // Member 2 disconnects: "game" had no one else, so it disappears.
/// assert_eq!(rooms.leave_all(&2), ["game"]);
/// assert_eq!(rooms.rooms().collect::<Vec<_>>(), ["lobby"]);
/// ```
#[derive(Debug, Clone)]
pub struct Rooms<K> {
    /// Invariant: no set is empty.
    by_room: BTreeMap<String, BTreeSet<K>>,
    /// Mirror of `by_room`. Invariant: no set is empty, so members that left
    /// every room do not linger here.
    by_member: BTreeMap<K, BTreeSet<String>>,
}

// Manual impl: deriving would needlessly require `K: Default`.
impl<K> Default for Rooms<K> {
    fn default() -> Self {
        Self {
            by_room: BTreeMap::new(),
            by_member: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> Rooms<K> {
    /// Creates an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `member` to `room`, creating the room if needed.
    ///
    /// Idempotent: returns `true` if the member was newly added, `false` if it
    /// was already in the room.
    pub fn join(&mut self, room: &str, member: K) -> bool {
        // Checked first so the idempotent path neither clones nor allocates.
        if self.contains(room, &member) {
            return false;
        }
        match self.by_room.get_mut(room) {
            Some(members) => {
                members.insert(member.clone());
            }
            None => {
                self.by_room
                    .insert(room.to_owned(), BTreeSet::from([member.clone()]));
            }
        }
        self.by_member
            .entry(member)
            .or_default()
            .insert(room.to_owned());
        true
    }

    /// Removes `member` from `room`; the room disappears if it becomes empty.
    ///
    /// Returns `true` if the member was in the room.
    pub fn leave(&mut self, room: &str, member: &K) -> bool {
        let Some(members) = self.by_room.get_mut(room) else {
            return false;
        };
        if !members.remove(member) {
            return false;
        }
        if members.is_empty() {
            self.by_room.remove(room);
        }
        self.unlink(member, room);
        true
    }

    /// Removes `member` from every room it is in (typically on disconnect).
    ///
    /// Returns the rooms that became empty and therefore no longer exist,
    /// sorted by name.
    pub fn leave_all(&mut self, member: &K) -> Vec<String> {
        let Some(rooms) = self.by_member.remove(member) else {
            return Vec::new();
        };
        let mut emptied = Vec::new();
        // `rooms` is a BTreeSet, so `emptied` comes out sorted.
        for room in rooms {
            if let Some(members) = self.by_room.get_mut(&room) {
                members.remove(member);
                if members.is_empty() {
                    self.by_room.remove(&room);
                    emptied.push(room);
                }
            }
        }
        emptied
    }

    /// The members of `room`, sorted; empty if the room does not exist.
    pub fn members<'a>(
        &'a self,
        room: &str,
    ) -> impl ExactSizeIterator<Item = &'a K> + DoubleEndedIterator + use<'a, K> {
        // `use<'a, K>`: the iterator borrows the registry, not the `room` argument.
        self.by_room
            .get(room)
            .map(BTreeSet::iter)
            .unwrap_or_default()
    }

    /// The union of the members of several rooms: sorted, without duplicates.
    ///
    /// Unknown rooms contribute nothing; a room listed twice counts once.
    pub fn members_of_any<'a, I: IntoIterator<Item = &'a str>>(&self, rooms: I) -> Vec<&K> {
        let mut union = BTreeSet::new();
        for room in rooms {
            union.extend(self.members(room));
        }
        union.into_iter().collect()
    }

    /// The rooms `member` is in, sorted; empty for an unknown member.
    pub fn rooms_of<'a>(
        &'a self,
        member: &K,
    ) -> impl ExactSizeIterator<Item = &'a str> + DoubleEndedIterator + use<'a, K> {
        // `use<'a, K>`: the iterator borrows the registry, not the `member` argument.
        self.by_member
            .get(member)
            .map(BTreeSet::iter)
            .unwrap_or_default()
            .map(String::as_str)
    }

    /// The number of members in `room` (0 if the room does not exist).
    pub fn len(&self, room: &str) -> usize {
        self.by_room.get(room).map_or(0, BTreeSet::len)
    }

    /// Whether `member` is in `room`.
    pub fn contains(&self, room: &str, member: &K) -> bool {
        self.by_room
            .get(room)
            .is_some_and(|members| members.contains(member))
    }

    /// The existing (hence non-empty) rooms, sorted by name.
    pub fn rooms(&self) -> impl ExactSizeIterator<Item = &str> + DoubleEndedIterator {
        self.by_room.keys().map(String::as_str)
    }

    /// The number of existing rooms.
    pub fn room_count(&self) -> usize {
        self.by_room.len()
    }

    /// Whether there are no rooms at all.
    pub fn is_empty(&self) -> bool {
        self.by_room.is_empty()
    }

    /// Removes the whole `room`, returning its former members, sorted.
    ///
    /// Returns an empty `Vec` if the room does not exist.
    pub fn clear(&mut self, room: &str) -> Vec<K> {
        let Some(members) = self.by_room.remove(room) else {
            return Vec::new();
        };
        for member in &members {
            self.unlink(member, room);
        }
        members.into_iter().collect()
    }

    /// Removes every room.
    pub fn clear_all(&mut self) {
        self.by_room.clear();
        self.by_member.clear();
    }

    /// Drops `room` from `member`'s reverse-index entry, and the entry itself
    /// once it is empty.
    fn unlink(&mut self, member: &K, room: &str) {
        if let Some(rooms) = self.by_member.get_mut(member) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.by_member.remove(member);
            }
        }
    }
}
