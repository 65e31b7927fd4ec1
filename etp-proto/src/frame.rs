//! The etp frame grammar: `eventName||ackId[||eventData]`.
//!
//! This is the only module that knows the `||` separator. Decoding is exactly Go's
//! `bytes.SplitN(msg, "||", 3)` followed by `strconv.Atoi` on the ack id (PROTOCOL.md
//! sections 2 and 3); encoding is byte-exact Go etp v3/v4 output.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::ack_id::{self, AckIdError};
use crate::output::EventMessage;

/// The separator between the parts of a frame.
const SEPARATOR: &[u8; 2] = b"||";

/// The name prefix that marks an acknowledgement reply (`__ack_<eventName>`).
pub const ACK_PREFIX: &[u8] = b"__ack_";

/// One decoded etp frame. Name and data are zero-copy slices of the received message.
///
/// ```
/// use bytes::Bytes;
/// use etp_proto::Frame;
///
/// let frame = Frame::parse(Bytes::from_static(b"hello||7||a||b")).unwrap();
/// assert_eq!(frame.name(), b"hello");
/// assert_eq!(frame.ack_id(), 7);
/// assert_eq!(frame.data().map(|d| &d[..]), Some(&b"a||b"[..]));
/// assert!(!frame.is_ack());
///
/// // The 2-part form carries no data at all, which differs from empty data.
/// assert_eq!(Frame::parse(Bytes::from_static(b"ping||0")).unwrap().data(), None);
/// assert_eq!(
///     Frame::parse(Bytes::from_static(b"ping||0||")).unwrap().data(),
///     Some(&Bytes::new())
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    name: Bytes,
    ack_id: u64,
    data: Option<Bytes>,
}

/// How empty data is written when encoding a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// Byte-exact Go etp v3/v4: the third part is omitted when the data is empty
    /// (`ev||0`). Go peers read both forms.
    #[default]
    Compact,
    /// Always write the third `||` (`ev||0||`): the JavaScript client 2.0.2 rejects
    /// 2-part frames, so use this towards JS peers.
    ThreePart,
}

impl Frame {
    /// A frame from its parts, for encoding or comparison.
    ///
    /// No validation happens here: [`validate_event_name`] says whether a name can be
    /// sent so that the peer decodes the same name back.
    pub fn new(name: Bytes, ack_id: u64, data: Option<Bytes>) -> Self {
        Self { name, ack_id, data }
    }

    /// Decodes one WebSocket message (text or binary) as an etp frame.
    ///
    /// Only the `name||ackId||` prefix is scanned; the data is sliced off without being
    /// read, so the cost does not grow with the data length.
    pub fn parse(msg: Bytes) -> Result<Self, FrameError> {
        let layout = Layout::of(&msg, false)?;
        let (name, data) = layout.message(msg).into_parts();
        Ok(Self {
            name,
            ack_id: layout.ack_id,
            data,
        })
    }

    /// The event name (for an ack reply, including the `__ack_` prefix).
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The event name as a shared slice of the received message.
    pub fn name_bytes(&self) -> &Bytes {
        &self.name
    }

    /// The ack id: 0 when no acknowledgement is wanted. Negative Go ids are stored by
    /// two's complement (`-1` is `u64::MAX`).
    pub fn ack_id(&self) -> u64 {
        self.ack_id
    }

    /// The data: `None` for the 2-part form `name||id`, `Some` (possibly empty) for
    /// `name||id||data`.
    pub fn data(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }

    /// True when the name starts with `__ack_`: the frame answers one of our requests.
    pub fn is_ack(&self) -> bool {
        self.name.starts_with(ACK_PREFIX)
    }

    /// Splits the frame into its name, ack id and data without copying.
    pub fn into_parts(self) -> (Bytes, u64, Option<Bytes>) {
        (self.name, self.ack_id, self.data)
    }

    /// Appends this frame's wire form to `dst`.
    ///
    /// A frame whose data is `None` or empty is written in the 2-part form by
    /// [`Encoding::Compact`], exactly as Go does.
    pub fn encode(&self, encoding: Encoding, dst: &mut BytesMut) {
        let data = self.data.as_deref().unwrap_or_default();
        encode(&[&self.name], self.ack_id, data, encoding, dst);
    }
}

impl fmt::Debug for Frame {
    // Lengths, not payloads: frames can be large and hold user data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("ack_id", &ack_id::WireId(self.ack_id))
            .field("data_len", &self.data.as_ref().map(Bytes::len))
            .finish()
    }
}

