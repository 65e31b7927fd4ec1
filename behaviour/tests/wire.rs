//! PROTOCOL.md sections 2 to 4 (and 8.9, 8.10) over real sockets, on every runtime:
//! the exact bytes our server and client put on the wire, checked by raw peers.

use bytes::Bytes;
use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::proto::NameError;
use etp_driver::{AckError, BuildError, Client, Conn, EmitError, Error, Event, Server};

/// A server whose `echo` handler answers with the data it got, and `empty` with nothing.
fn echo_server<R: TestRuntime>(js: bool) -> (TestServer<R>, Hooks) {
    let (builder, hooks) = hooked(Server::<R>::builder());
    let server = builder
        .js_compatible(js)
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .on("empty", |_conn: Conn, _event: Event| async {})
        .build()
        .expect("build");
    (TestServer::start(server), hooks)
}

async fn an_emit_with_ack_round_trips_between_our_client_and_server<R: TestRuntime>() {
    let (test, _hooks) = echo_server::<R>(false);
    let client = Client::<R>::builder().build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    let answer = within("ack", client.emit_with_ack("echo", "ping me"))
        .await
        .unwrap();
    assert_eq!(answer, "ping me");
    let empty = within("ack", client.emit_with_ack("empty", "x"))
        .await
        .unwrap();
    assert!(empty.is_empty());
    client.close();
    test.stop().await;
}

async fn the_server_replies_with_the_exact_go_frames<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>(false);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    // Reply with data: `__ack_<name>||<id>||<data>`.
    assert_eq!(peer.ask("echo||1||x").await, "__ack_echo||1||x");
    // Reply without data: two parts only (Go's form).
    assert_eq!(peer.ask("empty||5||whatever").await, "__ack_empty||5");
    assert_eq!(peer.ask("echo||6").await, "__ack_echo||6");
    assert_eq!(peer.ask("echo||7||").await, "__ack_echo||7");
    // Data may contain the separator: the third part is the raw remainder.
    assert_eq!(peer.ask("echo||8||a||b||c").await, "__ack_echo||8||a||b||c");
    assert!(hooks.errors.try_next().is_none());
    test.stop_with(&mut peer).await;
}

async fn the_server_emits_go_frames_and_reads_raw_replies<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder.build().unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let conn = hooks.connects.next().await;

    conn.emit("ev", "").unwrap();
    assert_eq!(peer.next_text().await, "ev||0");
    conn.emit("ev", Bytes::new()).unwrap();
    assert_eq!(peer.next_text().await, "ev||0");
    conn.emit("ev", "data").unwrap();
    assert_eq!(peer.next_text().await, "ev||0||data");

    // The server's own request: ids 1, 2, ... and the raw reply resolves it.
    let asking = R::spawn_task({
        let conn = conn.clone();
        async move { conn.emit_with_ack("q", "d").await }
    });
    assert_eq!(peer.next_text().await, "q||1||d");
    peer.send_text("__ack_q||1||answer").await;
    let answer = within("ack", asking).await.unwrap();
    assert_eq!(answer, "answer");

    // A 2-part reply resolves with empty data.
    let asking = R::spawn_task({
        let conn = conn.clone();
        async move { conn.emit_with_ack("q", "").await }
    });
    assert_eq!(peer.next_text().await, "q||2");
    peer.send_text("__ack_q||2").await;
    assert!(within("ack", asking).await.unwrap().is_empty());
    test.stop_with(&mut peer).await;
}

async fn a_reply_is_matched_by_id_only_not_by_name<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let test = TestServer::start(builder.build().unwrap());
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let conn = hooks.connects.next().await;
    let asking = R::spawn_task(async move { conn.emit_with_ack("question", "?").await });
    assert_eq!(peer.next_text().await, "question||1||?");
    peer.send_text("__ack_something_else||1||by id").await;
    assert_eq!(within("ack", asking).await.unwrap(), "by id");
    test.stop_with(&mut peer).await;
}

