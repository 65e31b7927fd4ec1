//! Property tests of the frame codec: the parser against the naive oracle in
//! `etp_proto::__fuzz`, encode/parse round trips, event-name validation and the Go
//! `Atoi` ack-id rules (PROTOCOL.md sections 2 and 3).

use bytes::{Bytes, BytesMut};
use etp_proto::__fuzz::{Naive, frame_parse, naive_parse};
use etp_proto::{
    ACK_PREFIX, Encoding, Frame, FrameError, NameError, encode_ack_reply, encode_event,
    validate_event_name,
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

const ENCODINGS: [Encoding; 2] = [Encoding::Compact, Encoding::ThreePart];

/// Ack id texts at and around the i64 and u64 boundaries.
const BOUNDARY_NUMBERS: &[&str] = &[
    "9223372036854775807",
    "9223372036854775806",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999",
    "000000000000000000000000001",
    "-0",
    "+0",
];

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

fn bytes_of(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A run of ASCII digits with a length in `len`.
fn digits(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    vec(b'0'..=b'9', len)
}

/// One piece of a near-valid frame: separators, the ack prefix, signs, digits, long
/// digit runs near the integer boundaries, letters and bytes that are not UTF-8.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(bytes_of("||")),
        3 => Just(bytes_of("|")),
        1 => Just(bytes_of("__ack_")),
        1 => Just(bytes_of("+")),
        1 => Just(bytes_of("-")),
        1 => Just(bytes_of("0")),
        3 => digits(1..5),
        2 => prop::sample::select(BOUNDARY_NUMBERS).prop_map(bytes_of),
        1 => digits(19..27),
        2 => vec(prop::sample::select(b"abz_ ".to_vec()), 1..4),
        1 => prop::sample::select(vec![0x80u8, 0xc3, 0xfe, 0xff]).prop_map(|b| vec![b]),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ]
}

fn pieces(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(piece(), 0..max).prop_map(|parts| parts.concat())
}

/// An ack id text: mostly a valid `[+-]?[0-9]+`, sometimes with junk around it.
fn ack_text() -> impl Strategy<Value = Vec<u8>> {
    let sign = prop::sample::select(vec!["", "", "", "+", "-"]);
    let number = prop_oneof![
        3 => any::<i64>().prop_map(|v| bytes_of(&v.unsigned_abs().to_string())),
        2 => digits(1..4),
        1 => (1usize..6, any::<u64>()).prop_map(|(zeros, v)| bytes_of(&format!("{}{v}", "0".repeat(zeros)))),
        2 => prop::sample::select(BOUNDARY_NUMBERS).prop_map(bytes_of),
        1 => digits(19..27),
        1 => Just(Vec::new()),
    ];
    let junk = prop_oneof![
        8 => Just(Vec::new()),
        1 => pieces(3),
    ];
    (junk.clone(), sign, number, junk)
        .prop_map(|(before, sign, number, after)| [before, bytes_of(sign), number, after].concat())
}

/// `name || ack [|| data]` with every part drawn from the near-valid pieces.
fn near_valid_frame() -> impl Strategy<Value = Vec<u8>> {
    (pieces(6), ack_text(), prop::option::of(pieces(8))).prop_map(|(name, ack, data)| {
        let mut frame = [name, bytes_of("||"), ack].concat();
        if let Some(data) = data {
            frame.extend_from_slice(b"||");
            frame.extend_from_slice(&data);
        }
        frame
    })
}

/// A name byte string with many `|` and `_`; filtered for the valid ones by callers.
fn name_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            6 => any::<u8>().prop_map(|b| vec![b]),
            3 => Just(bytes_of("|")),
            1 => Just(bytes_of("_")),
            1 => Just(bytes_of("__ack_")),
            1 => Just(bytes_of("__ack")),
            2 => vec(b'a'..=b'z', 1..5),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

