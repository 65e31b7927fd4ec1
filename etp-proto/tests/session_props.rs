//! Property tests of `Session`: the `__fuzz::session` checker on arbitrary and on
//! biased op programs, and a self-contained model of the ack table driven through the
//! public API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etp_proto::{
    AckFailure, CloseReason, Config, Encoding, Event, MAX_ACK_ID, Output, SendError, Session,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm};

/// Cases per property, without writing regression files next to the sources.
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        // ChaCha is slow in debug builds; these tests need many cases, not crypto.
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

/// Any instant will do as the simulated start; the tests advance it by hand.
#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

// ---------------------------------------------------------------------------
// Programs for `__fuzz::session`, built from its op codes
// ---------------------------------------------------------------------------

/// The op codes `__fuzz::session` reads as `byte % 12`.
mod code {
    pub(crate) const MESSAGE: u8 = 0;
    pub(crate) const EMIT_WITH_ACK: u8 = 1;
    pub(crate) const EMIT: u8 = 3;
    pub(crate) const REPLY: u8 = 4;
    pub(crate) const ADVANCE: u8 = 5;
    pub(crate) const CLOSE: u8 = 7;
    pub(crate) const TRANSPORT_CLOSED: u8 = 8;
    pub(crate) const CANCEL: u8 = 9;
    pub(crate) const SEND_ENCODED: u8 = 10;
    pub(crate) const PONG: u8 = 11;
}

/// `len` then that many bytes, as `Input::bytes(max)` reads them.
fn sized(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max).prop_map(|body| {
        let mut out = vec![body.len() as u8];
        out.extend(body);
        out
    })
}

/// Which entry of the model's `issued` list an op refers to.
#[derive(Clone, Copy, Debug)]
enum Which {
    /// The request made `n + 1` requests ago (a pending or just-ended one).
    Recent(u8),
    /// This index, counted from the first request (mostly long ended).
    Index(u8),
}

fn which() -> impl Strategy<Value = Which> {
    prop_oneof![
        6 => (0u8..6).prop_map(Which::Recent),
        2 => (0u8..8).prop_map(Which::Index),
        1 => any::<u8>().prop_map(Which::Index),
    ]
}

/// One op's bytes; the byte at `which.0` is filled in when the program is laid out.
#[derive(Clone, Debug)]
struct FuzzOp {
    bytes: Vec<u8>,
    which: Option<(usize, Which)>,
    /// An `emit_with_ack` with a valid name: it adds to `issued` unless the table is
    /// full or the session closed.
    request: bool,
}

impl FuzzOp {
    fn plain(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            which: None,
            request: false,
        }
    }
}

/// Lays the ops out, turning `Which::Recent` into an index into `issued` by counting
/// the requests before it (an over-estimate when some were refused).
fn lay_out(config: [u8; 3], ops: Vec<FuzzOp>) -> Vec<u8> {
    let mut program = config.to_vec();
    let mut requests = 0usize;
    for mut op in ops {
        if let Some((at, which)) = op.which {
            op.bytes[at] = match which {
                Which::Recent(back) => {
                    let index = requests.saturating_sub(usize::from(back) + 1);
                    u8::try_from(index).unwrap_or(u8::MAX)
                }
                Which::Index(index) => index,
            };
        }
        requests += usize::from(op.request);
        program.extend(op.bytes);
    }
    program
}

