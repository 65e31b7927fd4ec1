//! Behaviour of `Rooms`: scenario tests plus a model-based property test.

use std::collections::BTreeSet;

use etp_proto::Rooms;
use proptest::prelude::*;

fn members(rooms: &Rooms<u32>, room: &str) -> Vec<u32> {
    rooms.members(room).copied().collect()
}

fn rooms_of(rooms: &Rooms<u32>, member: u32) -> Vec<String> {
    rooms.rooms_of(&member).map(str::to_owned).collect()
}

fn room_names(rooms: &Rooms<u32>) -> Vec<String> {
    rooms.rooms().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

#[test]
fn new_registry_is_empty() {
    let rooms = Rooms::<u32>::new();
    assert!(rooms.is_empty());
    assert_eq!(rooms.room_count(), 0);
    assert_eq!(rooms.rooms().count(), 0);

    let default = Rooms::<u32>::default();
    assert!(default.is_empty());
}

#[test]
fn join_is_idempotent() {
    let mut rooms = Rooms::new();
    assert!(rooms.join("a", 1u32));
    assert!(!rooms.join("a", 1));
    assert_eq!(members(&rooms, "a"), [1]);
    assert_eq!(rooms.len("a"), 1);
    assert_eq!(rooms_of(&rooms, 1), ["a"]);
}

#[test]
fn join_creates_the_room() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    assert!(!rooms.is_empty());
    assert_eq!(rooms.room_count(), 1);
    assert_eq!(room_names(&rooms), ["a"]);
    assert!(rooms.contains("a", &1));
}

#[test]
fn members_are_sorted_regardless_of_join_order() {
    let mut rooms = Rooms::new();
    for member in [5u32, 1, 3, 2, 4] {
        rooms.join("a", member);
    }
    assert_eq!(members(&rooms, "a"), [1, 2, 3, 4, 5]);
    assert_eq!(rooms.members("a").len(), 5);
    assert_eq!(rooms.members("a").next_back(), Some(&5));
}

#[test]
fn rooms_and_rooms_of_are_sorted_by_name() {
    let mut rooms = Rooms::new();
    for room in ["zeta", "alpha", "mu"] {
        rooms.join(room, 7u32);
    }
    assert_eq!(room_names(&rooms), ["alpha", "mu", "zeta"]);
    assert_eq!(rooms_of(&rooms, 7), ["alpha", "mu", "zeta"]);
}

#[test]
fn room_disappears_when_last_member_leaves() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    rooms.join("a", 2);

    assert!(rooms.leave("a", &1));
    assert_eq!(room_names(&rooms), ["a"]);

    assert!(rooms.leave("a", &2));
    assert!(rooms.is_empty());
    assert_eq!(rooms.len("a"), 0);
    assert_eq!(rooms.members("a").count(), 0);
    assert_eq!(rooms.rooms_of(&2).count(), 0);
}

#[test]
fn leave_reports_whether_the_member_was_in_the_room() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    rooms.join("b", 2);

    assert!(!rooms.leave("a", &2), "member of another room");
    assert!(!rooms.leave("nope", &1), "unknown room");
    assert!(!rooms.leave("a", &99), "unknown member");
    assert!(rooms.leave("a", &1));
    assert!(!rooms.leave("a", &1), "second leave is a no-op");
    assert_eq!(room_names(&rooms), ["b"]);
}

#[test]
fn leave_keeps_the_members_other_rooms() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    rooms.join("b", 1);
    rooms.leave("a", &1);
    assert_eq!(rooms_of(&rooms, 1), ["b"]);
    assert!(rooms.contains("b", &1));
}

