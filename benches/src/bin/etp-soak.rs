//! The reliability soak: many connections held for minutes under a steady mix of
//! traffic, then a million acknowledgements, against `etp-bench-server` in its own
//! process (so that its resident memory is the server's alone).
//!
//! ```sh
//! cargo build --release -p etp-benches --bins
//! target/release/etp-soak [--runtime tokio|async-std] [--port 9210]
//!     [--conns 10000] [--duration 300s] [--op-interval 4s] [--publish-interval 1s]
//!     [--acks 1000000] [--ack-conns 100] [--window 16] [--skip-soak] [--skip-acks]
//! ```
//!
//! Phase 1 (soak): `--conns` connections (etp-tokio clients) join the server's room,
//! then each, every `--op-interval` on average (spread evenly), sends an
//! acknowledged `echo` (7 in 10, with data unique to the request, checked on return)
//! or a `count` emit (3 in 10); every `--publish-interval` one of them publishes to
//! the room, which reaches every connection. The server's RSS is sampled every
//! second. Reported: acks sent and answered (must be equal), mismatched answers,
//! errors by kind, publishes and deliveries (must be publishes x connections), and the
//! server's RSS at start (all connected), peak and end, with the least-squares slope
//! of the samples of the steady phase.
//!
//! Phase 2 (acks): `--acks` acknowledged echoes over `--ack-conns` fresh connections,
//! `--window` in flight per connection, each answer checked against its request.
//!
//! Every loop is bounded in count and in time (each phase has a hard deadline), and
//! the process exits with status 1 when a check fails. The server binary is looked
//! up next to this one. The file descriptor limit is raised to its hard limit first
//! (10,000 connections need 10,000 descriptors in each process).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etp_benches::load::{Args, EV_COUNT, EV_ECHO, EV_JOIN, EV_MSG, EV_PUB, rss_bytes};
use etp_tokio::{AckError, Bytes, Client, ClientExt, Conn, Event};
use futures_util::StreamExt;

/// How many dials run at once while connecting.
const DIAL_CONCURRENCY: usize = 128;
/// The most a phase may overrun its planned time before it is cut off.
const GRACE: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Stats {
    acks_sent: AtomicU64,
    acks_answered: AtomicU64,
    ack_mismatches: AtomicU64,
    ack_timed_out: AtomicU64,
    ack_closed: AtomicU64,
    ack_refused: AtomicU64,
    emits_sent: AtomicU64,
    emit_errors: AtomicU64,
    publishes: AtomicU64,
    deliveries: AtomicU64,
    disconnects: AtomicU64,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    fn ack_errors(&self) -> u64 {
        get(&self.ack_timed_out) + get(&self.ack_closed) + get(&self.ack_refused)
    }

    /// One acknowledged echo of `data`: counted, and its answer checked.
    async fn echo(&self, conn: &Conn, data: Bytes) {
        add(&self.acks_sent);
        match conn.emit_with_ack(EV_ECHO, data.clone()).await {
            Ok(answer) => {
                add(&self.acks_answered);
                if answer != data {
                    add(&self.ack_mismatches);
                }
            }
            Err(AckError::TimedOut) => add(&self.ack_timed_out),
            Err(AckError::ConnectionClosed) => add(&self.ack_closed),
            Err(_) => add(&self.ack_refused),
        }
    }
}

/// Options shared by both phases.
struct Opts {
    url: String,
    conns: usize,
    duration: Duration,
    op_interval: Duration,
    publish_interval: Duration,
    acks: u64,
    ack_conns: usize,
    window: usize,
}