/// One inbound message, as `Model::message` decodes it: mostly replies to issued ids.
fn message_op() -> impl Strategy<Value = FuzzOp> {
    let raw = prop_oneof![
        // Within the 64-byte read limit some configs have, most of the time.
        4 => sized(60),
        1 => sized(80),
        2 => (0u8..16, any::<bool>()).prop_map(|(id, two_part)| {
            let text = if two_part {
                format!("__ack_x||{id}")
            } else {
                format!("__ack_x||+{id}||late")
            };
            let mut out = vec![text.len() as u8];
            out.extend(text.into_bytes());
            out
        }),
    ];
    (
        prop_oneof![
            // Replies to issued ids (one of them 2-part, under another name).
            24 => prop::sample::select(vec![2u8, 3, 4]),
            // A peer request with an ack id (its token is answered by op 4), raw bytes.
            6 => Just(0u8),
            6 => Just(8u8),
            // `ev||0`, no separator, an out-of-range id.
            3 => prop::sample::select(vec![1u8, 5, 6]),
            // Exactly the read limit, or one byte over (fatal when there is a limit).
            1 => Just(7u8),
        ],
        which(),
        any::<u8>(),
        raw,
    )
        .prop_map(|(pick, which, arg, raw)| {
            let mut bytes = vec![code::MESSAGE, pick, 0];
            match pick % 9 {
                0 | 7 => bytes.push(arg),
                8 => bytes.extend(raw),
                _ => {}
            }
            FuzzOp {
                bytes,
                which: Some((2, which)),
                request: false,
            }
        })
}

/// One op of the program, weighted towards requests, replies and the clock; closing
/// is rare so that long programs keep many requests pending.
fn fuzz_op() -> impl Strategy<Value = FuzzOp> {
    prop_oneof![
        50 => (
            prop_oneof![9 => 0u8..3, 1 => Just(3u8)],
            // 0: the config's timeout; 1 and 2: 7 and 14 ms.
            prop_oneof![2 => Just(0u8), 1 => 1u8..3],
            0u8..21,
        )
            .prop_map(
            |(name, timeout, k)| FuzzOp {
                // Names 0..=2 are valid, 3 is `__ack_ev`; the op code is 1 or 2 (+12k).
                bytes: vec![code::EMIT_WITH_ACK + k % 2 + 12 * (k / 2), name, timeout],
                which: None,
                request: name != 3,
            }
        ),
        50 => message_op(),
        16 => (0u8..21, vec(0u8..21, 8)).prop_map(|(i, data)| {
            // The checker reads the token index and data only when it holds a token;
            // when it holds none they are read as ops. Every argument byte is a pong
            // op (11 mod 12) and the data length byte (11) reads as 8, so the program
            // stays aligned either way.
            let mut bytes = vec![code::REPLY, code::PONG + 12 * i, code::PONG];
            bytes.extend(data.into_iter().map(|k| code::PONG + 12 * k));
            FuzzOp::plain(bytes)
        }),
        40 => (0u8..32, 0u8..4, any::<bool>()).prop_map(|(ms, fire, six)| {
            FuzzOp::plain(vec![code::ADVANCE + u8::from(six), ms, fire])
        }),
        10 => which().prop_map(|which| FuzzOp {
            bytes: vec![code::CANCEL, 0],
            which: Some((1, which)),
            request: false,
        }),
        10 => (0u8..4, sized(8))
            .prop_map(|(name, data)| FuzzOp::plain([vec![code::EMIT, name], data].concat())),
        4 => Just(FuzzOp::plain(vec![code::SEND_ENCODED])),
        10 => Just(FuzzOp::plain(vec![code::PONG])),
        1 => prop::sample::select(vec![code::CLOSE, code::TRANSPORT_CLOSED])
            .prop_map(|c| FuzzOp::plain(vec![c])),
    ]
}

/// The three config bytes `__fuzz::session` reads, then the ops.
fn fuzz_program() -> impl Strategy<Value = Vec<u8>> {
    let flags = prop_oneof![
        // No keepalive: Compact or ThreePart, with or without the 64-byte read limit.
        6 => prop::sample::select(vec![0u8, 0, 8, 8, 1, 9]),
        // Keepalive pings (40 ms), idle timeout (100 ms), anything.
        1 => prop::sample::select(vec![2u8, 6, 10]),
        1 => any::<u8>(),
    ];
    let max_pending = prop_oneof![4 => 4u8..8, 1 => any::<u8>()];
    // The config's ack timeout is this many ms plus one.
    let ack_timeout = prop_oneof![1 => 0u8..20, 2 => 20u8..120, 1 => any::<u8>()];
    (flags, max_pending, ack_timeout, vec(fuzz_op(), 0..250)).prop_map(
        |(flags, max_pending, ack_timeout, ops)| lay_out([flags, max_pending, ack_timeout], ops),
    )
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn the_session_checker_holds_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        etp_proto::__fuzz::session(&bytes);
    }
}