/// Where a frame's parts lie in its message.
///
/// Found on the bytes alone, so that the message is cut once, where it is used:
/// returning a decoded [`Frame`] (three `Bytes`) and moving it again into the event
/// stalled on store forwarding (`perf`: the session's receive path took 11 % of a
/// server's time on small events that way, 6 % after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Where the name ends (the first `||`).
    pub(crate) name_end: usize,
    /// The ack id (two's complement for negative ids).
    pub(crate) ack_id: u64,
    /// Where the data starts, after the second `||`; `None` for the 2-part form.
    data_start: Option<usize>,
    /// Where a request's head ends: set when the frame asks for a reply (ack id not
    /// 0, no `__ack_` name) and spells its id exactly as Go writes ids, so that
    /// `__ack_` + `message[..head_end]` + data is the reply (see
    /// [`encode_reply_from_head`]). Only when asked for.
    pub(crate) head_end: Option<usize>,
}

impl Layout {
    /// The layout of `msg`, decoded as Go's `bytes.SplitN(msg, "||", 3)` and
    /// `strconv.Atoi` decode it; with the request's head when `want_head`.
    #[inline(always)]
    pub(crate) fn of(msg: &Bytes, want_head: bool) -> Result<Self, FrameError> {
        let Some(name_end) = find_separator(msg) else {
            return Err(FrameError::MissingSeparator {
                message: msg.clone(),
            });
        };
        let id_text = name_end + SEPARATOR.len();
        let (ack_id, data_start) = match ack_id::parse_prefix(&msg[id_text..]) {
            Ok((id, data_start)) => (id, data_start.map(|start| id_text + start)),
            Err(err) => return Err(ack_error(err, &msg[name_end..], msg)),
        };
        // Replies (`__ack_…`) are never answered: no head for them.
        let head_end = (want_head
            && ack_id != 0
            && spelled_as_go(&msg[id_text..])
            && !msg.starts_with(ACK_PREFIX))
        .then(|| data_start.unwrap_or(msg.len()));
        Ok(Self {
            name_end,
            ack_id,
            data_start,
            head_end,
        })
    }

    /// `msg` (the message this layout was found in) as an event's message.
    #[inline(always)]
    pub(crate) fn message(&self, msg: Bytes) -> EventMessage {
        EventMessage::from_layout(msg, self.name_end, self.data_start)
    }
}

/// Appends `name_parts.concat() || ack_id [|| data]` to `dst`.
///
/// The name comes in parts so that an ack reply (`__ack_` + name) is written without
/// first concatenating it.
pub(crate) fn encode(
    name_parts: &[&[u8]],
    ack_id: u64,
    data: &[u8],
    encoding: Encoding,
    dst: &mut BytesMut,
) {
    let name_len: usize = name_parts.iter().map(|p| p.len()).sum();
    let with_data = !data.is_empty() || encoding == Encoding::ThreePart;
    dst.reserve(name_len + 2 + ack_id::MAX_LEN + if with_data { 2 + data.len() } else { 0 });
    for part in name_parts {
        dst.put_slice(part);
    }
    put_ack_id_part(ack_id, with_data, dst);
    if with_data {
        dst.put_slice(data);
    }
}

/// Appends `||<ack id>`, and the `||` before the data when data follows, in one
/// append: each `put_slice` checks capacity and moves the length, which cost more
/// than these few bytes.
fn put_ack_id_part(ack_id: u64, with_data: bool, dst: &mut BytesMut) {
    const SEP: usize = SEPARATOR.len();
    const LEN: usize = SEP + ack_id::MAX_LEN + SEP;
    // Filled with the separator's byte: the digits go in the middle, and the
    // separators on either side of them are already there.
    let mut part = [SEPARATOR[0]; LEN];
    let start = ack_id::write_at_end(ack_id, &mut part[..LEN - SEP]) - SEP;
    let end = if with_data { LEN } else { LEN - SEP };
    dst.put_slice(&part[start..end]);
}

/// Appends the reply to a request named `name` with ack id `ack_id`:
/// `__ack_<name>||<ack_id>[||data]`.
pub fn encode_ack_reply(
    name: &[u8],
    ack_id: u64,
    data: &[u8],
    encoding: Encoding,
    dst: &mut BytesMut,
) {
    encode(&[ACK_PREFIX, name], ack_id, data, encoding, dst);
}