fn main() {
    let args = Args::parse(std::env::args().skip(1), &["skip-soak", "skip-acks"]);
    let known = [
        "runtime",
        "port",
        "conns",
        "duration",
        "op-interval",
        "publish-interval",
        "acks",
        "ack-conns",
        "window",
        "skip-soak",
        "skip-acks",
    ];
    if let Some(unknown) = args.names().find(|n| !known.contains(n)) {
        eprintln!("unknown option --{unknown}");
        std::process::exit(2);
    }
    let port: u16 = args.parse_or("port", 9210);
    let opts = Opts {
        url: format!("ws://127.0.0.1:{port}/ws"),
        conns: args.parse_or("conns", 10_000),
        duration: args.duration_or("duration", Duration::from_secs(300)),
        op_interval: args.duration_or("op-interval", Duration::from_secs(4)),
        publish_interval: args.duration_or("publish-interval", Duration::from_secs(1)),
        acks: args.parse_or("acks", 1_000_000),
        ack_conns: args.parse_or::<usize>("ack-conns", 100).max(1),
        window: args.parse_or::<usize>("window", 16).max(1),
    };
    let runtime = args.get("runtime").unwrap_or("tokio").to_owned();

    match raise_fd_limit() {
        Ok(limit) => println!("file descriptor limit: {limit}"),
        Err(err) => eprintln!("could not raise the file descriptor limit: {err}"),
    }
    let mut server = match start_server(&runtime, port) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("cannot start etp-bench-server: {err}");
            std::process::exit(2);
        }
    };
    let pid = server.id();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ok = tokio.block_on(async {
        let mut ok = true;
        if !args.flag("skip-soak") {
            ok &= soak(&opts, pid).await;
        }
        if !args.flag("skip-acks") {
            ok &= million_acks(&opts, pid).await;
        }
        ok
    });
    let _ = server.kill();
    let _ = server.wait();
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    std::process::exit(if ok { 0 } else { 1 });
}

/// Raises the soft file descriptor limit to the hard one; returns the new limit.
fn raise_fd_limit() -> std::io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).map_err(std::io::Error::from)?;
    Ok(limit.current.unwrap_or(u64::MAX))
}