async fn js_compatible_always_writes_the_third_separator<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>(true);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let conn = hooks.connects.next().await;
    assert_eq!(peer.ask("empty||5").await, "__ack_empty||5||");
    assert_eq!(peer.ask("echo||6||x").await, "__ack_echo||6||x");
    conn.emit("ev", "").unwrap();
    assert_eq!(peer.next_text().await, "ev||0||");
    let asking = R::spawn_task(async move { conn.emit_with_ack("q", "").await });
    assert_eq!(peer.next_text().await, "q||1||");
    peer.send_text("__ack_q||1||").await;
    assert!(within("ack", asking).await.unwrap().is_empty());

    // Broadcasts use the server's encoding too.
    let report = test
        .server
        .rooms()
        .broadcast_all("news", b"", None)
        .unwrap();
    assert_eq!(report.queued, 1);
    assert_eq!(peer.next_text().await, "news||0||");
    test.stop_with(&mut peer).await;
}

async fn the_server_answers_every_ack_request_exactly_once_even_without_a_handler<
    R: TestRuntime,
>() {
    let (test, mut hooks) = echo_server::<R>(false);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.send_text("nobody||4||data").await;
    peer.send_text("nobody_either||0||no ack wanted").await;
    peer.send_text("probe||6").await;
    // In order, each once: the request without a handler, nothing for ack id 0, then
    // the probe.
    assert_eq!(peer.next_text().await, "__ack_nobody||4");
    assert_eq!(peer.next_text().await, "__ack_probe||6");
    // A handled request is answered once too.
    assert_eq!(peer.ask("echo||7||x").await, "__ack_echo||7||x");
    assert_eq!(peer.ask("probe||8").await, "__ack_probe||8");
    assert!(hooks.errors.try_next().is_none());
    test.stop_with(&mut peer).await;
}

