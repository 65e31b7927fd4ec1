//! Checkers shared by the cargo-fuzz targets, the seed replay test and the property
//! tests. Not a public API: anything here may change without notice.
//!
//! Each checker takes arbitrary bytes, runs the code under test on them and panics when
//! an invariant breaks, which is how a fuzzer or proptest notices.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::{
    AckFailure, Config, Encoding, Frame, MAX_ACK_ID, Output, ReplyToken, SendError, Session,
};

/// What a naive reading of the grammar gives: `(name, ack id, data)` or the kind of
/// error (`"format"`, `"syntax"`, `"range"`) with the ack id text.
pub type Naive = Result<(Vec<u8>, u64, Option<Vec<u8>>), (&'static str, Vec<u8>)>;

/// The frame grammar written the obvious way: Go's `SplitN(msg, "||", 3)` by searching
/// windows, and the ack id by `str::parse`. The oracle for [`Frame::parse`].
pub fn naive_parse(msg: &[u8]) -> Naive {
    fn split_once(s: &[u8]) -> Option<(&[u8], &[u8])> {
        let i = s.windows(2).position(|w| w == b"||")?;
        Some((&s[..i], &s[i + 2..]))
    }
    let Some((name, rest)) = split_once(msg) else {
        return Err(("format", msg.to_vec()));
    };
    let (ack, data) = match split_once(rest) {
        Some((ack, data)) => (ack, Some(data.to_vec())),
        None => (rest, None),
    };
    let unsigned = ack
        .strip_prefix(b"+")
        .or_else(|| ack.strip_prefix(b"-"))
        .unwrap_or(ack);
    let run = unsigned.iter().take_while(|b| b.is_ascii_digit()).count();
    // Go's ParseUint reports an overflow of u64 as soon as the digits exceed it, even
    // when a bad byte follows.
    let leading: Option<u64> = std::str::from_utf8(&unsigned[..run])
        .ok()
        .and_then(|s| s.parse().ok());
    if run > 0 && leading.is_none() {
        return Err(("range", ack.to_vec()));
    }
    if run == 0 || run != unsigned.len() {
        return Err(("syntax", ack.to_vec()));
    }
    let text = std::str::from_utf8(ack).unwrap_or_default();
    let text = text.strip_prefix('+').unwrap_or(text);
    match text.parse::<i64>() {
        Ok(value) => Ok((name.to_vec(), value as u64, data)),
        Err(_) => Err(("range", ack.to_vec())),
    }
}

/// Parses `data` with [`Frame::parse`] and checks it against [`naive_parse`]; a parsed
/// frame must also encode back to a message that parses to the same frame.
pub fn frame_parse(data: &[u8]) {
    let parsed = Frame::parse(Bytes::copy_from_slice(data));
    match (&parsed, naive_parse(data)) {
        (Ok(frame), Ok((name, id, body))) => {
            assert_eq!(frame.name(), &name[..]);
            assert_eq!(frame.ack_id(), id);
            assert_eq!(frame.data().map(|d| d.to_vec()), body);
            for encoding in [Encoding::Compact, Encoding::ThreePart] {
                let mut buf = BytesMut::new();
                frame.encode(encoding, &mut buf);
                let again = Frame::parse(buf.freeze()).expect("an encoded parsed frame parses");
                assert_eq!(again.name(), frame.name());
                assert_eq!(again.ack_id(), frame.ack_id());
                // Compact writes no third part for empty data; ThreePart always does.
                let data = frame.data().map(|d| &d[..]).unwrap_or_default();
                let expected = match encoding {
                    Encoding::Compact if data.is_empty() => None,
                    _ => Some(data),
                };
                assert_eq!(again.data().map(|d| &d[..]), expected);
            }
        }
        (Err(err), Err((kind, ack))) => {
            use crate::FrameError::*;
            match (err, kind) {
                (MissingSeparator { message }, "format") => assert_eq!(&message[..], data),
                (InvalidAckId { ack: got }, "syntax") | (AckIdOutOfRange { ack: got }, "range") => {
                    assert_eq!(&got[..], &ack[..])
                }
                (err, kind) => panic!("parse gave {err:?}, the oracle {kind}"),
            }
            // Formatting an error must not panic either.
            let _ = err.to_string();
        }
        (got, want) => panic!("parse gave {got:?}, the oracle {want:?}"),
    }
}

/// Reads small numbers from the fuzz input; runs out as zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }

    fn bytes(&mut self, max: usize) -> &[u8] {
        let n = usize::from(self.byte()).min(max).min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the model knows of one request it made.
#[derive(Debug)]
struct Request {
    id: u64,
    deadline: Instant,
}

/// Runs a [`Session`] through an arbitrary sequence of inputs, commands and clock
/// advances decoded from `data`, checking it against a model of the ack table after
/// every step:
///
/// * every successful `emit_with_ack` ends exactly once (resolved, failed or cancelled),
///   and all of them have ended after the final close;
/// * a reply resolves exactly the awaited request with its id, and nothing else;
/// * a request times out only once its deadline has passed, never early;
/// * closing fails every awaited request at once;
/// * replies are never dispatched as events; ids stay within 1..=2^53-1;
/// * the pending bound holds, and `poll_timeout` is never later than a deadline.
pub fn session(data: &[u8]) {
    let mut input = Input(data);
    let mut config = Config::default();
    let flags = input.byte();
    config.max_pending_acks = usize::from(input.byte() % 8);
    config.read_limit = (flags & 1 != 0).then_some(64);
    config.ping_interval = (flags & 2 != 0).then_some(Duration::from_millis(40));
    config.idle_timeout = (flags & 4 != 0).then_some(Duration::from_millis(100));
    config.ack_timeout = Duration::from_millis(u64::from(input.byte()) + 1);
    if flags & 8 != 0 {
        config.encoding = Encoding::ThreePart;
    }
    let keepalive = config.ping_interval.is_some() || config.idle_timeout.is_some();
    // Test support, not the protocol core: any instant will do as the simulated start.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let mut model = Model {
        now: start,
        session: Session::new(config.clone(), start),
        config,
        awaited: BTreeMap::new(),
        issued: Vec::new(),
        replies: Vec::new(),
        next_ctx: 0,
        closed: false,
        expected_resolution: None,
        timeout_fired: false,
        transmits: VecDeque::new(),
        last_received: start,
        last_ping: None,
    };

    while !input.is_empty() {
        model.step(&mut input);
        model.drain();
        assert_eq!(
            model.expected_resolution, None,
            "an awaited reply resolved nothing"
        );
        if std::mem::take(&mut model.timeout_fired) {
            model.check_keepalive_not_late();
            assert!(
                model.awaited.values().all(|r| r.deadline > model.now),
                "a timeout was missed"
            );
        }
        assert_eq!(model.session.pending_acks(), model.awaited.len());
        assert!(model.awaited.len() <= model.config.max_pending_acks);
        let earliest = model.awaited.values().map(|r| r.deadline).min();
        match (model.session.poll_timeout(), earliest) {
            (Some(at), Some(deadline)) => {
                assert!(at <= deadline);
                if !keepalive {
                    assert_eq!(at, deadline);
                }
            }
            (None, Some(_)) => panic!("awaited requests but no timeout"),
            (Some(_), None) => assert!(keepalive && !model.closed),
            (None, None) => assert!(!keepalive || model.closed),
        }
    }
    model.session.close();
    model.closed = true;
    model.drain();
    assert!(
        model.awaited.is_empty(),
        "requests never ended: {:?}",
        model.awaited
    );
    assert_eq!(model.session.pending_acks(), 0);
}

struct Model {
    now: Instant,
    session: Session<u64>,
    config: Config,
    /// Awaited requests by the context we gave them.
    awaited: BTreeMap<u64, Request>,
    /// Every id the session handed out, for late and duplicate replies.
    issued: Vec<u64>,
    /// Reply tokens from events, to answer later (or never).
    replies: Vec<ReplyToken>,
    next_ctx: u64,
    closed: bool,
    /// The request the last inbound reply must resolve.
    expected_resolution: Option<u64>,
    /// Whether the last step fired the timers, after which nothing due may remain.
    timeout_fired: bool,
    /// The exact frames the commands so far must transmit, in order.
    transmits: VecDeque<Vec<u8>>,
    /// When the session last heard from the peer, and last pinged it.
    last_received: Instant,
    last_ping: Option<Instant>,
}

impl Model {
    fn step(&mut self, input: &mut Input<'_>) {
        const NAMES: [&[u8]; 4] = [b"ev", b"", b"a|b", b"__ack_ev"];
        match input.byte() % 12 {
            0 => {
                let message = self.message(input);
                let len = message.len();
                let too_large = self.config.read_limit.is_some_and(|limit| len > limit);
                if let Ok(frame) = Frame::parse(message.clone())
                    && frame.is_ack()
                    && !self.closed
                    && !too_large
                {
                    self.expected_resolution = self.ctx_of(frame.ack_id());
                }
                if !self.closed {
                    self.last_received = self.now;
                }
                let result = self.session.handle_message(message, self.now);
                if let Err(err) = &result {
                    let _ = err.to_string();
                }
                if !self.closed && too_large {
                    assert!(result.as_ref().is_err_and(|e| e.is_fatal()));
                    self.closed = true;
                } else if self.closed {
                    assert!(result.is_ok(), "closed sessions ignore messages");
                }
            }
            1 | 2 => {
                let name = NAMES[usize::from(input.byte()) % NAMES.len()];
                let timeout = match input.byte() % 3 {
                    0 => None,
                    n => Some(Duration::from_millis(u64::from(n) * 7)),
                };
                let ctx = self.next_ctx;
                self.next_ctx += 1;
                let result = self
                    .session
                    .emit_with_ack(name, b"x", ctx, timeout, self.now);
                match result {
                    Ok(id) => {
                        assert!(!self.closed && !name.starts_with(b"__ack_"));
                        assert!((1..=MAX_ACK_ID).contains(&id));
                        let wire = self.wire(name, id as i64, b"x");
                        self.transmits.push_back(wire);
                        let deadline = self.now + timeout.unwrap_or(self.config.ack_timeout);
                        self.awaited.insert(ctx, Request { id, deadline });
                        self.issued.push(id);
                    }
                    Err(SendError::Closed) => assert!(self.closed),
                    Err(SendError::InvalidName(_)) => {
                        assert!(!self.closed && name.starts_with(b"__ack_"))
                    }
                    Err(SendError::TooManyPendingAcks { limit }) => {
                        assert!(!self.closed);
                        assert_eq!(self.awaited.len(), limit);
                        assert_eq!(limit, self.config.max_pending_acks);
                    }
                }
            }
            3 => {
                let name = NAMES[usize::from(input.byte()) % NAMES.len()];
                let data = input.bytes(8);
                match self.session.emit(name, data) {
                    Ok(()) => {
                        assert!(!self.closed);
                        let wire = self.wire(name, 0, data);
                        self.transmits.push_back(wire);
                    }
                    Err(SendError::Closed) => assert!(self.closed),
                    Err(err) => assert!(
                        matches!(err, SendError::InvalidName(_)) && name.starts_with(b"__ack_")
                    ),
                }
            }
            4 => {
                // Both bytes are read whether or not a token is held, so that the ops
                // after this one decode the same either way.
                let pick = usize::from(input.byte());
                let data = input.bytes(8);
                if !self.replies.is_empty() {
                    let token = self.replies.swap_remove(pick % self.replies.len());
                    let mut name = b"__ack_".to_vec();
                    name.extend_from_slice(token.name());
                    let wire = self.wire(&name, token.id() as i64, data);
                    let sent = self.session.ack(token, data).is_ok();
                    assert_eq!(sent, !self.closed);
                    if sent {
                        self.transmits.push_back(wire);
                    }
                }
            }
            5 | 6 => {
                self.now += Duration::from_millis(u64::from(input.byte() % 32));
                // The drive contract calls handle_timeout only once poll_timeout is
                // due, but an early call must be harmless too.
                if input.byte() % 4 != 0
                    || self.session.poll_timeout().is_some_and(|at| at <= self.now)
                {
                    self.session.handle_timeout(self.now);
                    self.timeout_fired = true;
                }
            }
            7 => {
                self.session.close();
                self.closed = true;
            }
            8 => {
                self.session.handle_transport_closed(self.now);
                self.closed = true;
            }
            9 => {
                if let Some(&id) = self.issued.get(usize::from(input.byte())) {
                    let cancelled = self.session.cancel_ack(id);
                    let expected = self.ctx_of(id);
                    assert_eq!(cancelled, expected);
                    if let Some(ctx) = cancelled {
                        self.awaited.remove(&ctx);
                    }
                }
            }
            10 => {
                let result = self
                    .session
                    .send_encoded(Bytes::from_static(b"room||0||hi"));
                assert_eq!(result.is_ok(), !self.closed);
                if result.is_ok() {
                    self.transmits.push_back(b"room||0||hi".to_vec());
                }
            }
            _ => {
                self.session.handle_pong(self.now);
                if !self.closed {
                    self.last_received = self.now;
                }
            }
        }
    }

    /// The bytes a frame must have on the wire, written independently of the codec.
    fn wire(&self, name: &[u8], id: i64, data: &[u8]) -> Vec<u8> {
        let mut wire = name.to_vec();
        wire.extend_from_slice(format!("||{id}").as_bytes());
        if !data.is_empty() || self.config.encoding == Encoding::ThreePart {
            wire.extend_from_slice(b"||");
            wire.extend_from_slice(data);
        }
        wire
    }

    fn ping_due(&self, interval: Duration) -> Instant {
        self.last_ping
            .map_or(self.last_received, |ping| ping.max(self.last_received))
            + interval
    }

    /// After the timers fired, nothing due may be left: no ping or idle close missed.
    fn check_keepalive_not_late(&self) {
        if self.closed {
            return;
        }
        if let Some(idle) = self.config.idle_timeout {
            assert!(
                self.now < self.last_received + idle,
                "missed the idle timeout"
            );
        }
        if let Some(interval) = self.config.ping_interval {
            assert!(self.now < self.ping_due(interval), "missed a ping");
        }
    }

    fn ctx_of(&self, id: u64) -> Option<u64> {
        self.awaited
            .iter()
            .find(|(_, r)| r.id == id)
            .map(|(&ctx, _)| ctx)
    }

    fn message(&mut self, input: &mut Input<'_>) -> Bytes {
        let pick = input.byte();
        let issued = self.issued.get(usize::from(input.byte())).copied();
        let text = match pick % 9 {
            0 => format!("ev||{}||payload", input.byte()),
            1 => "ev||0".to_owned(),
            2 | 3 => format!("__ack_ev||{}||r", issued.unwrap_or(7)),
            4 => format!("__ack_other||{}", issued.unwrap_or(0)),
            5 => "no separator".to_owned(),
            6 => "ev||99999999999999999999||x".to_owned(),
            7 => "x".repeat(self.config.read_limit.unwrap_or(64) + usize::from(input.byte() % 2)),
            _ => return Bytes::copy_from_slice(input.bytes(80)),
        };
        Bytes::from(text)
    }

    /// Drains the session's outputs, checking each against the model.
    fn drain(&mut self) {
        let closed_before = self.closed;
        let mut failed_closed = Vec::new();
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Transmit(frame) => {
                    let expected = self.transmits.pop_front();
                    assert_eq!(
                        Some(&frame[..]),
                        expected.as_deref(),
                        "frames go out exactly as commanded, in order"
                    );
                }
                Output::Event(event) => {
                    assert!(
                        !event.name.starts_with(b"__ack_"),
                        "replies are never dispatched"
                    );
                    if let Some(reply) = event.reply {
                        assert_ne!(reply.id(), 0);
                        self.replies.push(reply);
                    }
                }
                Output::AckResolved { ctx, .. } => {
                    assert_eq!(
                        self.expected_resolution.take(),
                        Some(ctx),
                        "resolved the wrong request"
                    );
                    assert!(
                        self.awaited.remove(&ctx).is_some(),
                        "request {ctx} ended twice"
                    );
                }
                Output::AckFailed { ctx, cause } => {
                    let request = self.awaited.remove(&ctx);
                    let request = request.unwrap_or_else(|| panic!("request {ctx} ended twice"));
                    match cause {
                        AckFailure::TimedOut => {
                            assert!(request.deadline <= self.now, "timed out early")
                        }
                        AckFailure::ConnectionClosed => failed_closed.push(ctx),
                    }
                }
                Output::Ping => {
                    let interval = self
                        .config
                        .ping_interval
                        .expect("pings only with an interval");
                    assert!(self.now >= self.ping_due(interval), "pinged early");
                    self.last_ping = Some(self.now);
                }
                Output::Close(reason) => {
                    assert!(self.session.is_closed());
                    if reason == crate::CloseReason::IdleTimeout {
                        let idle = self
                            .config
                            .idle_timeout
                            .expect("idle close only with a timeout");
                        assert!(
                            self.now >= self.last_received + idle,
                            "closed for idleness early"
                        );
                    }
                }
            }
        }
        if self.session.is_closed() {
            self.closed = true;
            assert!(
                self.awaited.is_empty(),
                "closing fails every request at once"
            );
        } else {
            assert!(failed_closed.is_empty() && !closed_before);
        }
    }
}
