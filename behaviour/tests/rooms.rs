//! PROTOCOL.md section 7 (rooms) and 8.6 (bounded outbound queues, broadcasts that
//! never wait on a slow peer) over real sockets, on every runtime.

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{Conn, DisconnectReason, EmitError, Server, SlowConsumerPolicy};

/// Connects a raw peer and returns it with its server-side connection.
async fn member<R: TestRuntime>(test: &TestServer<R>, hooks: &mut Hooks) -> (WsPeer, Conn) {
    let peer = WsPeer::connect(&test.url("/ws")).await;
    let conn = hooks.connects.next().await;
    (peer, conn)
}

fn sorted(mut conns: Vec<Conn>) -> Vec<Conn> {
    conns.sort();
    conns
}

async fn rooms_join_leave_count_list_and_look_up<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let test = TestServer::start(builder.build().unwrap());
    let rooms = test.server.rooms();
    let (mut pa, a) = member(&test, &mut hooks).await;
    let (mut pb, b) = member(&test, &mut hooks).await;
    let (mut pc, c) = member(&test, &mut hooks).await;
    assert!(rooms.is_empty());
    assert_eq!(rooms.connection_count(), 3);
    assert_eq!(rooms.all(), sorted(vec![a.clone(), b.clone(), c.clone()]));
    assert_eq!(rooms.get(b.id()).as_ref(), Some(&b));

    assert!(a.join("r1"));
    assert!(a.join("r1"), "joining twice is fine");
    rooms.join(&b, "r1");
    assert!(a.join("r2"));
    rooms.join(&c, "r2");
    assert_eq!(rooms.rooms(), ["r1", "r2"]);
    assert_eq!(rooms.len("r1"), 2);
    assert_eq!(rooms.len("r2"), 2);
    assert_eq!(rooms.len("nowhere"), 0);
    assert_eq!(a.rooms(), ["r1", "r2"]);
    assert_eq!(c.rooms(), ["r2"]);
    assert_eq!(rooms.members(["r1"]), sorted(vec![a.clone(), b.clone()]));
    // Several rooms: each member once, in id order.
    assert_eq!(
        rooms.members(["r1", "r2", "r1", "nowhere"]),
        sorted(vec![a.clone(), b.clone(), c.clone()])
    );

    assert!(rooms.leave(&b, "r1"));
    assert!(!rooms.leave(&b, "r1"), "not in it any more");
    assert!(!b.leave("r2"), "never was");
    assert!(c.leave("r2"));
    assert_eq!(rooms.members(["r1", "r2"]), std::slice::from_ref(&a));
    assert!(a.leave("r2"));
    // A room exists only while it has members.
    assert_eq!(rooms.rooms(), ["r1"]);

    c.join("r1");
    let cleared = rooms.clear("r1");
    assert_eq!(cleared, sorted(vec![a.clone(), c.clone()]));
    assert!(rooms.is_empty());
    assert!(a.rooms().is_empty());
    // Members of a cleared room stay connected.
    assert_eq!(rooms.connection_count(), 3);
    assert_eq!(pa.ask("x||1").await, "__ack_x||1");

    a.join("x");
    b.join("y");
    rooms.clear_all();
    assert!(rooms.rooms().is_empty());
    assert!(b.rooms().is_empty());

    // A connection that ends leaves everything and can no longer be found.
    a.join("r1");
    b.join("r1");
    pa.send(Message::Close(None)).await;
    let (gone, _) = hooks.disconnects.next().await;
    assert_eq!(gone, a);
    eventually("a to be unregistered", || rooms.connection_count() == 2).await;
    assert!(rooms.get(a.id()).is_none());
    assert_eq!(rooms.members(["r1"]), std::slice::from_ref(&b));
    let _ = pa.next().await;
    pb.close().await;
    pc.close().await;
    test.stop().await;
}

/// Reads frames until `end||0`; returns the frames before it.
async fn until_end(peer: &mut WsPeer) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let text = peer.next_text().await;
        if text == "end||0" {
            return got;
        }
        got.push(text);
    }
}