async fn the_fallback_handler_answers_unknown_events<R: TestRuntime>() {
    let server = Server::<R>::builder()
        .on_unknown_event(|_conn: Conn, event: Event| async move {
            format!("fallback saw {}", event.name())
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    assert_eq!(
        peer.ask("whatever||3||x").await,
        "__ack_whatever||3||fallback saw whatever"
    );
    test.stop_with(&mut peer).await;
}

async fn ack_ids_follow_go_atoi_and_are_written_back_as_i64<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>(false);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    assert_eq!(peer.ask("echo||-1||neg").await, "__ack_echo||-1||neg");
    assert_eq!(peer.ask("empty||-1").await, "__ack_empty||-1");
    assert_eq!(peer.ask("echo||+9||plus").await, "__ack_echo||9||plus");
    assert_eq!(peer.ask("echo||009||zeros").await, "__ack_echo||9||zeros");
    assert_eq!(
        peer.ask("echo||-9223372036854775808||min").await,
        "__ack_echo||-9223372036854775808||min"
    );
    assert_eq!(
        peer.ask("echo||9223372036854775807||max").await,
        "__ack_echo||9223372036854775807||max"
    );
    // Id 0 (also written -0 or +0) asks for nothing: the probe's reply comes next.
    peer.send_text("echo||-0||nothing").await;
    peer.send_text("echo||+0||nothing").await;
    assert_eq!(peer.ask("empty||1").await, "__ack_empty||1");
    assert!(hooks.errors.try_next().is_none());
    test.stop_with(&mut peer).await;
}

async fn the_handler_tells_a_two_part_frame_from_empty_data<R: TestRuntime>() {
    let (seen_tx, mut seen) = channel();
    let server = Server::<R>::builder()
        .on("ev", move |_conn: Conn, event: Event| {
            let seen_tx = seen_tx.clone();
            async move {
                seen_tx.send((event.has_data(), event.data().to_vec()));
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.ask("ev||1").await;
    assert_eq!(seen.next().await, (false, vec![]));
    peer.ask("ev||2||").await;
    assert_eq!(seen.next().await, (true, vec![]));
    peer.ask("ev||3||d").await;
    assert_eq!(seen.next().await, (true, b"d".to_vec()));
    test.stop_with(&mut peer).await;
}

async fn binary_messages_are_parsed_like_text<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>(false);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.send(Message::binary(b"echo||3||hi".to_vec())).await;
    // Valid UTF-8 goes back as text.
    assert_eq!(peer.next_text().await, "__ack_echo||3||hi");
    peer.send(Message::binary(b"empty||4".to_vec())).await;
    assert_eq!(peer.next_text().await, "__ack_empty||4");
    assert!(hooks.errors.try_next().is_none());
    test.stop_with(&mut peer).await;
}

async fn frames_that_are_not_utf8_go_out_as_binary<R: TestRuntime>() {
    let (test, mut hooks) = echo_server::<R>(false);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let mut request = b"echo||1||".to_vec();
    request.extend_from_slice(&[0xff, 0xfe, 0x00]);
    peer.send(Message::binary(request)).await;
    let mut expected = b"__ack_echo||1||".to_vec();
    expected.extend_from_slice(&[0xff, 0xfe, 0x00]);
    match peer.next().await {
        Some(Message::Binary(data)) => assert_eq!(data, expected),
        other => panic!("expected a binary reply, got {other:?}"),
    }
    // An emit with binary data, too.
    let conn = hooks.connects.next().await;
    conn.emit("bin", vec![0x80]).unwrap();
    match peer.next().await {
        Some(Message::Binary(data)) => assert_eq!(data, b"bin||0||\x80".to_vec()),
        other => panic!("expected a binary frame, got {other:?}"),
    }
    test.stop_with(&mut peer).await;
}

async fn ack_frames_for_unknown_ids_are_dropped_and_never_dispatched<R: TestRuntime>() {
    let (seen_tx, mut seen) = channel::<String>();
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let fallback_tx = seen_tx.clone();
    let server = builder
        .on("ev", move |_conn: Conn, event: Event| {
            let seen_tx = seen_tx.clone();
            async move {
                seen_tx.send(format!("ev:{}", String::from_utf8_lossy(event.data())));
            }
        })
        .on_unknown_event(move |_conn: Conn, event: Event| {
            let fallback_tx = fallback_tx.clone();
            async move {
                fallback_tx.send(format!("fallback:{}", event.name()));
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    // Replies to requests the server never made: unknown id, id 0, an id that asks for
    // an ack, a name that has a handler, and one that the fallback would take.
    peer.send_text("__ack_ev||77||x").await;
    peer.send_text("__ack_ev||0||x").await;
    peer.send_text("__ack_nothing||1").await;
    peer.send_text("__ack_||5||").await;
    // The server reads in order: once this probe is answered, the strays were handled.
    assert_eq!(peer.ask("ev||9||first probe").await, "__ack_ev||9");
    assert_eq!(seen.next().await, "ev:first probe");
    // A late duplicate of a real reply: the first resolves, the second is dropped.
    let conn = hooks.connects.next().await;
    let asking = R::spawn_task({
        let conn = conn.clone();
        async move { conn.emit_with_ack("q", "").await }
    });
    assert_eq!(peer.next_text().await, "q||1");
    peer.send_text("__ack_q||1||first").await;
    peer.send_text("__ack_q||1||second").await;
    assert_eq!(within("ack", asking).await.unwrap(), "first");
    // The probe is the first thing dispatched, and the first reply sent.
    assert_eq!(peer.ask("ev||2||probe").await, "__ack_ev||2");
    assert_eq!(seen.next().await, "ev:probe");
    assert!(seen.try_next().is_none(), "an __ack_ frame was dispatched");
    assert!(
        hooks.errors.try_next().is_none(),
        "an __ack_ frame was reported"
    );
    test.stop_with(&mut peer).await;
}

async fn registering_an_ack_name_makes_build_fail<R: TestRuntime>() {
    let err = Server::<R>::builder()
        .on("__ack_x", |_conn: Conn, _event: Event| async {})
        .build()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            BuildError::InvalidEventName { event, error: NameError::ReservedAckPrefix }
                if event == "__ack_x"
        ),
        "{err:?}"
    );
    let err = Client::<R>::builder()
        .on("__ack_x", |_conn: Conn, _event: Event| async {})
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidEventName { .. }));
    let err = Server::<R>::builder()
        .on("a||b", |_conn: Conn, _event: Event| async {})
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::InvalidEventName {
                error: NameError::ContainsSeparator,
                ..
            }
        ),
        "{err:?}"
    );
}

