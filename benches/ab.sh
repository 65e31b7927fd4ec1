#!/usr/bin/env bash
# A/B of two builds of the etp bench server against the raw limit, in one run.
#
#   BEFORE=DIR [AFTER=DIR] benches/ab.sh [OUT_DIR]
#
# DIR holds the binaries of one build (etp-bench-server, raw-echo-server, etp-bench),
# for instance a copy of target/release taken before a change. AFTER defaults to
# target/release (built by this script). For every workload and repetition the runs
# are interleaved: raw (tokio-tungstenite), raw-async-std (async-tungstenite), then
# before and after on each runtime, seconds apart, so that every ratio is taken
# against the raw run of the same repetition (see BENCHMARKS.md, "Noise"). The
# load generator is AFTER's. Writes OUT_DIR/ab.jsonl (one JSON line per run),
# OUT_DIR/table.md (medians of the per-repetition ratios) and OUT_DIR/machine.txt.
#
# Environment: BEFORE (required), AFTER (target/release), WORKLOADS ("fire pipelined
# ack"), CONNS (16), PAYLOAD (64), K (16), REPS (3), DURATION (2s), WARMUP (250ms),
# RUNTIMES ("tokio async-std"), PORT_BASE (9103: uses PORT_BASE..PORT_BASE+5).
# Every run is bounded (etp-bench stops by itself, `timeout` backs it up); the
# servers are killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
: "${BEFORE:?set BEFORE to the directory of the build to compare with}"
WORKLOADS=${WORKLOADS:-fire pipelined ack}
CONNS=${CONNS:-16}
PAYLOAD=${PAYLOAD:-64}
K=${K:-16}
REPS=${REPS:-3}
DURATION=${DURATION:-2s}
WARMUP=${WARMUP:-250ms}
RUNTIMES=${RUNTIMES:-tokio async-std}
PORT_BASE=${PORT_BASE:-9103}
OUT=${1:-target/etp-bench/ab-$(date +%Y%m%d-%H%M%S)}
if [ -z "${AFTER:-}" ]; then
    cargo build --release -p etp-benches --bins
    AFTER=${CARGO_TARGET_DIR:-target}/release
fi
mkdir -p "$OUT"
RESULTS=$OUT/ab.jsonl
: >"$RESULTS"

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "nproc: $(nproc)"
    echo "before: $BEFORE; after: $AFTER"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "workloads: $WORKLOADS; conns: $CONNS; payload: $PAYLOAD; k: $K; reps: $REPS; duration: $DURATION"
} | tee "$OUT/machine.txt"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# start PORT CMD...: a server in the background, killed on exit.
start() {
    local port=$1
    shift
    "$@" >>"$OUT/servers.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$port"
}

# Servers, by label: "label port mode".
SERVERS=()
start "$PORT_BASE" "$AFTER/raw-echo-server" "127.0.0.1:$PORT_BASE" --runtime tokio
SERVERS+=("raw $PORT_BASE raw")
port=$((PORT_BASE + 1))
start "$port" "$AFTER/raw-echo-server" "127.0.0.1:$port" --runtime async-std
SERVERS+=("raw-async-std $port raw")
for runtime in $RUNTIMES; do
    for build in before after; do
        port=$((port + 1))
        dir=$BEFORE
        [ "$build" = after ] && dir=$AFTER
        start "$port" "$dir/etp-bench-server" "127.0.0.1:$port" --runtime "$runtime"
        SERVERS+=("$runtime-$build $port etp")
    done
done

SECONDS=0
for rep in $(seq "$REPS"); do
    for workload in $WORKLOADS; do
        echo "rep $rep: $workload (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        for server in "${SERVERS[@]}"; do
            read -r label port mode <<<"$server"
            if ! timeout 120 "$AFTER/etp-bench" --label "$label" --url "ws://127.0.0.1:$port/ws" \
                --mode "$mode" --workload "$workload" --conns "$CONNS" --payload "$PAYLOAD" \
                --k "$K" --duration "$DURATION" --warmup "$WARMUP" >>"$RESULTS"; then
                echo "run failed: $label $workload (see $RESULTS)" >&2
            fi
        done
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
"$AFTER/etp-bench" report "$RESULTS" | tee "$OUT/table.md"
echo "A/B done in ${SECONDS}s: $OUT/table.md" >&2
