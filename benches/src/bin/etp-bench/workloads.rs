//! The workloads over tokio-tungstenite sockets, in either mode.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etp_benches::load::{rss_bytes, websocket_config};
use futures_util::{FutureExt, SinkExt, StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::Opts;
use crate::proto::{Proto, data_of, nanos, now_ns};

/// A client socket.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// What a workload reports, besides the fields every line has.
pub(crate) type Fields = Map<String, Value>;

/// How long the end of a run (answers in flight, deliveries, counts) may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the workload of `opts` and prints its JSON line; the exit code.
pub(crate) async fn run(opts: Opts) -> i32 {
    // Every run ends by itself: whatever hangs, the watchdog ends the process.
    let hard_limit = Duration::from_secs(60)
        + opts.duration
        + opts.warmup
        + opts.settle
        + DRAIN_TIMEOUT
        + Duration::from_millis(5 * opts.conns as u64);
    let watchdog_opts = opts.clone();
    tokio::spawn(async move {
        tokio::time::sleep(hard_limit).await;
        let mut fields = Fields::new();
        fields.insert(
            "error".into(),
            json!(format!("watchdog: no result after {hard_limit:?}")),
        );
        print_line(&watchdog_opts, fields);
        std::process::exit(3);
    });
    let result = match opts.workload.as_str() {
        "ack" if opts.lib_client => crate::lib_client::round_trips(&opts, 1).await,
        "pipelined" if opts.lib_client => crate::lib_client::round_trips(&opts, opts.k).await,
        "fire" if opts.lib_client => crate::lib_client::fire(&opts).await,
        "ack" => round_trips(&opts, 1).await,
        "pipelined" => round_trips(&opts, opts.k).await,
        "fire" => fire(&opts).await,
        "fanout" => fanout(&opts).await,
        "idle" => idle(&opts).await,
        other => Err(format!(
            "unknown workload {other:?}: ack, pipelined, fire, fanout or idle"
        )),
    };
    match result {
        Ok(fields) => {
            print_line(&opts, fields);
            0
        }
        Err(error) => {
            let mut fields = Fields::new();
            fields.insert("error".into(), json!(error));
            print_line(&opts, fields);
            1
        }
    }
}

/// One JSON line: what was run, then the workload's figures.
fn print_line(opts: &Opts, fields: Fields) {
    let mut line = Fields::new();
    line.insert("tool".into(), json!("etp-bench"));
    line.insert("label".into(), json!(opts.label));
    line.insert("mode".into(), json!(opts.mode.name()));
    line.insert(
        "client".into(),
        json!(if opts.lib_client { "lib" } else { "wire" }),
    );
    line.insert("workload".into(), json!(opts.workload));
    line.insert("url".into(), json!(opts.url));
    line.insert("conns".into(), json!(opts.conns));
    line.insert("payload".into(), json!(opts.payload));
    match opts.workload.as_str() {
        "pipelined" => {
            line.insert("k".into(), json!(opts.k));
        }
        "fanout" => {
            line.insert("window".into(), json!(opts.window));
        }
        _ => {}
    }
    line.extend(fields);
    println!("{}", Value::Object(line));
}

/// Stops the load: at the deadline, or when the operation cap is reached.
pub(crate) struct Control {
    stop: AtomicBool,
    ops: AtomicU64,
    max_ops: u64,
}

impl Control {
    pub(crate) fn new(max_ops: u64) -> Arc<Self> {
        Arc::new(Self {
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            max_ops,
        })
    }

    /// Takes up to `n` operations; 0 once the run is over.
    pub(crate) fn take(&self, n: u64) -> u64 {
        if self.stop.load(Ordering::Relaxed) {
            return 0;
        }
        let before = self.ops.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) >= self.max_ops {
            self.stop.store(true, Ordering::Relaxed);
        }
        n.min(self.max_ops.saturating_sub(before))
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the run at `at`.
    pub(crate) fn stop_at(self: &Arc<Self>, at: Instant) {
        let control = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            control.stop();
        });
    }

    pub(crate) fn hit_cap(&self) -> bool {
        self.ops.load(Ordering::Relaxed) >= self.max_ops
    }
}

fn ws_error(err: impl std::fmt::Display) -> String {
    format!("websocket: {err}")
}

/// Opens one WebSocket (plain `ws://` only) with the small buffers of the servers.
pub(crate) async fn dial(url: &str) -> Result<Ws, String> {
    let request = url.into_client_request().map_err(ws_error)?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(format!("{url}: only ws:// URLs (loopback benchmarks)"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|err| format!("connect {host}:{port}: {err}"))?;
    stream.set_nodelay(true).map_err(|err| err.to_string())?;
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(websocket_config()))
            .await
            .map_err(ws_error)?;
    Ok(ws)
}

