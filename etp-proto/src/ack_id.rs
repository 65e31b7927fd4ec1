//! Ack ids as Go etp reads and writes them: `strconv.Atoi` on 64 bits, stored as `u64`
//! by two's complement, written back as the `i64` decimal (PROTOCOL.md section 3).

use std::fmt;

/// The longest written ack id: `-9223372036854775808`.
pub(crate) const MAX_LEN: usize = 20;

/// Why an ack id failed to parse, in Go's two categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckIdError {
    /// Not `[+-]?[0-9]+`.
    Syntax,
    /// A valid number outside the `i64` range.
    Range,
}

/// Parses the ack id at the start of `rest` (everything after the first `||`).
///
/// Returns the id and, for the 3-part form, where the data starts in `rest`. The scan
/// stops at the first byte that is not a digit, so the data is never read. Errors are
/// decided in Go's order: `ParseUint` reports an overflow of `u64` as soon as it
/// happens, a bad byte when it meets it, and the `i64` range only after a full scan.
#[inline]
pub(crate) fn parse_prefix(rest: &[u8]) -> Result<(u64, Option<usize>), AckIdError> {
    // The usual id, a few plain digits, cannot overflow: read without the checks.
    // Anything else (a sign, 19 digits or more, a bad byte) takes the full parse,
    // which decides its errors in Go's order.
    let mut id: u64 = 0;
    let mut end = 0;
    while end < SHORT_DIGITS {
        match rest.get(end) {
            Some(&byte @ b'0'..=b'9') => id = id * 10 + u64::from(byte - b'0'),
            _ => break,
        }
        end += 1;
    }
    if end != 0 && end < SHORT_DIGITS {
        match &rest[end..] {
            [] => return Ok((id, None)),
            [b'|', b'|', ..] => return Ok((id, Some(end + 2))),
            _ => {}
        }
    }
    parse_prefix_in_full(rest)
}

/// Digits below this many never overflow an `i64` (its maximum has 19).
const SHORT_DIGITS: usize = 19;

#[cold]
fn parse_prefix_in_full(rest: &[u8]) -> Result<(u64, Option<usize>), AckIdError> {
    let (negative, digits_start) = match rest.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let mut magnitude: u64 = 0;
    let mut end = digits_start;
    while let Some(&byte) = rest.get(end) {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        magnitude = magnitude
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(digit)))
            .ok_or(AckIdError::Range)?;
        end += 1;
    }
    let data_start = match &rest[end..] {
        [] => None,
        [b'|', b'|', ..] => Some(end + 2),
        _ => return Err(AckIdError::Syntax),
    };
    if end == digits_start {
        return Err(AckIdError::Syntax);
    }
    let id = to_twos_complement(negative, magnitude).ok_or(AckIdError::Range)?;
    Ok((id, data_start))
}

/// The `u64` holding the `i64` value `±magnitude`, or `None` outside the `i64` range.
fn to_twos_complement(negative: bool, magnitude: u64) -> Option<u64> {
    const I64_MIN_MAGNITUDE: u64 = 1 << 63;
    match (negative, magnitude) {
        (false, m) if m < I64_MIN_MAGNITUDE => Some(m),
        (true, m) if m <= I64_MIN_MAGNITUDE => Some(m.wrapping_neg()),
        _ => None,
    }
}

/// Writes the `i64` decimal of `id` (so `u64::MAX` is `-1`) at the end of `buf`, which
/// holds at least [`MAX_LEN`] bytes, and returns where it starts.
pub(crate) fn write_at_end(id: u64, buf: &mut [u8]) -> usize {
    let value = id as i64;
    let mut magnitude = value.unsigned_abs();
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        buf[start] = b'-';
    }
    start
}

/// Debug-prints an ack id as it appears on the wire (the `i64` decimal).
pub(crate) struct WireId(pub(crate) u64);