/// Starts `etp-bench-server` (next to this binary) on `port` and waits until it
/// accepts connections (at most 10 s).
fn start_server(runtime: &str, port: u16) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let server = exe.with_file_name("etp-bench-server");
    let mut child = Command::new(&server)
        .arg(format!("127.0.0.1:{port}"))
        .args(["--runtime", runtime])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|err| std::io::Error::other(format!("{}: {err}", server.display())))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            return Err(std::io::Error::other(format!(
                "the server exited: {status}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    Err(std::io::Error::other(
        "the server did not listen within 10 s",
    ))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Dials `n` clients (each with a `msg` counter and a disconnect counter).
async fn connect(url: &str, n: usize, stats: &Arc<Stats>) -> Result<Vec<(Client, Conn)>, String> {
    let dials = futures_util::stream::iter(0..n).map(|_| {
        let stats = stats.clone();
        async move {
            let (deliveries, disconnects) = (stats.clone(), stats.clone());
            let client = Client::builder()
                .on(EV_MSG, move |_conn: Conn, _event: Event| {
                    add(&deliveries.deliveries);
                    async {}
                })
                .on_disconnect(move |_conn, _reason| {
                    add(&disconnects.disconnects);
                    async {}
                })
                .build()
                .map_err(|err| err.to_string())?;
            let conn = client
                .dial(url)
                .await
                .map_err(|err| format!("dial {url}: {err}"))?;
            Ok::<_, String>((client, conn))
        }
    });
    let mut dials = dials.buffer_unordered(DIAL_CONCURRENCY);
    let mut clients = Vec::with_capacity(n);
    while let Some(dialed) = dials.next().await {
        clients.push(dialed?);
    }
    Ok(clients)
}

/// The least-squares slope of `(seconds, bytes)` samples, in MiB per minute.
fn slope_mib_per_min(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(t, y) in samples {
        num += (t - mean_t) * (y as f64 - mean_y);
        den += (t - mean_t) * (t - mean_t);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den * 60.0 / (1024.0 * 1024.0)
    }
}

/// Phase 1. True when every check held.
async fn soak(opts: &Opts, pid: u32) -> bool {
    let stats = Arc::new(Stats::default());
    let rss_idle = rss_bytes(pid).unwrap_or(0);
    println!(
        "soak: {} connections for {:?}, one op per connection every {:?}, a publish every {:?}",
        opts.conns, opts.duration, opts.op_interval, opts.publish_interval
    );
    let dial_start = Instant::now();
    let clients = match connect(&opts.url, opts.conns, &stats).await {
        Ok(clients) => clients,
        Err(err) => {
            println!("soak: connecting failed: {err}");
            return false;
        }
    };
    let joins = futures_util::stream::iter(&clients)
        .map(|(_, conn)| conn.emit_with_ack(EV_JOIN, Bytes::new()))
        .buffer_unordered(DIAL_CONCURRENCY)
        .filter(|joined| std::future::ready(joined.is_err()))
        .count()
        .await;
    println!(
        "soak: {} connected and joined in {:.1} s ({joins} joins failed)",
        clients.len(),
        dial_start.elapsed().as_secs_f64()
    );
    let rss_start = rss_bytes(pid).unwrap_or(0);
    let start = Instant::now();
    let end = start + opts.duration;

    // The traffic: one task per connection, its first op spread over one interval.
    let mut tasks = Vec::with_capacity(clients.len());
    for (i, (_, conn)) in clients.iter().enumerate() {
        let (conn, stats) = (conn.clone(), stats.clone());
        let interval = opts.op_interval;
        let offset = interval.mul_f64(i as f64 / clients.len() as f64);
        tasks.push(tokio::spawn(async move {
            let mut next = tokio::time::Instant::from_std(start) + offset;
            let mut n: u64 = 0;
            while next < tokio::time::Instant::from_std(end) {
                tokio::time::sleep_until(next).await;
                next += interval;
                n += 1;
                if n % 10 < 7 {
                    let data = Bytes::from(format!("c{i}-{n}"));
                    stats.echo(&conn, data).await;
                } else {
                    add(&stats.emits_sent);
                    if conn.emit(EV_COUNT, Bytes::from_static(b"1")).is_err() {
                        add(&stats.emit_errors);
                    }
                }
            }
        }));
    }
    let publisher = {
        let conns: Vec<Conn> = clients.iter().map(|(_, conn)| conn.clone()).collect();
        let (stats, interval) = (stats.clone(), opts.publish_interval);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0usize;
            while Instant::now() < end {
                ticker.tick().await;
                let conn = &conns[n % conns.len()];
                n += 1;
                match conn.emit(EV_PUB, Bytes::from(format!("p{n}"))) {
                    Ok(()) => add(&stats.publishes),
                    Err(_) => add(&stats.emit_errors),
                }
            }
        })
    };

    // RSS every second; a line every 30 s.
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut peak = rss_start;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < end {
        ticker.tick().await;
        let t = start.elapsed().as_secs_f64();
        let rss = rss_bytes(pid).unwrap_or(0);
        peak = peak.max(rss);
        samples.push((t, rss));
        if samples.len() % 30 == 0 {
            println!(
                "soak: t={t:5.0}s server RSS {:7.1} MiB, acks {}/{}, emits {}, deliveries {}, disconnects {}",
                mib(rss),
                get(&stats.acks_answered),
                get(&stats.acks_sent),
                get(&stats.emits_sent),
                get(&stats.deliveries),
                get(&stats.disconnects),
            );
        }
    }
    // The last requests end within their ack timeout (30 s); the cut-off is a bound.
    let cutoff = tokio::time::Instant::from_std(end + GRACE);
    for task in tasks {
        if tokio::time::timeout_at(cutoff, task).await.is_err() {
            println!("soak: a connection's traffic did not end in time");
            return false;
        }
    }
    let _ = tokio::time::timeout_at(cutoff, publisher).await;
    let expected = get(&stats.publishes) * clients.len() as u64;
    let drain = Instant::now() + Duration::from_secs(30);
    while get(&stats.deliveries) < expected && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_end = rss_bytes(pid).unwrap_or(0);
    peak = peak.max(rss_end);
    // The steady phase: past the first 10 % (allocator warm-up).
    let skip = samples.len() / 10;
    let slope = slope_mib_per_min(&samples[skip..]);
    let disconnects = get(&stats.disconnects);
    for (client, _) in &clients {
        client.close();
    }
    drop(clients);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_bytes(pid).unwrap_or(0);

    let sent = get(&stats.acks_sent);
    let answered = get(&stats.acks_answered);
    let mismatches = get(&stats.ack_mismatches);
    let deliveries = get(&stats.deliveries);
    let errors = stats.ack_errors() + get(&stats.emit_errors);
    println!("soak: --- results ---");
    println!(
        "soak: acks sent {sent}, answered {answered}, mismatched {mismatches}; ack errors: \
         timed out {}, closed {}, refused {}",
        get(&stats.ack_timed_out),
        get(&stats.ack_closed),
        get(&stats.ack_refused)
    );
    println!(
        "soak: emits {} ({} errors), publishes {}, deliveries {deliveries} of {expected}, \
         unexpected disconnects {}",
        get(&stats.emits_sent),
        get(&stats.emit_errors),
        get(&stats.publishes),
        disconnects
    );
    println!(
        "soak: server RSS idle {:.1} MiB, start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB, \
         after closing {:.1} MiB; steady-phase slope {slope:+.2} MiB/min over {} samples",
        mib(rss_idle),
        mib(rss_start),
        mib(peak),
        mib(rss_end),
        mib(rss_after),
        samples.len() - skip
    );
    sent == answered && mismatches == 0 && errors == 0 && deliveries == expected && disconnects == 0
}

