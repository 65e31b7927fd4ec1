//! A chat server with rooms, and the page to try it from a browser.
//!
//! ```sh
//! cargo run -p etp-tokio --example chat          # then open http://127.0.0.1:8080
//! cargo run -p etp-tokio --example chat -- 127.0.0.1:9000
//! ```
//!
//! The page (served at `/`) speaks etp with a few lines of hand-written JavaScript:
//! `nick` and `join` are requests with acknowledgements, `say` is fire-and-forget, and
//! the server broadcasts `msg` to the room, encoding each message once.

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use etp_tokio::{Conn, Event, Server};

/// The chat state of one connection, kept in its data store.
#[derive(Clone, Default)]
struct Member {
    nick: String,
    room: Option<String>,
}

fn member(conn: &Conn) -> Member {
    conn.data().get::<Member>().unwrap_or_default()
}

/// The event's data as a short line of text.
fn line(event: &Event) -> String {
    String::from_utf8_lossy(event.data())
        .trim()
        .chars()
        .take(200)
        .collect()
}

async fn nick(conn: Conn, event: Event) -> String {
    let nick = line(&event);
    if nick.is_empty() {
        return "error: empty nick".to_owned();
    }
    let mut me = member(&conn);
    me.nick = nick.clone();
    conn.data().insert(me);
    format!("ok: you are {nick}")
}

async fn join(conn: Conn, event: Event) -> String {
    let room = line(&event);
    if room.is_empty() {
        return "error: empty room".to_owned();
    }
    let mut me = member(&conn);
    if let Some(old) = me.room.take() {
        conn.leave(&old);
    }
    conn.join(&room);
    let members = conn.server_rooms().map_or(0, |rooms| rooms.len(&room));
    me.room = Some(room.clone());
    conn.data().insert(me);
    format!("ok: joined {room} ({members} here)")
}

async fn say(conn: Conn, event: Event) {
    let me = member(&conn);
    let (Some(room), Some(rooms)) = (me.room, conn.server_rooms()) else {
        let _ = conn.emit("msg", "(join a room first)");
        return;
    };
    let message = format!("{}: {}", me.nick, line(&event));
    let _ = rooms.broadcast([room.as_str()], "msg", message.as_bytes(), None);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()?;
    let server = Server::builder()
        .on_connect(|conn: Conn| async move {
            let nick = format!("guest-{}", &conn.id().to_string()[..6]);
            conn.data().insert(Member { nick, room: None });
        })
        .on("nick", nick)
        .on("join", join)
        .on("say", say)
        .on_disconnect(|conn: Conn, reason| async move {
            println!("{} left: {reason}", member(&conn).nick);
        })
        .on_error(|conn, err| eprintln!("error ({:?}): {err}", conn.map(|c| c.id())))
        .keepalive(Duration::from_secs(20), Duration::from_secs(60))
        .build()?;

    let app = axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", etp_tokio::axum::route(server.clone()));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("chat on http://{addr} (ctrl-c to stop)");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

const PAGE: &str = include_str!("chat.html");
