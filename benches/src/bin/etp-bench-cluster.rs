//! The scale-out benchmark: room broadcasts across two etp nodes on Redis, against
//! a single node, in one run.
//!
//! ```sh
//! cargo run --release -p etp-benches --bin etp-bench-cluster -- \
//!     [--members N] [--messages M] [--latency-messages L] [--rate R] [--payload B] [--reps K]
//! ```
//!
//! Three setups, interleaved in each repetition (A B C A B C ...):
//!
//! * `single`: one server without a cluster; the members and the broadcaster on it.
//! * `cluster-local`: two nodes on Redis; the members on the broadcasting node (what a
//!   cluster adds to a local broadcast: one envelope published).
//! * `cluster-remote`: two nodes on Redis; every member on the other node (the whole
//!   broadcast crosses Redis).
//!
//! Each setup measures throughput (M broadcasts sent at once to N members: member
//! deliveries per second, first send to last delivery) and latency (L broadcasts paced
//! at R per second: send-to-receive time of every delivery, p50 and p99). The members
//! are etp clients in the same process; every broadcast carries its send time.
//!
//! Redis: `REDIS_URL`, or a private `redis-server` (from PATH) on a free port.
//! Every phase is bounded (30 s); the run stops by itself.

#[path = "../../../etp-redis/tests/common/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use etp_redis::{ClusterConfig, RedisBroker, RedisConfig};
use etp_tokio::{Client, ClientExt, Conn, Event, Server, ServerExt};
use tokio::net::TcpListener;

const ROOM: &str = "bench";
const PHASE_LIMIT: Duration = Duration::from_secs(30);

/// The clock every send time is measured on.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

struct Args {
    members: usize,
    messages: usize,
    latency_messages: usize,
    rate: u64,
    payload: usize,
    reps: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        members: 100,
        messages: 2000,
        latency_messages: 500,
        rate: 500,
        payload: 64,
        reps: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        let Some(value) = value else {
            eprintln!("{flag} needs a number");
            std::process::exit(2);
        };
        let as_usize = usize::try_from(value).unwrap_or(usize::MAX);
        match flag.as_str() {
            "--members" => args.members = as_usize.max(1),
            "--messages" => args.messages = as_usize.max(1),
            "--latency-messages" => args.latency_messages = as_usize.max(1),
            "--rate" => args.rate = value.max(1),
            "--payload" => args.payload = as_usize.max(20),
            "--reps" => args.reps = as_usize.max(1),
            other => {
                eprintln!("unknown option {other}");
                std::process::exit(2);
            }
        }
    }
    args
}

/// What the members saw.
#[derive(Default)]
struct Sink {
    deliveries: AtomicU64,
    recording: AtomicBool,
    latencies_us: Mutex<Vec<u32>>,
}

impl Sink {
    fn reset(&self, record: bool) {
        self.deliveries.store(0, Ordering::Release);
        self.latencies_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.recording.store(record, Ordering::Release);
    }

    fn received(&self, data: &[u8]) {
        if self.recording.load(Ordering::Acquire) {
            let sent = std::str::from_utf8(&data[..20.min(data.len())])
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(sent) = sent {
                let now = u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX);
                let us = now.saturating_sub(sent) / 1000;
                self.latencies_us
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
        }
        self.deliveries.fetch_add(1, Ordering::AcqRel);
    }

    async fn wait_for(&self, count: u64) -> Result<(), String> {
        let deadline = Instant::now() + PHASE_LIMIT;
        while self.deliveries.load(Ordering::Acquire) < count {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {count} deliveries within {PHASE_LIMIT:?}",
                    self.deliveries.load(Ordering::Acquire)
                ));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(())
    }
}

/// A server whose connections join the bench room on `join`.
async fn server(broker: Option<RedisBroker>) -> (Server, String) {
    let builder = Server::builder().on("join", |conn: Conn, _: Event| async move {
        conn.join(ROOM);
    });
    let builder = match broker {
        Some(broker) => builder.cluster(broker, ClusterConfig::default()),
        None => builder,
    };
    let server = builder.build().expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("address"));
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    (server, url)
}

async fn members(url: &str, count: usize, sink: &Arc<Sink>) -> Vec<Client> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let sink = sink.clone();
        let client = Client::builder()
            .on("tick", move |_: Conn, event: Event| {
                sink.received(event.data());
                async {}
            })
            .build()
            .expect("client");
        let conn = client.dial(url).await.expect("dial");
        conn.emit_with_ack("join", "").await.expect("join");
        clients.push(client);
    }
    clients
}