async fn names_that_cannot_travel_are_refused_at_emit<R: TestRuntime>() {
    let (test, _hooks) = echo_server::<R>(false);
    let client = Client::<R>::builder().build().unwrap();
    within("dial", client.dial(&test.url("/ws"))).await.unwrap();
    assert!(matches!(
        client.emit("a||b", ""),
        Err(EmitError::InvalidName(NameError::ContainsSeparator))
    ));
    assert!(matches!(
        client.emit("__ack_x", ""),
        Err(EmitError::InvalidName(NameError::ReservedAckPrefix))
    ));
    assert!(matches!(
        client.emit_with_ack("a||b", "").await,
        Err(AckError::Emit(EmitError::InvalidName(_)))
    ));
    // A single '|' is an ordinary byte.
    assert_eq!(
        within("ack", client.emit_with_ack("echo", "a|b"))
            .await
            .unwrap(),
        "a|b"
    );
    client.close();
    test.stop().await;
}

async fn the_client_writes_go_frames_to_a_raw_server<R: TestRuntime>() {
    let listener = RawListener::new();
    let url = listener.url();
    let client = Client::<R>::builder().build().unwrap();
    let (accepted, dialed) = futures_util::join!(listener.accept(), client.dial(&url));
    dialed.unwrap();
    let (mut ws, _) = accepted;

    client.emit("ev", "").unwrap();
    assert_eq!(ws.next_text().await, "ev||0");
    client.emit("ev", "data").unwrap();
    assert_eq!(ws.next_text().await, "ev||0||data");

    let asking = R::spawn_task({
        let client = client.clone();
        async move { client.emit_with_ack("ev", "data").await }
    });
    assert_eq!(ws.next_text().await, "ev||1||data");
    ws.send_text("__ack_ev||1||x").await;
    assert_eq!(within("ack", asking).await.unwrap(), "x");

    let asking = R::spawn_task({
        let client = client.clone();
        async move { client.emit_with_ack("ev", "").await }
    });
    assert_eq!(ws.next_text().await, "ev||2");
    ws.send_text("__ack_ev||2").await;
    assert!(within("ack", asking).await.unwrap().is_empty());

    // The client answers the raw server's requests the same way.
    ws.send_text("nobody||-1||x").await;
    assert_eq!(ws.next_text().await, "__ack_nobody||-1");
    client.close();
}

async fn a_js_compatible_client_always_writes_the_third_separator<R: TestRuntime>() {
    let listener = RawListener::new();
    let url = listener.url();
    let client = Client::<R>::builder().js_compatible(true).build().unwrap();
    let (accepted, dialed) = futures_util::join!(listener.accept(), client.dial(&url));
    dialed.unwrap();
    let (mut ws, _) = accepted;
    client.emit("ev", "").unwrap();
    assert_eq!(ws.next_text().await, "ev||0||");
    ws.send_text("nobody||3").await;
    assert_eq!(ws.next_text().await, "__ack_nobody||3||");
    client.close();
}

// ---------------------------------------------------------------------------------
// Malformed frames
// ---------------------------------------------------------------------------------

async fn malformed_frames_reach_on_error_with_go_text_and_the_connection_stays_open<
    R: TestRuntime,
