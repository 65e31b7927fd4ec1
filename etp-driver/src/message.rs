//! How an encoded etp frame becomes a WebSocket message.

use bytes::Bytes;
use tungstenite::{Message, Utf8Bytes};

/// An encoded frame with its WebSocket message kind decided: text when it is UTF-8,
/// as Go sends, binary otherwise (Go reads both). A broadcast decides once for all of
/// its members rather than each member checking the same bytes again.
#[derive(Clone, Debug)]
pub(crate) enum EncodedFrame {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl EncodedFrame {
    // Inlined: on the reply path a call here cost a tenth of the UTF-8 check itself.
    #[inline(always)]
    pub(crate) fn new(frame: Bytes) -> Self {
        match Utf8Bytes::try_from(frame.clone()) {
            Ok(text) => Self::Text(text),
            Err(_) => Self::Binary(frame),
        }
    }

    #[inline]
    pub(crate) fn bytes(&self) -> &Bytes {
        match self {
            Self::Text(text) => text.as_ref(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// True when `frame` is this frame's own memory (not merely equal bytes): then it
    /// needs no second look.
    #[inline]
    pub(crate) fn is(&self, frame: &Bytes) -> bool {
        let own = self.bytes();
        own.as_ptr() == frame.as_ptr() && own.len() == frame.len()
    }

    #[inline]
    pub(crate) fn into_message(self) -> Message {
        match self {
            Self::Text(text) => Message::Text(text),
            Self::Binary(bytes) => Message::Binary(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_frames_go_as_text_and_others_as_binary() {
        let text = EncodedFrame::new(Bytes::from_static("é||0||x".as_bytes()));
        assert!(matches!(text.into_message(), Message::Text(t) if t == "é||0||x"));
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
}