proptest! {
    #![proptest_config(cases(1200))]

    #[test]
    fn the_session_checker_holds_on_programs_of_requests_replies_and_clock_advances(
        program in fuzz_program(),
    ) {
        etp_proto::__fuzz::session(&program);
    }
}

// ---------------------------------------------------------------------------
// A self-contained model of the ack table
// ---------------------------------------------------------------------------

const MAX_PENDING: usize = 4;
const DEFAULT_TIMEOUT_MS: u64 = 50;

/// How a reply is written: the name after `__ack_` is not checked, and the id may be
/// written with a `+` or leading zeros.
#[derive(Clone, Copy, Debug)]
enum ReplyForm {
    /// `__ack_ev||N||r<N>`: the data comes back.
    WithData,
    /// `__ack_||N`: no data at all.
    TwoPart,
    /// `__ack_other||+N||`: empty data.
    SignedEmpty,
    /// `__ack_ev||000N||r<N>`.
    LeadingZeros,
}

#[derive(Clone, Debug)]
enum Op {
    /// `emit_with_ack` with a per-call timeout, or the default one.
    Request { timeout_ms: Option<u64> },
    /// A reply to one of the ids issued so far (pending, answered, timed out or cancelled).
    Reply { which: usize, form: ReplyForm },
    /// The same reply twice in a row, preferably to a pending id.
    DuplicateReply { which: usize },
    /// A reply to an id we never issued.
    UnknownReply { id: u64 },
    /// A peer request that reuses one of our ids: ids of the two directions are unrelated.
    PeerRequest { which: usize },
    /// Advance the clock; fire the timer when `fire` or when it is due.
    Advance { ms: u64, fire: bool },
    /// `cancel_ack` on one of the ids issued so far.
    Cancel { which: usize },
    /// `close()`.
    Close,
    /// `handle_transport_closed()`.
    TransportClosed,
}

fn model_op() -> impl Strategy<Value = Op> {
    let form = prop::sample::select(vec![
        ReplyForm::WithData,
        ReplyForm::TwoPart,
        ReplyForm::SignedEmpty,
        ReplyForm::LeadingZeros,
    ]);
    let unknown = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        1000u64..2000,
        Just(MAX_ACK_ID + 1)
    ];
    let ms = prop_oneof![1 => Just(0u64), 4 => 1u64..40, 1 => 40u64..120];
    // Closing is rare, so that most programs keep requests pending for long.
    prop_oneof![
        16 => prop::option::weighted(0.7, 0u64..100)
            .prop_map(|timeout_ms| Op::Request { timeout_ms }),
        12 => (any::<usize>(), form).prop_map(|(which, form)| Op::Reply { which, form }),
        4 => any::<usize>().prop_map(|which| Op::DuplicateReply { which }),
        2 => unknown.prop_map(|id| Op::UnknownReply { id }),
        2 => any::<usize>().prop_map(|which| Op::PeerRequest { which }),
        14 => (ms, any::<bool>()).prop_map(|(ms, fire)| Op::Advance { ms, fire }),
        4 => any::<usize>().prop_map(|which| Op::Cancel { which }),
        1 => prop_oneof![Just(Op::Close), Just(Op::TransportClosed)],
    ]
}

/// An output, reduced to what the model predicts.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Transmit(Vec<u8>),
    Event {
        name: Vec<u8>,
        data: Option<Vec<u8>>,
        reply: Option<u64>,
    },
    Resolved {
        ctx: u64,
        data: Option<Vec<u8>>,
    },
    Failed {
        ctx: u64,
        cause: AckFailure,
    },
    Ping,
    Close(CloseReason),
}

impl Seen {
    fn ctx(&self) -> u64 {
        match self {
            Self::Resolved { ctx, .. } | Self::Failed { ctx, .. } => *ctx,
            _ => u64::MAX,
        }
    }
}