/// Data that often holds separators, starts with `|`, or is empty.
fn data_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => Just(bytes_of("|")),
        1 => Just(bytes_of("||")),
        1 => Just(bytes_of("|||")),
        4 => (prop::sample::select(vec!["", "|", "||", "|x"]), vec(any::<u8>(), 0..24), pieces(5))
            .prop_map(|(head, body, tail)| [bytes_of(head), body, tail].concat()),
    ]
}

fn ack_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        2 => 0u64..1000,
        1 => prop::sample::select(vec![
            0,
            1,
            u64::MAX,
            i64::MAX as u64,
            1 << 63,
            (1 << 53) - 1,
            1 << 53,
        ]),
    ]
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn parse(bytes: &[u8]) -> Result<Frame, FrameError> {
    Frame::parse(Bytes::copy_from_slice(bytes))
}

/// `Frame::parse` in the oracle's shape, mapped here rather than by the checker.
fn parse_as_naive(bytes: &[u8]) -> Naive {
    match parse(bytes) {
        Ok(frame) => Ok((
            frame.name().to_vec(),
            frame.ack_id(),
            frame.data().map(|d| d.to_vec()),
        )),
        Err(FrameError::MissingSeparator { message }) => Err(("format", message.to_vec())),
        Err(FrameError::InvalidAckId { ack }) => Err(("syntax", ack.to_vec())),
        Err(FrameError::AckIdOutOfRange { ack }) => Err(("range", ack.to_vec())),
        Err(other) => panic!("unknown frame error {other:?}"),
    }
}

/// Go's `name||<i64 decimal of id>[||data]`, built independently of the library.
fn expected_wire(name: &[u8], id: u64, data: &[u8], encoding: Encoding) -> Vec<u8> {
    let mut wire = name.to_vec();
    wire.extend_from_slice(b"||");
    wire.extend_from_slice((id as i64).to_string().as_bytes());
    if !data.is_empty() || encoding == Encoding::ThreePart {
        wire.extend_from_slice(b"||");
        wire.extend_from_slice(data);
    }
    wire
}

/// What data a parsed frame must carry after encoding `data` with `encoding`.
fn expected_data(data: &[u8], encoding: Encoding) -> Option<&[u8]> {
    (!data.is_empty() || encoding == Encoding::ThreePart).then_some(data)
}