async fn a_broadcast_reaches_each_member_once_and_can_skip_the_sender<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let test = TestServer::start(builder.build().unwrap());
    let rooms = test.server.rooms();
    let (mut pa, a) = member(&test, &mut hooks).await;
    let (mut pb, b) = member(&test, &mut hooks).await;
    let (mut pc, c) = member(&test, &mut hooks).await;
    let (mut pd, _d) = member(&test, &mut hooks).await;
    a.join("r1");
    b.join("r1");
    b.join("r2");
    c.join("r2");

    let report = rooms.broadcast(["r1", "r2"], "news", b"n1", None).unwrap();
    assert_eq!((report.queued, report.skipped), (3, 0));
    let report = rooms
        .broadcast(["r1", "r2"], "news", b"n2", Some(b.id()))
        .unwrap();
    assert_eq!((report.queued, report.skipped), (2, 0));
    let report = rooms.broadcast(["r2"], "news", b"", None).unwrap();
    assert_eq!(report.queued, 2);
    assert_eq!(
        rooms
            .broadcast(["nobody"], "news", b"x", None)
            .unwrap()
            .queued,
        0
    );
    assert!(matches!(
        rooms.broadcast(["r1"], "a||b", b"x", None),
        Err(EmitError::InvalidName(_))
    ));
    let report = rooms.broadcast_all("end", b"", None).unwrap();
    assert_eq!(report.queued, 4);

    assert_eq!(until_end(&mut pa).await, ["news||0||n1", "news||0||n2"]);
    assert_eq!(until_end(&mut pb).await, ["news||0||n1", "news||0"]);
    assert_eq!(
        until_end(&mut pc).await,
        ["news||0||n1", "news||0||n2", "news||0"]
    );
    assert!(until_end(&mut pd).await.is_empty());

    // broadcast_all with an exception.
    rooms.broadcast_all("all", b"hi", Some(a.id())).unwrap();
    rooms.broadcast_all("end", b"", None).unwrap();
    assert!(until_end(&mut pa).await.is_empty());
    for peer in [&mut pb, &mut pc, &mut pd] {
        assert_eq!(until_end(peer).await, ["all||0||hi"]);
    }

    // Handlers can broadcast through their connection.
    let from_handler = a.server_rooms().expect("rooms of the server");
    from_handler
        .broadcast(["r2"], "via", b"conn", Some(b.id()))
        .unwrap();
    assert_eq!(pc.next_text().await, "via||0||conn");
    for peer in [&mut pa, &mut pb, &mut pc, &mut pd] {
        peer.close().await;
    }
    test.stop().await;
}

/// Reads `want` data frames.
async fn read_news(peer: &mut WsPeer, want: usize) {
    for _ in 0..want {
        match peer.next().await {
            Some(Message::Text(_)) => {}
            other => panic!("expected news, got {other:?}"),
        }
    }
}

async fn a_broadcast_never_waits_for_a_member_that_does_not_read<R: TestRuntime>() {
    const LIMIT: usize = 64 * 1024;
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .outbound_limit(LIMIT, SlowConsumerPolicy::Disconnect)
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let rooms = test.server.rooms();
    // The slow member: a hand-written client that does not read at all for now.
    let mut slow_peer = RawSocket::connect(test.addr, "/ws").await;
    let slow = hooks.connects.next().await;
    let (mut fast_peer, fast) = member(&test, &mut hooks).await;
    slow.join("room");
    fast.join("room");

    let payload = vec![b'n'; 32 * 1024];
    let mut sent = 0usize;
    // Broadcast until the slow member's queue is over its bound; the fast member reads
    // each frame before the next is sent, so its queue never grows. The kernel buffers
    // of the slow socket fill first: a few megabytes on loopback.
    let skipped = within("the slow member to fall behind", async {
        for round in 0..4000 {
            let report = rooms.broadcast(["room"], "news", &payload, None).unwrap();
            sent += 1;
            read_news(&mut fast_peer, 1).await;
            if report.skipped == 1 {
                assert_eq!(report.queued, 1, "the fast member still gets it");
                return round;
            }
            assert_eq!(report.queued, 2);
        }
        panic!("the slow member never fell behind");
    })
    .await;
    assert!(skipped > 0);
    assert!(slow.is_closed(), "the slow member is being disconnected");
    // Broadcasts go on for the others, skipping the slow member.
    for _ in 0..10 {
        let report = rooms.broadcast(["room"], "news", &payload, None).unwrap();
        sent += 1;
        assert_eq!(report.queued, 1);
        read_news(&mut fast_peer, 1).await;
    }
    assert!(sent > 10);
    assert!(!fast.is_closed());
    assert!(
        hooks.disconnects.try_next().is_none(),
        "the close handshake is pending"
    );

    // Now the slow peer reads: what was written before the overflow (whole frames; how
    // many depends on when its writer ran, maybe none), then a 1008 close.
    let (before, close) = slow_peer.reader.until_close().await;
    let news = [b"news||0||".as_slice(), &payload].concat();
    assert!(
        before
            .iter()
            .all(|f| f.opcode == OP_TEXT && f.fin && f.payload == news),
        "{} frames before the close, not all whole news frames",
        before.len()
    );
    assert_eq!(close.close(), (Some(1008), "slow consumer".to_owned()));
    slow_peer.send(OP_CLOSE, &close.payload).await;
    let (gone, reason) = hooks.disconnects.next().await;
    assert_eq!(gone, slow);
    assert!(
        matches!(reason, DisconnectReason::SlowConsumer),
        "{reason:?}"
    );
    assert!(!reason.is_normal());
    // (The disconnect hook runs while the connection is still in its rooms.)
    eventually("the slow member to leave the room", || {
        rooms.len("room") == 1
    })
    .await;
    assert_eq!(rooms.members(["room"]), std::slice::from_ref(&fast));
    // The fast member is still fully served.
    assert_eq!(fast_peer.ask("x||1").await, "__ack_x||1");
    test.stop_with(&mut fast_peer).await;
}

