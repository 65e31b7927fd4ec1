//! Three etp servers in one process on a real Redis: each test starts its own
//! `redis-server` on a free loopback port (installed by scripts/test; a missing
//! binary fails the test with that advice, it is never skipped).

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::{TestClient, TestNode, fast_config, mark, start_node, within};
use etp_driver::cluster::ClusterConfig;
use etp_redis::{ConnectError, RedisBroker, RedisConfig};

async fn broker(redis: &RedisServer) -> RedisBroker {
    let config = RedisConfig::new(redis.url())
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    within("Redis", RedisBroker::connect(config))
        .await
        .expect("Redis answers")
}

async fn three(redis: &RedisServer, config: ClusterConfig) -> [TestNode; 3] {
    let nodes = [
        start_node(broker(redis).await, config.clone()).await,
        start_node(broker(redis).await, config.clone()).await,
        start_node(broker(redis).await, config).await,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_members_on_every_node_once() {
    let redis = RedisServer::start();
    common::broadcast_reaches_members_once(&three(&redis, fast_config()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn except_sender_works_across_nodes() {
    let redis = RedisServer::start();
    common::except_sender_works_across_nodes(&three(&redis, fast_config()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_and_ack_to_a_connection_on_another_node() {
    let redis = RedisServer::start();
    common::emit_and_ack_to_another_node(&three(&redis, fast_config()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_sizes_listings_and_remote_joins() {
    let redis = RedisServer::start();
    common::sizes_listings_and_remote_joins(&three(&redis, fast_config()).await).await;
}

/// A node whose process dies (its runtime is dropped: no bye, its Redis connections
/// cut) leaves the others' membership after the node timeout, and a request started
/// meanwhile stops waiting for it instead of waiting out its own 30 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_without_bye_is_dropped_and_requests_stop_waiting() {
    let redis = RedisServer::start();
    let config = fast_config().with_request_timeout(Duration::from_secs(30));
    let nodes = [
        start_node(broker(&redis).await, config.clone()).await,
        start_node(broker(&redis).await, config.clone()).await,
    ];

    // The doomed node runs on a runtime of its own, in a thread of its own.
    let url = redis.url();
    let (started, started_rx) = std::sync::mpsc::channel();
    let (kill, kill_rx) = std::sync::mpsc::channel::<()>();
    let (killed, killed_rx) = std::sync::mpsc::channel::<()>();
    let doomed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let node = runtime.block_on(async {
            let broker = RedisBroker::connect(RedisConfig::new(url))
                .await
                .expect("Redis answers");
            start_node(broker, config).await
        });
        started
            .send((node.server.clone(), node.url.clone()))
            .expect("test alive");
        let _ = kill_rx.recv();
        // Every task of the node ends here, mid-flight, without a bye.
        runtime.shutdown_background();
        let _ = killed.send(());
        node
    });
    let (doomed_server, doomed_url) = started_rx.recv().expect("doomed node started");
    let doomed_node = TestNode {
        server: doomed_server,
        url: doomed_url,
    };
    let dead = doomed_node.id();
    common::await_membership(&[&nodes[0], &nodes[1], &doomed_node]).await;
    let _a = TestClient::connect(&nodes[0], &["lobby"]).await;
    let _b = TestClient::connect(&nodes[1], &["lobby"]).await;
    let _c = TestClient::connect(&doomed_node, &["lobby"]).await;
    let before = within("room_len", nodes[0].server.cluster().room_len("lobby")).await;
    assert_eq!(before.map(|g| (g.value, g.missing)), Ok((3, vec![])));

    kill.send(()).expect("doomed thread alive");
    killed_rx.recv().expect("doomed node killed");
    // The thread is joined only at the end: dropping the node's last server handle
    // would try a (late) bye.
    let size = within("room_len", nodes[0].server.cluster().room_len("lobby"))
        .await
        .expect("room_len");
    assert_eq!((size.value, size.missing), (2, vec![dead]));
    for node in &nodes {
        let cluster = node.server.cluster();
        eventually("the dead node to leave", || {
            !cluster.nodes().contains(&dead)
        })
        .await;
        let stats = cluster.stats();
        assert_eq!((stats.nodes_lost, stats.nodes_left), (1, 0));
    }
    let size = within("room_len", nodes[1].server.cluster().room_len("lobby")).await;
    assert_eq!(size.map(|g| (g.value, g.missing)), Ok((2, vec![])));
    drop(doomed_node);
    drop(doomed.join().expect("doomed thread"));
}

/// Redis is killed and restarted while one node broadcasts: the adapters notice,
/// resubscribe, report the gap, and broadcasts flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_traffic_reconnects_and_traffic_resumes() {
    let log = capture_log();
    let mut redis = RedisServer::start();
    // Long node timeout: the outage must not be mistaken for dead nodes.
    let config = ClusterConfig::default()
        .heartbeat(Duration::from_millis(100), Duration::from_secs(30))
        .expect("valid timings")
        .with_request_timeout(Duration::from_secs(2));
    let sender_broker = broker(&redis).await;
    let receiver_broker = broker(&redis).await;
    let nodes = [
        start_node(sender_broker.clone(), config.clone()).await,
        start_node(receiver_broker.clone(), config.clone()).await,
        start_node(broker(&redis).await, config).await,
    ];
    common::await_membership(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    let mut far = TestClient::connect(&nodes[1], &["feed"]).await;

    // Traffic: a numbered broadcast every 5 ms, at most 4000 (20 s), until stopped.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sender = nodes[0].server.clone();
    let traffic = tokio::spawn(async move {
        let mut sent = 0u32;
        let mut unpublished = 0u32;
        for n in 0..4000u32 {
            if stopped.try_recv().is_ok() {
                break;
            }
            let report = sender
                .rooms()
                .broadcast(["feed"], "tick", n.to_string().as_bytes(), None)
                .expect("broadcast");
            sent += 1;
            unpublished += u32::from(report.unpublished);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (sent, unpublished)
    });
    // Traffic flows before the restart.
    let first = next_tick(&mut far).await;

    redis.kill();
    let cluster = nodes[0].server.cluster();
    eventually("the disconnect", || cluster.stats().disconnects >= 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.restart();
    for node in &nodes {
        let cluster = node.server.cluster();
        eventually("the resubscription", || cluster.stats().reconnects >= 1).await;
        assert!(cluster.stats().last_gap.is_some());
    }
    assert!(receiver_broker.stats().resubscriptions >= 1);
    // The gap is logged, with the advice that messages may have been lost.
    let logged = log.text();
    assert!(
        logged.contains("lost the subscription to Redis"),
        "{logged}"
    );
    assert!(
        logged.contains("messages published by other nodes meanwhile may be lost"),
        "{logged}"
    );
    assert!(sender_broker.is_connected());

    // Ticks published after the resubscription arrive again.
    let resumed_after = first + 1;
    let mut latest = first;
    within("traffic to resume", async {
        while latest <= resumed_after + 20 {
            latest = next_tick(&mut far).await;
        }
    })
    .await;
    let _ = stop.send(());
    let (sent, unpublished) = traffic.await.expect("traffic task");
    assert!(unpublished > 0, "the outage refused some broadcasts");
    assert!(sent > unpublished);
    // Requests work across nodes again.
    let feed = within("room_len", nodes[2].server.cluster().room_len("feed")).await;
    assert_eq!(feed.map(|g| (g.value, g.missing)), Ok((1, vec![])));
}

/// What this test binary logs through `tracing` (installed once, for the process).
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_log() -> Log {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .init();
    log
}

/// The next `tick` number a client receives (skipping markers).
async fn next_tick(client: &mut TestClient) -> u32 {
    loop {
        let (name, data) = client.next().await;
        if name == "tick" {
            return std::str::from_utf8(&data)
                .expect("utf-8")
                .parse()
                .expect("a number");
        }
    }
}

/// Envelopes that are not ours (garbage, a newer version) are counted and ignored;
/// the node keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_malformed_envelopes_are_counted_and_ignored() {
    let redis = RedisServer::start();
    let nodes = three(&redis, fast_config()).await;
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = within("redis", client.get_multiplexed_async_connection())
        .await
        .expect("connect");
    // Foreign: not version 1 (garbage cannot be told from a newer version).
    let garbage: &[u8] = b"garbage";
    let newer_version: &[u8] = &[2, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    // Malformed: version 1, but an unknown kind, or a broadcast cut short.
    let unknown_kind: &[u8] = &[1, 99, 9, 9, 9, 9, 9, 9, 9, 9];
    let truncated: &[u8] = &[1, 4, 9, 9, 9, 9, 9, 9, 9, 9, 0xff];
    for payload in [garbage, newer_version, unknown_kind, truncated] {
        let published: redis::RedisResult<u32> = redis::cmd("PUBLISH")
            .arg("etp:all")
            .arg(payload)
            .query_async(&mut conn)
            .await;
        assert_eq!(published, Ok(3), "three nodes subscribed");
    }
    let cluster = nodes[0].server.cluster();
    eventually("the counters", || {
        let stats = cluster.stats();
        stats.malformed == 2 && stats.foreign_version == 2
    })
    .await;
    let mut far = TestClient::connect(&nodes[1], &["r"]).await;
    nodes[0]
        .server
        .rooms()
        .broadcast(["r"], "still", b"ok", None)
        .expect("broadcast");
    mark(&nodes[0], "end");
    far.expect(&[("still", "ok"), ("marker", "end")]).await;
}

#[tokio::test]
async fn connecting_to_nothing_fails_clearly() {
    // A port nobody listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}/"));
    let err = RedisBroker::connect(config)
        .await
        .expect_err("nothing there");
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let err = RedisBroker::connect(RedisConfig::new("http://nope"))
        .await
        .expect_err("not a Redis URL");
    assert!(matches!(err, ConnectError::InvalidUrl(_)), "{err:?}");
}

/// The publishing queue holds exactly `queue_capacity` messages: on a one-thread
/// runtime nothing drains it while the test publishes without awaiting.
#[tokio::test]
async fn the_publishing_queue_holds_exactly_its_capacity() {
    let redis = RedisServer::start();
    let config = RedisConfig::new(redis.url()).queue_capacity(4);
    let broker = within("Redis", RedisBroker::connect(config))
        .await
        .expect("Redis answers");
    // Default timings: no heartbeat falls inside the test.
    let node = start_node(broker.clone(), ClusterConfig::default()).await;
    eventually("the subscription", || broker.is_connected()).await;
    // Let the hello leave the queue.
    eventually("the hello to be sent", || broker.stats().published >= 1).await;
    let rooms = node.server.rooms();
    for n in 0..4 {
        let report = rooms.broadcast_all("fill", b"", None).expect("broadcast");
        assert!(!report.unpublished, "message {n} within the bound");
    }
    let report = rooms.broadcast_all("over", b"", None).expect("broadcast");
    assert!(report.unpublished, "one past the bound is refused");
    assert_eq!(broker.stats().dropped_queue_full, 1);
    // The queue drains and takes messages again.
    eventually("the queue to drain", || broker.stats().published >= 5).await;
    let report = rooms.broadcast_all("again", b"", None).expect("broadcast");
    assert!(!report.unpublished);
}
