//! Scenario tests: two Sessions wired to each other in memory with a simulated clock
//! (the `Pair` of quinn's tests), each test a sentence about the protocol.
#![allow(clippy::disallowed_methods)] // the simulated clock starts at some real Instant

use std::time::{Duration, Instant};

use bytes::Bytes;
use etp_proto::{
    AckFailure, CloseReason, Config, Encoding, Event, NameError, Output, ProtocolError, SendError,
    Session,
};

/// What one side saw, apart from the frames the pair carried across.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<Event>,
    resolved: Vec<(&'static str, Option<Bytes>)>,
    failed: Vec<(&'static str, AckFailure)>,
    pings: usize,
    closes: Vec<CloseReason>,
    /// Every frame this side transmitted, as text.
    sent: Vec<String>,
}

/// A client and a server session connected back to back.
struct Pair {
    now: Instant,
    client: Session<&'static str>,
    server: Session<&'static str>,
    client_seen: Seen,
    server_seen: Seen,
}

impl Pair {
    fn new() -> Self {
        Self::with_config(Config::default())
    }

    fn with_config(config: Config) -> Self {
        let now = Instant::now();
        Self {
            now,
            client: Session::new(config.clone(), now),
            server: Session::new(config, now),
            client_seen: Seen::default(),
            server_seen: Seen::default(),
        }
    }

    /// Carries frames both ways until neither side has anything left to do. Inbound
    /// errors fail the test: scenarios that expect them feed messages directly.
    fn drive(&mut self) {
        loop {
            let to_server = drain(&mut self.client, &mut self.client_seen);
            let to_client = drain(&mut self.server, &mut self.server_seen);
            if to_server.is_empty() && to_client.is_empty() {
                return;
            }
            for frame in to_server {
                self.server.handle_message(frame, self.now).unwrap();
            }
            for frame in to_client {
                self.client.handle_message(frame, self.now).unwrap();
            }
        }
    }

    /// Moves the clock forward and fires both sides' due timers, as a driver would.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        for session in [&mut self.client, &mut self.server] {
            if session.poll_timeout().is_some_and(|at| at <= self.now) {
                session.handle_timeout(self.now);
            }
        }
        self.drive();
    }
}

/// Drains one session's outputs, recording them; returns the frames to carry over.
fn drain(session: &mut Session<&'static str>, seen: &mut Seen) -> Vec<Bytes> {
    let mut frames = Vec::new();
    while let Some(output) = session.poll_output() {
        match output {
            Output::Transmit(frame) => {
                seen.sent.push(String::from_utf8_lossy(&frame).into_owned());
                frames.push(frame);
            }
            Output::Event(event) => seen.events.push(event),
            Output::AckResolved { ctx, data } => seen.resolved.push((ctx, data)),
            Output::AckFailed { ctx, cause } => seen.failed.push((ctx, cause)),
            Output::Ping => seen.pings += 1,
            Output::Close(reason) => seen.closes.push(reason),
            other => panic!("unexpected output {other:?}"),
        }
    }
    frames
}

fn reply_to_last_event(session: &mut Session<&'static str>, seen: &mut Seen, data: &[u8]) {
    let event = seen.events.pop().expect("an event to answer");
    session
        .ack(event.reply.expect("an ack request"), data)
        .unwrap();
}

fn outputs<C>(session: &mut Session<C>) -> Vec<Output<C>> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

#[test]
fn ack_round_trip_resolves_the_request_with_the_reply_data() {
    let mut pair = Pair::new();
    let id = pair
        .client
        .emit_with_ack(b"hello", b"world", "req", None, pair.now)
        .unwrap();
    pair.drive();
    assert_eq!(id, 1);
    let event = &pair.server_seen.events[0];
    assert_eq!(event.name, "hello");
    assert_eq!(event.data.as_deref(), Some(&b"world"[..]));
    assert_eq!(event.reply.as_ref().map(|r| r.id()), Some(1));
    reply_to_last_event(&mut pair.server, &mut pair.server_seen, b"hi");
    pair.drive();
    assert_eq!(
        pair.client_seen.resolved,
        vec![("req", Some(Bytes::from_static(b"hi")))]
    );
    assert_eq!(pair.server_seen.sent, vec!["__ack_hello||1||hi"]);
    assert_eq!(pair.client.pending_acks(), 0);
    assert_eq!(pair.client.poll_timeout(), None);
}

