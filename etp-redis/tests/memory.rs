//! The cluster logic on the in-memory bus: three nodes in one process, no Redis. The
//! same scenarios as `redis.rs`, plus the failures only the bus can play exactly
//! (isolation, outage) and the bounds.

mod common;

use std::time::Duration;

use common::{TestClient, TestNode, fast_config, mark, start_node, within};
use etp_driver::cluster::{ClusterConfig, ClusterError, MemoryBus};

async fn three(bus: &MemoryBus, config: ClusterConfig) -> [TestNode; 3] {
    let nodes = [
        start_node(bus.broker(), config.clone()).await,
        start_node(bus.broker(), config.clone()).await,
        start_node(bus.broker(), config).await,
    ];
    common::await_membership(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    nodes
}

/// Polls `holds` every 10 ms until it is true, failing after the guard.
async fn eventually(what: &str, holds: impl Fn() -> bool) {
    within(what, async {
        while !holds() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Heartbeat every 100 ms but a node stays a member for 30 s: only a bye (or nothing)
/// can explain it leaving within a test.
fn long_lived_members() -> ClusterConfig {
    ClusterConfig::default()
        .heartbeat(Duration::from_millis(100), Duration::from_secs(30))
        .expect("valid timings")
        .with_request_timeout(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_members_on_every_node_once() {
    let bus = MemoryBus::new();
    common::broadcast_reaches_members_once(&three(&bus, fast_config()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn except_sender_works_across_nodes() {
    let bus = MemoryBus::new();
    common::except_sender_works_across_nodes(&three(&bus, fast_config()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_and_ack_to_a_connection_on_another_node() {
    let bus = MemoryBus::new();
    common::emit_and_ack_to_another_node(&three(&bus, fast_config()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_sizes_listings_and_remote_joins() {
    let bus = MemoryBus::new();
    common::sizes_listings_and_remote_joins(&three(&bus, fast_config()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_ids_start_with_their_node_id() {
    let bus = MemoryBus::new();
    let nodes = three(&bus, fast_config()).await;
    for node in &nodes {
        let client = TestClient::connect(node, &[]).await;
        assert!(client.id.to_string().starts_with(&node.id().to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_dropped_and_requests_stop_waiting_for_it() {
    let bus = MemoryBus::new();
    // Requests would wait 30 s: the guard (8 s) fails the test unless the death of
    // the node ends the wait.
    let config = fast_config().with_request_timeout(Duration::from_secs(30));
    let nodes = three(&bus, config).await;
    let _a = TestClient::connect(&nodes[0], &["lobby"]).await;
    let _c = TestClient::connect(&nodes[2], &["lobby"]).await;
    let dead = nodes[2].id();

    bus.isolate(dead);
    let size = within("room_len", nodes[0].server.cluster().room_len("lobby"))
        .await
        .expect("room_len");
    assert_eq!((size.value, size.missing), (1, vec![dead]));
    for node in &nodes[..2] {
        let cluster = node.server.cluster();
        eventually("the dead node to leave", || {
            !cluster.nodes().contains(&dead)
        })
        .await;
        let stats = cluster.stats();
        assert_eq!((stats.nodes_lost, stats.nodes_left), (1, 0));
    }
    // Nobody waits for it any more.
    let size = within("room_len", nodes[1].server.cluster().room_len("lobby")).await;
    assert_eq!(size.map(|g| (g.value, g.missing)), Ok((1, vec![])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_bye_and_the_others_forget_the_node_at_once() {
    let bus = MemoryBus::new();
    let nodes = three(&bus, long_lived_members()).await;
    let leaving = nodes[2].id();
    nodes[2].server.shutdown(Duration::from_secs(1)).await;
    for node in &nodes[..2] {
        let cluster = node.server.cluster();
        eventually("the node to leave", || !cluster.nodes().contains(&leaving)).await;
        assert_eq!(
            (cluster.stats().nodes_left, cluster.stats().nodes_lost),
            (1, 0)
        );
    }
    // The node that left publishes nothing more.
    let report = nodes[2]
        .server
        .rooms()
        .broadcast_all("late", b"", None)
        .expect("broadcast");
    assert!(report.unpublished);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_reported_and_traffic_resumes() {
    let bus = MemoryBus::new();
    let nodes = three(&bus, long_lived_members()).await;
    let mut far = TestClient::connect(&nodes[1], &["feed"]).await;

    bus.outage();
    let report = nodes[0]
        .server
        .rooms()
        .broadcast(["feed"], "lost", b"", None)
        .expect("broadcast");
    assert!(report.unpublished, "published while the broker is down");
    let cluster = nodes[0].server.cluster();
    eventually("the disconnect", || cluster.stats().disconnects == 1).await;
    bus.restore();
    eventually("the reconnect", || cluster.stats().reconnects == 1).await;
    assert!(cluster.stats().last_gap.is_some());
    assert!(cluster.stats().total_gap >= cluster.stats().last_gap.unwrap_or_default());

    let report = nodes[0]
        .server
        .rooms()
        .broadcast(["feed"], "back", b"1", None)
        .expect("broadcast");
    assert!(!report.unpublished);
    mark(&nodes[0], "end");
    far.expect(&[("back", "1"), ("marker", "end")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_are_bounded_exactly() {
    let bus = MemoryBus::new();
    let config = long_lived_members().with_max_pending_requests(2);
    let nodes = three(&bus, config).await;
    // A member that never answers keeps requests waiting.
    bus.isolate(nodes[2].id());
    let cluster = nodes[0].server.cluster();
    let mut first = Box::pin(cluster.room_len("x"));
    let mut second = Box::pin(cluster.room_len("x"));
    assert!(futures_util::poll!(&mut first).is_pending());
    assert!(futures_util::poll!(&mut second).is_pending());
    // One past the bound.
    assert_eq!(
        cluster.room_len("x").await,
        Err(ClusterError::TooManyRequests { limit: 2 })
    );
    // Giving up on a request frees its place.
    drop(first);
    let mut third = Box::pin(cluster.rooms());
    assert!(futures_util::poll!(&mut third).is_pending());
    assert!(matches!(
        cluster.members(&["x"]).await,
        Err(ClusterError::TooManyRequests { limit: 2 })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_with_ack_run_for_other_nodes_is_bounded_exactly() {
    let bus = MemoryBus::new();
    let strict = fast_config().with_max_remote_acks(1);
    let nodes = [
        start_node(bus.broker(), fast_config()).await,
        start_node(bus.broker(), strict).await,
    ];
    common::await_membership(&[&nodes[0], &nodes[1]]).await;
    let far = TestClient::connect(&nodes[1], &[]).await;
    let cluster = nodes[0].server.cluster();
    let timeout = Duration::from_secs(5);

    // The first holds node 1's only slot while its peer sleeps; the second reaches
    // node 1 after it (one publisher, in order) and is refused.
    let mut first = Box::pin(cluster.emit_with_ack_to(far.id, "ask", "sleep:1000", timeout));
    assert!(futures_util::poll!(&mut first).is_pending());
    let second = within(
        "refusal",
        cluster.emit_with_ack_to(far.id, "ask", "2", timeout),
    )
    .await;
    assert_eq!(
        second,
        Err(ClusterError::RemoteBusy {
            node: nodes[1].id(),
            limit: 1
        })
    );
    assert_eq!(
        within("first", first).await.as_deref(),
        Ok(&b"answer:sleep:1000"[..])
    );
    // The slot is free again.
    let third = within(
        "third",
        cluster.emit_with_ack_to(far.id, "ask", "3", timeout),
    )
    .await;
    assert_eq!(third.as_deref(), Ok(&b"answer:3"[..]));
    assert_eq!(nodes[1].server.cluster().stats().remote_acks_refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_cluster_answers_locally() {
    use etp_tokio::{Server, ServerExt};
    let server = Server::builder()
        .on(
            "whoami",
            |conn: etp_tokio::Conn, _: etp_tokio::Event| async move { conn.id().to_string() },
        )
        .build()
        .expect("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("addr"));
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    let node = TestNode { server, url };
    let mut client = TestClient::connect(&node, &[]).await;
    let cluster = node.server.cluster();
    assert_eq!((cluster.node_id(), cluster.nodes()), (None, vec![]));
    assert!(cluster.wait_for_nodes(1).await);
    assert!(!cluster.wait_for_nodes(2).await);
    assert_eq!(cluster.join(client.id, "solo").await, Ok(true));
    let size = cluster.room_len("solo").await.expect("room_len");
    assert_eq!((size.value, size.is_complete()), (1, true));
    cluster.emit_to(client.id, "direct", b"d").expect("emit_to");
    client.expect(&[("direct", "d")]).await;
    let answer = cluster
        .emit_with_ack_to(client.id, "ask", "q", Duration::from_secs(2))
        .await;
    assert_eq!(answer.as_deref(), Ok(&b"answer:q"[..]));
    let ghost = etp_tokio::ConnId::random();
    assert_eq!(
        cluster.emit_to(ghost, "direct", b""),
        Err(ClusterError::NotFound { conn: ghost })
    );
    let report = node
        .server
        .rooms()
        .broadcast(["solo"], "b", b"", None)
        .expect("broadcast");
    assert!(!report.unpublished);
    assert_eq!(
        cluster.stats(),
        etp_driver::cluster::ClusterStats::default()
    );
}