/// Appends the reply to a request from the request's head as
/// [`Layout`] finds it: `__ack_` + head, then the data. The same bytes
/// as [`encode_ack_reply`] writes, without formatting the id again and in fewer
/// appends (each `put_slice` checks capacity and moves the length).
pub(crate) fn encode_reply_from_head(
    head: &[u8],
    data: &[u8],
    encoding: Encoding,
    dst: &mut BytesMut,
) {
    let with_data = !data.is_empty() || encoding == Encoding::ThreePart;
    // An id never ends in `|`: a head ending in the separator carries the one
    // before the request's data.
    let bare = head.strip_suffix(SEPARATOR).unwrap_or(head);
    dst.reserve(ACK_PREFIX.len() + bare.len() + SEPARATOR.len() + data.len());
    dst.put_slice(ACK_PREFIX);
    if !with_data {
        dst.put_slice(bare);
        return;
    }
    dst.put_slice(head);
    if bare.len() == head.len() {
        dst.put_slice(SEPARATOR);
    }
    dst.put_slice(data);
}

/// Appends an event frame `name||ack_id[||data]` after checking that the peer will
/// decode the same name back.
pub fn encode_event(
    name: &[u8],
    ack_id: u64,
    data: &[u8],
    encoding: Encoding,
    dst: &mut BytesMut,
) -> Result<(), NameError> {
    validate_event_name(name)?;
    encode(&[name], ack_id, data, encoding, dst);
    Ok(())
}

/// Checks that `name` can be sent as an event name.
///
/// Refused, because the peer would decode something else (PROTOCOL.md section 8.10):
/// names containing `||`, names ending in `|` (`a|` + `||` reads back as `a` then
/// `|`), and names starting with `__ack_` (the peer would take the event for an ack
/// reply). The empty name is allowed, as in Go.
pub fn validate_event_name(name: &[u8]) -> Result<(), NameError> {
    if name.starts_with(ACK_PREFIX) {
        Err(NameError::ReservedAckPrefix)
    } else if find_separator(name).is_some() {
        Err(NameError::ContainsSeparator)
    } else if name.last() == Some(&b'|') {
        Err(NameError::EndsWithPipe)
    } else {
        Ok(())
    }
}

/// The index of the leftmost `||`, as Go's `bytes.SplitN` finds it.
///
/// Event names are short: the first 16 bytes are looked at in one step, without a
/// branch per byte (a per-byte scan mispredicted its way through names; memchr's setup
/// costs more than the whole name). Past them, memchr.
#[inline(always)]
fn find_separator(haystack: &[u8]) -> Option<usize> {
    const LANES: usize = 16;
    let Some(head) = haystack.first_chunk::<LANES>() else {
        return find_separator_short(haystack);
    };
    let pairs = separator_starts(u128::from_le_bytes(*head));
    if pairs != 0 {
        return Some(pairs.trailing_zeros() as usize / 8);
    }
    // A separator may still start at the last byte of the word.
    find_separator_from(haystack, LANES - 1)
}

/// Bit 7 of byte `i` is set where bytes `i` and `i + 1` of the little-endian `word`
/// are both `|` (for the last byte: never).
#[inline(always)]
fn separator_starts(word: u128) -> u128 {
    const LOW7: u128 = u128::from_ne_bytes([0x7f; 16]);
    const PIPES: u128 = u128::from_ne_bytes([b'|'; 16]);
    let zeroed = word ^ PIPES;
    // 0x80 in exactly the bytes that are zero: no carry crosses a byte, since a
    // byte's low seven bits plus 0x7f stay below 0x100.
    let pipes = !(((zeroed & LOW7) + LOW7) | zeroed | LOW7);
    pipes & (pipes >> 8)
}

