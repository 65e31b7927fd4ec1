//! `--client lib`: the same workloads through the `etp-tokio` client library
//! (`Conn::emit_with_ack`, `Conn::emit`), to measure the client side of etp too.

use std::time::Instant;

use etp_benches::load::{EV_COUNT, EV_ECHO, EV_GETCOUNT, OUTBOUND_LIMIT, READ_LIMIT};
use etp_tokio::{Bytes, Client, ClientExt, Conn, EmitError, SlowConsumerPolicy};
use serde_json::json;

use crate::Opts;
use crate::proto::{Proto, nanos};
use crate::workloads::{Control, Fields, latency_fields, per_sec, round2};

async fn connect(opts: &Opts, max_pending: usize) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::with_capacity(opts.conns);
    for _ in 0..opts.conns {
        let client = Client::builder()
            .read_limit(Some(READ_LIMIT))
            .max_pending_acks(max_pending.max(1024))
            // `emit` never waits: past the bound it reports QueueFull and `fire` retries.
            .outbound_limit(OUTBOUND_LIMIT, SlowConsumerPolicy::DropNew)
            .build()
            .map_err(|err| err.to_string())?;
        let conn = client
            .dial(&opts.url)
            .await
            .map_err(|err| format!("dial {}: {err}", opts.url))?;
        conns.push(conn);
    }
    Ok(conns)
}

/// `ack` and `pipelined`: one task per connection keeping `k` requests in flight
/// (as the wire client does), each replaced by the next as soon as it is answered.
pub(crate) async fn round_trips(opts: &Opts, k: usize) -> Result<Fields, String> {
    use futures_util::StreamExt;
    use futures_util::stream::FuturesUnordered;

    let proto = Proto::new(opts.mode, opts.payload);
    let payload = Bytes::from(proto.payload().to_owned());
    let conns = connect(opts, k).await?;
    let control = Control::new(opts.max_ops);
    let start = Instant::now();
    let measure_from = start + opts.warmup;
    control.stop_at(measure_from + opts.duration);
    let mut tasks = Vec::new();
    for conn in &conns {
        let (conn, control, payload) = (conn.clone(), control.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let ask = |conn: Conn, payload: Bytes| async move {
                let sent = Instant::now();
                let answer = conn
                    .emit_with_ack(EV_ECHO, payload.clone())
                    .await
                    .map_err(|err| format!("emit_with_ack: {err}"))?;
                if answer.len() != payload.len() {
                    return Err(format!("echo of {} bytes", answer.len()));
                }
                Ok::<_, String>(sent)
            };
            let mut in_flight = FuturesUnordered::new();
            let mut latencies = Vec::new();
            for _ in 0..k {
                if control.take(1) == 1 {
                    in_flight.push(ask(conn.clone(), payload.clone()));
                }
            }
            while let Some(answered) = in_flight.next().await {
                let sent = answered?;
                if sent >= measure_from {
                    latencies.push(nanos(sent.elapsed()));
                }
                if control.take(1) == 1 {
                    in_flight.push(ask(conn.clone(), payload.clone()));
                }
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        latencies.extend(task.map_err(|err| err.to_string())??);
    }
    let elapsed = measure_from.elapsed();
    let ops = latencies.len() as u64;
    let mut fields = Fields::new();
    fields.insert("ops".into(), json!(ops));
    fields.insert("secs".into(), json!(round2(elapsed.as_secs_f64())));
    fields.insert("rate".into(), json!(per_sec(ops, elapsed)));
    fields.insert("unit".into(), json!("acks/s"));
    fields.insert("capped".into(), json!(control.hit_cap()));
    latency_fields(latencies, &mut fields);
    Ok(fields)
}

async fn get_count(conn: &Conn) -> Result<u64, String> {
    let answer = conn
        .emit_with_ack(EV_GETCOUNT, Bytes::new())
        .await
        .map_err(|err| format!("getcount: {err}"))?;
    std::str::from_utf8(&answer)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("getcount answered {answer:?}"))
}

/// `fire`: `emit` until the run ends. `emit` never waits for the socket: when the
/// outbound queue is full it fails with `QueueFull`, and the task yields and retries.
pub(crate) async fn fire(opts: &Opts) -> Result<Fields, String> {
    let proto = Proto::new(opts.mode, opts.payload);
    let payload = Bytes::from(proto.payload().to_owned());
    let conns = connect(opts, 1).await?;
    let before = get_count(&conns[0]).await?;
    let control = Control::new(opts.max_ops);
    let start = Instant::now();
    control.stop_at(start + opts.duration);
    let tasks: Vec<_> = conns
        .iter()
        .map(|conn| {
            let (conn, control, payload) = (conn.clone(), control.clone(), payload.clone());
            tokio::spawn(async move {
                let mut sent = 0u64;
                let mut full = 0u64;
                while control.take(1) == 1 {
                    loop {
                        match conn.emit(EV_COUNT, payload.clone()) {
                            Ok(()) => break,
                            Err(EmitError::QueueFull { .. }) => {
                                full += 1;
                                tokio::task::yield_now().await;
                            }
                            Err(err) => return Err(format!("emit: {err}")),
                        }
                    }
                    sent += 1;
                    if sent % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                // The count comes after this connection's events.
                get_count(&conn).await?;
                Ok::<_, String>((sent, full))
            })
        })
        .collect();
    let (mut sent, mut full) = (0, 0);
    for task in futures_util::future::join_all(tasks).await {
        let (s, f) = task.map_err(|err| err.to_string())??;
        sent += s;
        full += f;
    }
    let after = get_count(&conns[0]).await?;
    let elapsed = start.elapsed();
    let counted = after.saturating_sub(before);
    let mut fields = Fields::new();
    fields.insert("ops".into(), json!(counted));
    fields.insert("sent".into(), json!(sent));
    fields.insert("queue_full_retries".into(), json!(full));
    fields.insert("secs".into(), json!(round2(elapsed.as_secs_f64())));
    fields.insert("rate".into(), json!(per_sec(counted, elapsed)));
    fields.insert("unit".into(), json!("msgs/s"));
    fields.insert("capped".into(), json!(control.hit_cap()));
    Ok(fields)
}
