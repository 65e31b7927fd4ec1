//! A client and a server `Session` talking in memory, printing every frame they
//! exchange. Run it with `cargo run -p etp-proto --example demo`.
//!
//! The "network" is two queues and the clock is simulated, which is all a sans-IO
//! session needs: the same calls drive it over a real socket (see the crate docs).
#![allow(clippy::disallowed_methods)] // the simulated clock starts at a real Instant

use std::time::{Duration, Instant};

use bytes::Bytes;
use etp_proto::{Config, Output, Rooms, Session};

/// An application: what one side does with an event (name, data, reply token).
type App = fn(&mut Session<&'static str>, &[u8], &[u8], Option<etp_proto::ReplyToken>);

/// One side of the conversation.
struct Peer {
    name: &'static str,
    session: Session<&'static str>,
}

impl Peer {
    /// Drains the session, printing what it does; returns the frames to carry across.
    /// `handle` is this side's application: it answers events.
    fn drain(&mut self, handle: App) -> Vec<Bytes> {
        let mut frames = Vec::new();
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Transmit(frame) => {
                    println!(
                        "  {:>6} ──▶  {}",
                        self.name,
                        String::from_utf8_lossy(&frame)
                    );
                    frames.push(frame);
                }
                Output::Event(event) => {
                    println!(
                        "  {:>6}  ◆  event {:?} data {:?}{}",
                        self.name,
                        String::from_utf8_lossy(&event.name),
                        String::from_utf8_lossy(event.data_or_empty()),
                        if event.reply.is_some() {
                            " (ack requested)"
                        } else {
                            ""
                        }
                    );
                    let data = event.data_or_empty().to_vec();
                    handle(&mut self.session, &event.name, &data, event.reply);
                }
                Output::AckResolved { ctx, data } => println!(
                    "  {:>6}  ✔  {ctx} answered: {:?}",
                    self.name,
                    String::from_utf8_lossy(&data.unwrap_or_default())
                ),
                Output::AckFailed { ctx, cause } => {
                    println!("  {:>6}  ✘  {ctx}: {cause}", self.name)
                }
                Output::Ping => println!("  {:>6}  ·  ping", self.name),
                Output::Close(reason) => println!(
                    "  {:>6}  ■  close {} {:?}",
                    self.name,
                    reason.code(),
                    reason.wire_reason()
                ),
                other => println!("  {:>6}  ?  {other:?}", self.name),
            }
        }
        frames
    }
}

/// The server's handlers: `hello` answers with a greeting, `slow` never answers.
fn server_app(
    session: &mut Session<&'static str>,
    name: &[u8],
    data: &[u8],
    reply: Option<etp_proto::ReplyToken>,
) {
    match (name, reply) {
        (b"hello", Some(reply)) => {
            let answer = format!("hello, {}!", String::from_utf8_lossy(data));
            session.ack(reply, answer.as_bytes()).expect("session open");
        }
        (b"slow", Some(_)) => {} // dropped on purpose: the client's deadline fires
        (_, Some(reply)) => session.ack(reply, b"").expect("session open"),
        (_, None) => {}
    }
}

/// The client's handlers: it answers the server's `whoami` question.
fn client_app(
    session: &mut Session<&'static str>,
    name: &[u8],
    _: &[u8],
    reply: Option<etp_proto::ReplyToken>,
) {
    if let (b"whoami", Some(reply)) = (name, reply) {
        session
            .ack(reply, b"the demo client")
            .expect("session open");
    }
}

/// Carries frames both ways until both sides are quiet.
fn exchange(now: Instant, client: &mut Peer, server: &mut Peer) {
    loop {
        let to_server = client.drain(client_app);
        let to_client = server.drain(server_app);
        if to_server.is_empty() && to_client.is_empty() {
            return;
        }
        for frame in to_server {
            if let Err(err) = server.session.handle_message(frame, now) {
                println!("  server  !  protocol error: {err}");
            }
        }
        for frame in to_client {
            if let Err(err) = client.session.handle_message(frame, now) {
                println!("  client  !  protocol error: {err}");
            }
        }
    }
}

fn main() {
    let mut now = Instant::now();
    let mut config = Config::default();
    config.ack_timeout = Duration::from_secs(5);
    let mut client = Peer {
        name: "client",
        session: Session::new(config.clone(), now),
    };
    let mut server = Peer {
        name: "server",
        session: Session::new(config, now),
    };

    println!("1. an event with an acknowledgement, answered by the server's handler");
    client
        .session
        .emit_with_ack(b"hello", b"world", "hello request", None, now)
        .expect("open");
    exchange(now, &mut client, &mut server);

    println!("\n2. fire and forget, with empty data (Go writes no third part)");
    client.session.emit(b"log", b"").expect("open");
    exchange(now, &mut client, &mut server);

    println!("\n3. the server asks the client (ids are per direction)");
    server
        .session
        .emit_with_ack(b"whoami", b"", "whoami request", None, now)
        .expect("open");
    exchange(now, &mut client, &mut server);

    println!("\n4. a room broadcast: encoded once, queued on every member's session");
    let mut rooms = Rooms::new();
    rooms.join("news", "client");
    let mut frame = bytes::BytesMut::new();
    etp_proto::encode_event(
        b"headline",
        0,
        b"etp speaks Rust",
        Default::default(),
        &mut frame,
    )
    .expect("valid name");
    let frame = frame.freeze();
    for member in rooms.members("news") {
        println!("  (room news → {member})");
        server.session.send_encoded(frame.clone()).expect("open");
    }
    exchange(now, &mut client, &mut server);

    println!("\n5. a request nobody answers times out at its deadline");
    client
        .session
        .emit_with_ack(
            b"slow",
            b"",
            "slow request",
            Some(Duration::from_secs(2)),
            now,
        )
        .expect("open");
    exchange(now, &mut client, &mut server);
    now += Duration::from_secs(2);
    if client.session.poll_timeout().is_some_and(|at| at <= now) {
        client.session.handle_timeout(now);
    }
    exchange(now, &mut client, &mut server);

    println!("\n6. a malformed frame is reported; the session stays open");
    if let Err(err) = server
        .session
        .handle_message(Bytes::from_static(b"ev||x"), now)
    {
        println!("  server  !  protocol error: {err}");
    }

    println!("\n7. close: pending requests fail at once");
    client
        .session
        .emit_with_ack(b"slow", b"", "unanswered request", None, now)
        .expect("open");
    exchange(now, &mut client, &mut server);
    client.session.close();
    exchange(now, &mut client, &mut server);
    server.session.handle_transport_closed(now);
    exchange(now, &mut client, &mut server);
}
