//! Two etp servers on one Redis: a broadcast sent by one reaches a client of the
//! other, an emit-with-ack crosses to a connection on the other node, and the room's
//! size counts both nodes.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run -p etp-redis --example two_nodes
//! cargo run -p etp-redis --example two_nodes   # starts a private redis-server
//! ```
//!
//! Without `REDIS_URL` it starts `redis-server` (from PATH; `scripts/test` installs
//! it) on a free loopback port without persistence, and stops it at the end.

#[path = "../tests/common/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use etp_redis::{ClusterConfig, RedisBroker, RedisConfig};
use etp_tokio::{Client, ClientExt, Conn, Event, Server, ServerExt};
use tokio::net::TcpListener;

/// A server that puts every connection in the lobby and answers `whoami` with the
/// connection's id, as one node of the cluster on `redis_url`.
async fn node(name: &str, redis_url: &str) -> Result<(Server, String), Box<dyn std::error::Error>> {
    let broker = RedisBroker::connect(RedisConfig::new(redis_url)).await?;
    let server = Server::builder()
        .on_connect(|conn| async move {
            conn.join("lobby");
        })
        .on("whoami", |conn: Conn, _: Event| async move {
            conn.id().to_string()
        })
        .cluster(broker, ClusterConfig::default())
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    let id = server
        .cluster()
        .node_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    println!("{name}: node {id} listening on {url}");
    Ok((server, url))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut own_redis = None;
    let redis_url = match std::env::var("REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let redis = redis_server::RedisServer::start();
            println!("REDIS_URL not set: started redis-server at {}", redis.url());
            own_redis.insert(redis).url()
        }
    };

    let (a, _) = node("node A", &redis_url).await?;
    let (b, b_url) = node("node B", &redis_url).await?;
    // Hello and heartbeats: each node learns the other within moments.
    tokio::time::timeout(Duration::from_secs(5), a.cluster().wait_for_nodes(2)).await?;
    let nodes: Vec<String> = a
        .cluster()
        .nodes()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!("membership seen by node A: {}", nodes.join(", "));

    // A client of node B, printing what it receives and answering `ask`.
    let (got, mut received) = tokio::sync::mpsc::unbounded_channel();
    let client = Client::builder()
        .on("news", move |_: Conn, event: Event| {
            let _ = got.send(String::from_utf8_lossy(event.data()).into_owned());
            async {}
        })
        .on("ask", |_: Conn, event: Event| async move {
            format!(
                "B's client says hi back to {}",
                String::from_utf8_lossy(event.data())
            )
        })
        .build()?;
    let conn = client.dial(&b_url).await?;
    let id = conn.emit_with_ack("whoami", "").await?;
    let id: etp_tokio::ConnId = std::str::from_utf8(&id)?.parse()?;
    println!("a client joined the lobby on node B as {id}");

    // Node A broadcasts; the client of node B receives it through Redis.
    let report = a
        .rooms()
        .broadcast(["lobby"], "news", b"hello from node A", None)
        .map_err(|e| e.to_string())?;
    println!(
        "node A broadcast to the lobby ({} local members)",
        report.queued
    );
    let news = tokio::time::timeout(Duration::from_secs(5), received.recv()).await?;
    println!(
        "the client of node B received: {:?}",
        news.unwrap_or_default()
    );

    // Node A asks that client directly, by id, and waits for its answer.
    let answer = a
        .cluster()
        .emit_with_ack_to(id, "ask", "node A", Duration::from_secs(5))
        .await?;
    println!(
        "node A asked it by id: {:?}",
        String::from_utf8_lossy(&answer)
    );

    let lobby = a.cluster().room_len("lobby").await?;
    println!(
        "the lobby has {} member(s) across the cluster ({} node(s) did not answer)",
        lobby.value,
        lobby.missing.len()
    );

    client.close();
    b.shutdown(Duration::from_secs(2)).await;
    a.shutdown(Duration::from_secs(2)).await;
    if own_redis.take().is_some() {
        println!("stopped redis-server");
    }
    Ok(())
}
