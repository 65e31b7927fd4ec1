//! The physical limit: a WebSocket server on tokio-tungstenite with no etp at all,
//! loaded by `etp-bench --mode raw` with the same payload sizes as the etp runs.
//!
//! ```sh
//! raw-echo-server [ADDR] [--threads N] [--runtime tokio|async-std] [--floor]
//! ```
//!
//! `--runtime async-std` serves the same loop with async-tungstenite on async-std (the
//! raw limit of that runtime, for reading the etp-async-std figures); `--threads` is
//! tokio's, async-std reads `ASYNC_STD_THREAD_COUNT` from the environment.
//!
//! `ADDR` defaults to `127.0.0.1:9005`. Every data message is echoed unchanged (the
//! received `Message` is sent back, no copy), except those whose first byte is one of
//! the tags of `etp_benches::load`: `!` increments a counter (no reply), `?` is
//! answered with `?<counter>`, `+` joins the fanout room (the message is echoed as the
//! answer), `^` is sent unchanged (one shared `Message`) to every member of the room.
//!
//! `--floor` serves etp frames instead, doing only the work the protocol cannot do
//! without (see [`floor_reply`]): it is loaded by `etp-bench --mode etp` and bounds
//! from above what any etp server on this stack can reach. It is not a server: it
//! does not check what it is sent and ignores every other part of the protocol.
//!
//! Each connection is one task that reads and writes in the same loop, as the etp
//! driver does: it reads what is ready (up to 32 messages), hands every reply to the
//! socket, and flushes once per batch. Fanout deliveries reach a member's task through
//! an unbounded channel, as etp's broadcast does. The sockets use the small buffers etp
//! uses, so that the two differ only by etp itself.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use bytes::Bytes;
use etp_benches::load::{Args, RAW_COUNT, RAW_GETCOUNT, RAW_JOIN, RAW_PUB, websocket_config};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::TcpListener;
// tokio's channel needs no tokio runtime: both runtimes use the same one.
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Messages read per turn before writing.
const READ_BATCH: usize = 32;
/// Bytes waiting for the socket above which reading pauses (as in etp's driver).
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Turns per poll before yielding to other tasks.
const TURNS_PER_POLL: usize = 16;

