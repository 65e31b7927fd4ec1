//! Tracing spans and metrics of a server and a client, exported.
//!
//! ```sh
//! cargo run -p etp-tokio --example observability --features tracing,metrics
//! ```
//!
//! Logs go to stderr through `tracing-subscriber`'s fmt layer: every line inside a
//! connection carries its `etp.conn{conn_id=... side=...}` span, and a handler's lines
//! its `etp.event{event=... ack_id=...}` span. The metrics are collected by the
//! Prometheus exporter (`metrics-exporter-prometheus`, here without its HTTP listener)
//! and printed in the text exposition format at the end, as a scrape endpoint would
//! serve them: mount `handle.render()` on any route of your own.

use std::time::Duration;

use etp_tokio::{Client, ClientExt, Conn, Event, Json, Server, ServerExt};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing::Level;

#[derive(serde::Serialize, serde::Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_max_level(Level::DEBUG)
        .with_writer(std::io::stderr)
        .init();
    // etp contains handler panics and reports them; log them as one line too, instead
    // of the default hook's output (and backtrace) on stderr.
    std::panic::set_hook(Box::new(|info| tracing::error!(%info, "panic")));
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("etp_ack_latency_seconds".into()),
            &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0],
        )?
        .install_recorder()?;

    let server = Server::builder()
        .on("add", |_: Conn, Json(add): Json<Add>| async move {
            tracing::info!(a = add.a, b = add.b, "adding");
            Json(add.a + add.b)
        })
        .on("boom", |_: Conn, event: Event| async move {
            // A handler panic is contained, reported and counted.
            assert!(!event.data().is_empty(), "boom needs data");
        })
        .on_connect(|conn: Conn| async move {
            conn.join("lobby");
            tracing::info!("joined the lobby");
        })
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });

    let client = Client::builder().build()?;
    client.dial(&format!("ws://{addr}/ws")).await?;
    for i in 0..5 {
        let sum: i64 = client
            .emit_with_ack_json("add", &Add { a: i, b: 1 })
            .await?;
        tracing::info!(sum, "client got a sum");
    }
    client.emit("boom", "")?;
    // Bad JSON: the server's error hook hears a decode error; the reply is empty.
    let reply = client.emit_with_ack("add", "not json").await?;
    tracing::info!(reply_len = reply.len(), "client got an empty reply");
    server
        .rooms()
        .broadcast(["lobby"], "news", b"hello", None)?;
    client.close();
    server.shutdown(Duration::from_secs(5)).await;
    serving.await??;

    println!("{}", metrics.render());
    Ok(())
}
