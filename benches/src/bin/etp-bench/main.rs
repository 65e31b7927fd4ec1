//! `etp-bench`: the end-to-end load generator (tokio). One JSON line per result on
//! stdout; every run is bounded in time and in operations and stops by itself.
//!
//! ```sh
//! etp-bench [run] --url ws://127.0.0.1:9003/ws --mode etp|raw --workload W [options]
//! etp-bench report FILE...        # JSON lines of several runs -> markdown tables
//! ```
//!
//! Workloads:
//! * `ack`: each connection does sequential request/answer round trips (`echo` with an
//!   acknowledgement; raw: a message and its echo). Acks/s, p50/p99/max latency.
//! * `pipelined`: the same with `--k` requests in flight per connection.
//! * `fire`: events without acknowledgement (`count`; raw: `!`) as fast as the socket
//!   takes them, then `getcount` (raw: `?`): the rate the server counted.
//! * `fanout`: `--conns` members join room `r`; one more connection publishes (`pub`;
//!   raw: `^`) with a timestamp in the payload, at most `--window` publishes ahead of
//!   the deliveries. Deliveries/s and delivery latency.
//! * `idle`: opens `--conns` connections and reports the growth of the server's RSS
//!   (`--server-pid`) per connection.
//!
//! In `--mode etp` the generator speaks etp frames over tokio-tungstenite itself, so that
//! it costs the same in both modes and the ratio measures the server. `--client lib`
//! uses the `etp-tokio` client library instead (ack, pipelined, fire), to measure the
//! client side too.
//!
//! Options: `--conns N` (default 1), `--payload SIZE` (64, 16k; default 64), `--k N`
//! (pipelined, default 16), `--duration 2s`, `--warmup 250ms` (ack and pipelined),
//! `--max-ops N` (hard cap on operations, default 20,000,000), `--window N` (fanout,
//! default 16), `--server-pid PID`, `--settle 2s` (idle), `--touch` (idle: one round
//! trip per connection first), `--dial-concurrency N`, `--threads N`, `--label TEXT`
//! (copied into the JSON).

mod lib_client;
mod proto;
mod report;
mod workloads;

use std::time::Duration;

use etp_benches::load::{Args, parse_size};

use crate::proto::Mode;

/// Everything a run needs to know.
#[derive(Clone, Debug)]
pub(crate) struct Opts {
    pub(crate) url: String,
    pub(crate) mode: Mode,
    pub(crate) lib_client: bool,
    pub(crate) workload: String,
    pub(crate) conns: usize,
    pub(crate) payload: usize,
    pub(crate) k: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) max_ops: u64,
    pub(crate) window: u64,
    pub(crate) server_pid: Option<u32>,
    pub(crate) settle: Duration,
    pub(crate) touch: bool,
    pub(crate) dial_concurrency: usize,
    pub(crate) label: String,
}

const OPTIONS: &[&str] = &[
    "url",
    "mode",
    "client",
    "workload",
    "conns",
    "payload",
    "k",
    "duration",
    "warmup",
    "max-ops",
    "window",
    "server-pid",
    "settle",
    "touch",
    "dial-concurrency",
    "threads",
    "label",
];

fn usage() -> ! {
    eprintln!(
        "usage: etp-bench [run] --url ws://HOST:PORT/PATH --mode etp|raw \
         --workload ack|pipelined|fire|fanout|idle [--conns N] [--payload SIZE] [--k N] \
         [--duration 2s] [--warmup 250ms] [--max-ops N] [--window N] [--server-pid PID] \
         [--settle 2s] [--touch] [--client wire|lib] [--dial-concurrency N] [--threads N] \
         [--label TEXT]\n       etp-bench report FILE..."
    );
    std::process::exit(2);
}

fn main() {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        Some("report") => {
            let files = &argv[1..];
            if files.is_empty() {
                usage();
            }
            match report::run(files) {
                Ok(markdown) => print!("{markdown}"),
                Err(err) => {
                    eprintln!("report: {err}");
                    std::process::exit(1);
                }
            }
            return;
        }
        Some("run") => {
            argv.remove(0);
        }
        Some("-h" | "--help") | None => usage(),
        _ => {}
    }
    let args = Args::parse(argv, &["touch"]);
    if let Some(unknown) = args.names().find(|n| !OPTIONS.contains(n)) {
        eprintln!("unknown option --{unknown}");
        usage();
    }
    let mode = match args.get("mode").unwrap_or("etp") {
        "etp" => Mode::Etp,
        "raw" => Mode::Raw,
        _ => usage(),
    };
    let lib_client = match args.get("client").unwrap_or("wire") {
        "wire" => false,
        "lib" => true,
        _ => usage(),
    };
    let payload = args.get("payload").map_or(Some(64), parse_size);
    let Some(payload) = payload else { usage() };
    let opts = Opts {
        url: args
            .get("url")
            .unwrap_or("ws://127.0.0.1:9003/ws")
            .to_owned(),
        mode,
        lib_client,
        workload: args.get("workload").unwrap_or("ack").to_owned(),
        conns: args.parse_or("conns", 1usize).max(1),
        payload,
        k: args.parse_or("k", 16usize).max(1),
        duration: args.duration_or("duration", Duration::from_secs(2)),
        warmup: args.duration_or("warmup", Duration::from_millis(250)),
        max_ops: args.parse_or("max-ops", 20_000_000u64).max(1),
        window: args.parse_or("window", 16u64).max(1),
        server_pid: args
            .get("server-pid")
            .map(|_| args.parse_or("server-pid", 0u32)),
        settle: args.duration_or("settle", Duration::from_secs(2)),
        touch: args.flag("touch"),
        dial_concurrency: args.parse_or("dial-concurrency", 64usize).max(1),
        label: args.get("label").unwrap_or_default().to_owned(),
    };
    if lib_client && (mode != Mode::Etp || !["ack", "pipelined", "fire"].contains(&&*opts.workload))
    {
        eprintln!("--client lib is for --mode etp and the ack, pipelined and fire workloads");
        std::process::exit(2);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.get("threads").is_some() {
        runtime.worker_threads(args.parse_or("threads", 2usize).max(1));
    }
    let runtime = runtime.enable_all().build().unwrap_or_else(|err| {
        eprintln!("cannot start tokio: {err}");
        std::process::exit(1);
    });
    let code = runtime.block_on(workloads::run(opts));
    // Connections still open (idle) are not closed one by one: the process just ends.
    std::process::exit(code);
}