#[test]
fn leave_all_returns_only_rooms_that_became_empty() {
    let mut rooms = Rooms::new();
    rooms.join("c", 1u32);
    rooms.join("a", 1);
    rooms.join("b", 1);
    rooms.join("b", 2); // "b" survives member 1 leaving
    rooms.join("d", 2); // not member 1's room at all

    assert_eq!(rooms.leave_all(&1), ["a", "c"]);
    assert_eq!(room_names(&rooms), ["b", "d"]);
    assert_eq!(members(&rooms, "b"), [2]);
    assert_eq!(rooms.rooms_of(&1).count(), 0);
    assert_eq!(rooms_of(&rooms, 2), ["b", "d"]);
}

#[test]
fn leave_all_of_unknown_member_changes_nothing() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    assert!(rooms.leave_all(&42).is_empty());
    assert_eq!(members(&rooms, "a"), [1]);
}

#[test]
fn leave_all_twice_is_a_no_op() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    assert_eq!(rooms.leave_all(&1), ["a"]);
    assert!(rooms.leave_all(&1).is_empty());
    assert!(rooms.is_empty());
}

#[test]
fn member_can_rejoin_after_leaving_everything() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    rooms.leave_all(&1);
    assert!(rooms.join("a", 1));
    assert_eq!(rooms_of(&rooms, 1), ["a"]);
}

#[test]
fn members_of_any_has_no_duplicates() {
    let mut rooms = Rooms::new();
    rooms.join("a", 3u32);
    rooms.join("a", 1);
    rooms.join("b", 1);
    rooms.join("b", 2);
    rooms.join("c", 9);

    assert_eq!(rooms.members_of_any(["b", "a"]), [&1, &2, &3]);
    assert_eq!(
        rooms.members_of_any(["a", "a"]),
        [&1, &3],
        "room listed twice"
    );
}

#[test]
fn members_of_any_ignores_unknown_rooms() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    assert_eq!(rooms.members_of_any(["nope", "a", "other"]), [&1]);
    assert!(rooms.members_of_any(["nope"]).is_empty());
    assert!(rooms.members_of_any(std::iter::empty()).is_empty());
}

#[test]
fn members_of_any_accepts_borrowed_strings() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    rooms.join("b", 2);
    let names = [String::from("a"), String::from("b")];
    assert_eq!(
        rooms.members_of_any(names.iter().map(String::as_str)),
        [&1, &2]
    );
}

#[test]
fn unknown_room_queries_are_empty() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    assert_eq!(rooms.len("nope"), 0);
    assert_eq!(rooms.members("nope").count(), 0);
    assert!(!rooms.contains("nope", &1));
    assert!(rooms.clear("nope").is_empty());
    assert_eq!(room_names(&rooms), ["a"]);
}

#[test]
fn unknown_member_queries_are_empty() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    assert_eq!(rooms.rooms_of(&2).count(), 0);
    assert!(!rooms.contains("a", &2));
}

#[test]
fn room_names_are_case_sensitive_and_may_be_empty() {
    let mut rooms = Rooms::new();
    rooms.join("A", 1u32);
    rooms.join("a", 2);
    rooms.join("", 3);
    assert_eq!(room_names(&rooms), ["", "A", "a"]);
    assert_eq!(members(&rooms, "a"), [2]);
    assert_eq!(members(&rooms, ""), [3]);
}

#[test]
fn clear_returns_former_members_sorted() {
    let mut rooms = Rooms::new();
    for member in [3u32, 1, 2] {
        rooms.join("a", member);
    }
    rooms.join("b", 4);
    assert_eq!(rooms.clear("a"), [1, 2, 3]);
    assert_eq!(room_names(&rooms), ["b"]);
    assert_eq!(rooms.len("a"), 0);
}

#[test]
fn clear_keeps_reverse_index_consistent() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    rooms.join("b", 1);
    rooms.join("a", 2);

    rooms.clear("a");
    assert_eq!(rooms_of(&rooms, 1), ["b"]);
    assert_eq!(rooms.rooms_of(&2).count(), 0);
    // Stale reverse entries would make leave_all report "a" or touch "b" wrongly.
    assert_eq!(rooms.leave_all(&1), ["b"]);
    assert!(rooms.leave_all(&2).is_empty());
    assert!(rooms.is_empty());
    // And rejoining must count as a fresh join.
    assert!(rooms.join("a", 2));
}