#[test]
fn emit_without_ack_carries_no_reply_token() {
    let mut pair = Pair::new();
    pair.client.emit(b"news", b"").unwrap();
    pair.client.emit(b"news", b"x").unwrap();
    pair.drive();
    assert_eq!(pair.client_seen.sent, vec!["news||0", "news||0||x"]);
    let events = &pair.server_seen.events;
    assert!(events.iter().all(|e| e.reply.is_none()));
    assert_eq!(events[0].data, None);
    assert_eq!(events[1].data_or_empty(), b"x");
}

#[test]
fn encoding_is_byte_exact_go_or_always_three_parts() {
    let mut config = Config::default();
    let mut pair = Pair::with_config(config.clone());
    pair.client.emit(b"ev", b"").unwrap();
    pair.client
        .emit_with_ack(b"ev", b"", "r", None, pair.now)
        .unwrap();
    pair.drive();
    reply_to_last_event(&mut pair.server, &mut pair.server_seen, b"");
    pair.drive();
    assert_eq!(pair.client_seen.sent, vec!["ev||0", "ev||1"]);
    assert_eq!(pair.server_seen.sent, vec!["__ack_ev||1"]);
    assert_eq!(pair.client_seen.resolved, vec![("r", None)]);

    config.encoding = Encoding::ThreePart;
    let mut pair = Pair::with_config(config);
    pair.client.emit(b"ev", b"").unwrap();
    pair.client
        .emit_with_ack(b"ev", b"", "r", None, pair.now)
        .unwrap();
    pair.drive();
    reply_to_last_event(&mut pair.server, &mut pair.server_seen, b"");
    pair.drive();
    assert_eq!(pair.client_seen.sent, vec!["ev||0||", "ev||1||"]);
    assert_eq!(pair.server_seen.sent, vec!["__ack_ev||1||"]);
    assert_eq!(pair.client_seen.resolved, vec![("r", Some(Bytes::new()))]);
}

#[test]
fn replies_write_the_ack_id_back_as_the_go_int_it_was() {
    let mut server: Session<()> = Session::new(Config::default(), Instant::now());
    let now = Instant::now();
    for (request, reply) in [
        ("ev||-1||x", "__ack_ev||-1||r"),
        ("ev||+9||x", "__ack_ev||9||r"),
        ("ev||009", "__ack_ev||9||r"),
        (
            "a|b||-9223372036854775808||",
            "__ack_a|b||-9223372036854775808||r",
        ),
    ] {
        server.handle_message(Bytes::from(request), now).unwrap();
        let Some(Output::Event(event)) = server.poll_output() else {
            panic!("no event")
        };
        server.ack(event.reply.unwrap(), b"r").unwrap();
        let Some(Output::Transmit(frame)) = server.poll_output() else {
            panic!("no reply")
        };
        assert_eq!(frame, reply);
    }
}

#[test]
fn request_times_out_at_its_deadline_and_not_before() {
    let mut pair = Pair::new();
    pair.client
        .emit_with_ack(b"slow", b"", "req", None, pair.now)
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.client.poll_timeout(),
        Some(pair.now + Duration::from_secs(30))
    );
    pair.advance(Duration::from_secs(30) - Duration::from_nanos(1));
    assert!(pair.client_seen.failed.is_empty());
    pair.advance(Duration::from_nanos(1));
    assert_eq!(pair.client_seen.failed, vec![("req", AckFailure::TimedOut)]);
    assert_eq!(pair.client.pending_acks(), 0);
}

#[test]
fn per_call_timeout_overrides_the_default() {
    let mut config = Config::default();
    config.ack_timeout = Duration::from_secs(10);
    let mut pair = Pair::with_config(config);
    pair.client
        .emit_with_ack(b"a", b"", "default", None, pair.now)
        .unwrap();
    pair.client
        .emit_with_ack(b"b", b"", "short", Some(Duration::from_secs(1)), pair.now)
        .unwrap();
    pair.drive();
    pair.advance(Duration::from_secs(1));
    assert_eq!(
        pair.client_seen.failed,
        vec![("short", AckFailure::TimedOut)]
    );
    pair.advance(Duration::from_secs(9));
    assert_eq!(
        pair.client_seen.failed[1],
        ("default", AckFailure::TimedOut)
    );
}