fn contains_separator(name: &[u8]) -> bool {
    name.windows(2).any(|w| w == b"||")
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(10_000))]

    #[test]
    fn the_parser_agrees_with_the_naive_oracle_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..256)) {
        frame_parse(&bytes);
    }

    #[test]
    fn the_parser_agrees_with_the_naive_oracle_on_concatenated_frame_pieces(bytes in pieces(16)) {
        frame_parse(&bytes);
    }

    #[test]
    fn the_parser_agrees_with_the_naive_oracle_on_near_valid_frames(bytes in near_valid_frame()) {
        frame_parse(&bytes);
    }

    #[test]
    fn the_parser_gives_exactly_what_the_naive_oracle_gives_on_near_valid_frames(
        bytes in prop_oneof![3 => near_valid_frame(), 1 => pieces(16)],
    ) {
        prop_assert_eq!(parse_as_naive(&bytes), naive_parse(&bytes));
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn a_frame_built_from_a_valid_name_a_signed_decimal_and_any_data_parses_like_the_oracle_says(
        name in name_bytes().prop_filter("the parser cannot produce this name", |n| {
            !contains_separator(n) && n.last() != Some(&b'|')
        }),
        value in any::<i64>(),
        plus in any::<bool>(),
        zeros in 0usize..4,
        data in prop::option::of(data_bytes()),
    ) {
        let sign = if value < 0 { "-" } else if plus { "+" } else { "" };
        let digits = format!("{sign}{}{}", "0".repeat(zeros), value.unsigned_abs());
        let mut wire = [name.clone(), bytes_of("||"), bytes_of(&digits)].concat();
        if let Some(data) = &data {
            wire.extend_from_slice(b"||");
            wire.extend_from_slice(data);
        }
        let expected: Naive = Ok((name, value as u64, data));
        prop_assert_eq!(&naive_parse(&wire), &expected, "the oracle on {:?}", String::from_utf8_lossy(&wire));
        prop_assert_eq!(&parse_as_naive(&wire), &expected, "the parser on {:?}", String::from_utf8_lossy(&wire));
    }

    #[test]
    fn encoding_then_parsing_an_event_gives_back_its_name_ack_id_and_data(
        name in name_bytes().prop_filter("not a valid event name", |n| validate_event_name(n).is_ok()),
        id in ack_id(),
        data in data_bytes(),
    ) {
        for encoding in ENCODINGS {
            let mut buf = BytesMut::new();
            prop_assert_eq!(encode_event(&name, id, &data, encoding, &mut buf), Ok(()));
            prop_assert_eq!(&buf[..], &expected_wire(&name, id, &data, encoding)[..]);
            let frame = parse(&buf).expect("an encoded event parses");
            prop_assert_eq!(frame.name(), &name[..]);
            prop_assert_eq!(frame.ack_id(), id);
            prop_assert_eq!(frame.data().map(|d| &d[..]), expected_data(&data, encoding));
            prop_assert!(!frame.is_ack());

            // `Frame::encode` writes the same bytes, whether the data is absent or empty.
            let data_option = (!data.is_empty()).then(|| Bytes::copy_from_slice(&data));
            for data in [data_option, Some(Bytes::copy_from_slice(&data))] {
                let mut again = BytesMut::new();
                Frame::new(Bytes::copy_from_slice(&name), id, data).encode(encoding, &mut again);
                prop_assert_eq!(&again[..], &buf[..]);
            }
        }
    }

    #[test]
    fn encoding_then_parsing_an_ack_reply_gives_back_the_prefixed_name_ack_id_and_data(
        name in name_bytes().prop_filter("the parser cannot produce this name", |n| {
            !contains_separator(n) && n.last() != Some(&b'|')
        }),
        id in ack_id(),
        data in data_bytes(),
    ) {
        let prefixed = [ACK_PREFIX, &name].concat();
        for encoding in ENCODINGS {
            let mut buf = BytesMut::new();
            encode_ack_reply(&name, id, &data, encoding, &mut buf);
            prop_assert_eq!(&buf[..], &expected_wire(&prefixed, id, &data, encoding)[..]);
            let frame = parse(&buf).expect("an encoded ack reply parses");
            prop_assert_eq!(frame.name(), &prefixed[..]);
            prop_assert!(frame.is_ack());
            prop_assert_eq!(frame.ack_id(), id);
            prop_assert_eq!(frame.data().map(|d| &d[..]), expected_data(&data, encoding));
        }
    }

    #[test]
    fn names_rejected_by_validate_event_name_are_exactly_those_with_a_separator_a_trailing_pipe_or_the_ack_prefix(
        name in vec(prop::sample::select(vec!["a", "|", "_", "__ack_", "__ack", "ack_"]), 0..8)
            .prop_map(|parts| bytes_of(&parts.concat())),
    ) {
        let separator = contains_separator(&name);
        let trailing_pipe = name.last() == Some(&b'|');
        let reserved = name.starts_with(b"__ack_");
        match validate_event_name(&name) {
            Ok(()) => prop_assert!(
                !separator && !trailing_pipe && !reserved,
                "accepted {:?}", String::from_utf8_lossy(&name)
            ),
            Err(err) => {
                let applies = match err {
                    NameError::ContainsSeparator => separator,
                    NameError::EndsWithPipe => trailing_pipe,
                    NameError::ReservedAckPrefix => reserved,
                    other => panic!("unknown name error {other:?}"),
                };
                prop_assert!(applies, "{:?} rejected with {:?}", String::from_utf8_lossy(&name), err);
            }
        }
    }

    #[test]
    fn an_ack_id_is_written_as_its_i64_decimal_and_parses_back_to_the_same_u64(value in any::<i64>()) {
        let id = value as u64;
        for encoding in ENCODINGS {
            let mut buf = BytesMut::new();
            encode_event(b"ev", id, b"", encoding, &mut buf).unwrap();
            let mut want = format!("ev||{value}");
            if encoding == Encoding::ThreePart {
                want.push_str("||");
            }
            prop_assert_eq!(&buf[..], want.as_bytes());
            prop_assert_eq!(parse(&buf).unwrap().ack_id(), id);

            let mut reply = BytesMut::new();
            encode_ack_reply(b"ev", id, b"d", encoding, &mut reply);
            let want_reply = format!("__ack_ev||{value}||d");
            prop_assert_eq!(&reply[..], want_reply.as_bytes());
            prop_assert_eq!(parse(&reply).unwrap().ack_id(), id);
        }
    }

    #[test]
    fn an_ack_id_parses_like_go_atoi_on_64_bits(
        value in prop_oneof![
            2 => any::<i64>().prop_map(i128::from),
            1 => (i128::from(i64::MAX) - 3)..(i128::from(i64::MAX) + 4),
            1 => (i128::from(i64::MIN) - 3)..(i128::from(i64::MIN) + 4),
            1 => any::<u64>().prop_map(i128::from),
            1 => (i128::from(u64::MAX) - 3)..(i128::from(u64::MAX) + 4),
            1 => any::<i128>(),
        ],
        plus in any::<bool>(),
        zeros in 0usize..3,
        tail in prop::sample::select(vec!["", "||", "||x", "x", " ", "|", "||x||y"]),
    ) {
        let sign = if value < 0 { "-" } else if plus { "+" } else { "" };
        let ack = format!("{sign}{}{}", "0".repeat(zeros), value.unsigned_abs());
        let wire = format!("ev||{ack}{tail}");
        let in_i64 = i64::try_from(value).is_ok();
        let fits_u64 = u64::try_from(value.unsigned_abs()).is_ok();
        let result = parse(wire.as_bytes());
        match tail {
            // The ack id is the whole text up to the next separator.
            "" | "||" | "||x" | "||x||y" if in_i64 => {
                prop_assert_eq!(result.map(|f| f.ack_id()), Ok(value as i64 as u64));
            }
            "" | "||" | "||x" | "||x||y" => prop_assert_eq!(
                result,
                Err(FrameError::AckIdOutOfRange { ack: Bytes::from(ack) })
            ),
            // Go's ParseUint reports a u64 overflow before it meets a later bad byte.
            _ if !fits_u64 => prop_assert_eq!(
                result,
                Err(FrameError::AckIdOutOfRange { ack: Bytes::from(format!("{ack}{tail}")) })
            ),
            _ => prop_assert_eq!(
                result,
                Err(FrameError::InvalidAckId { ack: Bytes::from(format!("{ack}{tail}")) })
            ),
        }
    }
}

/// The separator search scans the first bytes plainly and the rest with memchr: every
/// placement of `||`, of a lone `|` and of `|||` around that boundary (and far past
/// it) parses as the oracle says.
#[test]
fn separators_on_either_side_of_the_short_scan_boundary_are_found_leftmost() {
    for at in 0..40 {
        for shape in [&b"||"[..], b"|x||", b"|||", b"x|"] {
            let mut frame = vec![b'n'; at];
            frame.extend_from_slice(shape);
            frame.extend_from_slice(b"||7||d");
            assert_eq!(
                parse_as_naive(&frame),
                naive_parse(&frame),
                "{:?}",
                String::from_utf8_lossy(&frame)
            );
        }
        let mut no_separator = vec![b'n'; at];
        no_separator.push(b'|');
        assert!(matches!(
            parse(&no_separator),
            Err(FrameError::MissingSeparator { .. })
        ));
    }
}
