//! The multi-node harness shared by the in-memory and the Redis tests: nodes on
//! loopback, recording clients, and the scenarios both brokers must pass.
//!
//! Every wait is bounded by [`GUARD`], so that a broken cluster fails a test instead
//! of hanging it.
#![allow(dead_code, unreachable_pub)]

pub mod redis_server;

use std::future::Future;
use std::time::Duration;

use etp_driver::cluster::{Broker, ClusterConfig, ClusterError, NodeId};
use etp_tokio::{Bytes, Client, ClientExt, Conn, ConnId, Event, Server, ServerExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The longest any single wait may take before the test fails.
pub const GUARD: Duration = Duration::from_secs(8);

/// Awaits `future`, failing the test if it takes longer than [`GUARD`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {GUARD:?} waiting for {what}"),
    }
}

/// Fast timings: heartbeat every 100 ms, dead after 1 s (ten missed heartbeats, so
/// that a loaded CI machine does not make a live node look dead), requests wait 2 s.
pub fn fast_config() -> ClusterConfig {
    ClusterConfig::default()
        .heartbeat(Duration::from_millis(100), Duration::from_secs(1))
        .expect("valid timings")
        .with_request_timeout(Duration::from_secs(2))
}

/// One etp server of the cluster, listening on loopback.
pub struct TestNode {
    pub server: Server,
    pub url: String,
}

impl TestNode {
    pub fn id(&self) -> NodeId {
        self.server.cluster().node_id().expect("a cluster node")
    }
}

/// A server whose connections answer `whoami` with their id, `join` and `leave` with
/// the room they were asked to enter or leave, as a node of `broker`'s cluster.
pub async fn start_node(broker: impl Broker, config: ClusterConfig) -> TestNode {
    let server = Server::builder()
        .on("whoami", |conn: Conn, _: Event| async move {
            conn.id().to_string()
        })
        .on("join", |conn: Conn, event: Event| async move {
            conn.join(&String::from_utf8_lossy(event.data()));
        })
        .on("leave", |conn: Conn, event: Event| async move {
            conn.leave(&String::from_utf8_lossy(event.data()));
        })
        .cluster(broker, config)
        .build()
        .expect("valid server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    TestNode {
        server,
        url: format!("ws://{addr}/ws"),
    }
}

/// Waits until every node sees all of `nodes`.
pub async fn await_membership(nodes: &[&TestNode]) {
    for node in nodes {
        within(
            "the membership",
            node.server.cluster().wait_for_nodes(nodes.len()),
        )
        .await;
    }
}

/// A client connected to one node, recording every event it receives, and answering
/// `ask` with `answer:<data>` (after sleeping `ms` when the data is `sleep:<ms>`).
pub struct TestClient {
    pub client: Client,
    pub conn: Conn,
    /// The server-side connection id.
    pub id: ConnId,
    events: mpsc::UnboundedReceiver<(String, Bytes)>,
}

impl TestClient {
    pub async fn connect(node: &TestNode, rooms: &[&str]) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let client = Client::builder()
            .on("ask", |_: Conn, event: Event| async move {
                let data = String::from_utf8_lossy(event.data()).into_owned();
                if let Some(ms) = data.strip_prefix("sleep:") {
                    let ms: u64 = ms.parse().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                format!("answer:{data}")
            })
            .on_unknown_event(move |_: Conn, event: Event| {
                let _ = tx.send((
                    event.name().into_owned(),
                    Bytes::copy_from_slice(event.data()),
                ));
                async {}
            })
            .build()
            .expect("valid client");
        let conn = within("dial", client.dial(&node.url)).await.expect("dial");
        let id = within("whoami", conn.emit_with_ack("whoami", ""))
            .await
            .expect("whoami answered");
        let id: ConnId = std::str::from_utf8(&id)
            .expect("utf-8 id")
            .parse()
            .expect("a connection id");
        for room in rooms {
            within("join", conn.emit_with_ack("join", room.to_string()))
                .await
                .expect("join answered");
        }
        Self {
            client,
            conn,
            id,
            events,
        }
    }

    /// The next event received, failing after [`GUARD`].
    pub async fn next(&mut self) -> (String, Bytes) {
        within("an event", self.events.recv())
            .await
            .expect("client gone")
    }