/// `find_separator` for fewer than 16 bytes: a plain scan. Out of line, as is
/// [`find_separator_from`], so that the word step inlines into its callers whole.
#[inline(never)]
fn find_separator_short(haystack: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&next) = haystack.get(i + 1) {
        if next != b'|' {
            // No separator starts at `i` or at `i + 1`.
            i += 2;
        } else if haystack[i] == b'|' {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

/// `find_separator` when none starts before `from`.
#[inline(never)]
fn find_separator_from(haystack: &[u8], mut from: usize) -> Option<usize> {
    if from >= haystack.len() {
        return None;
    }
    while let Some(i) = memchr::memchr(b'|', &haystack[from..]) {
        let i = from + i;
        match haystack.get(i + 1) {
            Some(b'|') => return Some(i),
            // The byte after this '|' is not a '|', so no separator can start there.
            Some(_) => from = i + 2,
            None => return None,
        }
        if from >= haystack.len() {
            return None;
        }
    }
    None
}

/// True when the valid, non-zero ack id at the start of `id_text` is spelled as Go's
/// `strconv.Itoa` spells it: no `+`, and no leading zero after an optional `-`.
fn spelled_as_go(id_text: &[u8]) -> bool {
    !matches!(id_text, [b'+' | b'0', ..] | [b'-', b'0', ..])
}

/// The error for an ack id that does not parse; `tail` is the message from the first
/// separator on, and the ack id text is what lies between it and the next separator
/// (or the end), as in Go. Cold: only malformed frames get here.
#[cold]
fn ack_error(err: AckIdError, tail: &[u8], msg: &Bytes) -> FrameError {
    let rest = &tail[SEPARATOR.len()..];
    let ack = match find_separator(rest) {
        Some(end) => &rest[..end],
        None => rest,
    };
    let ack = msg.slice_ref(ack);
    match err {
        AckIdError::Syntax => FrameError::InvalidAckId { ack },
        AckIdError::Range => FrameError::AckIdOutOfRange { ack },
    }
}

/// Why a received message is not an etp frame. Messages match Go etp's word for word.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The message has no `||` at all (this includes the empty message).
    MissingSeparator {
        /// The whole message.
        message: Bytes,
    },
    /// The ack id is not an optionally signed run of ASCII digits.
    InvalidAckId {
        /// The ack id text as received.
        ack: Bytes,
    },
    /// The ack id is a number outside the signed 64-bit range.
    AckIdOutOfRange {
        /// The ack id text as received.
        ack: Bytes,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingSeparator { message } => write!(
                f,
                "expected format: <eventName>||<ackId>||<eventData>, got: {}",
                String::from_utf8_lossy(message)
            ),
            Self::InvalidAckId { ack } => write!(
                f,
                "parse ackId: strconv.Atoi: parsing {}: invalid syntax",
                crate::go_quote::Quoted(ack)
            ),
            Self::AckIdOutOfRange { ack } => write!(
                f,
                "parse ackId: strconv.Atoi: parsing {}: value out of range",
                crate::go_quote::Quoted(ack)
            ),
        }
    }
}

impl fmt::Debug for FrameError {
    // Lengths, not payloads: the offending message may be a megabyte of user data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingSeparator { message } => f
                .debug_struct("MissingSeparator")
                .field("message_len", &message.len())
                .finish(),
            Self::InvalidAckId { ack } => f
                .debug_struct("InvalidAckId")
                .field("ack", &String::from_utf8_lossy(&ack[..ack.len().min(64)]))
                .finish(),
            Self::AckIdOutOfRange { ack } => f
                .debug_struct("AckIdOutOfRange")
                .field("ack", &String::from_utf8_lossy(&ack[..ack.len().min(64)]))
                .finish(),
        }
    }
}

impl std::error::Error for FrameError {}

/// Why an event name cannot be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameError {
    /// The name contains `||`, the frame separator; etp has no escaping.
    ContainsSeparator,
    /// The name ends with `|`, which would merge with the separator.
    EndsWithPipe,
    /// The name starts with `__ack_`, which marks acknowledgement replies.
    ReservedAckPrefix,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ContainsSeparator => {
                "event name contains \"||\", the etp frame separator (etp has no escaping)"
            }
            Self::EndsWithPipe => {
                "event name ends with '|', which would merge with the \"||\" separator"
            }
            Self::ReservedAckPrefix => {
                "event name starts with \"__ack_\", which is reserved for acknowledgement replies"
            }
        })
    }
}

