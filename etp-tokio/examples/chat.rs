//! A chat server with rooms, and the page to try it from a browser.
//!
//! ```sh
//! cargo run -p etp-tokio --example chat          # then open http://127.0.0.1:8080
//! cargo run -p etp-tokio --example chat -- 127.0.0.1:9000
//! cargo run -p etp-tokio --example chat -- --port 9000
//! ```
//!
//! The page (served at `/`) uses the repository's JavaScript client, `clients/js/etp.js`,
//! served at `/etp.js`. `nick` and `join` are requests with acknowledgements, `say` is
//! fire-and-forget, and the server broadcasts `msg` to the room, encoding each message
//! once. In the other direction, the server asks each client that connects for its
//! nickname (`who`, an emit with acknowledgement the page answers) and greets it with
//! `welcome`. `echo` answers with the data it was sent, text or bytes; the browser test
//! (`clients/js/e2e/browser.mjs`) uses it for the binary round trip.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::header;
use axum::response::Html;
use axum::routing::get;
use bytes::Bytes;
use etp_tokio::{Conn, Event, Server};

/// A connection's nickname, kept in its data store.
#[derive(Clone)]
struct Nick(String);

/// The room a connection is in. Kept apart from [`Nick`]: handlers of one connection run
/// concurrently, and each writes only its own value.
#[derive(Clone)]
struct Room(String);

fn nick_of(conn: &Conn) -> String {
    conn.data()
        .get::<Nick>()
        .map(|Nick(nick)| nick)
        .unwrap_or_default()
}

fn room_of(conn: &Conn) -> Option<String> {
    conn.data().get::<Room>().map(|Room(room)| room)
}

/// The event's data as a short line of text.
fn line(event: &Event) -> String {
    short_line(event.data())
}

/// Data as a line of text of at most 200 characters.
fn short_line(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
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
    conn.data().insert(Nick(nick.clone()));
    format!("ok: you are {nick}")
}

async fn join(conn: Conn, event: Event) -> String {
    let room = line(&event);
    if room.is_empty() {
        return "error: empty room".to_owned();
    }
    if let Some(old) = room_of(&conn) {
        conn.leave(&old);
    }
    conn.join(&room);
    conn.data().insert(Room(room.clone()));
    let members = conn.server_rooms().map_or(0, |rooms| rooms.len(&room));
    format!("ok: joined {room} ({members} here)")
}

async fn say(conn: Conn, event: Event) {
    let (Some(room), Some(rooms)) = (room_of(&conn), conn.server_rooms()) else {
        let _ = conn.emit("msg", "(join a room first)");
        return;
    };
    let message = format!("{}: {}", nick_of(&conn), line(&event));
    let _ = rooms.broadcast([room.as_str()], "msg", message.as_bytes(), None);
}

/// Answers with the data as sent: a text message stays text, bytes stay bytes.
async fn echo(_conn: Conn, event: Event) -> Bytes {
    event.into_data()
}

/// Asks a new connection for its nickname and greets it by the name it gave, so the
/// page shows that its answer reached the server. Spawned from the connect hook: the
/// hook runs before the connection's frames are read, so it cannot wait for the answer.
async fn ask_nick(conn: Conn) {
    let answer = match conn
        .emit_with_ack_timeout("who", "what is your nick?", Duration::from_secs(10))
        .await
    {
        Ok(answer) => answer,
        Err(err) => {
            eprintln!("{}: no answer to who: {err}", nick_of(&conn));
            return;
        }
    };
    let nick = short_line(&answer);
    let greeting = if nick.is_empty() {
        format!(
            "welcome, {} (no usable nick in your answer)",
            nick_of(&conn)
        )
    } else {
        conn.data().insert(Nick(nick.clone()));
        format!("welcome, {nick}")
    };
    let _ = conn.emit("welcome", greeting);
}

/// The address to listen on: `ADDR` or `--port N` (on 127.0.0.1), default 127.0.0.1:8080.
fn listen_addr() -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
        [flag, port] if flag == "--port" => Ok(SocketAddr::from(([127, 0, 0, 1], port.parse()?))),
        [addr] => Ok(addr.parse()?),
        _ => Err("usage: chat [ADDR | --port N]".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = listen_addr()?;
    let server = Server::builder()
        .on_connect(|conn: Conn| async move {
            let nick = format!("guest-{}", &conn.id().to_string()[..6]);
            conn.data().insert(Nick(nick));
            tokio::spawn(ask_nick(conn));
        })
        .on("nick", nick)
        .on("join", join)
        .on("say", say)
        .on("echo", echo)
        .on_disconnect(|conn: Conn, reason| async move {
            println!("{} left: {reason}", nick_of(&conn));
        })
        .on_error(|conn, err| eprintln!("error ({:?}): {err}", conn.map(|c| c.id())))
        .keepalive(Duration::from_secs(20), Duration::from_secs(60))
        .build()?;

    let app = axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/etp.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], CLIENT) }),
        )
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
const CLIENT: &str = include_str!("../../clients/js/etp.js");