>() {
    let (test, mut hooks) = echo_server::<R>(false);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let conn = hooks.connects.next().await;
    let cases = [
        (
            "no separator",
            "expected format: <eventName>||<ackId>||<eventData>, got: no separator",
        ),
        (
            "",
            "expected format: <eventName>||<ackId>||<eventData>, got: ",
        ),
        (
            "ev|1|x",
            "expected format: <eventName>||<ackId>||<eventData>, got: ev|1|x",
        ),
        (
            "ev||x",
            "parse ackId: strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            "ev||||x",
            "parse ackId: strconv.Atoi: parsing \"\": invalid syntax",
        ),
        (
            "a|||b",
            "parse ackId: strconv.Atoi: parsing \"|b\": invalid syntax",
        ),
        (
            "ev|| 1||x",
            "parse ackId: strconv.Atoi: parsing \" 1\": invalid syntax",
        ),
        (
            "ev||0x1f||x",
            "parse ackId: strconv.Atoi: parsing \"0x1f\": invalid syntax",
        ),
        (
            "ev||99999999999999999999||x",
            "parse ackId: strconv.Atoi: parsing \"99999999999999999999\": value out of range",
        ),
        (
            "ev||9223372036854775808",
            "parse ackId: strconv.Atoi: parsing \"9223372036854775808\": value out of range",
        ),
    ];
    for (i, (frame, expected)) in cases.iter().enumerate() {
        peer.send_text(frame).await;
        let (on, err) = hooks.errors.next().await;
        assert_eq!(on.map(|c| c.id()), Some(conn.id()), "frame {frame:?}");
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
        assert_eq!(err.to_string(), *expected, "frame {frame:?}");
        // The connection is still open and serving.
        let id = i + 1;
        assert_eq!(
            peer.ask(&format!("echo||{id}||ok")).await,
            format!("__ack_echo||{id}||ok")
        );
    }
    assert!(hooks.disconnects.try_next().is_none());
    test.stop_with(&mut peer).await;
}

async fn malformed_frames_without_an_error_hook_do_not_hurt<R: TestRuntime>() {
    let server = Server::<R>::builder()
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    for frame in ["", "x", "a|||b", "ev||1e3", "||", "||||"] {
        peer.send_text(frame).await;
    }
    assert_eq!(peer.ask("echo||1||alive").await, "__ack_echo||1||alive");
    // An empty name is fine: `||5` is the event "" with ack id 5.
    assert_eq!(peer.ask("||5").await, "__ack_||5");
    test.stop_with(&mut peer).await;
}

async fn a_ping_is_answered_with_an_identical_pong<R: TestRuntime>() {
    let (test, _hooks) = echo_server::<R>(false);
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    peer.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await;
    match peer.next().await {
        Some(Message::Pong(data)) => assert_eq!(data, "are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    test.stop_with(&mut peer).await;
}

async fn server_emits_reach_the_peer_in_the_order_they_were_made<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let test = TestServer::start(builder.build().unwrap());
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let conn = hooks.connects.next().await;
    for i in 0..100 {
        conn.emit("n", i.to_string()).unwrap();
    }
    for i in 0..100 {
        assert_eq!(peer.next_text().await, format!("n||0||{i}"));
    }
    test.stop_with(&mut peer).await;
}

behaviour_suite! {
    an_emit_with_ack_round_trips_between_our_client_and_server,
    the_server_replies_with_the_exact_go_frames,
    the_server_emits_go_frames_and_reads_raw_replies,
    a_reply_is_matched_by_id_only_not_by_name,
    js_compatible_always_writes_the_third_separator,
    the_server_answers_every_ack_request_exactly_once_even_without_a_handler,
    the_fallback_handler_answers_unknown_events,
    ack_ids_follow_go_atoi_and_are_written_back_as_i64,
    the_handler_tells_a_two_part_frame_from_empty_data,
    binary_messages_are_parsed_like_text,
    frames_that_are_not_utf8_go_out_as_binary,
    ack_frames_for_unknown_ids_are_dropped_and_never_dispatched,
    registering_an_ack_name_makes_build_fail,
    names_that_cannot_travel_are_refused_at_emit,
    the_client_writes_go_frames_to_a_raw_server,
    a_js_compatible_client_always_writes_the_third_separator,
    malformed_frames_reach_on_error_with_go_text_and_the_connection_stays_open,
    malformed_frames_without_an_error_hook_do_not_hurt,
    a_ping_is_answered_with_an_identical_pong,
    server_emits_reach_the_peer_in_the_order_they_were_made,
}