/// The session under test and the model it must agree with.
struct Harness {
    session: Session<u64>,
    now: Instant,
    /// Awaited requests: id -> (ctx, deadline).
    model: BTreeMap<u64, (u64, Instant)>,
    /// Every id handed out, in order.
    issued: Vec<u64>,
    /// The deadline of every request ever made, by ctx (to check the timeout order).
    deadlines: BTreeMap<u64, Instant>,
    next_ctx: u64,
    closed: bool,
}

impl Harness {
    fn new() -> Self {
        let mut config = Config::default();
        config.max_pending_acks = MAX_PENDING;
        config.ack_timeout = Duration::from_millis(DEFAULT_TIMEOUT_MS);
        let now = start();
        Self {
            session: Session::new(config, now),
            now,
            model: BTreeMap::new(),
            issued: Vec::new(),
            deadlines: BTreeMap::new(),
            next_ctx: 0,
            closed: false,
        }
    }

    fn drain(&mut self) -> Vec<Seen> {
        let mut seen = Vec::new();
        while let Some(output) = self.session.poll_output() {
            seen.push(match output {
                Output::Transmit(bytes) => Seen::Transmit(bytes.to_vec()),
                Output::Event(Event {
                    name, data, reply, ..
                }) => {
                    let reply = reply.map(|token| {
                        let id = token.id();
                        // Answer it, as the drive contract says; the reply goes out as is.
                        self.session.ack(token, b"answer").unwrap();
                        id
                    });
                    Seen::Event {
                        name: name.to_vec(),
                        data: data.map(|d| d.to_vec()),
                        reply,
                    }
                }
                Output::AckResolved { ctx, data } => Seen::Resolved {
                    ctx,
                    data: data.map(|d| d.to_vec()),
                },
                Output::AckFailed { ctx, cause } => Seen::Failed { ctx, cause },
                Output::Ping => Seen::Ping,
                Output::Close(reason) => Seen::Close(reason),
                other => panic!("unexpected output {other:?}"),
            });
        }
        seen
    }

    /// Feeds an inbound message, which must be well formed.
    fn receive(&mut self, message: String) -> Vec<Seen> {
        let result = self.session.handle_message(Bytes::from(message), self.now);
        assert_eq!(result, Ok(()));
        self.drain()
    }

    /// What a reply to `id` must produce, and the model after it.
    fn expect_reply(&mut self, id: u64, data: Option<Vec<u8>>) -> Vec<Seen> {
        if self.closed {
            return Vec::new();
        }
        match self.model.remove(&id) {
            Some((ctx, _)) => vec![Seen::Resolved { ctx, data }],
            None => Vec::new(),
        }
    }

    fn reply(&mut self, id: u64, form: ReplyForm) {
        let wire = id as i64;
        let (message, data) = match form {
            ReplyForm::WithData => (
                format!("__ack_ev||{wire}||r{wire}"),
                Some(format!("r{wire}")),
            ),
            ReplyForm::TwoPart => (format!("__ack_||{wire}"), None),
            ReplyForm::SignedEmpty if wire >= 0 => {
                (format!("__ack_other||+{wire}||"), Some(String::new()))
            }
            ReplyForm::SignedEmpty => (format!("__ack_other||{wire}||"), Some(String::new())),
            ReplyForm::LeadingZeros if wire >= 0 => (
                format!("__ack_ev||000{wire}||r{wire}"),
                Some(format!("r{wire}")),
            ),
            ReplyForm::LeadingZeros => (
                format!("__ack_ev||-000{}||r{wire}", wire.unsigned_abs()),
                Some(format!("r{wire}")),
            ),
        };
        let expected = self.expect_reply(id, data.map(String::into_bytes));
        let seen = self.receive(message.clone());
        assert_eq!(seen, expected, "reply {message:?}");
    }