#[test]
fn clear_all_removes_every_room_and_membership() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    rooms.join("b", 2);
    rooms.clear_all();
    assert!(rooms.is_empty());
    assert_eq!(rooms.room_count(), 0);
    assert_eq!(rooms.rooms_of(&1).count(), 0);
    assert!(rooms.leave_all(&2).is_empty());
    assert!(rooms.join("a", 1));
}

#[test]
fn clone_is_independent() {
    let mut original = Rooms::new();
    original.join("a", 1u32);
    let mut copy = original.clone();
    copy.join("a", 2);
    copy.leave_all(&1);
    assert_eq!(members(&original, "a"), [1]);
    assert_eq!(members(&copy, "a"), [2]);
}

#[test]
fn debug_output_mentions_rooms_and_members() {
    let mut rooms = Rooms::new();
    rooms.join("lobby", 17u32);
    let debug = format!("{rooms:?}");
    assert!(debug.contains("lobby"), "{debug}");
    assert!(debug.contains("17"), "{debug}");
}

#[test]
fn works_with_non_copy_handles() {
    use std::sync::Arc;

    let alice: Arc<str> = Arc::from("alice");
    let bob: Arc<str> = Arc::from("bob");
    let mut rooms = Rooms::new();
    rooms.join("a", Arc::clone(&bob));
    rooms.join("a", Arc::clone(&alice));
    let names: Vec<&str> = rooms.members("a").map(|member| &**member).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(rooms.clear("a"), [alice, bob]);
}

#[test]
fn iterators_do_not_borrow_the_query_argument() {
    let mut rooms = Rooms::new();
    rooms.join("a", 1u32);
    // The room name and member are temporaries dropped before the iterators are used.
    let in_room = rooms.members(&String::from("a"));
    let of_member = rooms.rooms_of(&std::hint::black_box(1u32));
    assert_eq!(in_room.copied().collect::<Vec<_>>(), [1]);
    assert_eq!(of_member.collect::<Vec<_>>(), ["a"]);
}

// ---------------------------------------------------------------------------
// Model-based property test
// ---------------------------------------------------------------------------

const ROOMS: [&str; 5] = ["a", "b", "c", "d", "e"];
/// Queried but never joined, to exercise the "unknown room" paths.
const UNKNOWN_ROOM: &str = "zz";
const MEMBERS: u32 = 8;
/// Queried but never joined, to exercise the "unknown member" paths.
const UNKNOWN_MEMBER: u32 = 99;

#[derive(Debug, Clone)]
enum Op {
    Join(&'static str, u32),
    Leave(&'static str, u32),
    LeaveAll(u32),
    Clear(&'static str),
    ClearAll,
    /// Read-only: checks `members_of_any` on an arbitrary selection of rooms.
    MembersOfAny(Vec<&'static str>),
}

fn room() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&ROOMS[..])
}

fn query_room() -> impl Strategy<Value = &'static str> {
    prop_oneof![9 => room(), 1 => Just(UNKNOWN_ROOM)]
}

fn member() -> impl Strategy<Value = u32> {
    0..MEMBERS
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (room(), member()).prop_map(|(r, m)| Op::Join(r, m)),
        4 => (query_room(), member()).prop_map(|(r, m)| Op::Leave(r, m)),
        2 => member().prop_map(Op::LeaveAll),
        1 => query_room().prop_map(Op::Clear),
        1 => Just(Op::ClearAll),
        2 => prop::collection::vec(query_room(), 0..6).prop_map(Op::MembersOfAny),
    ]
}

/// Naive reference: the set of (room, member) memberships.
#[derive(Debug, Default)]
struct Model(BTreeSet<(String, u32)>);

impl Model {
    fn members(&self, room: &str) -> Vec<u32> {
        self.0
            .iter()
            .filter(|(r, _)| r == room)
            .map(|&(_, m)| m)
            .collect()
    }