impl std::error::Error for NameError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &'static [u8]) -> Result<Frame, FrameError> {
        Frame::parse(Bytes::from_static(s))
    }

    #[test]
    fn separator_is_leftmost_non_overlapping() {
        assert_eq!(find_separator(b"a|||b"), Some(1));
        assert_eq!(find_separator(b"|a||"), Some(2));
        assert_eq!(find_separator(b"a|b|c"), None);
        assert_eq!(find_separator(b"|"), None);
        assert_eq!(find_separator(b"||"), Some(0));
        assert_eq!(find_separator(b"x|"), None);
        assert_eq!(find_separator(b""), None);
    }

    /// Every string over a few bytes, around the 16-byte word's edges: the word step
    /// finds what a plain search finds. The bytes `0xfc` (`|` with the top bit set)
    /// and `}` (`|` plus one) would fool a zero-byte test with carries or borrows.
    #[test]
    fn the_word_step_finds_the_leftmost_separator_like_a_plain_search() {
        // Every string of `len` bytes from `alphabet`, after `at` bytes of `x`, in a
        // text of at least `total` bytes.
        fn check(alphabet: &[u8], len: usize, at: usize, total: usize) {
            let mut text = vec![b'x'; total.max(at + len)];
            for mut n in 0..alphabet.len().pow(len as u32) {
                for byte in &mut text[at..at + len] {
                    *byte = alphabet[n % alphabet.len()];
                    n /= alphabet.len();
                }
                let plain = text.windows(2).position(|pair| pair == b"||");
                assert_eq!(find_separator(&text), plain, "{text:?}");
            }
        }
        for len in 0..=18 {
            check(b"a|", len, 0, 0);
        }
        for at in [0, 6, 10] {
            check(&[b'|', 0xfc, b'}'], 10, at, 20);
        }
        // Long inputs: the separator at every place across the word's end and past it.
        for at in 0..40 {
            let mut text = vec![b'x'; 48];
            text[at] = b'|';
            text[at + 1] = b'|';
            text[at.saturating_sub(2)] = b'|';
            let plain = text.windows(2).position(|pair| pair == b"||");
            assert_eq!(find_separator(&text), plain, "separator at {at}");
        }
    }

    #[test]
    fn triple_pipe_moves_a_pipe_into_the_ack_id() {
        let err = parse(b"a|||b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "parse ackId: strconv.Atoi: parsing \"|b\": invalid syntax"
        );
    }

    #[test]
    fn ack_id_text_stops_at_the_second_separator() {
        let err = parse(b"ev||1x||data||more").unwrap_err();
        assert_eq!(
            err,
            FrameError::InvalidAckId {
                ack: Bytes::from_static(b"1x")
            }
        );
    }

    #[test]
    fn a_request_s_head_is_kept_only_when_a_reply_can_repeat_it() {
        let head = |s: &'static [u8]| {
            let end = Layout::of(&Bytes::from_static(s), true).unwrap().head_end;
            end.map(|end| s[..end].to_vec())
        };
        assert_eq!(head(b"ev||5||data").as_deref(), Some(&b"ev||5||"[..]));
        assert_eq!(head(b"ev||5").as_deref(), Some(&b"ev||5"[..]));
        assert_eq!(head(b"ev||-5||").as_deref(), Some(&b"ev||-5||"[..]));
        // Spelled otherwise than Go writes ids: the reply formats the id.
        assert_eq!(head(b"ev||+5||d"), None);
        assert_eq!(head(b"ev||05||d"), None);
        assert_eq!(head(b"ev||-05||d"), None);
        // No reply wanted, or a reply itself.
        assert_eq!(head(b"ev||0||d"), None);
        assert_eq!(head(b"__ack_ev||5||d"), None);
    }

    #[test]
    fn a_reply_from_the_head_is_the_reply_go_writes() {
        for (request, data, encoding, reply) in [
            (
                &b"ev||5||x"[..],
                &b"r"[..],
                Encoding::Compact,
                &b"__ack_ev||5||r"[..],
            ),
            (b"ev||5||x", b"", Encoding::Compact, b"__ack_ev||5"),
            (b"ev||5||x", b"", Encoding::ThreePart, b"__ack_ev||5||"),
            (b"ev||5", b"r", Encoding::Compact, b"__ack_ev||5||r"),
            (b"ev||5", b"", Encoding::Compact, b"__ack_ev||5"),
            (b"ev||5", b"", Encoding::ThreePart, b"__ack_ev||5||"),
        ] {
            let layout = Layout::of(&Bytes::copy_from_slice(request), true).unwrap();
            let mut dst = BytesMut::new();
            encode_reply_from_head(
                &request[..layout.head_end.unwrap()],
                data,
                encoding,
                &mut dst,
            );
            assert_eq!(&dst[..], reply, "{:?}", String::from_utf8_lossy(request));
        }
    }
}
