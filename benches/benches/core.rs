//! Criterion micro-benchmarks of the sans-IO core: codec, session hot paths, broadcast.
//!
//! Run: `cargo bench -p etp-benches --bench core -- --warm-up-time 1 --measurement-time 3`.
//!
//! Every message is built before timing starts, in the shared `Bytes` representation,
//! so that a per-iteration clone is a reference-count bump. Time never advances: one
//! `Instant` is captured up front and passed as `now` everywhere.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use etp_benches::{
    EVENT_NAME, REQUEST_NAME, ack_replies, ack_round_trip, drain, drain_answering, event_message,
    inbound, payload, received,
};
use etp_proto::{Config, Encoding, Frame, Session, encode_ack_reply, encode_event};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// How many acknowledgement round trips are timed per batch in `ack_cycle`; the
/// replies of a batch are encoded (untimed) before it, since each must carry the id
/// its request gets.
const ACK_BATCH: u64 = 4096;

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    // Frames per second, not bytes: parsing only scans the `name||ackId||` prefix and
    // slices the data off unread, so the time must not depend on the data length.
    group.throughput(Throughput::Elements(1));
    for (label, len) in [("64B", 64), ("16KiB", 16 * KIB), ("1MiB", MIB)] {
        let message = event_message(EVENT_NAME, 7, len);
        group.bench_with_input(BenchmarkId::new("event", label), &message, |b, message| {
            b.iter(|| Frame::parse(black_box(message).clone()).expect("valid frame"));
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (label, len) in [("64B", 64), ("16KiB", 16 * KIB)] {
        let data = payload(len);
        let mut buf = BytesMut::with_capacity(len + 64);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("event", label), &data, |b, data| {
            b.iter(|| {
                buf.clear();
                encode_event(
                    black_box(EVENT_NAME),
                    0,
                    black_box(data),
                    Encoding::Compact,
                    &mut buf,
                )
                .expect("valid name");
                black_box(&buf);
            });
        });
    }
    let data = payload(64);
    let mut buf = BytesMut::with_capacity(128);
    group.throughput(Throughput::Bytes(64));
    group.bench_function(BenchmarkId::new("ack_reply", "64B"), |b| {
        b.iter(|| {
            buf.clear();
            encode_ack_reply(
                black_box(REQUEST_NAME),
                black_box(123_456),
                black_box(&data),
                Encoding::Compact,
                &mut buf,
            );
            black_box(&buf);
        });
    });
    group.finish();
}

fn session_inbound(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("session_inbound");
    group.throughput(Throughput::Elements(1));
    for (label, ack_id) in [("event_64B", 0), ("event_64B_with_ack", 42)] {
        let message = event_message(EVENT_NAME, ack_id, 64);
        let mut session: Session<u64> = Session::new(Config::default(), now);
        // Warm up the output queue and the encode buffer.
        for _ in 0..1000 {
            inbound(&mut session, message.clone(), now);
        }
        group.bench_function(label, |b| {
            b.iter(|| {
                // Without an ack id: handle_message + drain the Event. With one: also
                // `ack(token, b"ok")` and drain its Transmit.
                inbound(&mut session, black_box(&message).clone(), now);
            });
        });
        // The drivers' path: `receive` returns the event, whole, instead of queuing
        // it cut into name and data.
        group.bench_function(format!("received_{label}"), |b| {
            b.iter(|| received(&mut session, black_box(&message).clone(), now));
        });
    }
    group.finish();
}

fn ack_cycle(c: &mut Criterion) {
    let now = Instant::now();
    let data = payload(64);
    let mut group = c.benchmark_group("ack_cycle");

    group.throughput(Throughput::Elements(1));
    group.bench_function("one_in_flight", |b| {
        let mut session: Session<u64> = Session::new(Config::default(), now);
        // Ack ids are handed out from 1 up, one per request.
        let mut next_id = 1;
        let mut replies = Vec::with_capacity(ACK_BATCH as usize);
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(ACK_BATCH);
                ack_replies(REQUEST_NAME, next_id..next_id + n, &mut replies);
                next_id += n;
                let mut resolved = 0;
                let start = Instant::now();
                for reply in replies.drain(..) {
                    resolved += ack_round_trip(&mut session, &data, reply, now);
                }
                elapsed += start.elapsed();
                assert_eq!(resolved as u64, n, "every reply resolves its request");
                left -= n;
            }
            elapsed
        });
    });

    const IN_FLIGHT: u64 = 64;
    group.throughput(Throughput::Elements(IN_FLIGHT));
    group.bench_function("pipelined_64_in_flight", |b| {
        let mut session: Session<u64> = Session::new(Config::default(), now);
        let mut next_id = 1;
        let mut replies = Vec::with_capacity(ACK_BATCH as usize);
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // One iteration is 64 requests sent, then their 64 replies received.
                let rounds = left.min(ACK_BATCH / IN_FLIGHT);
                let n = rounds * IN_FLIGHT;
                ack_replies(REQUEST_NAME, next_id..next_id + n, &mut replies);
                next_id += n;
                let mut resolved = 0;
                let start = Instant::now();
                let mut replies = replies.drain(..);
                for _ in 0..rounds {
                    for ctx in 0..IN_FLIGHT {
                        session
                            .emit_with_ack(REQUEST_NAME, &data, ctx, None, now)
                            .expect("session open and not full");
                    }
                    // The driver writes the 64 frames as one batch.
                    drain(&mut session);
                    for reply in replies.by_ref().take(IN_FLIGHT as usize) {
                        session.handle_message(reply, now).expect("valid frame");
                        resolved += drain_answering(&mut session);
                    }
                }
                elapsed += start.elapsed();
                assert_eq!(resolved as u64, n, "every reply resolves its request");
                left -= rounds;
            }
            elapsed
        });
    });
    group.finish();
}

fn broadcast(c: &mut Criterion) {
    const RECIPIENTS: usize = 1000;
    let now = Instant::now();
    let data = payload(64);
    let mut sessions: Vec<Session<u64>> = (0..RECIPIENTS)
        .map(|_| Session::new(Config::default(), now))
        .collect();
    // Warm every session's output queue and encode buffer.
    for session in &mut sessions {
        session.emit(EVENT_NAME, &data).expect("session open");
        drain(session);
    }

    let mut group = c.benchmark_group("broadcast");
    group.throughput(Throughput::Elements(RECIPIENTS as u64));
    let mut buf = BytesMut::with_capacity(4 * KIB);
    group.bench_function("encode_once_1000", |b| {
        b.iter(|| {
            encode_event(EVENT_NAME, 0, black_box(&data), Encoding::Compact, &mut buf)
                .expect("valid name");
            let frame: Bytes = buf.split().freeze();
            for session in &mut sessions {
                session.send_encoded(frame.clone()).expect("session open");
                drain(session);
            }
        });
    });
    group.bench_function("emit_each_1000", |b| {
        b.iter(|| {
            for session in &mut sessions {
                session
                    .emit(EVENT_NAME, black_box(&data))
                    .expect("session open");
                drain(session);
            }
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    parse,
    encode,
    session_inbound,
    ack_cycle,
    broadcast
);
criterion_main!(benches);
