//! The messages of each mode: etp frames (`name||id||data`, built and parsed here so
//! that the generator needs no etp library) or raw messages with one-byte tags.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use etp_benches::load::{
    EV_COUNT, EV_ECHO, EV_GETCOUNT, EV_JOIN, EV_MSG, EV_PUB, RAW_COUNT, RAW_GETCOUNT, RAW_JOIN,
    RAW_PUB,
};
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// What the generator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// etp frames to `etp-bench-server` (or any etp server with the same events).
    Etp,
    /// Raw WebSocket messages to `raw-echo-server`.
    Raw,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Etp => "etp",
            Self::Raw => "raw",
        }
    }
}

/// Digits of a timestamp in a fanout payload.
const TS_DIGITS: usize = 20;

/// Nanoseconds since the process's first call: the fanout timestamps (publisher and
/// members are in this process).
pub(crate) fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The printable payload of `len` bytes.
fn filler(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// Builds and parses the messages of one mode and payload size.
#[derive(Clone, Debug)]
pub(crate) struct Proto {
    mode: Mode,
    payload: String,
    fire: Message,
    /// What follows the timestamp in a publish.
    publish_pad: String,
    /// `echo||`.
    echo_prefix: String,
    // `name||` of each answer and of a delivery: a message is recognised by its
    // known head, without searching for the separator.
    ack_echo: Vec<u8>,
    ack_getcount: Vec<u8>,
    ack_join: Vec<u8>,
    msg: Vec<u8>,
}

impl Proto {
    pub(crate) fn new(mode: Mode, payload_len: usize) -> Self {
        let payload = filler(payload_len);
        let fire = match mode {
            Mode::Etp => Message::text(format!("{EV_COUNT}||0||{payload}")),
            Mode::Raw => {
                let mut text = String::with_capacity(payload_len.max(1));
                text.push(char::from(RAW_COUNT));
                text.push_str(payload.get(1..).unwrap_or_default());
                Message::text(text)
            }
        };
        let header = match mode {
            Mode::Etp => TS_DIGITS,
            Mode::Raw => TS_DIGITS + 1,
        };
        Self {
            mode,
            publish_pad: filler(payload_len.saturating_sub(header)),
            payload,
            fire,
            echo_prefix: format!("{EV_ECHO}||"),
            ack_echo: format!("__ack_{EV_ECHO}||").into_bytes(),
            ack_getcount: format!("__ack_{EV_GETCOUNT}||").into_bytes(),
            ack_join: format!("__ack_{EV_JOIN}||").into_bytes(),
            msg: format!("{EV_MSG}||").into_bytes(),
        }
    }

    /// The payload (for the library client).
    pub(crate) fn payload(&self) -> &str {
        &self.payload
    }

    /// A request that is answered with its payload: `echo||id||payload`, or the raw
    /// payload (echoed). Built afresh each time in both modes, as a real sender would.
    pub(crate) fn request(&self, id: u64) -> Message {
        match self.mode {
            Mode::Etp => {
                // Exactly the length, without `fmt`: a message whose buffer is full
                // becomes `Bytes` without a second allocation, and formatting the id
                // through `fmt` cost the generator more than the server's whole decode.
                let mut digits = [0u8; 20];
                let digits = decimal(id, &mut digits);
                let len = self.echo_prefix.len() + digits.len() + 2 + self.payload.len();
                let mut text = String::with_capacity(len);
                text.push_str(&self.echo_prefix);
                text.push_str(digits);
                text.push_str("||");
                text.push_str(&self.payload);
                Message::text(text)
            }
            Mode::Raw => Message::text(self.payload.as_str()),
        }
    }

    /// Checks an answer to [`request`](Self::request): its id (etp) or `None` (raw,
    /// answered in order).
    pub(crate) fn reply_id(&self, data: &[u8]) -> Result<Option<u64>, String> {
        match self.mode {
            Mode::Etp => {
                let (id, rest) =
                    after_head(data, &self.ack_echo).ok_or_else(|| unexpected(data))?;
                if rest.map_or(0, <[u8]>::len) != self.payload.len() {
                    return Err(format!("echo of the wrong length: {}", unexpected(data)));
                }
                Ok(Some(id))
            }
            Mode::Raw => {
                if data.len() != self.payload.len() {
                    return Err(format!("echo of the wrong length: {}", unexpected(data)));
                }
                Ok(None)
            }
        }
    }

    /// The event without acknowledgement, the same shared message every time.
    pub(crate) fn fire(&self) -> Message {
        self.fire.clone()
    }

    /// Asks for the server's counter.
    pub(crate) fn getcount(&self, id: u64) -> Message {
        match self.mode {
            Mode::Etp => Message::text(format!("{EV_GETCOUNT}||{id}")),
            Mode::Raw => Message::text(char::from(RAW_GETCOUNT).to_string()),
        }
    }

    /// The counter in an answer to [`getcount`](Self::getcount); `None` for another
    /// message.
    pub(crate) fn count(&self, data: &[u8]) -> Result<Option<u64>, String> {
        let digits = match self.mode {
            Mode::Etp => {
                if !data.starts_with(&self.ack_getcount) {
                    return Ok(None);
                }
                let (_, rest) =
                    after_head(data, &self.ack_getcount).ok_or_else(|| unexpected(data))?;
                rest.unwrap_or_default()
            }
            Mode::Raw => match data.split_first() {
                Some((&RAW_GETCOUNT, digits)) => digits,
                _ => return Ok(None),
            },
        };
        parse_u64(digits).map(Some).ok_or_else(|| unexpected(data))
    }

    /// Joins the fanout room.
    pub(crate) fn join(&self, id: u64) -> Message {
        match self.mode {
            Mode::Etp => Message::text(format!("{EV_JOIN}||{id}")),
            Mode::Raw => Message::text(char::from(RAW_JOIN).to_string()),
        }
    }

    /// True for the answer to [`join`](Self::join).
    pub(crate) fn joined(&self, data: &[u8]) -> bool {
        match self.mode {
            Mode::Etp => data.starts_with(&self.ack_join),
            Mode::Raw => data == [RAW_JOIN],
        }
    }

    /// A publish whose payload (etp: the data; raw: the whole message) starts with the
    /// timestamp `ts` and is `payload` bytes long.
    pub(crate) fn publish(&self, ts: u64) -> Message {
        let mut text = String::with_capacity(self.payload.len() + 32);
        match self.mode {
            Mode::Etp => {
                let _ = write!(text, "{EV_PUB}||0||{ts:0TS_DIGITS$}");
            }
            Mode::Raw => {
                let _ = write!(text, "{}{ts:0TS_DIGITS$}", char::from(RAW_PUB));
            }
        }
        text.push_str(&self.publish_pad);
        Message::text(text)
    }

    /// The timestamp in a delivered publish.
    pub(crate) fn delivery(&self, data: &[u8]) -> Result<u64, String> {
        let rest = match self.mode {
            Mode::Etp => {
                let (_, rest) = after_head(data, &self.msg).ok_or_else(|| unexpected(data))?;
                rest.unwrap_or_default()
            }
            Mode::Raw => match data.split_first() {
                Some((&RAW_PUB, rest)) => rest,
                _ => return Err(unexpected(data)),
            },
        };
        rest.get(..TS_DIGITS)
            .and_then(parse_u64)
            .ok_or_else(|| unexpected(data))
    }
}

/// The id and the data (absent in the 2-part form) of `name||id[||data]` whose
/// `name||` is `head`; `None` for another name or a malformed id.
fn after_head<'a>(data: &'a [u8], head: &[u8]) -> Option<(u64, Option<&'a [u8]>)> {
    let after = data.strip_prefix(head)?;
    let digits = after.iter().take_while(|d| d.is_ascii_digit()).count();
    let id = parse_u64(&after[..digits])?;
    match &after[digits..] {
        [] => Some((id, None)),
        [b'|', b'|', data @ ..] => Some((id, Some(data))),
        _ => None,
    }
}