#[test]
fn late_ack_for_expired_request_is_dropped_and_cannot_resolve_a_newer_one() {
    let mut pair = Pair::new();
    pair.client
        .emit_with_ack(b"q", b"", "old", Some(Duration::from_secs(1)), pair.now)
        .unwrap();
    pair.drive();
    let late = pair.server_seen.events.pop().unwrap();
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.client_seen.failed, vec![("old", AckFailure::TimedOut)]);

    let newer = pair
        .client
        .emit_with_ack(b"q", b"", "new", None, pair.now)
        .unwrap();
    pair.drive();
    assert_eq!(newer, 2, "ids are not reused");
    pair.server.ack(late.reply.unwrap(), b"late").unwrap();
    pair.drive();
    assert!(pair.client_seen.resolved.is_empty());
    assert_eq!(pair.client.pending_acks(), 1);
    reply_to_last_event(&mut pair.server, &mut pair.server_seen, b"fresh");
    pair.drive();
    assert_eq!(
        pair.client_seen.resolved,
        vec![("new", Some(Bytes::from_static(b"fresh")))]
    );
}

#[test]
fn duplicate_and_unknown_acks_are_dropped_silently() {
    let now = Instant::now();
    let mut client: Session<&str> = Session::new(Config::default(), now);
    client.emit_with_ack(b"q", b"", "req", None, now).unwrap();
    let _ = outputs(&mut client);
    for reply in [
        "__ack_q||1||a",
        "__ack_q||1||b",
        "__ack_q||2||c",
        "__ack_q||0",
        "__ack_||-1",
    ] {
        client.handle_message(Bytes::from(reply), now).unwrap();
    }
    let seen = outputs(&mut client);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(matches!(&seen[0], Output::AckResolved { ctx: "req", data: Some(d) } if d == "a"));
}

#[test]
fn acks_match_by_id_only_and_are_never_dispatched() {
    let now = Instant::now();
    let mut client: Session<&str> = Session::new(Config::default(), now);
    client
        .emit_with_ack(b"question", b"", "req", None, now)
        .unwrap();
    let _ = outputs(&mut client);
    // A reply under another name still resolves by id, as in Go.
    client
        .handle_message(Bytes::from_static(b"__ack_other||1||x"), now)
        .unwrap();
    // An ack-named frame for no request is neither resolved nor dispatched.
    client
        .handle_message(Bytes::from_static(b"__ack_hello||5||y"), now)
        .unwrap();
    let seen = outputs(&mut client);
    assert_eq!(seen.len(), 1);
    assert!(matches!(seen[0], Output::AckResolved { ctx: "req", .. }));
}

#[test]
fn close_fails_every_pending_ack_at_once() {
    let mut pair = Pair::new();
    for ctx in ["a", "b", "c"] {
        pair.client
            .emit_with_ack(b"q", b"", ctx, None, pair.now)
            .unwrap();
    }
    pair.drive();
    pair.client.close();
    pair.drive();
    assert_eq!(
        pair.client_seen.failed,
        vec![
            ("a", AckFailure::ConnectionClosed),
            ("b", AckFailure::ConnectionClosed),
            ("c", AckFailure::ConnectionClosed),
        ]
    );
    assert_eq!(pair.client_seen.closes, vec![CloseReason::Normal]);
    assert_eq!(CloseReason::Normal.code(), 1000);
    assert_eq!(CloseReason::Normal.wire_reason(), "");
    assert_eq!(pair.client.poll_timeout(), None);
    // Closing again does nothing, and commands now fail.
    pair.client.close();
    assert!(pair.client.poll_output().is_none());
    assert_eq!(pair.client.emit(b"x", b""), Err(SendError::Closed));
    assert_eq!(
        pair.client.emit_with_ack(b"x", b"", "d", None, pair.now),
        Err(SendError::Closed)
    );
    assert_eq!(
        pair.client.send_encoded(Bytes::from_static(b"x||0")),
        Err(SendError::Closed)
    );
}

#[test]
fn transport_loss_fails_pending_acks_and_ignores_later_messages() {
    let mut pair = Pair::new();
    pair.server
        .emit_with_ack(b"q", b"", "s1", None, pair.now)
        .unwrap();
    pair.drive();
    let request = pair.client_seen.events.pop().unwrap();
    pair.server.handle_transport_closed(pair.now);
    pair.drive();
    assert_eq!(
        pair.server_seen.failed,
        vec![("s1", AckFailure::ConnectionClosed)]
    );
    assert!(
        pair.server_seen.closes.is_empty(),
        "the transport is already gone"
    );
    assert!(pair.server.is_closed());
    pair.client
        .ack(request.reply.unwrap(), b"too late")
        .unwrap();
    pair.drive();
    assert!(pair.server_seen.resolved.is_empty());
    assert!(pair.server_seen.events.is_empty());
}