    /// Asserts that the next events are exactly `expected` (name, data), in order.
    pub async fn expect(&mut self, expected: &[(&str, &str)]) {
        for (name, data) in expected {
            let (got_name, got_data) = self.next().await;
            assert_eq!(
                (got_name.as_str(), &got_data[..]),
                (*name, data.as_bytes()),
                "client {}",
                self.id
            );
        }
    }
}

/// Sends a `marker` to every connection of the cluster: what a client receives before
/// it is everything it was sent before (each connection's queue is in order), which
/// lets a test assert "exactly once" and "not at all" without sleeping.
pub fn mark(node: &TestNode, marker: &str) {
    let report = node
        .server
        .rooms()
        .broadcast_all("marker", marker.as_bytes(), None)
        .expect("marker");
    assert!(!report.unpublished, "marker not published");
}

// ---------------------------------------------------------------------------------
// Scenarios every broker must pass (three nodes, already in one membership)
// ---------------------------------------------------------------------------------

/// A room broadcast from any node reaches its members on every node, exactly once,
/// and nobody else; a connection in several of the rooms gets it once.
pub async fn broadcast_reaches_members_once(nodes: &[TestNode; 3]) {
    let mut a = TestClient::connect(&nodes[0], &["lobby"]).await;
    let mut outsider = TestClient::connect(&nodes[0], &[]).await;
    let mut c = TestClient::connect(&nodes[1], &["lobby", "games"]).await;
    let mut d = TestClient::connect(&nodes[1], &["lobby"]).await;
    let mut e = TestClient::connect(&nodes[2], &["games"]).await;

    for (from, node) in nodes.iter().enumerate() {
        let text = format!("from node {from}");
        let report = node
            .server
            .rooms()
            .broadcast(["lobby", "games"], "news", text.as_bytes(), None)
            .expect("broadcast");
        assert!(!report.unpublished);
        // The report counts this node's own members.
        let local = [1, 2, 1][from];
        assert_eq!(report.queued, local, "local members of node {from}");
        mark(node, "end");
        for client in [&mut a, &mut c, &mut d, &mut e] {
            client.expect(&[("news", &text), ("marker", "end")]).await;
        }
        outsider.expect(&[("marker", "end")]).await;
    }
}

/// `except` names a connection on another node: it alone is left out, there too.
pub async fn except_sender_works_across_nodes(nodes: &[TestNode; 3]) {
    let mut a = TestClient::connect(&nodes[0], &["chat"]).await;
    let mut sender = TestClient::connect(&nodes[1], &["chat"]).await;
    let mut e = TestClient::connect(&nodes[2], &["chat"]).await;

    // Each node's messages arrive in the order it sent them: the marker follows
    // from the node that broadcast.
    let report = nodes[0]
        .server
        .rooms()
        .broadcast(["chat"], "said", b"hi", Some(sender.id))
        .expect("broadcast");
    assert_eq!(report.queued, 1);
    mark(&nodes[0], "end");
    a.expect(&[("said", "hi"), ("marker", "end")]).await;
    e.expect(&[("said", "hi"), ("marker", "end")]).await;
    sender.expect(&[("marker", "end")]).await;

    nodes[2]
        .server
        .rooms()
        .broadcast_all("all", b"x", Some(sender.id))
        .expect("broadcast_all");
    mark(&nodes[2], "end");
    a.expect(&[("all", "x"), ("marker", "end")]).await;
    e.expect(&[("all", "x"), ("marker", "end")]).await;
    sender.expect(&[("marker", "end")]).await;
}