/// Opens `n` sockets, `concurrency` handshakes at a time.
pub(crate) async fn dial_all(url: &str, n: usize, concurrency: usize) -> Result<Vec<Ws>, String> {
    futures_util::stream::iter(0..n)
        .map(|_| dial(url))
        .buffer_unordered(concurrency)
        .try_collect()
        .await
}

/// The next data message (control messages are skipped).
async fn recv(ws: &mut Ws) -> Result<Bytes, String> {
    loop {
        match ws.next().await {
            None => return Err("connection closed by the server".into()),
            Some(Err(err)) => return Err(ws_error(err)),
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("server closed the connection: {frame:?}"));
            }
            Some(Ok(message)) => {
                if let Some(data) = data_of(message) {
                    return Ok(data);
                }
            }
        }
    }
}

/// Asks for the server's counter and waits for it.
async fn get_count(ws: &mut Ws, proto: &Proto, id: u64) -> Result<u64, String> {
    ws.send(proto.getcount(id)).await.map_err(ws_error)?;
    loop {
        let data = recv(ws).await?;
        if let Some(count) = proto.count(&data)? {
            return Ok(count);
        }
    }
}

/// p50, p99 and max of latencies in nanoseconds, in microseconds.
pub(crate) fn latency_fields(mut ns: Vec<u64>, fields: &mut Fields) {
    ns.sort_unstable();
    let at = |q: f64| -> f64 {
        if ns.is_empty() {
            return 0.0;
        }
        let index = ((ns.len() as f64 * q).ceil() as usize).clamp(1, ns.len()) - 1;
        ns[index] as f64 / 1000.0
    };
    fields.insert("p50_us".into(), json!(round2(at(0.50))));
    fields.insert("p99_us".into(), json!(round2(at(0.99))));
    fields.insert("max_us".into(), json!(round2(at(1.0))));
    fields.insert("samples".into(), json!(ns.len()));
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Per second over `elapsed`.
pub(crate) fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (count as f64 / secs).round()
    } else {
        0.0
    }
}

