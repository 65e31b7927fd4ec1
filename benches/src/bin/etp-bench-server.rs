//! The etp server that `etp-bench` loads.
//!
//! ```sh
//! etp-bench-server [ADDR] [--runtime tokio|async-std] [--threads N] [--keepalive]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:9003`; WebSocket upgrades are served on any path.
//! Events: `echo` is acknowledged with its own data; `count` increments a counter
//! (no acknowledgement); `getcount` is acknowledged with the counter in decimal;
//! `join` puts the connection in room `r` (acknowledged empty); `pub` broadcasts its
//! data to room `r` as event `msg`, encoded once (`rooms().broadcast`).
//!
//! `--keepalive` turns on the keepalive a production server would run (ping after 25 s
//! without traffic, close after 60 s): its deadlines move with every read. Off by
//! default, as in the matrix.
//!
//! `--threads` sets tokio's worker threads (default: one per core); async-std reads
//! `ASYNC_STD_THREAD_COUNT` from the environment.

use std::sync::atomic::{AtomicU64, Ordering};

use etp_benches::load::{
    Args, EV_COUNT, EV_ECHO, EV_GETCOUNT, EV_JOIN, EV_MSG, EV_PUB, OUTBOUND_LIMIT, READ_LIMIT, ROOM,
};
use etp_tokio::{Conn, Event, OriginPolicy, SlowConsumerPolicy};

/// `count` events received, server-wide.
static COUNTER: AtomicU64 = AtomicU64::new(0);

// The immediate handler form (`Fn(&Conn, Event)`): none of these waits.
fn echo(_conn: &Conn, event: Event) -> etp_tokio::Bytes {
    event.into_data()
}

fn count(_conn: &Conn, _event: Event) {
    COUNTER.fetch_add(1, Ordering::Relaxed);
}

fn getcount(_conn: &Conn, _event: Event) -> String {
    COUNTER.load(Ordering::Relaxed).to_string()
}

fn join(conn: &Conn, _event: Event) {
    conn.join(ROOM);
}

fn publish(conn: &Conn, event: Event) {
    if let Some(rooms) = conn.server_rooms() {
        let _ = rooms.broadcast([ROOM], EV_MSG, event.data(), None);
    }
}

/// The bench server on either runtime: the builders share their methods, not a type.
macro_rules! build_server {
    ($server:ty, $keepalive:expr) => {{
        let builder = <$server>::builder();
        let builder = if $keepalive {
            builder.keepalive(KEEPALIVE_INTERVAL, KEEPALIVE_IDLE_TIMEOUT)
        } else {
            builder
        };
        builder
            .on(EV_ECHO, echo)
            .on(EV_COUNT, count)
            .on(EV_GETCOUNT, getcount)
            .on(EV_JOIN, join)
            .on(EV_PUB, publish)
            .read_limit(Some(READ_LIMIT))
            .outbound_limit(OUTBOUND_LIMIT, SlowConsumerPolicy::Disconnect)
            .origin_policy(OriginPolicy::insecure_allow_any())
            .build()
            .expect("valid handler names")
    }};
}

/// `--keepalive`: a ping after this long without traffic.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(25);
/// `--keepalive`: the connection closes after this long without traffic.
const KEEPALIVE_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn main() -> std::io::Result<()> {
    let args = Args::parse(std::env::args().skip(1), &["keepalive"]);
    if let Some(unknown) = args
        .names()
        .find(|n| !["runtime", "threads", "keepalive"].contains(n))
    {
        eprintln!("unknown option --{unknown}");
        std::process::exit(2);
    }
    let keepalive = args.flag("keepalive");
    let addr = args
        .positional
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9003".to_owned());
    match args.get("runtime").unwrap_or("tokio") {
        "tokio" => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = args.get("threads") {
                runtime.worker_threads(threads.parse().map_err(std::io::Error::other)?);
            }
            runtime.enable_all().build()?.block_on(async {
                use etp_tokio::ServerExt;
                let server = build_server!(etp_tokio::Server, keepalive);
                let listener = tokio::net::TcpListener::bind(&addr).await?;
                eprintln!(
                    "etp-bench-server (tokio) listening on {}",
                    listener.local_addr()?
                );
                server.serve(listener).await
            })
        }
        "async-std" => async_std::task::block_on(async {
            use etp_async_std::ServerExt;
            let server = build_server!(etp_async_std::Server, keepalive);
            let listener = async_std::net::TcpListener::bind(&addr).await?;
            eprintln!(
                "etp-bench-server (async-std) listening on {}",
                listener.local_addr()?
            );
            server.serve(listener).await
        }),
        other => {
            eprintln!("unknown runtime {other:?}: tokio or async-std");
            std::process::exit(2);
        }
    }
}
