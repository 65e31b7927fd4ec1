//! Connection ids: 16 random bytes, written as 32 lowercase hex characters (Go v4).

use std::fmt;
use std::str::FromStr;

/// A connection's id: 16 random bytes shown as 32 lowercase hex characters, as Go etp
/// v4 makes them. Local to the process; never sent on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId([u8; 16]);

impl ConnId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // The OS generator only fails on exotic platforms; a counter-derived id is still
        // unique within the process, which is all the id is used for.
        if getrandom::fill(&mut bytes).is_err() {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(1);
            bytes[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        }
        Self(bytes)
    }

    /// The id from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes of the id.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({self})")
    }
}

/// The text is not 32 hex characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseConnIdError;

impl fmt::Display for ParseConnIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a connection id is 32 hexadecimal characters")
    }
}

impl std::error::Error for ParseConnIdError {}

impl FromStr for ConnId {
    type Err = ParseConnIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        fn nibble(c: u8) -> Result<u8, ParseConnIdError> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(ParseConnIdError),
            }
        }
        let s = s.as_bytes();
        if s.len() != 32 {
            return Err(ParseConnIdError);
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(s.chunks_exact(2)) {
            *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex_and_parse_back() {
        let id = ConnId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(text.parse::<ConnId>(), Ok(id));
        assert_ne!(ConnId::random(), id);
        assert_eq!("xyz".parse::<ConnId>(), Err(ParseConnIdError));
        assert_eq!("+f".repeat(16).parse::<ConnId>(), Err(ParseConnIdError));
    }
}