impl fmt::Debug for WireId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&(self.0 as i64), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(id: u64) -> String {
        let mut buf = [b'x'; MAX_LEN + 3];
        let start = write_at_end(id, &mut buf);
        assert!(
            buf[..start].iter().all(|&b| b == b'x'),
            "wrote before its start"
        );
        String::from_utf8(buf[start..].to_vec()).unwrap()
    }

    #[test]
    fn writes_the_i64_decimal() {
        assert_eq!(written(0), "0");
        assert_eq!(written(9), "9");
        assert_eq!(written(1 << 53), "9007199254740992");
        assert_eq!(written(u64::MAX), "-1");
        assert_eq!(written(i64::MAX as u64), "9223372036854775807");
        assert_eq!(written(i64::MIN as u64), "-9223372036854775808");
    }

    #[test]
    fn parses_like_go_atoi() {
        assert_eq!(parse_prefix(b"5"), Ok((5, None)));
        assert_eq!(parse_prefix(b"+9||x"), Ok((9, Some(4))));
        assert_eq!(parse_prefix(b"009||"), Ok((9, Some(5))));
        assert_eq!(parse_prefix(b"-1"), Ok((u64::MAX, None)));
        assert_eq!(parse_prefix(b"-0"), Ok((0, None)));
        assert_eq!(
            parse_prefix(b"9223372036854775807"),
            Ok((i64::MAX as u64, None))
        );
        assert_eq!(parse_prefix(b"-9223372036854775808"), Ok((1 << 63, None)));
        assert_eq!(parse_prefix(b"9223372036854775808"), Err(AckIdError::Range));
        assert_eq!(
            parse_prefix(b"-9223372036854775809"),
            Err(AckIdError::Range)
        );
        assert_eq!(parse_prefix(b""), Err(AckIdError::Syntax));
        assert_eq!(parse_prefix(b"+"), Err(AckIdError::Syntax));
        assert_eq!(parse_prefix(b"-||x"), Err(AckIdError::Syntax));
        assert_eq!(parse_prefix(b" 1"), Err(AckIdError::Syntax));
        assert_eq!(parse_prefix(b"1_000"), Err(AckIdError::Syntax));
        assert_eq!(parse_prefix(b"0x10"), Err(AckIdError::Syntax));
        assert_eq!(parse_prefix(b"1|"), Err(AckIdError::Syntax));
        assert_eq!(parse_prefix(b"1|x||"), Err(AckIdError::Syntax));
        assert_eq!(parse_prefix(b"++1"), Err(AckIdError::Syntax));
    }

    #[test]
    fn the_short_path_agrees_with_the_full_parse() {
        // Every string of up to five bytes over an alphabet that reaches every branch,
        // then digit runs around the short path's limit with each ending.
        let alphabet = b"09|+-x";
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=5 {
            let mut index = vec![0usize; len];
            loop {
                inputs.push(index.iter().map(|&i| alphabet[i]).collect());
                let Some(pos) = index.iter().rposition(|&i| i + 1 < alphabet.len()) else {
                    break;
                };
                index[pos] += 1;
                index[pos + 1..].fill(0);
            }
        }
        for digits in SHORT_DIGITS - 2..=SHORT_DIGITS + 2 {
            for run in [b'1', b'9'] {
                for ending in [&b""[..], b"||", b"||data", b"|", b"x"] {
                    let mut input = vec![run; digits];
                    input.extend_from_slice(ending);
                    inputs.push(input);
                }
            }
        }
        for input in &inputs {
            assert_eq!(
                parse_prefix(input),
                parse_prefix_in_full(input),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn u64_overflow_is_reported_before_a_later_bad_byte_as_go_does() {
        assert_eq!(
            parse_prefix(b"99999999999999999999x"),
            Err(AckIdError::Range)
        );
        // Fits u64, so the bad byte is met first.
        assert_eq!(
            parse_prefix(b"9223372036854775808x"),
            Err(AckIdError::Syntax)
        );
    }
}
