//! PROTOCOL.md section 5 (sizes, 1009, 1007, 1002) with a hand-written WebSocket
//! client, so that the exact message sizes and the close frames are ours to check; on
//! every runtime.

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{Conn, DisconnectReason, Event, Server};

/// A server whose `size` handler answers with the length of the data it got.
fn size_server<R: TestRuntime>(limit: Option<Option<usize>>) -> (TestServer<R>, Hooks) {
    let (builder, hooks) = hooked(Server::<R>::builder());
    let mut builder = builder.on("size", |_conn: Conn, event: Event| async move {
        event.data().len().to_string()
    });
    if let Some(limit) = limit {
        builder = builder.read_limit(limit);
    }
    (TestServer::start(builder.build().unwrap()), hooks)
}

/// `size||1||` followed by filler, `total` bytes in all.
fn message_of(total: usize) -> Vec<u8> {
    let mut message = b"size||1||".to_vec();
    assert!(total >= message.len());
    message.resize(total, b'x');
    message
}

/// Sends a message of `total` bytes and expects it handled (the ack carries the data
/// length).
async fn expect_accepted<R: TestRuntime>(test: &TestServer<R>, hooks: &mut Hooks, total: usize) {
    let raw = RawSocket::connect(test.addr, "/ws").await;
    let message = message_of(total);
    let RawSocket {
        mut reader,
        mut writer,
        ..
    } = raw;
    // Written from its own task so that a server that stops reading cannot wedge us.
    let writing = R::spawn_task(async move {
        let _ = writer.send(OP_TEXT, &message).await;
        writer
    });
    let reply = reader.frame().await.expect("a reply");
    assert_eq!(reply.opcode, OP_TEXT);
    assert_eq!(reply.text(), format!("__ack_size||1||{}", total - 9));
    let mut writer = within("write", writing).await;
    writer
        .send(OP_CLOSE, &close_payload(1000, ""))
        .await
        .unwrap();
    let echo = reader.frame().await.expect("close echo");
    assert_eq!(echo.close(), (Some(1000), String::new()));
    let (_, reason) = hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
}

/// Sends a message of `total` bytes and expects a 1009 close with Go's reason.
async fn expect_refused<R: TestRuntime>(
    test: &TestServer<R>,
    hooks: &mut Hooks,
    total: usize,
    limit: usize,
) {
    let raw = RawSocket::connect(test.addr, "/ws").await;
    let RawSocket {
        mut reader,
        mut writer,
        ..
    } = raw;
    let message = message_of(total);
    // The server stops reading mid-message: the rest of our write may fail.
    let writing = R::spawn_task(async move {
        let _ = writer.send(OP_TEXT, &message).await;
        writer
    });
    let (before, close) = reader.until_close().await;
    assert!(before.is_empty(), "unexpected frames {before:?}");
    assert_eq!(
        close.close(),
        (Some(1009), format!("read limited at {} bytes", limit + 1))
    );
    let (_conn, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::ReadLimit { limit: l } if l == limit),
        "{reason:?}"
    );
    assert_eq!(
        reason.to_string(),
        format!("read limited at {} bytes", limit + 1)
    );
    assert!(!reason.is_normal());
    let _ = within("writer", writing).await;
}

async fn the_default_read_limit_accepts_exactly_one_mebibyte<R: TestRuntime>() {
    let (test, mut hooks) = size_server::<R>(None);
    expect_accepted(&test, &mut hooks, 1_048_576).await;
    test.stop().await;
}

async fn one_byte_over_the_default_read_limit_closes_with_1009<R: TestRuntime>() {
    let (test, mut hooks) = size_server::<R>(None);
    expect_refused(&test, &mut hooks, 1_048_577, 1_048_576).await;
    test.stop().await;
}

async fn a_custom_read_limit_accepts_its_size_and_refuses_one_more<R: TestRuntime>() {
    let (test, mut hooks) = size_server::<R>(Some(Some(100)));
    expect_accepted(&test, &mut hooks, 100).await;
    expect_refused(&test, &mut hooks, 101, 100).await;
    // Other connections are not affected.
    expect_accepted(&test, &mut hooks, 100).await;
    test.stop().await;
}