    /// One of the ids issued so far: half the time one of the last five (likely still
    /// pending), otherwise any (likely answered, timed out or cancelled).
    fn pick(&self, which: usize) -> Option<u64> {
        let n = self.issued.len();
        if n == 0 {
            None
        } else if which % 2 == 0 {
            Some(self.issued[n - 1 - (which / 2) % n.min(5)])
        } else {
            Some(self.issued[(which / 2) % n])
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Request { timeout_ms } => {
                let ctx = self.next_ctx;
                self.next_ctx += 1;
                let timeout = timeout_ms.map(Duration::from_millis);
                let result = self.session.emit_with_ack(
                    b"ev",
                    ctx.to_string().as_bytes(),
                    ctx,
                    timeout,
                    self.now,
                );
                let seen = self.drain();
                if self.closed {
                    assert_eq!(result, Err(SendError::Closed));
                    assert_eq!(self.session.emit(b"ev", b""), Err(SendError::Closed));
                    assert_eq!(
                        self.session.send_encoded(Bytes::from_static(b"ev||0")),
                        Err(SendError::Closed)
                    );
                    assert_eq!(seen, []);
                } else if self.model.len() == MAX_PENDING {
                    assert_eq!(
                        result,
                        Err(SendError::TooManyPendingAcks { limit: MAX_PENDING })
                    );
                    assert_eq!(seen, []);
                } else {
                    let id = result.expect("a request within the bound is sent");
                    // Ids count up from 1 and are never reused (far below the wrap).
                    assert_eq!(id, self.issued.len() as u64 + 1);
                    assert!((1..=MAX_ACK_ID).contains(&id));
                    let deadline =
                        self.now + timeout.unwrap_or(Duration::from_millis(DEFAULT_TIMEOUT_MS));
                    self.model.insert(id, (ctx, deadline));
                    self.issued.push(id);
                    self.deadlines.insert(ctx, deadline);
                    assert_eq!(
                        seen,
                        [Seen::Transmit(format!("ev||{id}||{ctx}").into_bytes())]
                    );
                }
            }
            Op::Reply { which, form } => {
                if let Some(id) = self.pick(which) {
                    self.reply(id, form);
                }
            }
            Op::DuplicateReply { which } => {
                let pending: Vec<u64> = self.model.keys().copied().collect();
                let id = if pending.is_empty() {
                    self.pick(which)
                } else {
                    Some(pending[which % pending.len()])
                };
                if let Some(id) = id {
                    self.reply(id, ReplyForm::WithData);
                    assert!(!self.model.contains_key(&id));
                    // The second one finds nothing to resolve.
                    self.reply(id, ReplyForm::TwoPart);
                }
            }
            Op::UnknownReply { id } => {
                assert!(!self.issued.contains(&id));
                self.reply(id, ReplyForm::WithData);
            }
            Op::PeerRequest { which } => {
                let id = self.pick(which).unwrap_or(1);
                let seen = self.receive(format!("ev||{id}||q"));
                if self.closed {
                    assert_eq!(seen, []);
                } else {
                    assert_eq!(
                        seen,
                        [
                            Seen::Event {
                                name: b"ev".to_vec(),
                                data: Some(b"q".to_vec()),
                                reply: Some(id),
                            },
                            Seen::Transmit(format!("__ack_ev||{id}||answer").into_bytes()),
                        ]
                    );
                }
            }
            Op::Advance { ms, fire } => {
                self.now += Duration::from_millis(ms);
                let due = self.session.poll_timeout().is_some_and(|at| at <= self.now);
                let mut expected = Vec::new();
                if fire || due {
                    self.session.handle_timeout(self.now);
                    let now = self.now;
                    let expired: Vec<u64> = self
                        .model
                        .iter()
                        .filter(|(_, (_, deadline))| *deadline <= now)
                        .map(|(&id, _)| id)
                        .collect();
                    for id in expired {
                        let (ctx, _) = self.model.remove(&id).unwrap();
                        expected.push(Seen::Failed {
                            ctx,
                            cause: AckFailure::TimedOut,
                        });
                    }
                }
                let mut seen = self.drain();
                // Expired requests come out earliest deadline first.
                let deadlines: Vec<Instant> = seen
                    .iter()
                    .filter_map(|s| self.deadlines.get(&s.ctx()).copied())
                    .collect();
                assert!(
                    deadlines.is_sorted(),
                    "timeouts out of deadline order: {seen:?}"
                );
                seen.sort_by_key(Seen::ctx);
                expected.sort_by_key(Seen::ctx);
                assert_eq!(seen, expected, "advance to +{ms} ms");
            }
            Op::Cancel { which } => {
                if let Some(id) = self.pick(which) {
                    let expected = if self.closed {
                        None
                    } else {
                        self.model.remove(&id).map(|(ctx, _)| ctx)
                    };
                    assert_eq!(self.session.cancel_ack(id), expected, "cancel {id}");
                    assert_eq!(self.drain(), []);
                    // A reply after the cancel finds nothing.
                    self.reply(id, ReplyForm::WithData);
                }
            }
            Op::Close | Op::TransportClosed => {
                let transport = matches!(op, Op::TransportClosed);
                if transport {
                    self.session.handle_transport_closed(self.now);
                } else {
                    self.session.close();
                }
                let mut expected: Vec<Seen> = if self.closed {
                    Vec::new()
                } else {
                    std::mem::take(&mut self.model)
                        .into_values()
                        .map(|(ctx, _)| Seen::Failed {
                            ctx,
                            cause: AckFailure::ConnectionClosed,
                        })
                        .collect()
                };
                if !self.closed && !transport {
                    expected.push(Seen::Close(CloseReason::Normal));
                }
                self.closed = true;
                let mut seen = self.drain();
                // Close comes after the failures ("every awaited acknowledgement has
                // already failed"); the order of the failures is not specified.
                if let Some(close @ Seen::Close(_)) = expected.last() {
                    assert_eq!(seen.last(), Some(close), "{op:?}: {seen:?}");
                }
                seen.sort_by_key(Seen::ctx);
                expected.sort_by_key(Seen::ctx);
                assert_eq!(seen, expected, "{op:?}");
            }
        }
        self.check_state(op);
    }