/// The decimal digits of `n`, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then_some(())
            .and_then(|()| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
    })
}

fn unexpected(data: &[u8]) -> String {
    let shown = &data[..data.len().min(60)];
    format!(
        "unexpected message ({} bytes): {:?}",
        data.len(),
        String::from_utf8_lossy(shown)
    )
}

/// The bytes of a data message; `None` for control messages.
pub(crate) fn data_of(message: Message) -> Option<Bytes> {
    match message {
        Message::Text(text) => Some(Bytes::from(text)),
        Message::Binary(data) => Some(data),
        _ => None,
    }
}

/// Nanoseconds of a duration, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(message: Message) -> Bytes {
        data_of(message).unwrap()
    }

    #[test]
    fn etp_messages_round_trip() {
        let proto = Proto::new(Mode::Etp, 64);
        let request = bytes(proto.request(7));
        assert!(request.starts_with(b"echo||7||abc"));
        assert_eq!(request.len(), 9 + 64);
        let mut reply = b"__ack_echo||7||".to_vec();
        reply.extend_from_slice(proto.payload().as_bytes());
        assert_eq!(proto.reply_id(&reply), Ok(Some(7)));
        assert!(proto.reply_id(b"__ack_echo||7||short").is_err());
        assert_eq!(proto.count(b"__ack_getcount||3||42"), Ok(Some(42)));
        assert_eq!(proto.count(b"msg||0||x"), Ok(None));
        assert!(proto.joined(b"__ack_join||1"));
        let publish = bytes(proto.publish(123));
        assert_eq!(publish.len(), 8 + 64);
        let delivered = [b"msg||0||".as_slice(), &publish[8..]].concat();
        assert_eq!(proto.delivery(&delivered), Ok(123));
        assert_eq!(bytes(proto.fire()).len(), 10 + 64);
    }

    #[test]
    fn ids_and_separators_at_their_edges() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), "0");
        assert_eq!(decimal(10, &mut buf), "10");
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string());
        let proto = Proto::new(Mode::Etp, 0);
        assert!(bytes(proto.request(u64::MAX)).ends_with(b"||18446744073709551615||"));
        assert_eq!(after_head(b"x||12", b"x||"), Some((12, None)));
        assert_eq!(
            after_head(b"x||12||", b"x||"),
            Some((12, Some(b"".as_slice())))
        );
        assert_eq!(
            after_head(b"x||1||a||b", b"x||"),
            Some((1, Some(b"a||b".as_slice())))
        );
        // Not the name, no id, an id that ends in another byte, an id past u64.
        assert_eq!(after_head(b"xy||1", b"x||"), None);
        assert_eq!(after_head(b"x||", b"x||"), None);
        assert_eq!(after_head(b"x||1|2", b"x||"), None);
        assert_eq!(after_head(b"x||18446744073709551616", b"x||"), None);
        assert!(proto.reply_id(b"__ack_getcount||1||").is_err());
        assert_eq!(
            proto.count(b"__ack_getcount||1"),
            Err(unexpected(b"__ack_getcount||1"))
        );
    }

    #[test]
    fn raw_messages_keep_the_payload_size() {
        let proto = Proto::new(Mode::Raw, 64);
        assert_eq!(bytes(proto.request(1)).len(), 64);
        assert_eq!(proto.reply_id(proto.payload().as_bytes()), Ok(None));
        assert_eq!(bytes(proto.fire()).len(), 64);
        assert_eq!(bytes(proto.fire())[0], RAW_COUNT);
        assert_eq!(proto.count(b"?17"), Ok(Some(17)));
        assert!(proto.joined(b"+"));
        let publish = bytes(proto.publish(u64::MAX));
        assert_eq!(publish.len(), 64);
        assert_eq!(proto.delivery(&publish), Ok(u64::MAX));
    }
}
