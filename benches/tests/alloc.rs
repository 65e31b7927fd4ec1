//! Heap allocations on the hot paths of `etp_proto::Session`, counted by a global
//! allocator.
//!
//! DESIGN.md: "No allocation per inbound frame beyond refcount bumps". These tests hold
//! the core to exactly zero allocations per inbound event, per answered ack request and
//! per `emit_with_ack` round trip, once the session is warm.
//!
//! This file lives in `etp-benches` and not in `etp-proto/tests`: a
//! `#[global_allocator]` needs `unsafe impl GlobalAlloc`, and `etp-proto` forbids
//! `unsafe_code` (a `forbid` that no `allow` can lift).
//!
//! The counter is thread-local, so tests running in parallel threads do not see each
//! other's allocations; each counted window runs on the test's own thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use etp_benches::{
    EVENT_NAME, REQUEST_NAME, ack_replies, ack_round_trip, drain, event_message, inbound, payload,
};
use etp_proto::{Config, Encoding, Session, encode_event};

/// Forwards to the system allocator and counts, per thread, every call that may
/// allocate (`alloc`, `alloc_zeroed`, `realloc`).
struct CountingAllocator;

thread_local! {
    // `const` and without a destructor: reading it never allocates or registers
    // anything, so the allocator cannot recurse into itself.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: during thread teardown the slot may be gone; that call goes uncounted.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

#[allow(unsafe_code)] // GlobalAlloc is an unsafe trait; every method forwards to System.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` and `layout` come from this allocator, which is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` come from this allocator, which is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` and returns how many allocations it made on this thread (everything `f`
/// returns is dropped inside the window, after the count of `f` itself).
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const WARM_UP: usize = 1_000;
const COUNTED: usize = 10_000;

/// `count` copies of `message`: clones of one shared `Bytes`, made before counting.
fn copies(message: &Bytes, count: usize) -> Vec<Bytes> {
    vec![message.clone(); count]
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations_in(|| {
        black_box(Vec::<u8>::with_capacity(black_box(64)));
    });
    assert_eq!(n, 1);
    // And a clone of a message built by the helpers is a refcount bump.
    let message = event_message(EVENT_NAME, 0, 64);
    assert_eq!(allocations_in(|| drop(black_box(message.clone()))), 0);
    // It sees etp-proto's allocations too: a cold session grows its output queue.
    let now = Instant::now();
    let mut session: Session<u64> = Session::new(Config::default(), now);
    assert!(
        allocations_in(|| {
            inbound(&mut session, message, now);
        }) > 0
    );
}

#[test]
fn inbound_event_without_ack_allocates_nothing() {
    let now = Instant::now();
    let mut session: Session<u64> = Session::new(Config::default(), now);
    let message = event_message(EVENT_NAME, 0, 64);
    for m in copies(&message, WARM_UP) {
        inbound(&mut session, m, now);
    }

    let messages = copies(&message, COUNTED);
    let mut outputs = 0;
    let n = allocations_in(|| {
        for m in messages {
            session.handle_message(m, now).unwrap();
            outputs += drain(&mut session);
        }
    });
    assert_eq!(outputs, COUNTED, "one Event per message");
    assert_eq!(n, 0, "allocations over {COUNTED} inbound events");
}

#[test]
fn inbound_event_answered_with_ack_allocates_nothing() {
    // The reply is split off the session's 4 KiB encode buffer. Once the Transmit is
    // dropped the buffer is unique again, and when it runs out `BytesMut::reserve`
    // reclaims it instead of allocating. COUNTED replies of ~20 bytes run through the
    // buffer about 50 times, so the reclaim path is covered.
    let now = Instant::now();
    let mut session: Session<u64> = Session::new(Config::default(), now);
    let message = event_message(EVENT_NAME, 42, 64);
    for m in copies(&message, WARM_UP) {
        inbound(&mut session, m, now);
    }

    let messages = copies(&message, COUNTED);
    let n = allocations_in(|| {
        for m in messages {
            // handle_message, drain the Event, ack(token, b"ok"), drain the Transmit.
            inbound(&mut session, m, now);
        }
    });
    assert_eq!(n, 0, "allocations over {COUNTED} answered ack requests");
}

#[test]
fn emit_with_ack_round_trip_allocates_nothing() {
    let now = Instant::now();
    let data = payload(64);
    let mut session: Session<u64> = Session::new(Config::default(), now);
    let mut replies = Vec::new();
    let total = (WARM_UP + COUNTED) as u64;
    // Ack ids are handed out from 1 up.
    ack_replies(REQUEST_NAME, 1..total + 1, &mut replies);
    let counted = replies.split_off(WARM_UP);
    for reply in replies {
        assert_eq!(ack_round_trip(&mut session, &data, reply, now), 1);
    }

    let mut resolved = 0;
    let n = allocations_in(|| {
        for reply in counted {
            resolved += ack_round_trip(&mut session, &data, reply, now);
        }
    });
    assert_eq!(resolved, COUNTED, "every reply resolves its request");
    assert_eq!(session.pending_acks(), 0);
    assert_eq!(n, 0, "allocations over {COUNTED} emit_with_ack round trips");
}

#[test]
fn broadcast_send_encoded_allocates_nothing() {
    const RECIPIENTS: usize = 1000;
    let now = Instant::now();
    let mut sessions: Vec<Session<u64>> = (0..RECIPIENTS)
        .map(|_| Session::new(Config::default(), now))
        .collect();
    let mut buf = BytesMut::with_capacity(4096);
    let data = payload(64);
    let mut broadcast = |sessions: &mut Vec<Session<u64>>| {
        encode_event(EVENT_NAME, 0, &data, Encoding::Compact, &mut buf).unwrap();
        let frame = buf.split().freeze();
        for session in sessions.iter_mut() {
            session.send_encoded(frame.clone()).unwrap();
            assert_eq!(drain(session), 1);
        }
    };
    for _ in 0..10 {
        broadcast(&mut sessions);
    }
    let n = allocations_in(|| {
        for _ in 0..100 {
            broadcast(&mut sessions);
        }
    });
    assert_eq!(
        n, 0,
        "allocations over 100 broadcasts to {RECIPIENTS} sessions"
    );
}

/// The encode buffer's chunk size in etp-proto's `Session` (`ENCODE_CHUNK`).
const ENCODE_CHUNK: usize = 4096;

#[test]
fn pipelined_requests_allocate_per_chunk_not_per_frame() {
    // 64 requests are sent before the first reply arrives (a driver writing them as one
    // batch), so about 4.8 KiB of frames are alive at once and the encode buffer runs
    // out while they are. DESIGN.md: frames are split off one reusable buffer, "one
    // allocation serves many small frames". What that allows here: a fresh chunk
    // whenever the buffer runs out while frames are queued, and each chunk costs two
    // allocations (the buffer and the `Shared` header `bytes` adds at the first
    // split). The bound below is twice that, for the tails of chunks.
    //
    // This guards `Session::encode_buf` taking a whole ENCODE_CHUNK whenever it runs
    // short: reserving only one frame's worth (the session's `BytesMut::new()` records
    // no "original capacity") cost two allocations per frame, 126 per round of 64.
    const IN_FLIGHT: u64 = 64;
    const ROUNDS: u64 = 1000;
    let now = Instant::now();
    let data = payload(64);
    let mut session: Session<u64> = Session::new(Config::default(), now);
    let mut replies = Vec::new();
    ack_replies(REQUEST_NAME, 1..(ROUNDS + 10) * IN_FLIGHT + 1, &mut replies);
    let mut replies = replies.into_iter();
    let mut round = |session: &mut Session<u64>| -> usize {
        let mut sent = 0;
        for ctx in 0..IN_FLIGHT {
            session
                .emit_with_ack(REQUEST_NAME, &data, ctx, None, now)
                .unwrap();
        }
        while let Some(output) = session.poll_output() {
            if let etp_proto::Output::Transmit(frame) = &output {
                sent += frame.len();
            }
        }
        let mut resolved = 0;
        for reply in replies.by_ref().take(IN_FLIGHT as usize) {
            session.handle_message(reply, now).unwrap();
            resolved += drain(session);
        }
        assert_eq!(resolved as u64, IN_FLIGHT);
        sent
    };
    for _ in 0..10 {
        round(&mut session);
    }

    let mut sent = 0;
    let n = allocations_in(|| {
        for _ in 0..ROUNDS {
            sent += round(&mut session);
        }
    });
    let bound = 4 * sent.div_ceil(ENCODE_CHUNK) as u64;
    assert!(
        n <= bound,
        "{n} allocations for {sent} bytes of requests in {ROUNDS} rounds of {IN_FLIGHT} \
         (bound {bound})"
    );
}