/// Phase 2. True when every answer matched and none failed.
async fn million_acks(opts: &Opts, pid: u32) -> bool {
    let stats = Arc::new(Stats::default());
    let clients = match connect(&opts.url, opts.ack_conns, &stats).await {
        Ok(clients) => clients,
        Err(err) => {
            println!("acks: connecting failed: {err}");
            return false;
        }
    };
    let rss_start = rss_bytes(pid).unwrap_or(0);
    let per_conn = opts.acks / opts.ack_conns as u64;
    let total = per_conn * opts.ack_conns as u64;
    println!(
        "acks: {total} acknowledged echoes over {} connections, {} in flight each",
        opts.ack_conns, opts.window
    );
    let start = Instant::now();
    let window = opts.window;
    let mut tasks = Vec::new();
    for (c, (_, conn)) in clients.iter().enumerate() {
        let (conn, stats) = (conn.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            futures_util::stream::iter(0..per_conn)
                .for_each_concurrent(window, |i| {
                    let (conn, stats) = (conn.clone(), stats.clone());
                    async move {
                        stats.echo(&conn, Bytes::from(format!("{c}:{i}"))).await;
                    }
                })
                .await;
        }));
    }
    // A generous bound: 1,000 acks a second would still finish.
    let cutoff = tokio::time::Instant::now() + Duration::from_secs(total / 1000 + 1) + GRACE;
    let mut peak = rss_start;
    let all = futures_util::future::join_all(tasks);
    tokio::pin!(all);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let finished = loop {
        tokio::select! {
            _ = &mut all => break true,
            _ = ticker.tick() => {
                peak = peak.max(rss_bytes(pid).unwrap_or(0));
                if tokio::time::Instant::now() >= cutoff {
                    break false;
                }
            }
        }
    };
    let elapsed = start.elapsed();
    let rss_end = rss_bytes(pid).unwrap_or(0);
    for (client, _) in &clients {
        client.close();
    }
    let sent = get(&stats.acks_sent);
    let answered = get(&stats.acks_answered);
    let mismatches = get(&stats.ack_mismatches);
    println!("acks: --- results ---");
    println!(
        "acks: sent {sent}, answered {answered}, mismatched {mismatches}, errors {} \
         (timed out {}, closed {}, refused {}), in {:.1} s ({:.0} acks/s){}",
        stats.ack_errors(),
        get(&stats.ack_timed_out),
        get(&stats.ack_closed),
        get(&stats.ack_refused),
        elapsed.as_secs_f64(),
        answered as f64 / elapsed.as_secs_f64(),
        if finished { "" } else { " - CUT OFF" }
    );
    println!(
        "acks: server RSS start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
        mib(rss_start),
        mib(peak.max(rss_end)),
        mib(rss_end)
    );
    finished && sent == total && answered == total && mismatches == 0 && stats.ack_errors() == 0
}