async fn with_drop_new_a_slow_member_misses_frames_but_stays_connected<R: TestRuntime>() {
    const LIMIT: usize = 64 * 1024;
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .outbound_limit(LIMIT, SlowConsumerPolicy::DropNew)
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let rooms = test.server.rooms();
    let slow_peer = RawSocket::connect(test.addr, "/ws").await;
    let slow = hooks.connects.next().await;
    slow.join("room");
    let payload = vec![b'n'; 32 * 1024];
    within("a dropped frame", async {
        for _ in 0..4000 {
            let report = rooms.broadcast(["room"], "news", &payload, None).unwrap();
            if report.skipped == 1 {
                return;
            }
            yield_now().await;
        }
        panic!("no frame was ever dropped");
    })
    .await;
    // A direct emit reports the full queue. (The connection's writer runs on another
    // thread and may still move a frame from the queue to the socket: the queue is full
    // again once the kernel buffers are.)
    within("a direct emit to report the full queue", async {
        loop {
            match slow.emit("news", payload.clone()) {
                Err(EmitError::QueueFull { limit }) => return assert_eq!(limit, LIMIT),
                Ok(()) => yield_now().await,
                Err(other) => panic!("expected QueueFull, got {other:?}"),
            }
        }
    })
    .await;
    assert!(!slow.is_closed());
    // Once the peer reads again, the connection works: it gets an answer.
    let reader = R::spawn_task(async move {
        let mut raw = slow_peer;
        raw.send(OP_TEXT, b"probe||1").await;
        loop {
            let frame = raw.frame().await.expect("frames");
            if frame.payload.starts_with(b"__ack_probe") {
                return (raw, frame.text());
            }
        }
    });
    let (mut raw, reply) = within("the probe reply", reader).await;
    assert_eq!(reply, "__ack_probe||1");
    assert!(hooks.disconnects.try_next().is_none());
    raw.send(OP_CLOSE, &close_payload(1000, "")).await;
    let (_, reason) = hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    test.stop().await;
}

async fn a_frame_larger_than_the_outbound_bound_still_goes_out_when_nothing_waits<
    R: TestRuntime,
>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .outbound_limit(1024, SlowConsumerPolicy::Disconnect)
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let (mut peer, conn) = member(&test, &mut hooks).await;
    let big = "b".repeat(10_000);
    conn.emit("big", big.clone()).unwrap();
    assert_eq!(peer.next_text().await, format!("big||0||{big}"));
    assert!(!conn.is_closed());
    test.stop_with(&mut peer).await;
}

/// A broadcast is checked for UTF-8 once for all members; each member still sends it
/// in its place among its own frames, as text when it is UTF-8 and binary otherwise.
async fn broadcasts_keep_their_place_and_kind_among_a_members_own_frames<R: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder.build().unwrap();
    let rooms = server.rooms();
    let test = TestServer::start(server);
    let (mut a, conn_a) = member(&test, &mut hooks).await;
    let (mut b, conn_b) = member(&test, &mut hooks).await;
    for conn in [&conn_a, &conn_b] {
        conn.join("r");
    }
    for round in 0..3 {
        conn_a.emit("own", format!("{round}a")).unwrap();
        rooms.broadcast(["r"], "all", b"text", None).unwrap();
        conn_a.emit("own", format!("{round}b")).unwrap();
        rooms.broadcast(["r"], "all", b"\xffbin", None).unwrap();
        rooms.broadcast(["r"], "all", b"more", None).unwrap();
        conn_a.emit("own", format!("{round}c")).unwrap();
    }
    for round in 0..3 {
        assert_eq!(a.next_text().await, format!("own||0||{round}a"));
        assert_eq!(a.next_text().await, "all||0||text");
        assert_eq!(a.next_text().await, format!("own||0||{round}b"));
        match a.next().await {
            Some(Message::Binary(data)) => assert_eq!(data, b"all||0||\xffbin".to_vec()),
            other => panic!("expected the binary broadcast, got {other:?}"),
        }
        assert_eq!(a.next_text().await, "all||0||more");
        assert_eq!(a.next_text().await, format!("own||0||{round}c"));
    }
    for _ in 0..3 {
        assert_eq!(b.next_text().await, "all||0||text");
        assert!(matches!(b.next().await, Some(Message::Binary(_))));
        assert_eq!(b.next_text().await, "all||0||more");
    }
    drop(b);
    test.stop_with(&mut a).await;
}

behaviour_suite! {
    broadcasts_keep_their_place_and_kind_among_a_members_own_frames,
    rooms_join_leave_count_list_and_look_up,
    a_broadcast_reaches_each_member_once_and_can_skip_the_sender,
    a_broadcast_never_waits_for_a_member_that_does_not_read,
    with_drop_new_a_slow_member_misses_frames_but_stays_connected,
    a_frame_larger_than_the_outbound_bound_still_goes_out_when_nothing_waits,
}
