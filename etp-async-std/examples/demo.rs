//! The tokio demo on async-std: a server and a client on loopback exchanging events: acknowledgements both ways, a
//! room broadcast, a malformed frame, and a clean shutdown. Run it with
//! `cargo run -p etp-async-std --example demo`; it prints what happens and exits.

use std::time::Duration;

use etp_async_std::{Client, ClientExt, Conn, Event, Server, ServerExt};

#[async_std::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::builder()
        .on_connect(|conn: Conn| async move {
            println!(
                "server: {} connected from {:?}, joins room \"lobby\"",
                conn.id(),
                conn.request().remote_addr()
            );
            conn.join("lobby");
        })
        .on("hello", |conn: Conn, event: Event| async move {
            let name = String::from_utf8_lossy(event.data()).into_owned();
            println!("server: hello from {name:?}; asking the client who it is");
            // A handler may ask the peer something before it answers.
            let who = conn.emit_with_ack("whoami", "").await.unwrap_or_default();
            format!("hello, {name} ({})", String::from_utf8_lossy(&who))
        })
        .on_disconnect(|conn: Conn, reason| async move {
            println!(
                "server: {} disconnected: {reason} (normal: {})",
                conn.id(),
                reason.is_normal()
            );
        })
        .on_error(|conn, err| println!("server: error on {:?}: {err}", conn.map(|c| c.id())))
        .build()?;

    let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    let serving = async_std::task::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });

    let client = Client::builder()
        .on("whoami", |_conn: Conn, _event: Event| async {
            "the demo client"
        })
        .on("news", |_conn: Conn, event: Event| async move {
            println!("client: news: {}", String::from_utf8_lossy(event.data()));
        })
        .build()?;
    client.dial(&url).await?;
    println!("client: connected to {url}");

    let answer = client.emit_with_ack("hello", "world").await?;
    println!(
        "client: hello answered: {}",
        String::from_utf8_lossy(&answer)
    );

    client.emit("unknown event", "nobody handles this")?;
    client.ping().await?;
    println!("client: ping answered");

    let report = server
        .rooms()
        .broadcast(["lobby"], "news", b"etp speaks Rust", None)?;
    println!(
        "server: broadcast to lobby queued for {} connection(s)",
        report.queued
    );
    let late = client
        .emit_with_ack_timeout("hello", "again", Duration::from_secs(2))
        .await?;
    println!(
        "client: second hello answered: {}",
        String::from_utf8_lossy(&late)
    );

    println!("server: shutting down");
    let dropped = server.shutdown(Duration::from_secs(5)).await;
    serving.await?;
    // Give the client's disconnect a moment to land, then show it is closed.
    async_std::task::sleep(Duration::from_millis(50)).await;
    println!("server: shut down ({dropped} connection(s) had to be dropped)");
    println!(
        "client: emit after shutdown: {:?}",
        client.emit("hello", "anyone?").unwrap_err()
    );
    Ok(())
}
