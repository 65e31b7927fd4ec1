//! The server stream against hand-built client frames, over an in-memory socket.

use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tungstenite::error::{CapacityError, Error, ProtocolError};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data};
use tungstenite::{Message, Utf8Bytes};

use super::WsStream;
use crate::__fuzz::framing::{self, MemTransport, poll_once, server_stream};
use crate::ConnConfig;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as a client sends it: masked.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    framing::client_frame(fin, opcode, payload, MASK)
}

fn text(s: &str) -> Message {
    Message::Text(Utf8Bytes::from(s))
}

fn next(ws: &mut WsStream<MemTransport>) -> Option<Result<Message, Error>> {
    match poll_once(|cx| Pin::new(&mut *ws).poll_next(cx)) {
        Poll::Ready(next) => next,
        Poll::Pending => panic!("the stream is waiting for more input"),
    }
}

fn message(ws: &mut WsStream<MemTransport>) -> Message {
    match next(ws) {
        Some(Ok(message)) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn error(ws: &mut WsStream<MemTransport>) -> Error {
    match next(ws) {
        Some(Err(err)) => err,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn send(ws: &mut WsStream<MemTransport>, message: Message) -> Result<(), Error> {
    Pin::new(&mut *ws).start_send(message)
}

fn flush(ws: &mut WsStream<MemTransport>) {
    let flushed = poll_once(|cx| Pin::new(&mut *ws).poll_flush(cx));
    assert!(matches!(flushed, Poll::Ready(Ok(()))), "{flushed:?}");
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn text_and_binary_messages_are_read_whatever_the_reads_return() {
    let input = concat(&[
        client_frame(true, 0x1, "héllo".as_bytes()),
        client_frame(true, 0x2, &[0, 1, 2, 255]),
        client_frame(true, 0x2, &[7; 300]),
        client_frame(true, 0x1, b""),
    ]);
    for chunk in [1, 2, 5, 64, 4096] {
        let mut ws = server_stream(input.clone(), chunk, 1 << 20);
        assert_eq!(message(&mut ws), text("héllo"), "chunk {chunk}");
        assert_eq!(
            message(&mut ws),
            Message::Binary(Bytes::from_static(&[0, 1, 2, 255]))
        );
        assert_eq!(message(&mut ws), Message::Binary(vec![7; 300].into()));
        assert_eq!(message(&mut ws), text(""));
        assert!(matches!(
            error(&mut ws),
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        ));
        assert!(next(&mut ws).is_none(), "nothing after the error");
    }
}

#[test]
fn bytes_received_with_the_upgrade_are_read_first() {
    let first = client_frame(true, 0x1, b"first");
    let transport = MemTransport {
        input: client_frame(true, 0x1, b"second"),
        chunk: 64,
        ..MemTransport::default()
    };
    let mut ws = WsStream::server(transport, &first, &ConnConfig::default());
    assert_eq!(message(&mut ws), text("first"));
    assert_eq!(message(&mut ws), text("second"));
}

#[test]
fn fragments_are_joined_and_control_frames_between_them_go_first() {
    // "é" is split between two fragments: UTF-8 is checked on the whole message.
    let e = "é".as_bytes();
    let input = concat(&[
        client_frame(false, 0x1, &[b'a', e[0]]),
        client_frame(true, 0x9, b"ping"),
        client_frame(false, 0x0, &[e[1], b'b']),
        client_frame(true, 0x0, b"c"),
    ]);
    let mut ws = server_stream(input, 3, 1 << 20);
    assert_eq!(message(&mut ws), Message::Ping(Bytes::from_static(b"ping")));
    assert_eq!(message(&mut ws), text("aébc"));
}

#[test]
fn frames_out_of_order_end_the_stream() {
    let mut ws = server_stream(client_frame(true, 0x0, b"x"), 64, 100);
    assert!(matches!(
        error(&mut ws),
        Error::Protocol(ProtocolError::UnexpectedContinueFrame)
    ));
    let input = concat(&[
        client_frame(false, 0x2, b"x"),
        client_frame(true, 0x1, b"y"),
    ]);
    let mut ws = server_stream(input, 64, 100);
    assert!(matches!(
        error(&mut ws),
        Error::Protocol(ProtocolError::ExpectedFragment(Data::Text))
    ));
}

#[test]
fn an_unmasked_frame_ends_the_stream() {
    let mut ws = server_stream(vec![0x81, 0x01, b'x'], 64, 100);
    assert!(matches!(
        error(&mut ws),
        Error::Protocol(ProtocolError::UnmaskedFrameFromClient)
    ));
}

#[test]
fn text_that_is_not_utf8_ends_the_stream() {
    let mut ws = server_stream(client_frame(true, 0x1, b"a\xffb"), 64, 100);
    assert!(matches!(error(&mut ws), Error::Utf8(_)));
}

#[test]
fn a_message_at_the_read_limit_is_read_and_one_byte_more_is_refused_from_its_header() {
    let limit = 200;
    let mut ws = server_stream(client_frame(true, 0x2, &[1; 200]), 7, limit);
    assert_eq!(message(&mut ws).len(), limit);
    // Only the header of the frame one byte over: refused before its payload arrives.
    let over = client_frame(true, 0x2, &[1; 201]);
    let mut ws = server_stream(over[..8].to_vec(), 64, limit);
    ws.get_mut().open = true;
    assert!(matches!(
        error(&mut ws),
        Error::Capacity(CapacityError::MessageTooLong {
            size: 201,
            max_size: 200
        })
    ));
}

#[test]
fn the_read_limit_counts_every_fragment_of_a_message() {
    let limit = 200;
    let at = concat(&[
        client_frame(false, 0x2, &[1; 150]),
        client_frame(true, 0x0, &[2; 50]),
    ]);
    let mut ws = server_stream(at, 64, limit);
    assert_eq!(message(&mut ws).len(), limit);
    let over = concat(&[
        client_frame(false, 0x2, &[1; 150]),
        client_frame(true, 0x0, &[2; 51]),
    ]);
    let mut ws = server_stream(over, 64, limit);
    assert!(matches!(
        error(&mut ws),
        Error::Capacity(CapacityError::MessageTooLong {
            size: 201,
            max_size: 200
        })
    ));
}

#[test]
fn control_frames_are_at_most_125_bytes_and_never_fragmented() {
    let mut ws = server_stream(client_frame(true, 0x9, &[1; 125]), 64, 1000);
    assert_eq!(message(&mut ws), Message::Ping(vec![1; 125].into()));
    let mut ws = server_stream(client_frame(true, 0x9, &[1; 126]), 64, 1000);
    assert!(matches!(
        error(&mut ws),
        Error::Protocol(ProtocolError::ControlFrameTooBig)
    ));
    let mut ws = server_stream(client_frame(false, 0xA, b""), 64, 1000);
    assert!(matches!(
        error(&mut ws),
        Error::Protocol(ProtocolError::FragmentedControlFrame)
    ));
}

#[test]
fn a_ping_is_answered_at_the_next_flush_and_only_the_latest() {
    let input = concat(&[
        client_frame(true, 0x9, b"one"),
        client_frame(true, 0x9, b"two"),
    ]);
    let mut ws = server_stream(input, 64, 1000);
    message(&mut ws);
    message(&mut ws);
    assert!(ws.get_mut().written.is_empty(), "nothing before the flush");
    flush(&mut ws);
    assert_eq!(ws.get_mut().written, b"\x8a\x03two");
}

#[test]
fn the_peers_close_is_echoed_and_ends_the_stream_once_the_echo_is_out() {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    let input = concat(&[
        client_frame(true, 0x8, &payload),
        client_frame(true, 0x1, b"late"),
    ]);
    let mut ws = server_stream(input, 64, 1000);
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    assert_eq!(message(&mut ws), Message::Close(Some(close)));
    // Frames queued before the close was seen are dropped: the peer reads no more.
    assert!(send(&mut ws, text("reply")).is_ok());
    ws.get_mut().blocked = true;
    assert!(
        poll_once(|cx| Pin::new(&mut ws).poll_next(cx)).is_pending(),
        "echo not out"
    );
    ws.get_mut().blocked = false;
    assert!(
        next(&mut ws).is_none(),
        "ended, and the frame after the close unread"
    );
    assert_eq!(ws.get_mut().written, b"\x88\x05\x03\xe8bye");
}

#[test]
fn a_close_code_no_endpoint_may_send_reads_and_is_echoed_as_1002() {
    let mut ws = server_stream(client_frame(true, 0x8, &1005u16.to_be_bytes()), 64, 1000);
    let Message::Close(Some(frame)) = message(&mut ws) else {
        panic!("a close frame");
    };
    assert_eq!(frame.code, CloseCode::Protocol);
    assert!(next(&mut ws).is_none());
    assert_eq!(ws.get_mut().written[..4], [0x88, 20, 0x03, 0xea]);
}

#[test]
fn a_close_of_one_byte_or_with_a_reason_that_is_not_utf8_ends_the_stream() {
    let mut ws = server_stream(client_frame(true, 0x8, &[3]), 64, 1000);
    assert!(matches!(
        error(&mut ws),
        Error::Protocol(ProtocolError::InvalidCloseSequence)
    ));
    let mut ws = server_stream(client_frame(true, 0x8, &[3, 232, 0xff]), 64, 1000);
    assert!(matches!(error(&mut ws), Error::Utf8(_)));
}

#[test]
fn after_our_close_messages_are_read_until_the_answer_and_nothing_more_is_sent() {
    let close = || CloseFrame {
        code: CloseCode::Away,
        reason: "going".into(),
    };
    // The driver sends `Message::Close`; a close built as a frame closes as well.
    for our_close in [
        Message::Close(Some(close())),
        Message::Frame(Frame::close(Some(close()))),
    ] {
        let input = concat(&[
            client_frame(true, 0x1, b"in flight"),
            client_frame(true, 0x8, b""),
        ]);
        let mut ws = server_stream(input, 64, 1000);
        send(&mut ws, our_close).unwrap();
        assert!(matches!(
            send(&mut ws, text("late")),
            Err(Error::Protocol(ProtocolError::SendAfterClosing))
        ));
        flush(&mut ws);
        assert_eq!(ws.get_mut().written, b"\x88\x07\x03\xe9going");
        assert_eq!(message(&mut ws), text("in flight"));
        assert_eq!(message(&mut ws), Message::Close(None));
        assert!(next(&mut ws).is_none());
        assert_eq!(ws.get_mut().written.len(), 9, "no second close");
    }
}

#[test]
fn after_a_read_error_a_close_can_still_tell_the_peer_why() {
    let mut ws = server_stream(vec![0x81, 0x01, b'x'], 64, 100);
    error(&mut ws);
    let close = CloseFrame {
        code: CloseCode::Protocol,
        reason: "".into(),
    };
    send(&mut ws, Message::Close(Some(close))).unwrap();
    flush(&mut ws);
    assert_eq!(ws.get_mut().written, b"\x88\x02\x03\xea");
}

#[test]
fn frames_are_written_with_the_shortest_length_encoding() {
    let mut ws = server_stream(Vec::new(), 64, 1000);
    for (len, header) in [
        (0, vec![0x82, 0]),
        (125, vec![0x82, 125]),
        (126, vec![0x82, 126, 0, 126]),
        (65_535, vec![0x82, 126, 0xff, 0xff]),
        (65_536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        ws.get_mut().written.clear();
        send(&mut ws, Message::Binary(vec![9; len].into())).unwrap();
        flush(&mut ws);
        assert_eq!(
            ws.get_mut().written[..header.len()],
            header[..],
            "length {len}"
        );
        assert_eq!(ws.get_mut().written.len(), header.len() + len);
    }
    ws.get_mut().written.clear();
    send(&mut ws, text("hi")).unwrap();
    let frame = crate::message::EncodedFrame::new(Bytes::from_static(b"ok")).into_message();
    send(&mut ws, frame).unwrap();
    send(&mut ws, Message::Ping(Bytes::new())).unwrap();
    flush(&mut ws);
    assert_eq!(ws.get_mut().written, b"\x81\x02hi\x81\x02ok\x89\x00");
    assert!(matches!(
        send(&mut ws, Message::Ping(vec![0; 126].into())),
        Err(Error::Protocol(ProtocolError::ControlFrameTooBig))
    ));
    let mut fragmented_ping = Frame::ping(Bytes::new());
    fragmented_ping.header_mut().is_final = false;
    assert!(matches!(
        send(&mut ws, Message::Frame(fragmented_ping)),
        Err(Error::Protocol(ProtocolError::FragmentedControlFrame))
    ));
}

#[test]
fn a_full_write_buffer_holds_new_messages_back_until_the_socket_takes_it() {
    let mut ws = server_stream(Vec::new(), 64, 1000);
    ws.get_mut().blocked = true;
    let ready = |ws: &mut WsStream<MemTransport>| poll_once(|cx| Pin::new(&mut *ws).poll_ready(cx));
    send(&mut ws, Message::Binary(vec![0; 8 * 1024 - 5].into())).unwrap();
    assert!(
        ready(&mut ws).is_ready(),
        "under the bound: 8 KiB - 1 buffered"
    );
    send(&mut ws, Message::Binary(Bytes::new())).unwrap();
    assert!(
        ready(&mut ws).is_pending(),
        "at the bound: 8 KiB + 1 buffered"
    );
    ws.get_mut().blocked = false;
    assert!(matches!(ready(&mut ws), Poll::Ready(Ok(()))));
    assert_eq!(ws.get_mut().written.len(), 8 * 1024 + 1);
}