#[test]
fn nested_requests_in_both_directions_complete() {
    let mut pair = Pair::new();
    pair.client
        .emit_with_ack(b"outer", b"", "outer", None, pair.now)
        .unwrap();
    pair.drive();
    // The server's handler asks the client something before answering.
    let outer = pair.server_seen.events.pop().unwrap();
    let inner_id = pair
        .server
        .emit_with_ack(b"inner", b"", "inner", None, pair.now)
        .unwrap();
    pair.drive();
    // Both sides used id 1: replies are routed by the __ack_ prefix, not by id alone.
    assert_eq!(inner_id, 1);
    assert_eq!(outer.reply.as_ref().unwrap().id(), 1);
    reply_to_last_event(&mut pair.client, &mut pair.client_seen, b"inner answer");
    pair.drive();
    assert_eq!(
        pair.server_seen.resolved,
        vec![("inner", Some(Bytes::from_static(b"inner answer")))]
    );
    pair.server
        .ack(outer.reply.unwrap(), b"outer answer")
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.client_seen.resolved,
        vec![("outer", Some(Bytes::from_static(b"outer answer")))]
    );
    assert!(pair.client_seen.failed.is_empty() && pair.server_seen.failed.is_empty());
}

#[test]
fn keepalive_pings_a_quiet_peer_and_pongs_keep_it() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_secs(10));
    config.idle_timeout = Some(Duration::from_secs(25));
    let start = Instant::now();
    let mut session: Session<()> = Session::new(config, start);
    assert_eq!(
        session.poll_timeout(),
        Some(start + Duration::from_secs(10))
    );
    session.handle_timeout(start + Duration::from_secs(10));
    assert!(matches!(session.poll_output(), Some(Output::Ping)));
    // No pong yet: the next ping comes an interval after the last one.
    assert_eq!(
        session.poll_timeout(),
        Some(start + Duration::from_secs(20))
    );
    session.handle_pong(start + Duration::from_secs(12));
    assert_eq!(
        session.poll_timeout(),
        Some(start + Duration::from_secs(22))
    );
    // Traffic counts as life too: no ping while messages flow.
    session
        .handle_message(
            Bytes::from_static(b"ev||0"),
            start + Duration::from_secs(21),
        )
        .unwrap();
    let _ = outputs(&mut session);
    assert_eq!(
        session.poll_timeout(),
        Some(start + Duration::from_secs(31))
    );
    assert!(!session.is_closed());
}

#[test]
fn idle_timeout_closes_with_1001_and_fails_pending_acks() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_secs(10));
    config.idle_timeout = Some(Duration::from_secs(25));
    config.ack_timeout = Duration::from_secs(60);
    let start = Instant::now();
    let mut session: Session<&str> = Session::new(config, start);
    session
        .emit_with_ack(b"q", b"", "req", None, start)
        .unwrap();
    let _ = outputs(&mut session);
    session.handle_timeout(start + Duration::from_secs(10));
    session.handle_timeout(start + Duration::from_secs(20));
    let pings = outputs(&mut session);
    assert_eq!(
        pings.iter().filter(|o| matches!(o, Output::Ping)).count(),
        2
    );
    // Just before the idle deadline nothing happens; at it, the session closes.
    session.handle_timeout(start + Duration::from_secs(25) - Duration::from_nanos(1));
    assert!(outputs(&mut session).is_empty());
    assert_eq!(
        session.poll_timeout(),
        Some(start + Duration::from_secs(25))
    );
    session.handle_timeout(start + Duration::from_secs(25));
    let closing = outputs(&mut session);
    assert!(matches!(
        closing[..],
        [
            Output::AckFailed {
                ctx: "req",
                cause: AckFailure::ConnectionClosed
            },
            Output::Close(CloseReason::IdleTimeout)
        ]
    ));
    assert_eq!(CloseReason::IdleTimeout.code(), 1001);
    assert!(session.is_closed());
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn malformed_frames_are_reported_and_the_session_stays_usable() {
    let now = Instant::now();
    let mut session: Session<()> = Session::new(Config::default(), now);
    let cases: [(&[u8], &str); 5] = [
        (
            b"",
            "expected format: <eventName>||<ackId>||<eventData>, got: ",
        ),
        (
            b"no separator",
            "expected format: <eventName>||<ackId>||<eventData>, got: no separator",
        ),
        (
            b"ev||x",
            "parse ackId: strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            b"a|||b",
            "parse ackId: strconv.Atoi: parsing \"|b\": invalid syntax",
        ),
        (
            b"ev||99999999999999999999||data",
            "parse ackId: strconv.Atoi: parsing \"99999999999999999999\": value out of range",
        ),
    ];
    for (message, error) in cases {
        let err = session
            .handle_message(Bytes::from_static(message), now)
            .unwrap_err();
        assert!(matches!(err, ProtocolError::Frame(_)));
        assert!(!err.is_fatal());
        assert_eq!(err.to_string(), error);
    }
    assert!(session.poll_output().is_none());
    session
        .handle_message(Bytes::from_static(b"ev||0||still fine"), now)
        .unwrap();
    assert!(matches!(session.poll_output(), Some(Output::Event(_))));
    assert!(!session.is_closed());
}

