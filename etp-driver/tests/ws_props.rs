//! Property: whatever the fragmentation, the masks and the sizes of the reads, the
//! server's WebSocket stream hands out exactly the messages the client sent, control
//! frames between fragments first, and ends the close handshake with its echo.

use std::pin::Pin;
use std::task::Poll;

use etp_driver::__fuzz::framing::{client_frame, poll_once, server_stream};
use futures_util::Stream;
use proptest::collection::vec;
use proptest::prelude::*;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, Utf8Bytes};

/// A message to send: text or binary, its payload, how many fragments, and whether a
/// ping goes between its first and second fragment.
fn message() -> impl Strategy<Value = (bool, Vec<u8>, usize, bool)> {
    (
        any::<bool>(),
        vec(any::<u8>(), 0..300),
        1usize..5,
        any::<bool>(),
    )
}

proptest! {
    #[test]
    fn messages_come_out_as_sent_whatever_the_fragments_and_reads(
        messages in vec(message(), 0..10),
        chunk in 1usize..100,
        mask in any::<[u8; 4]>(),
    ) {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for (text, payload, fragments, ping) in messages {
            let payload = if text {
                String::from_utf8_lossy(&payload).into_owned().into_bytes()
            } else {
                payload
            };
            let opcode = if text { 0x1 } else { 0x2 };
            let cuts: Vec<usize> = (0..=fragments).map(|i| payload.len() * i / fragments).collect();
            for (i, bounds) in cuts.windows(2).enumerate() {
                let fin = i + 1 == fragments;
                let op = if i == 0 { opcode } else { 0x0 };
                input.extend(client_frame(fin, op, &payload[bounds[0]..bounds[1]], mask));
                if i == 0 && ping && !fin {
                    input.extend(client_frame(true, 0x9, b"p", mask));
                    expected.push(Message::Ping(b"p".to_vec().into()));
                }
            }
            expected.push(if text {
                Message::Text(Utf8Bytes::try_from(payload).expect("lossy text is UTF-8"))
            } else {
                Message::Binary(payload.into())
            });
        }
        input.extend(client_frame(true, 0x8, &1000u16.to_be_bytes(), mask));
        expected.push(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })));

        let mut ws = server_stream(input, chunk, 1 << 20);
        let mut received = Vec::new();
        loop {
            let Poll::Ready(next) = poll_once(|cx| Pin::new(&mut ws).poll_next(cx)) else {
                panic!("the stream waits on an ended socket");
            };
            match next {
                None => break,
                Some(Ok(message)) => received.push(message),
                Some(Err(err)) => panic!("{err} after {} messages", received.len()),
            }
        }
        prop_assert_eq!(received, expected);
        prop_assert!(ws.get_ref().written.ends_with(&[0x88, 2, 0x03, 0xe8]), "the echo");
    }
}