async fn a_fragmented_message_over_the_limit_closes_with_1009<R: TestRuntime>() {
    let (test, mut hooks) = size_server::<R>(Some(Some(100)));
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    let message = message_of(120);
    raw.writer
        .send_frame(false, OP_TEXT, &message[..60], true)
        .await
        .unwrap();
    let _ = raw
        .writer
        .send_frame(true, OP_CONT, &message[60..], true)
        .await;
    let (_, close) = raw.reader.until_close().await;
    assert_eq!(
        close.close(),
        (Some(1009), "read limited at 101 bytes".into())
    );
    let (_, reason) = hooks.disconnects.next().await;
    assert!(matches!(reason, DisconnectReason::ReadLimit { limit: 100 }));
    test.stop().await;
}

async fn a_fragmented_message_within_the_limit_is_one_event<R: TestRuntime>() {
    let (test, _hooks) = size_server::<R>(Some(Some(100)));
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    let message = message_of(100);
    raw.writer
        .send_frame(false, OP_BINARY, &message[..50], true)
        .await
        .unwrap();
    raw.writer
        .send_frame(true, OP_CONT, &message[50..], true)
        .await
        .unwrap();
    let reply = raw.frame().await.unwrap();
    assert_eq!(reply.text(), "__ack_size||1||91");
    drop(raw);
    test.stop().await;
}

async fn no_read_limit_accepts_two_mebibytes<R: TestRuntime>() {
    let (test, mut hooks) = size_server::<R>(Some(None));
    expect_accepted(&test, &mut hooks, 2 << 20).await;
    test.stop().await;
}

async fn invalid_utf8_in_a_text_message_closes_with_1007<R: TestRuntime>() {
    let (test, mut hooks) = size_server::<R>(None);
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    raw.send(OP_TEXT, b"size||1||\xff\xfe").await;
    let (before, close) = raw.reader.until_close().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(close.close().0, Some(1007));
    let (_, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::WebSocket(_)),
        "{reason:?}"
    );
    assert!(!reason.is_normal());
    test.stop().await;
}

async fn the_same_bytes_in_a_binary_message_are_accepted<R: TestRuntime>() {
    let (test, _hooks) = size_server::<R>(None);
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    raw.send(OP_BINARY, b"size||1||\xff\xfe").await;
    assert_eq!(raw.frame().await.unwrap().text(), "__ack_size||1||2");
    drop(raw);
    test.stop().await;
}

async fn an_unmasked_client_frame_closes_with_1002<R: TestRuntime>() {
    let (test, mut hooks) = size_server::<R>(None);
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    raw.writer
        .send_frame(true, OP_TEXT, b"size||1||x", false)
        .await
        .unwrap();
    let (before, close) = raw.reader.until_close().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(close.close().0, Some(1002));
    let (_, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::WebSocket(_)),
        "{reason:?}"
    );
    test.stop().await;
}

async fn a_reserved_opcode_closes_with_1002<R: TestRuntime>() {
    let (test, mut hooks) = size_server::<R>(None);
    let mut raw = RawSocket::connect(test.addr, "/ws").await;
    raw.send(0x3, b"what is this").await;
    let (_, close) = raw.reader.until_close().await;
    assert_eq!(close.close().0, Some(1002));
    let (_, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(reason, DisconnectReason::WebSocket(_)),
        "{reason:?}"
    );
    test.stop().await;
}

behaviour_suite! {
    the_default_read_limit_accepts_exactly_one_mebibyte,
    one_byte_over_the_default_read_limit_closes_with_1009,
    a_custom_read_limit_accepts_its_size_and_refuses_one_more,
    a_fragmented_message_over_the_limit_closes_with_1009,
    a_fragmented_message_within_the_limit_is_one_event,
    no_read_limit_accepts_two_mebibytes,
    invalid_utf8_in_a_text_message_closes_with_1007,
    the_same_bytes_in_a_binary_message_are_accepted,
    an_unmasked_client_frame_closes_with_1002,
    a_reserved_opcode_closes_with_1002,
}