#[test]
fn read_limit_accepts_exactly_the_limit_and_closes_with_1009_one_past_it() {
    let mut config = Config::default();
    config.read_limit = Some(16);
    let now = Instant::now();
    let mut session: Session<&str> = Session::new(config, now);
    session.emit_with_ack(b"q", b"", "req", None, now).unwrap();
    let _ = outputs(&mut session);
    let at_limit = Bytes::from_static(b"ev||0||012345678");
    assert_eq!(at_limit.len(), 16);
    session.handle_message(at_limit, now).unwrap();
    assert!(matches!(session.poll_output(), Some(Output::Event(_))));
    let past_limit = Bytes::from_static(b"ev||0||0123456789");
    let err = session.handle_message(past_limit, now).unwrap_err();
    assert_eq!(err, ProtocolError::MessageTooLarge { limit: 16, len: 17 });
    assert!(err.is_fatal());
    assert_eq!(err.to_string(), "read limited at 17 bytes");
    let closing = outputs(&mut session);
    assert!(matches!(
        closing[..],
        [
            Output::AckFailed {
                ctx: "req",
                cause: AckFailure::ConnectionClosed
            },
            Output::Close(CloseReason::MessageTooLarge { limit: 16 })
        ]
    ));
    let reason = CloseReason::MessageTooLarge { limit: 16 };
    assert_eq!(
        (reason.code(), reason.wire_reason().as_str()),
        (1009, "read limited at 17 bytes")
    );
}

#[test]
fn default_read_limit_is_go_s_one_mebibyte_and_none_is_unlimited() {
    let now = Instant::now();
    let mut frame = b"ev||0||".to_vec();
    frame.resize(Config::DEFAULT_READ_LIMIT, b'x');
    let mut session: Session<()> = Session::new(Config::default(), now);
    session
        .handle_message(Bytes::from(frame.clone()), now)
        .unwrap();
    frame.push(b'x');
    assert!(
        session
            .handle_message(Bytes::from(frame.clone()), now)
            .is_err()
    );

    let mut config = Config::default();
    config.read_limit = None;
    let mut unlimited: Session<()> = Session::new(config, now);
    frame.resize(4 << 20, b'x');
    unlimited.handle_message(Bytes::from(frame), now).unwrap();
    assert!(matches!(unlimited.poll_output(), Some(Output::Event(_))));
}

#[test]
fn pending_acks_are_bounded_at_exactly_the_limit() {
    let mut config = Config::default();
    config.max_pending_acks = 3;
    let mut pair = Pair::with_config(config);
    for ctx in ["a", "b", "c"] {
        pair.client
            .emit_with_ack(b"q", b"", ctx, None, pair.now)
            .unwrap();
    }
    let err = pair
        .client
        .emit_with_ack(b"q", b"", "d", None, pair.now)
        .unwrap_err();
    assert_eq!(err, SendError::TooManyPendingAcks { limit: 3 });
    assert!(err.to_string().contains("max_pending_acks"));
    pair.drive();
    assert_eq!(
        pair.client_seen.sent.len(),
        3,
        "the refused request sent nothing"
    );
    reply_to_last_event(&mut pair.server, &mut pair.server_seen, b"");
    pair.drive();
    pair.client
        .emit_with_ack(b"q", b"", "d", None, pair.now)
        .unwrap();
    assert_eq!(pair.client.pending_acks(), 3);
}