    fn check_state(&self, op: &Op) {
        assert_eq!(self.session.is_closed(), self.closed, "after {op:?}");
        assert_eq!(
            self.session.pending_acks(),
            self.model.len(),
            "after {op:?}"
        );
        let earliest = self.model.values().map(|&(_, deadline)| deadline).min();
        assert_eq!(self.session.poll_timeout(), earliest, "after {op:?}");
    }
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn the_ack_table_agrees_with_a_map_of_pending_requests(ops in vec(model_op(), 0..120)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op);
        }
        // Whatever is still awaited fails at once on close.
        harness.apply(&Op::Close);
        harness.apply(&Op::Request { timeout_ms: None });
        harness.apply(&Op::Advance { ms: 1000, fire: true });
    }
}

// ---------------------------------------------------------------------------
// Replies to received requests, whatever the request's id spelling
// ---------------------------------------------------------------------------

/// How a request spells its (non-zero) ack id: as Go writes it, with a `+`, or with
/// leading zeros (after the `-` of a negative id).
fn spelled(id: i64, how: u8, zeros: usize) -> String {
    let magnitude = id.unsigned_abs();
    let sign = if id < 0 { "-" } else { "" };
    match how % 3 {
        0 => id.to_string(),
        1 if id > 0 => format!("+{id}"),
        _ => format!("{sign}{}{magnitude}", "0".repeat(zeros)),
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// A reply repeats the request's head when its id is spelled as Go spells ids
    /// and formats the id otherwise; either way the bytes are Go's.
    #[test]
    fn a_reply_to_a_received_request_is_go_s_bytes_whatever_the_id_spelling(
        name in "[a-z_]{1,8}",
        id in any::<i64>().prop_filter("asks for a reply", |id| *id != 0),
        how in any::<u8>(),
        zeros in 1usize..4,
        request_data in proptest::option::of("[a-z|]{0,6}"),
        reply_data in vec(any::<u8>(), 0..6),
        three_part in any::<bool>(),
    ) {
        let encoding = if three_part { Encoding::ThreePart } else { Encoding::Compact };
        let mut config = Config::default();
        config.encoding = encoding;
        let mut session = Session::<u64>::new(config, start());
        let request = match &request_data {
            Some(data) => format!("{name}||{}||{data}", spelled(id, how, zeros)),
            None => format!("{name}||{}", spelled(id, how, zeros)),
        };
        session.handle_message(Bytes::from(request), start()).unwrap();
        let Some(Output::Event(Event { reply: Some(reply), .. })) = session.poll_output() else {
            panic!("the request is dispatched with a reply token");
        };
        prop_assert_eq!(reply.name(), name.as_bytes());
        prop_assert_eq!(reply.id(), id as u64);
        session.ack(reply, &reply_data).unwrap();
        let Some(Output::Transmit(frame)) = session.poll_output() else {
            panic!("the reply is sent");
        };
        let mut expected = format!("__ack_{name}||{id}").into_bytes();
        if !reply_data.is_empty() || three_part {
            expected.extend_from_slice(b"||");
            expected.extend_from_slice(&reply_data);
        }
        prop_assert_eq!(&frame[..], &expected[..]);
    }
}

// ---------------------------------------------------------------------------
// `receive` against `handle_message`
// ---------------------------------------------------------------------------

/// An output in a comparable form.
fn seen(output: Output<u64>) -> String {
    match output {
        Output::Event(event) => seen_event(&event),
        Output::AckResolved { ctx, data } => format!("resolved {ctx} {data:?}"),
        Output::AckFailed { ctx, cause } => format!("failed {ctx} {cause:?}"),
        Output::Transmit(bytes) => format!("transmit {bytes:?}"),
        other => format!("{other:?}"),
    }
}

fn seen_event(event: &Event) -> String {
    let reply = event.reply.as_ref().map(|r| (r.name().to_vec(), r.id()));
    format!("event {:?} {:?} {reply:?}", event.name, event.data)
}

/// Received messages: events with and without ack ids, replies to awaited and to
/// unknown requests, malformed frames, messages over the read limit.
fn received() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z_]{0,6}\\|\\|-?[0-9]{0,3}(\\|\\|[a-z|]{0,8})?".prop_map(String::into_bytes),
        "__ack_ev\\|\\|[0-5](\\|\\|[a-z]{0,3})?".prop_map(String::into_bytes),
        vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(cases(500))]

    /// `receive` returns exactly the event `handle_message` queues (its message read in
    /// place, and cut), and queues every other output (resolved replies, the close for
    /// an oversized message) as `handle_message` does, with the same result.
    #[test]
    fn receive_returns_the_event_handle_message_would_queue(
        messages in vec(received(), 1..12),
    ) {
        let mut config = Config::default();
        config.read_limit = Some(24);
        let (mut queued, mut returned) = (
            Session::<u64>::new(config.clone(), start()),
            Session::<u64>::new(config, start()),
        );
        for ctx in 1..=3 {
            for session in [&mut queued, &mut returned] {
                session.emit_with_ack(b"ev", b"", ctx, None, start()).unwrap();
                while session.poll_output().is_some() {}
            }
        }
        for message in messages {
            let a = queued.handle_message(Bytes::from(message.clone()), start());
            let b = returned.receive(Bytes::from(message), start());
            prop_assert_eq!(format!("{:?}", a), format!("{:?}", b.as_ref().map(|_| ())));
            let mut from_queue = Vec::new();
            while let Some(output) = queued.poll_output() {
                from_queue.push(seen(output));
            }
            let mut from_receive = Vec::new();
            while let Some(output) = returned.poll_output() {
                prop_assert!(!matches!(output, Output::Event(_)), "receive queued an event");
                from_receive.push(seen(output));
            }
            if let Ok(Some(received)) = b {
                // Read in place, the message holds what cutting it gives.
                let name = received.message.name().to_vec();
                let data = received.message.data().map(<[u8]>::to_vec);
                let event = received.into_event();
                prop_assert_eq!(&event.name[..], &name[..]);
                prop_assert_eq!(event.data.as_deref(), data.as_deref());
                from_receive.push(seen_event(&event));
            }
            prop_assert_eq!(from_queue, from_receive);
        }
    }
}