/// `ack` (k = 1) and `pipelined`: every connection keeps `k` requests in flight.
async fn round_trips(opts: &Opts, k: usize) -> Result<Fields, String> {
    let proto = Arc::new(Proto::new(opts.mode, opts.payload));
    let sockets = dial_all(&opts.url, opts.conns, opts.dial_concurrency).await?;
    let control = Control::new(opts.max_ops);
    let start = Instant::now();
    let measure_from = start + opts.warmup;
    control.stop_at(measure_from + opts.duration);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| {
            tokio::spawn(round_trip_conn(
                ws,
                proto.clone(),
                control.clone(),
                k,
                measure_from,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        latencies.extend(task.map_err(|err| err.to_string())??);
    }
    let end = Instant::now();
    let elapsed = end.saturating_duration_since(measure_from);
    let mut fields = Fields::new();
    let ops = latencies.len() as u64;
    fields.insert("ops".into(), json!(ops));
    fields.insert("secs".into(), json!(round2(elapsed.as_secs_f64())));
    fields.insert("rate".into(), json!(per_sec(ops, elapsed)));
    fields.insert("unit".into(), json!("acks/s"));
    fields.insert("capped".into(), json!(control.hit_cap()));
    latency_fields(latencies, &mut fields);
    Ok(fields)
}

async fn round_trip_conn(
    mut ws: Ws,
    proto: Arc<Proto>,
    control: Arc<Control>,
    k: usize,
    measure_from: Instant,
) -> Result<Vec<u64>, String> {
    let mut latencies = Vec::new();
    // Send times in sending order, with their ids. Answers come in order from the
    // echo server and, nearly always, from etp servers; an etp answer may overtake
    // others when handlers run concurrently, and is then looked up among the (at most
    // k) in flight. The same queue in both modes keeps the load generator's own work
    // the same: a hash map per etp request made it the bottleneck of pipelined at 64 B.
    let mut sent: VecDeque<(u64, Instant)> = VecDeque::with_capacity(k);
    let mut next_id = 0u64;
    let mut in_flight = 0usize;
    for _ in 0..control.take(k as u64) {
        next_id += 1;
        sent.push_back((next_id, Instant::now()));
        ws.feed(proto.request(next_id)).await.map_err(ws_error)?;
        in_flight += 1;
    }
    ws.flush().await.map_err(ws_error)?;
    while in_flight > 0 {
        let mut message = match ws.next().await {
            Some(Ok(message)) => message,
            Some(Err(err)) => return Err(ws_error(err)),
            None => return Err("connection closed by the server".into()),
        };
        // Answer everything already received, then flush the new requests once.
        loop {
            if let Message::Close(frame) = &message {
                return Err(format!("server closed the connection: {frame:?}"));
            }
            if let Some(data) = data_of(message) {
                let done = Instant::now();
                let sent_at = match proto.reply_id(&data)? {
                    Some(id) if sent.front().is_some_and(|(first, _)| *first != id) => sent
                        .iter()
                        .position(|(sent_id, _)| *sent_id == id)
                        .and_then(|i| sent.remove(i)),
                    _ => sent.pop_front(),
                }
                .map(|(_, at)| at)
                .ok_or("an answer to no request")?;
                in_flight -= 1;
                if sent_at >= measure_from {
                    latencies.push(nanos(done - sent_at));
                }
                if control.take(1) == 1 {
                    next_id += 1;
                    sent.push_back((next_id, Instant::now()));
                    ws.feed(proto.request(next_id)).await.map_err(ws_error)?;
                    in_flight += 1;
                }
            }
            message = match ws.next().now_or_never() {
                None => break,
                Some(Some(Ok(message))) => message,
                Some(Some(Err(err))) => return Err(ws_error(err)),
                Some(None) => return Err("connection closed by the server".into()),
            };
        }
        ws.flush().await.map_err(ws_error)?;
    }
    Ok(latencies)
}

/// `fire`: events without acknowledgement as fast as the sockets take them; the rate
/// is what the server counted, from the first event until its count covers them all.
async fn fire(opts: &Opts) -> Result<Fields, String> {
    let proto = Arc::new(Proto::new(opts.mode, opts.payload));
    let mut control_ws = dial(&opts.url).await?;
    let sockets = dial_all(&opts.url, opts.conns, opts.dial_concurrency).await?;
    let before = get_count(&mut control_ws, &proto, 1).await?;
    let control = Control::new(opts.max_ops);
    let start = Instant::now();
    control.stop_at(start + opts.duration);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(fire_conn(ws, proto.clone(), control.clone())))
        .collect();
    let mut sent = 0u64;
    let drained = async {
        for task in futures_util::future::join_all(tasks).await {
            sent += task.map_err(|err| err.to_string())??;
        }
        get_count(&mut control_ws, &proto, 2).await
    };
    let after = tokio::time::timeout(opts.duration + DRAIN_TIMEOUT, drained)
        .await
        .map_err(|_| "the server did not count the events in time".to_owned())??;
    let elapsed = start.elapsed();
    let counted = after.saturating_sub(before);
    let mut fields = Fields::new();
    fields.insert("ops".into(), json!(counted));
    fields.insert("sent".into(), json!(sent));
    fields.insert("secs".into(), json!(round2(elapsed.as_secs_f64())));
    fields.insert("rate".into(), json!(per_sec(counted, elapsed)));
    fields.insert("unit".into(), json!("msgs/s"));
    fields.insert("capped".into(), json!(control.hit_cap()));
    Ok(fields)
}

/// Sends until the run ends, then asks for the count on the same connection (so that
/// it comes after this connection's events). Returns how many were sent.
async fn fire_conn(mut ws: Ws, proto: Arc<Proto>, control: Arc<Control>) -> Result<u64, String> {
    let mut sent = 0u64;
    loop {
        let n = control.take(64);
        if n == 0 {
            break;
        }
        for _ in 0..n {
            ws.feed(proto.fire()).await.map_err(ws_error)?;
        }
        ws.flush().await.map_err(ws_error)?;
        sent += n;
    }
    get_count(&mut ws, &proto, 1).await?;
    Ok(sent)
}

/// What the fanout members and the publisher share.
struct Deliveries {
    count: AtomicU64,
    /// The count the publisher waits for.
    wanted: AtomicU64,
    reached: Notify,
}

impl Deliveries {
    fn delivered(&self) {
        let count = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if count >= self.wanted.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    async fn wait_for(&self, wanted: u64, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.count.load(Ordering::Acquire) >= wanted {
                return Ok(());
            }
            self.wanted.store(wanted, Ordering::Release);
            if self.count.load(Ordering::Acquire) >= wanted {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, self.reached.notified())
                .await
                .is_err()
            {
                let count = self.count.load(Ordering::Acquire);
                return Err(format!(
                    "fanout stalled: {count} deliveries, waiting for {wanted}"
                ));
            }
        }
    }
}

/// `fanout`: `conns` members in room `r`, one publisher at most `window` publishes
/// ahead of the deliveries.
async fn fanout(opts: &Opts) -> Result<Fields, String> {
    let proto = Arc::new(Proto::new(opts.mode, opts.payload));
    let members = opts.conns as u64;
    let mut sockets = dial_all(&opts.url, opts.conns, opts.dial_concurrency).await?;
    for (id, ws) in (1..).zip(sockets.iter_mut()) {
        ws.send(proto.join(id)).await.map_err(ws_error)?;
        while !proto.joined(&recv(ws).await?) {}
    }
    let mut publisher = dial(&opts.url).await?;
    let deliveries = Arc::new(Deliveries {
        count: AtomicU64::new(0),
        wanted: AtomicU64::new(u64::MAX),
        reached: Notify::new(),
    });
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| {
            tokio::spawn(member(
                ws,
                proto.clone(),
                deliveries.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let start = Instant::now();
    let deadline = start + opts.duration;
    let max_publishes = (opts.max_ops / members).max(1);
    let mut published = 0u64;
    let mut outcome = Ok(());
    while Instant::now() < deadline && published < max_publishes {
        if published >= opts.window {
            let wanted = (published - opts.window + 1) * members;
            outcome = deliveries.wait_for(wanted, DRAIN_TIMEOUT).await;
            if outcome.is_err() {
                break;
            }
        }
        if let Err(err) = publisher.send(proto.publish(now_ns())).await {
            outcome = Err(ws_error(err));
            break;
        }
        published += 1;
    }
    if outcome.is_ok() {
        outcome = deliveries
            .wait_for(published * members, DRAIN_TIMEOUT)
            .await;
    }
    let elapsed = start.elapsed();
    let _ = stop.send(true);
    let mut latencies = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        latencies.extend(task.map_err(|err| err.to_string())??);
    }
    outcome?;
    let delivered = deliveries.count.load(Ordering::Acquire);
    let mut fields = Fields::new();
    fields.insert("ops".into(), json!(delivered));
    fields.insert("publishes".into(), json!(published));
    fields.insert("secs".into(), json!(round2(elapsed.as_secs_f64())));
    fields.insert("rate".into(), json!(per_sec(delivered, elapsed)));
    fields.insert("unit".into(), json!("deliveries/s"));
    fields.insert("capped".into(), json!(published >= max_publishes));
    latency_fields(latencies, &mut fields);
    Ok(fields)
}

async fn member(
    mut ws: Ws,
    proto: Arc<Proto>,
    deliveries: Arc<Deliveries>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<u64>, String> {
    let mut latencies = Vec::new();
    loop {
        tokio::select! {
            biased;
            message = ws.next() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => return Err(ws_error(err)),
                    None => return Err("member connection closed by the server".into()),
                };
                if let Some(data) = data_of(message) {
                    let sent = proto.delivery(&data)?;
                    latencies.push(now_ns().saturating_sub(sent));
                    deliveries.delivered();
                }
            }
            _ = stop.changed() => return Ok(latencies),
        }
    }
}

/// `idle`: the server's RSS growth per open connection.
async fn idle(opts: &Opts) -> Result<Fields, String> {
    let pid = opts
        .server_pid
        .ok_or("the idle workload needs --server-pid")?;
    let rss = |pid| rss_bytes(pid).map_err(|err| format!("/proc/{pid}/status: {err}"));
    let before = rss(pid)?;
    let start = Instant::now();
    let mut sockets = dial_all(&opts.url, opts.conns, opts.dial_concurrency).await?;
    let dial_secs = start.elapsed().as_secs_f64();
    if opts.touch {
        // One round trip each: the connection has carried a message, as most have.
        let proto = Proto::new(opts.mode, opts.payload);
        for ws in &mut sockets {
            ws.send(proto.request(1)).await.map_err(ws_error)?;
            proto.reply_id(&recv(ws).await?)?;
        }
    }
    tokio::time::sleep(opts.settle).await;
    let after = rss(pid)?;
    // Still open? A socket the server closed would have its close frame waiting.
    let mut closed = 0usize;
    for ws in &mut sockets {
        if let Some(Some(Ok(Message::Close(_)) | Err(_)) | None) = ws.next().now_or_never() {
            closed += 1;
        }
    }
    let per_conn = after.saturating_sub(before) as f64 / opts.conns as f64;
    let mut fields = Fields::new();
    fields.insert("touch".into(), json!(opts.touch));
    fields.insert("server_pid".into(), json!(pid));
    fields.insert("rss_before".into(), json!(before));
    fields.insert("rss_after".into(), json!(after));
    fields.insert("bytes_per_conn".into(), json!(per_conn.round()));
    fields.insert("rate".into(), json!(round2(per_conn / 1024.0)));
    fields.insert("unit".into(), json!("KiB/conn"));
    fields.insert("closed_by_server".into(), json!(closed));
    fields.insert("dial_secs".into(), json!(round2(dial_secs)));
    Ok(fields)
}