#[test]
fn names_that_would_not_survive_the_wire_are_refused() {
    let now = Instant::now();
    let mut session: Session<()> = Session::new(Config::default(), now);
    let refused = [
        (&b"a||b"[..], NameError::ContainsSeparator),
        (b"||", NameError::ContainsSeparator),
        (b"a|", NameError::EndsWithPipe),
        (b"__ack_x", NameError::ReservedAckPrefix),
    ];
    for (name, err) in refused {
        assert_eq!(session.emit(name, b""), Err(SendError::InvalidName(err)));
        assert_eq!(
            session.emit_with_ack(name, b"", (), None, now),
            Err(SendError::InvalidName(err))
        );
    }
    assert!(session.poll_output().is_none());
    assert_eq!(session.pending_acks(), 0);
    session.emit(b"", b"").unwrap();
    session.emit(b"a|b", b"").unwrap();
    session.emit(b"__ack", b"").unwrap();
    session.emit(b"unknown event", b"").unwrap();
    assert_eq!(outputs(&mut session).len(), 4);
}

#[test]
fn pre_encoded_broadcast_frames_keep_their_place_in_the_order() {
    let now = Instant::now();
    let mut session: Session<()> = Session::new(Config::default(), now);
    session.emit(b"first", b"").unwrap();
    session
        .send_encoded(Bytes::from_static(b"room||0||all"))
        .unwrap();
    session.emit(b"last", b"").unwrap();
    let frames: Vec<_> = outputs(&mut session)
        .into_iter()
        .map(|o| match o {
            Output::Transmit(f) => f,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(frames, ["first||0", "room||0||all", "last||0"]);
}

#[test]
fn cancelled_request_ends_once_and_ignores_its_reply() {
    let mut pair = Pair::new();
    let id = pair
        .client
        .emit_with_ack(b"q", b"", "req", None, pair.now)
        .unwrap();
    pair.drive();
    assert_eq!(pair.client.cancel_ack(id), Some("req"));
    assert_eq!(pair.client.cancel_ack(id), None);
    reply_to_last_event(&mut pair.server, &mut pair.server_seen, b"");
    pair.drive();
    pair.advance(Duration::from_secs(60));
    assert!(pair.client_seen.resolved.is_empty() && pair.client_seen.failed.is_empty());
    assert_eq!(pair.client.poll_timeout(), None);
}

#[test]
fn events_and_replies_are_zero_copy_slices_of_the_message() {
    let now = Instant::now();
    let mut session: Session<()> = Session::new(Config::default(), now);
    let message = Bytes::from_static(b"name||3||data");
    let base = message.as_ptr() as usize;
    session.handle_message(message, now).unwrap();
    let Some(Output::Event(event)) = session.poll_output() else {
        panic!()
    };
    assert_eq!(event.name.as_ptr() as usize, base);
    assert_eq!(event.data.as_ref().unwrap().as_ptr() as usize, base + 9);
    assert_eq!(event.reply.as_ref().unwrap().name().as_ptr() as usize, base);
}

#[test]
fn an_unbounded_per_call_timeout_waits_without_overflowing_the_clock() {
    let now = Instant::now();
    let mut session: Session<&str> = Session::new(Config::default(), now);
    session
        .emit_with_ack(b"q", b"", "forever", Some(Duration::MAX), now)
        .unwrap();
    let at = session.poll_timeout().expect("a deadline");
    assert!(at > now + Duration::from_secs(365 * 24 * 3600));
    session.handle_timeout(now + Duration::from_secs(365 * 24 * 3600));
    assert!(
        outputs(&mut session)
            .iter()
            .all(|o| matches!(o, Output::Transmit(_)))
    );
    assert_eq!(session.pending_acks(), 1);
}

#[test]
fn retained_acks_keep_waiting_and_the_others_end_silently() {
    let mut pair = Pair::new();
    for ctx in ["keep", "drop", "keep too"] {
        pair.client
            .emit_with_ack(b"q", b"", ctx, None, pair.now)
            .unwrap();
    }
    pair.drive();
    assert_eq!(pair.client.retain_acks(|ctx| ctx.starts_with("keep")), 1);
    assert_eq!(pair.client.pending_acks(), 2);
    // The dropped request's reply (id 2) resolves nothing; the others still resolve.
    for _ in 0..3 {
        let event = pair.server_seen.events.remove(0);
        pair.server.ack(event.reply.unwrap(), b"").unwrap();
    }
    pair.drive();
    let resolved: Vec<_> = pair
        .client_seen
        .resolved
        .iter()
        .map(|(ctx, _)| *ctx)
        .collect();
    assert_eq!(resolved, ["keep", "keep too"]);
    assert_eq!(pair.client.poll_timeout(), None);
}
