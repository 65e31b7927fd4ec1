//! How an encoded etp frame becomes a WebSocket message.

use bytes::Bytes;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::{Message, Utf8Bytes};

/// An encoded frame with its WebSocket message kind decided: text when it is UTF-8,
/// as Go sends, binary otherwise (Go reads both). A broadcast decides once for all of
/// its members rather than each member checking the same bytes again.
#[derive(Clone, Debug)]
pub(crate) struct EncodedFrame {
    bytes: Bytes,
    text: bool,
}

impl EncodedFrame {
    // Inlined: on the reply path a call here cost a tenth of the UTF-8 check itself.
    #[inline(always)]
    pub(crate) fn new(frame: Bytes) -> Self {
        Self {
            text: std::str::from_utf8(&frame).is_ok(),
            bytes: frame,
        }
    }

    #[inline]
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// True when `frame` is this frame's own memory (not merely equal bytes): then it
    /// needs no second look.
    #[inline]
    pub(crate) fn is(&self, frame: &Bytes) -> bool {
        self.bytes.as_ptr() == frame.as_ptr() && self.bytes.len() == frame.len()
    }

    /// The message to send. Text goes as a ready text frame: `Message::Text` would
    /// take a `Utf8Bytes`, whose only safe constructor checks the bytes again (and
    /// needs a second reference to fall back to binary).
    #[inline]
    pub(crate) fn into_message(self) -> Message {
        if self.text {
            Message::Frame(Frame::message(self.bytes, OpCode::Data(Data::Text), true))
        } else {
            Message::Binary(self.bytes)
        }
    }
}

/// The bytes of `message` that count against the write bounds and in the metrics:
/// the payload, as for every other kind of message.
#[inline]
pub(crate) fn payload_len(message: &Message) -> usize {
    match message {
        Message::Frame(frame) => frame.payload().len(),
        other => other.len(),
    }
}

/// A message the driver sent, as the peer's WebSocket reads it back.
///
/// The driver sends text as a ready, final text frame (`Message::Frame`), which
/// tungstenite writes like `Message::Text`; this turns such a frame back into
/// `Message::Text` and returns every other message as it is. For transports that hand
/// messages over in memory instead of writing them (tests, fuzzing).
pub fn as_received(message: Message) -> Message {
    let Message::Frame(frame) = message else {
        return message;
    };
    let header = frame.header();
    if header.opcode != OpCode::Data(Data::Text) || !header.is_final {
        return Message::Frame(frame);
    }
    let payload = frame.into_payload();
    match Utf8Bytes::try_from(payload.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Frame(Frame::message(payload, OpCode::Data(Data::Text), true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_frames_go_as_text_and_others_as_binary() {
        let text = EncodedFrame::new(Bytes::from_static("é||0||x".as_bytes()));
        let Message::Frame(frame) = text.into_message() else {
            panic!("text goes as a ready frame");
        };
        assert_eq!(frame.header().opcode, OpCode::Data(Data::Text));
        assert!(frame.header().is_final);
        assert_eq!(frame.payload()[..], "é||0||x".as_bytes()[..]);
        assert_eq!(payload_len(&Message::Frame(frame)), "é||0||x".len());
        let binary = EncodedFrame::new(Bytes::from_static(b"e||0||\xff"));
        assert!(matches!(binary.into_message(), Message::Binary(b) if b[..] == b"e||0||\xff"[..]));
    }

    #[test]
    fn only_the_same_memory_counts_as_the_same_frame() {
        let frame = Bytes::from(b"e||0||x".to_vec());
        let encoded = EncodedFrame::new(frame.clone());
        assert!(encoded.is(&frame));
        assert!(
            !encoded.is(&Bytes::from(b"e||0||x".to_vec())),
            "equal bytes elsewhere"
        );
        assert!(!encoded.is(&frame.slice(..3)), "a prefix of it");
    }

    #[test]
    fn as_received_reads_ready_text_frames_back_as_text_and_leaves_the_rest() {
        let sent = EncodedFrame::new(Bytes::from_static(b"e||0||x")).into_message();
        assert!(matches!(as_received(sent), Message::Text(t) if t == "e||0||x"));
        let binary = Message::Binary(Bytes::from_static(b"\xff"));
        assert_eq!(as_received(binary.clone()), binary);
        let not_utf8 = Frame::message(Bytes::from_static(b"\xff"), OpCode::Data(Data::Text), true);
        assert!(matches!(
            as_received(Message::Frame(not_utf8)),
            Message::Frame(_)
        ));
        let continued = Frame::message(Bytes::from_static(b"e"), OpCode::Data(Data::Text), false);
        assert!(matches!(
            as_received(Message::Frame(continued)),
            Message::Frame(_)
        ));
    }
}
