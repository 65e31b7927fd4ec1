//! The WebSocket frame grammar (RFC 6455, section 5.2): the header, and masking.

use tungstenite::error::ProtocolError;

/// The opcodes this codec speaks; the others are reserved and refused.
pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;

/// The longest header: 2 bytes, a 64-bit length, a 4-byte mask.
pub(crate) const MAX_HEADER_LEN: usize = 14;
/// The longest payload of a control frame.
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// One frame's header, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    pub(crate) mask: Option<[u8; 4]>,
    /// The payload's length as the peer stated it (not yet checked against limits).
    pub(crate) payload_len: u64,
    /// How many bytes the header itself took.
    pub(crate) len: usize,
}

impl Header {
    pub(crate) fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Reads a header from the start of `buf`: `None` until all of it is there. Refuses
/// what no payload can mend: reserved bits (no extension is negotiated), reserved
/// opcodes, fragmented or oversized control frames.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(ProtocolError::NonZeroReservedBits);
    }
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    match opcode {
        CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG => {}
        other => return Err(ProtocolError::InvalidOpcode(other)),
    }
    let masked = second & 0x80 != 0;
    let (payload_len, mut len) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(bytes) => {
                let mut be = [0; 8];
                be.copy_from_slice(bytes);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    let mask = if masked {
        let Some(bytes) = buf.get(len..len + 4) else {
            return Ok(None);
        };
        len += 4;
        let mut mask = [0; 4];
        mask.copy_from_slice(bytes);
        Some(mask)
    } else {
        None
    };
    let header = Header {
        fin,
        opcode,
        mask,
        payload_len,
        len,
    };
    if header.is_control() {
        // All control frames MUST have a payload length of 125 bytes or less and MUST
        // NOT be fragmented (RFC 6455, 5.5).
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        if payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolError::ControlFrameTooBig);
        }
    }
    Ok(Some(header))
}

/// Appends the header of an unmasked frame (what a server sends).
pub(crate) fn write_header(out: &mut Vec<u8>, fin: bool, opcode: u8, payload_len: usize) {
    let first = if fin { 0x80 | opcode } else { opcode };
    if payload_len < 126 {
        out.extend_from_slice(&[first, payload_len as u8]);
    } else if let Ok(len) = u16::try_from(payload_len) {
        let [a, b] = len.to_be_bytes();
        out.extend_from_slice(&[first, 126, a, b]);
    } else {
        out.extend_from_slice(&[first, 127]);
        out.extend_from_slice(&(payload_len as u64).to_be_bytes());
    }
}

/// XORs `payload` with the repeating `mask`, a word at a time (masking and unmasking
/// are the same operation).
pub(crate) fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut words = payload.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the mask starts over with its first byte.
    for (byte, key) in words.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> Result<Option<Header>, ProtocolError> {
        parse_header(bytes)
    }

    #[test]
    fn lengths_in_all_three_encodings_are_read() {
        let h = header(&[0x81, 0x85, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.payload_len, h.len), (true, TEXT, 5, 6));
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        let h = header(&[0x02, 0xFE, 0x01, 0x00, 9, 9, 9, 9])
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.len),
            (false, BINARY, 256, 8)
        );
        let h = header(&[0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, h.len, h.mask), (1 << 32, 10, None));
    }

    #[test]
    fn a_header_is_not_read_before_all_of_it_arrived() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(header(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(header(&full).unwrap().unwrap().len, MAX_HEADER_LEN);
    }

    #[test]
    fn reserved_bits_and_opcodes_are_refused() {
        for rsv in [0x40, 0x20, 0x10] {
            assert_eq!(
                header(&[0x81 | rsv, 0]),
                Err(ProtocolError::NonZeroReservedBits)
            );
        }
        for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                header(&[0x80 | opcode, 0]),
                Err(ProtocolError::InvalidOpcode(opcode))
            );
        }
    }

    #[test]
    fn control_frames_are_final_and_at_most_125_bytes() {
        assert_eq!(
            header(&[0x09, 0]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert!(
            header(&[0x89, 125]).unwrap().is_some(),
            "125 bytes: at the limit"
        );
        assert_eq!(
            header(&[0x89, 126, 0, 126]),
            Err(ProtocolError::ControlFrameTooBig)
        );
        assert_eq!(
            header(&[0x88, 126, 0, 125]).unwrap().unwrap().payload_len,
            125
        );
    }

    #[test]
    fn written_headers_read_back() {
        for len in [0, 125, 126, 65_535, 65_536, 1 << 20] {
            let mut out = Vec::new();
            write_header(&mut out, true, BINARY, len);
            let h = header(&out).unwrap().unwrap();
            assert_eq!(
                (h.fin, h.opcode, h.payload_len, h.len, h.mask),
                (true, BINARY, len as u64, out.len(), None)
            );
        }
    }

    #[test]
    fn masking_matches_the_bytewise_definition_and_undoes_itself() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(31)).collect();
            let mut masked = original.clone();
            apply_mask(&mut masked, mask);
            let expected: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(masked, expected, "length {len}");
            apply_mask(&mut masked, mask);
            assert_eq!(masked, original);
        }
    }
}
