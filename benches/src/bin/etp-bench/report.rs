//! `etp-bench report FILE...`: the JSON lines of a matrix run as markdown tables.
//!
//! Runs are grouped by cell (workload, client, connections, payload, k, window) and by
//! label (the server: `raw`, `etp-tokio`, ...; the first label of a raw run is the
//! reference, any other raw label, such as `raw-async-std`, is a column). Each figure is the median of its
//! repetitions. Each ratio is the median over repetitions of etp's figure divided by
//! raw's figure of the same repetition (the runs are interleaved, so a repetition's
//! two runs are seconds apart), which cancels most of the machine's drift.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// One cell of the matrix: what was run, apart from the server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cell {
    workload_order: u8,
    workload: String,
    client: String,
    conns: u64,
    payload: u64,
    k: u64,
    window: u64,
}

#[derive(Clone, Debug, Default)]
struct Runs {
    rates: Vec<f64>,
    p99s: Vec<f64>,
    errors: Vec<String>,
}

fn workload_order(workload: &str) -> u8 {
    match workload {
        "ack" => 0,
        "pipelined" => 1,
        "fire" => 2,
        "fanout" => 3,
        "idle" => 4,
        _ => 5,
    }
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The i-th rate over the i-th reference rate (the runs of a repetition are
/// interleaved, seconds apart).
fn paired_ratios(rates: &[f64], reference: &[f64]) -> Vec<f64> {
    rates
        .iter()
        .zip(reference)
        .filter(|(_, r)| **r > 0.0)
        .map(|(e, r)| e / r)
        .collect()
}

/// The target of a cell's ratio to raw, if it has one. The targets are the server's,
/// measured with the wire client; the client library's cells are informative.
fn target(cell: &Cell) -> Option<f64> {
    if cell.client != "wire" {
        return None;
    }
    match cell.workload.as_str() {
        "ack" if cell.conns == 16 && cell.payload == 64 => Some(0.85),
        "pipelined" | "fire" => Some(0.85),
        "fanout" if cell.conns >= 1000 => Some(0.70),
        _ => None,
    }
}

fn size(bytes: u64) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn micros(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(us) if us >= 10_000.0 => format!("{:.0} ms", us / 1000.0),
        Some(us) if us >= 1000.0 => format!("{:.1} ms", us / 1000.0),
        Some(us) => format!("{us:.0} µs"),
    }
}

/// Reads the files and renders the tables.
pub(crate) fn run(files: &[String]) -> Result<String, String> {
    let mut cells: BTreeMap<Cell, BTreeMap<String, Runs>> = BTreeMap::new();
    let mut labels: Vec<(String, bool)> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|err| format!("{file}: {err}"))?;
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            let value: Value =
                serde_json::from_str(line).map_err(|err| format!("{file}: {err}: {line}"))?;
            let get_u64 = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
            let get_str = |key: &str| {
                value
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let workload = get_str("workload");
            let mode = get_str("mode");
            let mut label = get_str("label");
            if label.is_empty() {
                label.clone_from(&mode);
            }
            if !labels.iter().any(|(l, _)| *l == label) {
                // The first raw label is the reference; later raw labels (raw servers
                // on other runtimes) are columns like the etp servers.
                let reference = mode == "raw" && !labels.iter().any(|(_, raw)| *raw);
                labels.push((label.clone(), reference));
            }
            let cell = Cell {
                workload_order: workload_order(&workload),
                workload,
                client: get_str("client"),
                conns: get_u64("conns"),
                payload: get_u64("payload"),
                k: get_u64("k"),
                window: get_u64("window"),
            };
            let runs = cells.entry(cell).or_default().entry(label).or_default();
            if let Some(error) = value.get("error").and_then(Value::as_str) {
                runs.errors.push(error.to_owned());
                continue;
            }
            runs.rates
                .push(value.get("rate").and_then(Value::as_f64).unwrap_or(0.0));
            if let Some(p99) = value.get("p99_us").and_then(Value::as_f64) {
                runs.p99s.push(p99);
            }
        }
    }
    // The raw label first, then the others in order of appearance.
    labels.sort_by_key(|(_, raw)| !raw);
    let raw_label = labels.iter().find(|(_, raw)| *raw).map(|(l, _)| l.clone());
    let others: Vec<String> = labels
        .iter()
        .filter(|(_, raw)| !raw)
        .map(|(l, _)| l.clone())
        .collect();

    let mut out = String::new();
    let mut header = String::from("| workload | client | conns | payload | raw |");
    let mut rule = String::from("|---|---|--:|--:|--:|");
    for label in &others {
        let _ = write!(header, " {label} | ratio |");
        rule.push_str("--:|--:|");
    }
    // etp on a runtime against the raw server on the same runtime (`etp-X` against
    // `raw-X`), when the run has one: how far etp is from its own stack's limit.
    let own_raw: Vec<(String, String)> = others
        .iter()
        .filter_map(|label| {
            let runtime = label.strip_prefix("etp-")?;
            let raw = format!("raw-{runtime}");
            others.contains(&raw).then(|| (label.clone(), raw))
        })
        .collect();
    for (label, raw) in &own_raw {
        let _ = write!(header, " {label} / {raw} |");
        rule.push_str("--:|");
    }
    header.push_str(" target |");
    rule.push_str("---|");
    let _ = write!(header, " p99 raw |");
    rule.push_str("--:|");
    for label in &others {
        let _ = write!(header, " p99 {label} |");
        rule.push_str("--:|");
    }
    let mut rows = String::new();

    let mut idle_rows = Vec::new();
    let mut verdicts = Vec::new();
    let mut errors = Vec::new();
    for (cell, by_label) in &cells {
        for (label, runs) in by_label {
            for error in &runs.errors {
                errors.push(format!(
                    "{} {} conns={} payload={}: {label}: {error}",
                    cell.workload, cell.client, cell.conns, cell.payload
                ));
            }
        }
        if cell.workload == "idle" {
            idle_rows.push((cell.clone(), by_label.clone()));
            continue;
        }
        // Raw runs that only serve as the reference of another cell (client library).
        if !others.iter().any(|label| by_label.contains_key(label)) {
            continue;
        }
        // The client library's cells compare with raw over the wire client.
        let wire_cell = Cell {
            client: "wire".into(),
            ..cell.clone()
        };
        let raw_runs = raw_label.as_ref().and_then(|l| {
            by_label
                .get(l)
                .or_else(|| cells.get(&wire_cell).and_then(|w| w.get(l)))
        });
        let raw_rate = raw_runs.and_then(|r| median(&r.rates));
        let workload = match cell.workload.as_str() {
            "pipelined" => format!("pipelined k={}", cell.k),
            "fanout" => format!("fanout w={}", cell.window),
            other => other.to_owned(),
        };
        let mut row = format!(
            "| {workload} | {} | {} | {} | {} |",
            cell.client,
            cell.conns,
            size(cell.payload),
            raw_rate.map_or("-".into(), thousands)
        );
        let goal = target(cell);
        let mut statuses = Vec::new();
        for label in &others {
            let runs = by_label.get(label);
            let rate = runs.and_then(|r| median(&r.rates));
            // Paired ratios: the i-th run of this label over the i-th raw run.
            let ratio = match (runs, raw_runs) {
                (Some(runs), Some(raw)) => median(&paired_ratios(&runs.rates, &raw.rates)),
                _ => None,
            };
            let _ = write!(
                row,
                " {} | {} |",
                rate.map_or("-".into(), thousands),
                ratio.map_or("-".into(), |r| format!("{r:.2}"))
            );
            // The targets are etp's: other columns (raw servers on other runtimes,
            // the protocol floor) are there for reading them.
            if let (Some(goal), Some(ratio), true) = (goal, ratio, label.starts_with("etp")) {
                let pass = ratio >= goal;
                statuses.push(format!("{label} {}", if pass { "ok" } else { "FAIL" }));
                verdicts.push(format!(
                    "| {workload} | {} | {} | {label} | {ratio:.2} | ≥ {goal:.2} | {} |",
                    cell.conns,
                    size(cell.payload),
                    if pass { "pass" } else { "**FAIL**" }
                ));
            }
        }
        for (label, raw) in &own_raw {
            let ratio = match (by_label.get(label), by_label.get(raw)) {
                (Some(etp), Some(raw)) => median(&paired_ratios(&etp.rates, &raw.rates)),
                _ => None,
            };
            let _ = write!(
                row,
                " {} |",
                ratio.map_or("-".into(), |r| format!("{r:.2}"))
            );
        }
        let _ = write!(
            row,
            " {} |",
            match goal {
                Some(g) if !statuses.is_empty() => format!("≥ {g:.2}: {}", statuses.join(", ")),
                _ => "-".into(),
            }
        );
        let _ = write!(row, " {} |", micros(raw_runs.and_then(|r| median(&r.p99s))));
        for label in &others {
            let p99 = by_label.get(label).and_then(|r| median(&r.p99s));
            let _ = write!(row, " {} |", micros(p99));
        }
        let _ = writeln!(rows, "{row}");
    }
    if !rows.is_empty() {
        let _ = write!(out, "{header}\n{rule}\n{rows}");
    }

    if !idle_rows.is_empty() {
        let _ = writeln!(
            out,
            "\nIdle connections: server RSS growth per open connection (target ≤ 12 KiB \
             for etp at 10,000).\n"
        );
        let _ = writeln!(out, "| conns | server | KiB per connection | target |");
        let _ = writeln!(out, "|--:|---|--:|---|");
        for (cell, by_label) in &idle_rows {
            for (label, runs) in by_label {
                let Some(kib) = median(&runs.rates) else {
                    continue;
                };
                let is_raw = labels.iter().any(|(l, raw)| *raw && l == label);
                // The target is for idle connections: a connection that exchanged a
                // message first ("touched") is informative.
                let goal = if is_raw || label.ends_with("(touched)") {
                    "-".to_owned()
                } else {
                    let pass = kib <= 12.0;
                    verdicts.push(format!(
                        "| idle | {} | - | {label} | {kib:.1} KiB | ≤ 12 KiB | {} |",
                        cell.conns,
                        if pass { "pass" } else { "**FAIL**" }
                    ));
                    format!("≤ 12: {}", if pass { "ok" } else { "FAIL" })
                };
                let _ = writeln!(
                    out,
                    "| {} | {label} | {kib:.1} | {goal} |",
                    thousands(cell.conns as f64)
                );
            }
        }
    }

    if !verdicts.is_empty() {
        let _ = writeln!(out, "\nTargets:\n");
        let _ = writeln!(
            out,
            "| workload | conns | payload | server | figure | target | status |"
        );
        let _ = writeln!(out, "|---|--:|--:|---|--:|---|---|");
        for verdict in &verdicts {
            let _ = writeln!(out, "{verdict}");
        }
    }
    if !errors.is_empty() {
        let _ = writeln!(out, "\nFailed runs ({}):\n", errors.len());
        for error in &errors {
            let _ = writeln!(out, "* {error}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        label: &str,
        mode: &str,
        client: &str,
        workload: &str,
        conns: u64,
        rate: f64,
    ) -> String {
        serde_json::json!({
            "label": label, "mode": mode, "client": client, "workload": workload,
            "conns": conns, "payload": 64, "k": 16, "rate": rate,
        })
        .to_string()
    }

    fn report(lines: &[String]) -> String {
        let path =
            std::env::temp_dir().join(format!("etp-report-test-{}.jsonl", std::process::id()));
        std::fs::write(&path, lines.join("\n")).unwrap();
        let out = run(&[path.to_string_lossy().into_owned()]).unwrap();
        let _ = std::fs::remove_file(&path);
        out
    }

    /// Only the cells get a verdict, and only for etp's servers: the wire
    /// client's pipelined cell does, at its edge (0.85 passes, 0.84 fails); the client
    /// library's cells, touched idle connections, the other raw servers and the
    /// protocol floor are informative.
    #[test]
    fn verdicts_cover_the_targets_cells_only() {
        let out = report(&[
            line("raw", "raw", "wire", "pipelined", 16, 100.0),
            line("etp-tokio", "etp", "wire", "pipelined", 16, 85.0),
            line("etp-async-std", "etp", "wire", "pipelined", 16, 84.0),
            line("etp-tokio", "etp", "lib", "pipelined", 16, 20.0),
            line("raw", "raw", "wire", "idle", 10000, 13.0),
            line("etp-tokio", "etp", "wire", "idle", 10000, 12.0),
            line("etp-tokio (touched)", "etp", "wire", "idle", 10000, 15.0),
            line("raw-async-std", "raw", "wire", "pipelined", 16, 80.0),
            line("floor", "etp", "wire", "pipelined", 16, 70.0),
        ]);
        let verdicts: Vec<&str> = out
            .split("Targets:")
            .nth(1)
            .expect("a verdict table")
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| workload"))
            .collect();
        assert_eq!(
            verdicts,
            [
                "| pipelined k=16 | 16 | 64 B | etp-tokio | 0.85 | ≥ 0.85 | pass |",
                "| pipelined k=16 | 16 | 64 B | etp-async-std | 0.84 | ≥ 0.85 | **FAIL** |",
                "| idle | 10000 | - | etp-tokio | 12.0 KiB | ≤ 12 KiB | pass |",
            ],
            "{out}"
        );
        assert!(
            out.contains("| 10,000 | etp-tokio (touched) | 15.0 | - |"),
            "{out}"
        );
        // etp-async-std against the raw server on its own runtime: 84 / 80.
        assert!(out.contains("| etp-async-std / raw-async-std |"), "{out}");
        assert!(
            out.contains(
                " 80 | 0.80 | 70 | 0.70 | 1.05 | ≥ 0.85: etp-tokio ok, etp-async-std FAIL |"
            ),
            "{out}"
        );
    }
}
