//! Go's `strconv.Quote`, so that error messages match Go etp's word for word.

use std::fmt::{self, Write};

/// Displays bytes the way Go's `%q` / `strconv.Quote` does: double-quoted, with Go
/// escapes for quotes, backslashes, control characters, invalid UTF-8 (`\xff`) and
/// non-printable characters (`\u00a0`).
pub(crate) struct Quoted<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                write_char(c, f)?;
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        f.write_char('"')
    }
}

fn write_char(c: char, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match c {
        '"' => f.write_str("\\\""),
        '\\' => f.write_str("\\\\"),
        '\u{7}' => f.write_str("\\a"),
        '\u{8}' => f.write_str("\\b"),
        '\u{c}' => f.write_str("\\f"),
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        '\u{b}' => f.write_str("\\v"),
        c if c < ' ' || c == '\u{7f}' => write!(f, "\\x{:02x}", c as u32),
        c if is_go_printable(c) => f.write_char(c),
        c if (c as u32) < 0x10000 => write!(f, "\\u{:04x}", c as u32),
        c => write!(f, "\\U{:08x}", c as u32),
    }
}

/// Go's `unicode.IsPrint` for the characters that reach it (everything but ASCII
/// controls): letters, marks, numbers, punctuation, symbols and the ASCII space.
///
/// Without Unicode category tables this treats every assigned-looking character as
/// printable and escapes the classes that are not: other controls, spaces and
/// separators, the common format characters, private use and noncharacters. It can
/// differ from Go only for unassigned code points, which Go escapes.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let u = c as u32;
    let format = matches!(
        u,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    );
    let private_use = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF);
    let noncharacter = matches!(u, 0xFDD0..=0xFDEF) || u & 0xFFFE == 0xFFFE;
    !(c.is_control() || c.is_whitespace() || format || private_use || noncharacter)
}

#[cfg(test)]
mod tests {
    use super::Quoted;

    fn quote(bytes: &[u8]) -> String {
        Quoted(bytes).to_string()
    }

    #[test]
    fn matches_go_strconv_quote() {
        assert_eq!(quote(b""), r#""""#);
        assert_eq!(quote(b"x"), r#""x""#);
        assert_eq!(quote(b"a b"), r#""a b""#);
        assert_eq!(quote(b"\"\\"), r#""\"\\""#);
        assert_eq!(quote(b"\n\t\r\x07\x08\x0c\x0b"), r#""\n\t\r\a\b\f\v""#);
        assert_eq!(quote(b"\x00\x1f\x7f"), r#""\x00\x1f\x7f""#);
        assert_eq!(quote(b"\xff\xfe"), r#""\xff\xfe""#);
        assert_eq!(quote("é€😀".as_bytes()), "\"é€😀\"");
        assert_eq!(
            quote("\u{a0}\u{85}\u{200b}".as_bytes()),
            r#""\u00a0\u0085\u200b""#
        );
        assert_eq!(quote("\u{f0000}".as_bytes()), r#""\U000f0000""#);
    }
}
