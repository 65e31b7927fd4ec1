//! Benchmarks of etp. The criterion micro-benchmarks of the core live in `benches/`;
//! run them with `cargo bench -p etp-benches`. The steady-state allocation test lives
//! in `tests/alloc.rs` (it needs a `#[global_allocator]`, which needs `unsafe`, which
//! `etp-proto`'s own `forbid(unsafe_code)` rules out).
//!
//! This library holds what the benchmarks and the allocation test share: building
//! messages in the shared `Bytes` representation, and driving a [`Session`] the way a
//! driver does (feed, then drain every output).
//!
//! The end-to-end load tools (`src/bin`: `etp-bench-server`, `raw-echo-server`,
//! `etp-bench`) share the [`load`] module.

pub mod load;

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use etp_proto::{Encoding, Output, Received, Session, encode_ack_reply, encode_event};

/// The event name used by the inbound and broadcast benchmarks.
pub const EVENT_NAME: &[u8] = b"chat";

/// The request name used by the acknowledgement benchmarks.
pub const REQUEST_NAME: &[u8] = b"req";

/// The data of an acknowledgement reply.
pub const REPLY_DATA: &[u8] = b"ok";

/// `len` bytes of printable data (so the frames are valid UTF-8, as most traffic is).
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Freezes `buf`'s content into a `Bytes` in the shared (reference-counted)
/// representation, so that cloning it is a reference-count bump and never allocates.
///
/// A `Bytes` made straight from a `Vec` is "promotable": its first clone allocates the
/// shared header. Splitting a `BytesMut` promotes it up front.
pub fn freeze_shared(buf: &mut BytesMut) -> Bytes {
    buf.split().freeze()
}

/// The wire form of the event `name||ack_id||data` with `data_len` bytes of data, in
/// the shared representation.
pub fn event_message(name: &[u8], ack_id: u64, data_len: usize) -> Bytes {
    let mut buf = BytesMut::new();
    encode_event(
        name,
        ack_id,
        &payload(data_len),
        Encoding::Compact,
        &mut buf,
    )
    .expect("valid event name");
    freeze_shared(&mut buf)
}

/// Appends the replies `__ack_<name>||id||ok` for every id in `ids` to `out`. They are
/// encoded into one buffer and split off it, so they share one allocation.
pub fn ack_replies(name: &[u8], ids: std::ops::Range<u64>, out: &mut Vec<Bytes>) {
    let mut buf = BytesMut::new();
    for id in ids {
        encode_ack_reply(name, id, REPLY_DATA, Encoding::Compact, &mut buf);
        out.push(buf.split().freeze());
    }
}

/// Drains every output of `session`, dropping each, and returns how many there were.
pub fn drain<C>(session: &mut Session<C>) -> usize {
    let mut count = 0;
    while let Some(output) = session.poll_output() {
        std::hint::black_box(&output);
        count += 1;
    }
    count
}

/// Drains every output of `session` as a driver would: events are answered with
/// [`REPLY_DATA`] when they ask for an acknowledgement (the reply's `Transmit` is
/// drained in the same loop) and everything else is dropped. Returns how many
/// acknowledgements resolved.
pub fn drain_answering<C>(session: &mut Session<C>) -> usize {
    let mut resolved = 0;
    while let Some(output) = session.poll_output() {
        match output {
            Output::Event(event) => {
                std::hint::black_box(&event.data);
                if let Some(reply) = event.reply {
                    session.ack(reply, REPLY_DATA).expect("session open");
                }
            }
            Output::AckResolved { ctx, data } => {
                std::hint::black_box((&ctx, &data));
                resolved += 1;
            }
            other => {
                std::hint::black_box(&other);
            }
        }
    }
    resolved
}

/// Feeds one inbound message and drains as [`drain_answering`] does.
pub fn inbound<C>(session: &mut Session<C>, message: Bytes, now: Instant) -> usize {
    session.handle_message(message, now).expect("valid frame");
    drain_answering(session)
}

/// Feeds one inbound message as a driver that dispatches events as it reads them
/// does ([`Session::receive`]): the event's name and data are read in place, a request
/// is answered with [`REPLY_DATA`], and what the session queued is drained.
pub fn received<C>(session: &mut Session<C>, message: Bytes, now: Instant) -> usize {
    let received = session.receive(message, now).expect("valid frame");
    if let Some(Received { message, reply }) = received {
        std::hint::black_box((message.name(), message.data()));
        if let Some(reply) = reply {
            session.ack(reply, REPLY_DATA).expect("session open");
        }
    }
    drain(session)
}

/// One acknowledgement round trip on `session`: `emit_with_ack` of `data`, drain (the
/// `Transmit`), feed `reply` (which must answer the id the request gets), drain (the
/// `AckResolved`). Returns how many acknowledgements resolved: 1 when `reply` answered
/// the request.
pub fn ack_round_trip(
    session: &mut Session<u64>,
    data: &[u8],
    reply: Bytes,
    now: Instant,
) -> usize {
    session
        .emit_with_ack(REQUEST_NAME, data, 0, None, now)
        .expect("session open and not full");
    drain(session);
    session.handle_message(reply, now).expect("valid frame");
    drain_answering(session)
}