#[derive(Default)]
struct State {
    counter: AtomicU64,
    room: Mutex<Vec<mpsc::UnboundedSender<Message>>>,
    /// `--floor`: answer etp frames (`floor_reply`) instead of the raw tags.
    floor: bool,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse(std::env::args().skip(1), &["floor"]);
    if let Some(unknown) = args
        .names()
        .find(|n| !["threads", "runtime", "floor"].contains(n))
    {
        eprintln!("unknown option --{unknown}");
        std::process::exit(2);
    }
    let addr = args
        .positional
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9005".to_owned());
    let state = Arc::new(State {
        floor: args.flag("floor"),
        ..State::default()
    });
    match args.get("runtime").unwrap_or("tokio") {
        "tokio" => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = args.get("threads") {
                runtime.worker_threads(threads.parse().map_err(std::io::Error::other)?);
            }
            runtime.enable_all().build()?.block_on(async {
                let listener = TcpListener::bind(&addr).await?;
                eprintln!(
                    "raw-echo-server (tokio) listening on {}",
                    listener.local_addr()?
                );
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let state = state.clone();
                            tokio::spawn(async move {
                                let config = Some(websocket_config());
                                if let Ok(ws) =
                                    tokio_tungstenite::accept_async_with_config(stream, config)
                                        .await
                                {
                                    serve(ws, state).await;
                                }
                            });
                        }
                        Err(err) => {
                            eprintln!("accept: {err}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        }
        "async-std" => async_std::task::block_on(async {
            let listener = async_std::net::TcpListener::bind(&addr).await?;
            eprintln!(
                "raw-echo-server (async-std) listening on {}",
                listener.local_addr()?
            );
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let state = state.clone();
                        async_std::task::spawn(async move {
                            let config = Some(websocket_config());
                            if let Ok(ws) =
                                async_tungstenite::accept_async_with_config(stream, config).await
                            {
                                serve(ws, state).await;
                            }
                        });
                    }
                    Err(err) => {
                        eprintln!("accept: {err}");
                        async_std::task::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }),
        other => {
            eprintln!("unknown runtime {other:?}: tokio or async-std");
            std::process::exit(2);
        }
    }
}

/// One connection's loop, on either runtime's WebSocket.
async fn serve<S, E>(mut ws: S, state: Arc<State>)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let mut out: VecDeque<Message> = VecDeque::new();
    let mut out_bytes = 0usize;
    let mut needs_flush = false;
    poll_fn(|cx| {
        for _ in 0..TURNS_PER_POLL {
            let mut progress = false;
            while let Poll::Ready(Some(message)) = rx.poll_recv(cx) {
                out_bytes += message.len();
                out.push_back(message);
                progress = true;
            }
            for _ in 0..READ_BATCH {
                if out_bytes >= WRITE_HIGH_WATER {
                    break;
                }
                let message = match ws.poll_next_unpin(cx) {
                    Poll::Pending => break,
                    Poll::Ready(None | Some(Err(_))) => return Poll::Ready(()),
                    Poll::Ready(Some(Ok(message))) => message,
                };
                progress = true;
                match &message {
                    Message::Text(_) | Message::Binary(_) => {}
                    // tungstenite queued the pong or the close echo: flush it.
                    _ => {
                        needs_flush = true;
                        continue;
                    }
                }
                let reply = if state.floor {
                    floor_reply(message, &state)
                } else {
                    raw_reply(message, &state, &tx)
                };
                if let Some(reply) = reply {
                    out_bytes += reply.len();
                    out.push_back(reply);
                }
            }
            while !out.is_empty() {
                match ws.poll_ready_unpin(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => {}
                }
                let Some(message) = out.pop_front() else {
                    break;
                };
                out_bytes -= message.len();
                if ws.start_send_unpin(message).is_err() {
                    return Poll::Ready(());
                }
                needs_flush = true;
                progress = true;
            }
            if needs_flush {
                match ws.poll_flush_unpin(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => needs_flush = false,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// The raw protocol: what to send back for one data message.
fn raw_reply(
    message: Message,
    state: &State,
    tx: &mpsc::UnboundedSender<Message>,
) -> Option<Message> {
    match first_byte(&message) {
        Some(RAW_COUNT) => {
            state.counter.fetch_add(1, Ordering::Relaxed);
            None
        }
        Some(RAW_GETCOUNT) => Some(Message::text(format!(
            "?{}",
            state.counter.load(Ordering::Relaxed)
        ))),
        Some(RAW_JOIN) => {
            lock(&state.room).push(tx.clone());
            Some(message)
        }
        Some(RAW_PUB) => {
            lock(&state.room).retain(|member| member.send(message.clone()).is_ok());
            None
        }
        _ => Some(message),
    }
}

/// `--floor`: the least an etp server must do for one event of the `ack`,
/// `pipelined` and `fire` workloads, on the same read and write path as the raw echo.
///
/// It finds the `||` after the name, reads the ack id's digits, picks the handler by
/// name (a `match`, cheaper than any registry a library can offer), and answers a
/// request with `__ack_` + name + `||` + id + `||` + data, built in one buffer and sent
/// as a ready text frame (its parts came from a text message: no UTF-8 check). What a
/// library adds on top of this is its own: a handler registry, a session state
/// machine, panic containment, bounds. Frames it does not understand are dropped.
fn floor_reply(message: Message, state: &State) -> Option<Message> {
    let Message::Text(text) = message else {
        return None;
    };
    let bytes = Bytes::from(text);
    // Names are short: a plain scan finds the `||` sooner than a vector search
    // could be set up.
    let name_end = bytes.windows(2).position(|pair| pair == b"||")?;
    let (name, rest) = (&bytes[..name_end], &bytes[name_end + 2..]);
    let id_end = rest.iter().position(|&b| b == b'|').unwrap_or(rest.len());
    let id_text = &rest[..id_end];
    let mut id = 0u64;
    for &digit in id_text {
        id = id
            .checked_mul(10)?
            .checked_add(u64::from(digit.checked_sub(b'0')?))?;
    }
    let data = rest.get(id_end + 2..).unwrap_or_default();
    let counted;
    let reply_data: &[u8] = match name {
        b"count" => {
            state.counter.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        b"echo" => data,
        b"getcount" => {
            counted = state.counter.load(Ordering::Relaxed).to_string();
            counted.as_bytes()
        }
        _ => return None,
    };
    if id == 0 {
        return None;
    }
    let mut reply = Vec::with_capacity(6 + name.len() + 2 + id_text.len() + 2 + data.len());
    for part in [b"__ack_", name, b"||", id_text, b"||", reply_data] {
        reply.extend_from_slice(part);
    }
    let frame = Frame::message(Bytes::from(reply), OpCode::Data(Data::Text), true);
    Some(Message::Frame(frame))
}

fn first_byte(message: &Message) -> Option<u8> {
    match message {
        Message::Text(text) => text.as_bytes().first().copied(),
        Message::Binary(data) => data.first().copied(),
        _ => None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