fn tick(payload: usize) -> Vec<u8> {
    let sent = u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut data = format!("{sent:020}").into_bytes();
    data.resize(payload, b'x');
    data
}

struct Measured {
    deliveries_per_s: f64,
    p50_us: u32,
    p99_us: u32,
}

async fn measure(
    publisher: &Server,
    sink: &Sink,
    members: usize,
    args: &Args,
) -> Result<Measured, String> {
    // Throughput: everything at once.
    sink.reset(false);
    let expected = (args.messages * members) as u64;
    let start = Instant::now();
    for _ in 0..args.messages {
        let report = publisher
            .rooms()
            .broadcast([ROOM], "tick", &tick(args.payload), None)
            .map_err(|e| e.to_string())?;
        if report.unpublished {
            return Err("the broker refused a broadcast".to_owned());
        }
    }
    sink.wait_for(expected).await?;
    let deliveries_per_s = expected as f64 / start.elapsed().as_secs_f64();

    // Latency: paced.
    sink.reset(true);
    let period = Duration::from_nanos(1_000_000_000 / args.rate);
    let mut next = tokio::time::Instant::now();
    for _ in 0..args.latency_messages {
        tokio::time::sleep_until(next).await;
        next += period;
        publisher
            .rooms()
            .broadcast([ROOM], "tick", &tick(args.payload), None)
            .map_err(|e| e.to_string())?;
    }
    sink.wait_for((args.latency_messages * members) as u64)
        .await?;
    let mut latencies = std::mem::take(
        &mut *sink
            .latencies_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(Measured {
        deliveries_per_s,
        p50_us: at(0.50),
        p99_us: at(0.99),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    base();
    let mut own_redis = None;
    let redis_url = match std::env::var("REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let redis = redis_server::RedisServer::start();
            eprintln!("REDIS_URL not set: started redis-server at {}", redis.url());
            own_redis.insert(redis).url()
        }
    };
    let broker = || async {
        RedisBroker::connect(RedisConfig::new(redis_url.as_str()))
            .await
            .expect("Redis answers")
    };

    // single: no cluster.
    let (single, single_url) = server(None).await;
    // Two nodes on Redis.
    let (node_a, url_a) = server(Some(broker().await)).await;
    let (node_b, url_b) = server(Some(broker().await)).await;
    tokio::time::timeout(Duration::from_secs(10), node_a.cluster().wait_for_nodes(2))
        .await
        .expect("the two nodes meet");

    let setups: [(&str, &Server, &str); 3] = [
        ("single", &single, &single_url),
        ("cluster-local", &node_a, &url_a),
        ("cluster-remote", &node_a, &url_b),
    ];
    let mut results: Vec<Vec<Measured>> = (0..setups.len()).map(|_| Vec::new()).collect();
    for rep in 0..args.reps {
        for (i, (name, publisher, members_url)) in setups.iter().enumerate() {
            let sink = Arc::new(Sink::default());
            let clients = members(members_url, args.members, &sink).await;
            let measured = measure(publisher, &sink, args.members, &args)
                .await
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            eprintln!(
                "rep {rep} {name}: {:.0} deliveries/s, p50 {} us, p99 {} us",
                measured.deliveries_per_s, measured.p50_us, measured.p99_us
            );
            results[i].push(measured);
            for client in &clients {
                client.close();
            }
            drop(clients);
            // Let the closes land before the next setup.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let medians: Vec<(f64, f64, f64)> = results
        .iter()
        .map(|runs| {
            (
                median(runs.iter().map(|m| m.deliveries_per_s).collect()),
                median(runs.iter().map(|m| f64::from(m.p50_us)).collect()),
                median(runs.iter().map(|m| f64::from(m.p99_us)).collect()),
            )
        })
        .collect();
    let (base_rate, base_p50, base_p99) = medians[0];
    println!(
        "{} members, {} B payload; throughput: {} broadcasts at once; latency: {} broadcasts at {}/s; medians of {}",
        args.members, args.payload, args.messages, args.latency_messages, args.rate, args.reps
    );
    println!();
    println!("| setup | deliveries/s | vs single | p50 | p99 | added p50 | added p99 |");
    println!("|---|--:|--:|--:|--:|--:|--:|");
    for ((name, _, _), (rate, p50, p99)) in setups.iter().zip(&medians) {
        println!(
            "| {name} | {rate:.0} | {:.2} | {p50:.0} µs | {p99:.0} µs | {:+.0} µs | {:+.0} µs |",
            rate / base_rate,
            p50 - base_p50,
            p99 - base_p99
        );
    }
    for server in [&single, &node_a, &node_b] {
        server.shutdown(Duration::from_secs(2)).await;
    }
    drop(own_redis);
}