/// Emit and emit-with-ack to a connection on another node, and the errors for ids
/// that no live node owns.
pub async fn emit_and_ack_to_another_node(nodes: &[TestNode; 3]) {
    let mut far = TestClient::connect(&nodes[2], &[]).await;
    let mut near = TestClient::connect(&nodes[0], &[]).await;
    let cluster = nodes[0].server.cluster();

    cluster.emit_to(far.id, "direct", b"one").expect("emit_to");
    cluster
        .emit_to(near.id, "direct", b"local")
        .expect("emit_to local");
    mark(&nodes[0], "end");
    far.expect(&[("direct", "one"), ("marker", "end")]).await;
    near.expect(&[("direct", "local"), ("marker", "end")]).await;

    let answer = within(
        "remote ack",
        cluster.emit_with_ack_to(far.id, "ask", "q", Duration::from_secs(2)),
    )
    .await
    .expect("acknowledged");
    assert_eq!(answer, "answer:q");
    // The peer answers too late: the owning node's ack timeout fires and says so.
    let late = within(
        "remote ack timeout",
        cluster.emit_with_ack_to(far.id, "ask", "sleep:1500", Duration::from_millis(200)),
    )
    .await;
    assert_eq!(late, Err(ClusterError::Ack(etp_tokio::AckError::TimedOut)));

    // An id of a live node that has no such connection.
    let mut bytes = *far.id.as_bytes();
    bytes[15] ^= 0xff;
    let ghost = ConnId::from_bytes(bytes);
    let missing = within(
        "ack to a ghost",
        cluster.emit_with_ack_to(ghost, "ask", "q", Duration::from_secs(1)),
    )
    .await;
    assert_eq!(missing, Err(ClusterError::NotFound { conn: ghost }));
    // An id whose node is not a member (a server without a cluster made it).
    let stranger = ConnId::random();
    assert_eq!(
        cluster.emit_to(stranger, "direct", b"?"),
        Err(ClusterError::UnknownNode {
            conn: stranger,
            node: NodeId::of(stranger)
        })
    );
    // An invalid event name is refused before anything is published.
    assert!(matches!(
        cluster.emit_to(far.id, "bad||name", b""),
        Err(ClusterError::Emit(_))
    ));
}

/// Room sizes, room lists, member lists and connection counts cover every node;
/// joins and leaves work for connections on other nodes.
pub async fn sizes_listings_and_remote_joins(nodes: &[TestNode; 3]) {
    let a = TestClient::connect(&nodes[0], &["red"]).await;
    let b = TestClient::connect(&nodes[1], &["red", "blue"]).await;
    let mut c = TestClient::connect(&nodes[2], &["green"]).await;
    let d = TestClient::connect(&nodes[2], &[]).await;

    for node in nodes {
        let cluster = node.server.cluster();
        let red = within("room_len", cluster.room_len("red"))
            .await
            .expect("room_len");
        assert_eq!((red.value, red.is_complete()), (2, true));
        let rooms = within("rooms", cluster.rooms()).await.expect("rooms");
        assert_eq!(rooms.value, ["blue", "green", "red"]);
        let members = within("members", cluster.members(&["red", "green"]))
            .await
            .expect("members");
        let mut expected = vec![a.id, b.id, c.id];
        expected.sort();
        assert_eq!(members.value, expected);
        assert!(members.missing.is_empty());
        let count = within("count", cluster.connection_count())
            .await
            .expect("count");
        assert_eq!(count.value, 4);
    }

    // Node 0 puts connections of node 2 in a room, and takes one out again.
    let cluster = nodes[0].server.cluster();
    assert_eq!(within("join", cluster.join(c.id, "vip")).await, Ok(true));
    assert_eq!(within("join", cluster.join(d.id, "vip")).await, Ok(true));
    assert_eq!(within("join", cluster.join(a.id, "vip")).await, Ok(true));
    let vip = within("room_len", nodes[1].server.cluster().room_len("vip")).await;
    assert_eq!(vip.map(|g| g.value), Ok(3));
    assert_eq!(within("leave", cluster.leave(d.id, "vip")).await, Ok(true));
    assert_eq!(within("leave", cluster.leave(d.id, "vip")).await, Ok(false));
    nodes[1]
        .server
        .rooms()
        .broadcast(["vip"], "vip-news", b"v", None)
        .expect("broadcast");
    mark(&nodes[1], "end");
    c.expect(&[("vip-news", "v"), ("marker", "end")]).await;
    let mut bytes = *d.id.as_bytes();
    bytes[15] ^= 0xff;
    let ghost = ConnId::from_bytes(bytes);
    assert_eq!(
        within("join ghost", cluster.join(ghost, "vip")).await,
        Err(ClusterError::NotFound { conn: ghost })
    );
}
