//! Messages from frames (RFC 6455, section 5.4 to 5.6): fragments joined, control
//! frames between them, the size limit, text checked for UTF-8. No IO: bytes in,
//! messages out.

use bytes::{Buf, BytesMut};
use tungstenite::error::{CapacityError, Error, ProtocolError};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::{CloseCode, Data};
use tungstenite::{Message, Utf8Bytes};

use super::frame::{self, Header, apply_mask, parse_header};

/// What a client sends, read by a server: every frame must be masked.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// The most a message (and so any frame) may hold.
    max_message: usize,
    /// The frame whose header was read and whose payload is still arriving.
    header: Option<Header>,
    /// The fragments of a message so far, and whether it is text.
    partial: Option<(bool, BytesMut)>,
}

impl Decoder {
    pub(crate) fn new(max_message: usize) -> Self {
        Self {
            max_message,
            header: None,
            partial: None,
        }
    }

    /// Takes the next message out of `buf`: `None` until one is complete (a complete
    /// frame's header and payload are consumed even when it only continues a
    /// message). An error is final: the stream is not in a state to go on.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, Error> {
        loop {
            let header = match self.header {
                Some(header) => header,
                None => {
                    let Some(header) = parse_header(buf)? else {
                        return Ok(None);
                    };
                    self.check(&header)?;
                    buf.advance(header.len);
                    self.header = Some(header);
                    header
                }
            };
            // Checked against `max_message` (a `usize`) in `check`.
            let len = header.payload_len as usize;
            if buf.len() < len {
                return Ok(None);
            }
            self.header = None;
            let mut payload = buf.split_to(len);
            if let Some(mask) = header.mask {
                apply_mask(&mut payload, mask);
            }
            if let Some(message) = self.complete(header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// How many more bytes the frame being read needs, at least (one when not even its
    /// header is known: headers are short).
    pub(crate) fn wanted(&self, buffered: usize) -> usize {
        match self.header {
            Some(header) => (header.payload_len as usize)
                .saturating_sub(buffered)
                .max(1),
            None => frame::MAX_HEADER_LEN.saturating_sub(buffered).max(1),
        }
    }

    /// What can be refused from the header alone: an unmasked frame, a frame out of
    /// sequence, one that takes the message past the limit.
    fn check(&self, header: &Header) -> Result<(), Error> {
        // A server MUST close the connection upon receiving a frame that is not
        // masked (RFC 6455, 5.1).
        if header.mask.is_none() {
            return Err(ProtocolError::UnmaskedFrameFromClient.into());
        }
        let so_far = if header.is_control() {
            // Control frames may come between fragments and are not part of them.
            0
        } else {
            match (&self.partial, header.opcode) {
                (None, frame::CONTINUATION) => {
                    return Err(ProtocolError::UnexpectedContinueFrame.into());
                }
                (None, _) => 0,
                (Some((_, partial)), frame::CONTINUATION) => partial.len() as u64,
                (Some(_), opcode) => {
                    let data = if opcode == frame::TEXT {
                        Data::Text
                    } else {
                        Data::Binary
                    };
                    return Err(ProtocolError::ExpectedFragment(data).into());
                }
            }
        };
        let size = so_far.saturating_add(header.payload_len);
        if size > self.max_message as u64 {
            return Err(CapacityError::MessageTooLong {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                max_size: self.max_message,
            }
            .into());
        }
        Ok(())
    }

    /// The message a checked, unmasked frame completes, if any.
    fn complete(&mut self, header: Header, payload: BytesMut) -> Result<Option<Message>, Error> {
        let message = match header.opcode {
            frame::PING => Message::Ping(payload.freeze()),
            frame::PONG => Message::Pong(payload.freeze()),
            frame::CLOSE => Message::Close(close_frame(payload)?),
            frame::CONTINUATION => {
                // `check` lets a continuation through only after a message began.
                let Some((text, mut partial)) = self.partial.take() else {
                    return Err(ProtocolError::UnexpectedContinueFrame.into());
                };
                partial.extend_from_slice(&payload);
                if !header.fin {
                    self.partial = Some((text, partial));
                    return Ok(None);
                }
                data_message(text, partial)?
            }
            opcode => {
                let text = opcode == frame::TEXT;
                if !header.fin {
                    self.partial = Some((text, payload));
                    return Ok(None);
                }
                data_message(text, payload)?
            }
        };
        Ok(Some(message))
    }
}

fn data_message(text: bool, payload: BytesMut) -> Result<Message, Error> {
    let payload = payload.freeze();
    Ok(if text {
        Message::Text(Utf8Bytes::try_from(payload)?)
    } else {
        Message::Binary(payload)
    })
}

/// A close frame's code and reason (RFC 6455, 5.5.1). A code no endpoint may send
/// reads as 1002, as tungstenite reads it, so that the echo names the violation.
fn close_frame(payload: BytesMut) -> Result<Option<CloseFrame>, Error> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::InvalidCloseSequence.into()),
        _ => {
            let payload = payload.freeze();
            let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
            let reason = Utf8Bytes::try_from(payload.slice(2..))?;
            Ok(Some(if code.is_allowed() {
                CloseFrame { code, reason }
            } else {
                CloseFrame {
                    code: CloseCode::Protocol,
                    reason: Utf8Bytes::from_static("Protocol violation"),
                }
            }))
        }
    }
}