    fn rooms_of(&self, member: u32) -> Vec<String> {
        self.0
            .iter()
            .filter(|&&(_, m)| m == member)
            .map(|(r, _)| r.clone())
            .collect()
    }

    fn rooms(&self) -> Vec<String> {
        let names: BTreeSet<String> = self.0.iter().map(|(r, _)| r.clone()).collect();
        names.into_iter().collect()
    }

    fn members_of_any(&self, rooms: &[&str]) -> Vec<u32> {
        let union: BTreeSet<u32> = self
            .0
            .iter()
            .filter(|(r, _)| rooms.contains(&r.as_str()))
            .map(|&(_, m)| m)
            .collect();
        union.into_iter().collect()
    }
}

fn assert_agrees(rooms: &Rooms<u32>, model: &Model) {
    let expected_rooms = model.rooms();
    assert_eq!(room_names(rooms), expected_rooms);
    assert_eq!(rooms.room_count(), expected_rooms.len());
    assert_eq!(rooms.is_empty(), expected_rooms.is_empty());

    for room in ROOMS.iter().copied().chain([UNKNOWN_ROOM]) {
        let expected = model.members(room);
        assert_eq!(members(rooms, room), expected, "members({room:?})");
        assert_eq!(rooms.members(room).len(), expected.len());
        assert_eq!(rooms.len(room), expected.len(), "len({room:?})");
    }
    for room in rooms.rooms() {
        assert!(rooms.len(room) > 0, "empty room {room:?} is listed");
    }

    for member in (0..MEMBERS).chain([UNKNOWN_MEMBER]) {
        assert_eq!(
            rooms_of(rooms, member),
            model.rooms_of(member),
            "rooms_of({member})"
        );
        for room in ROOMS {
            assert_eq!(
                rooms.contains(room, &member),
                model.0.contains(&(room.to_owned(), member)),
                "contains({room:?}, {member})"
            );
        }
    }

    let everything: Vec<&str> = ROOMS.iter().copied().chain([UNKNOWN_ROOM]).collect();
    let all: Vec<u32> = rooms
        .members_of_any(everything.iter().copied())
        .into_iter()
        .copied()
        .collect();
    assert_eq!(all, model.members_of_any(&everything));
}

fn apply(rooms: &mut Rooms<u32>, model: &mut Model, op: &Op) {
    match *op {
        Op::Join(room, member) => {
            let expected = model.0.insert((room.to_owned(), member));
            assert_eq!(rooms.join(room, member), expected, "{op:?}");
        }
        Op::Leave(room, member) => {
            let expected = model.0.remove(&(room.to_owned(), member));
            assert_eq!(rooms.leave(room, &member), expected, "{op:?}");
        }
        Op::LeaveAll(member) => {
            let mine = model.rooms_of(member);
            model.0.retain(|&(_, m)| m != member);
            let emptied: Vec<String> = mine
                .into_iter()
                .filter(|room| model.members(room).is_empty())
                .collect();
            assert_eq!(rooms.leave_all(&member), emptied, "{op:?}");
        }
        Op::Clear(room) => {
            let expected = model.members(room);
            model.0.retain(|(r, _)| r != room);
            assert_eq!(rooms.clear(room), expected, "{op:?}");
        }
        Op::ClearAll => {
            model.0.clear();
            rooms.clear_all();
        }
        Op::MembersOfAny(ref selection) => {
            let got: Vec<u32> = rooms
                .members_of_any(selection.iter().copied())
                .into_iter()
                .copied()
                .collect();
            assert_eq!(got, model.members_of_any(selection), "{op:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rooms_agree_with_naive_model(ops in prop::collection::vec(op(), 0..64)) {
        let mut rooms = Rooms::new();
        let mut model = Model::default();
        assert_agrees(&rooms, &model);
        for op in &ops {
            apply(&mut rooms, &mut model, op);
            assert_agrees(&rooms, &model);
        }
    }
}
