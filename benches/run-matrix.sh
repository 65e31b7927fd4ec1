#!/usr/bin/env bash
# The end-to-end load matrix of etp against the physical limit (raw tokio-tungstenite),
# on loopback, on this machine, in one run. See BENCHMARKS.md.
#
#   benches/run-matrix.sh [OUT_DIR]
#
# Builds the release binaries, starts etp-bench-server (tokio), etp-bench-server
# (async-std) and raw-echo-server (tokio; async-std; and --floor on tokio) on
# 127.0.0.1, runs every cell of the matrix (ack, pipelined, fire: 1, 16, 256
# connections; fanout: 1, 16, 256, 1000 members; 64 B and 16 KiB) REPS times,
# interleaving raw, etp-tokio, etp-async-std, raw-async-std, floor and raw-again (A B
# C D E A' A B ...; floor serves no fanout; raw-again is raw run a second time, the
# run's noise), then the idle-memory test on fresh servers,
# then a few runs with the etp client library. raw (tokio) is the reference of every
# ratio; raw-async-std gives etp-async-std a ratio to its own stack's limit, and floor
# (the least an etp server must do, see raw-echo-server) what any etp server on this
# stack can reach. Every result is one JSON line in OUT_DIR/*.jsonl; the
# markdown table (medians, ratios to raw of the same repetition) is OUT_DIR/table.md.
#
# Environment: REPS (3), DURATION (2s), WARMUP (250ms), K (16), WINDOW (16),
# IDLE_CONNS (10000), LIB_CLIENT (1: also the client-library runs), PORT_BASE (9003).
# Every run is bounded (etp-bench stops by itself, and `timeout` backs it up); the
# servers are killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
REPS=${REPS:-3}
DURATION=${DURATION:-2s}
WARMUP=${WARMUP:-250ms}
K=${K:-16}
WINDOW=${WINDOW:-16}
IDLE_CONNS=${IDLE_CONNS:-10000}
LIB_CLIENT=${LIB_CLIENT:-1}
PORT_BASE=${PORT_BASE:-9003}
OUT=${1:-target/etp-bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
RESULTS=$OUT/matrix.jsonl
IDLE=$OUT/idle.jsonl
LIB=$OUT/lib-client.jsonl
: >"$RESULTS"
: >"$IDLE"
: >"$LIB"

cargo build --release -p etp-benches --bins
BIN=${CARGO_TARGET_DIR:-target}/release

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Idle test: each of the two processes (server, generator) holds one descriptor per
# connection, plus a few.
if ! ulimit -n $((IDLE_CONNS + 1000)) 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((IDLE_CONNS + 1000)) ]; then
    echo "ulimit -n is $NOFILE (hard limit $(ulimit -Hn)): idle test with $((NOFILE - 1000)) connections instead of $IDLE_CONNS" >&2
    IDLE_CONNS=$((NOFILE - 1000))
fi

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel: $(uname -sr)"
    echo "rustc: $(rustc --version)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "ulimit -n: $NOFILE; idle connections: $IDLE_CONNS"
    echo "reps: $REPS; duration: $DURATION; warmup: $WARMUP; k: $K; window: $WINDOW"
} | tee "$OUT/machine.txt"

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

# start PORT CMD...: starts a server in the background; its pid in LAST_PID.
start() {
    local port=$1
    shift
    "$@" >>"$OUT/servers.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_port "$port"
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

TOKIO_PORT=$PORT_BASE
ASYNC_PORT=$((PORT_BASE + 1))
RAW_PORT=$((PORT_BASE + 2))
TOKIO_URL=ws://127.0.0.1:$TOKIO_PORT/ws
ASYNC_URL=ws://127.0.0.1:$ASYNC_PORT/ws
RAW_URL=ws://127.0.0.1:$RAW_PORT/ws
RAW_ASYNC_PORT=$((PORT_BASE + 3))
FLOOR_PORT=$((PORT_BASE + 4))
RAW_ASYNC_URL=ws://127.0.0.1:$RAW_ASYNC_PORT/ws
FLOOR_URL=ws://127.0.0.1:$FLOOR_PORT/ws

# bench FILE LABEL URL MODE ARGS...: one bounded run, one JSON line.
bench() {
    local file=$1 label=$2 url=$3 mode=$4
    shift 4
    if ! timeout 180 "$BIN/etp-bench" --label "$label" --url "$url" --mode "$mode" "$@" >>"$file"; then
        echo "run failed: $label $* (see $file)" >&2
    fi
}

# cell ARGS...: REPS interleaved repetitions of raw, etp-tokio, etp-async-std,
# raw-async-std, floor (except for fanout, which it does not serve) and raw-again:
# the same raw server run once more at the end of the repetition, a control whose
# ratio to raw is this run's noise (1.00 on a quiet machine).
cell() {
    echo "cell: $*" >&2
    for _ in $(seq "$REPS"); do
        bench "$RESULTS" raw "$RAW_URL" raw "$@"
        bench "$RESULTS" etp-tokio "$TOKIO_URL" etp "$@"
        bench "$RESULTS" etp-async-std "$ASYNC_URL" etp "$@"
        bench "$RESULTS" raw-async-std "$RAW_ASYNC_URL" raw "$@"
        case " $* " in
        *" fanout "*) ;;
        *) bench "$RESULTS" floor "$FLOOR_URL" etp "$@" ;;
        esac
        bench "$RESULTS" raw-again "$RAW_URL" raw "$@"
    done
}

SECONDS=0
start "$TOKIO_PORT" "$BIN/etp-bench-server" "127.0.0.1:$TOKIO_PORT" --runtime tokio
TOKIO_PID=$LAST_PID
start "$ASYNC_PORT" "$BIN/etp-bench-server" "127.0.0.1:$ASYNC_PORT" --runtime async-std
ASYNC_PID=$LAST_PID
start "$RAW_PORT" "$BIN/raw-echo-server" "127.0.0.1:$RAW_PORT"
RAW_PID=$LAST_PID
start "$RAW_ASYNC_PORT" "$BIN/raw-echo-server" "127.0.0.1:$RAW_ASYNC_PORT" --runtime async-std
RAW_ASYNC_PID=$LAST_PID
start "$FLOOR_PORT" "$BIN/raw-echo-server" "127.0.0.1:$FLOOR_PORT" --floor
FLOOR_PID=$LAST_PID

COMMON=(--duration "$DURATION" --warmup "$WARMUP")
for payload in 64 16KiB; do
    for conns in 1 16 256; do
        cell --workload ack --conns "$conns" --payload "$payload" "${COMMON[@]}"
        cell --workload pipelined --k "$K" --conns "$conns" --payload "$payload" "${COMMON[@]}"
        cell --workload fire --conns "$conns" --payload "$payload" "${COMMON[@]}"
    done
    for members in 1 16 256 1000; do
        cell --workload fanout --window "$WINDOW" --conns "$members" --payload "$payload" "${COMMON[@]}"
    done
done

if [ "$LIB_CLIENT" = 1 ]; then
    # The etp client library (etp-tokio Client) against the tokio server, with raw
    # runs of the same cells for the ratio.
    for workload in ack pipelined fire; do
        echo "lib client: $workload" >&2
        for _ in $(seq "$REPS"); do
            bench "$LIB" raw "$RAW_URL" raw --workload "$workload" --k "$K" --conns 16 --payload 64 "${COMMON[@]}"
            bench "$LIB" etp-tokio "$TOKIO_URL" etp --client lib --workload "$workload" --k "$K" --conns 16 --payload 64 "${COMMON[@]}"
        done
    done
fi
stop "$TOKIO_PID"
stop "$ASYNC_PID"
stop "$RAW_PID"
stop "$RAW_ASYNC_PID"
stop "$FLOOR_PID"

# Idle memory: a fresh server each time, so that the baseline is an empty server.
for touch in "" --touch; do
    for server in raw etp-tokio etp-async-std; do
        echo "idle: $server $IDLE_CONNS $touch" >&2
        case $server in
        raw)
            start "$RAW_PORT" "$BIN/raw-echo-server" "127.0.0.1:$RAW_PORT"
            url=$RAW_URL mode=raw
            ;;
        etp-tokio)
            start "$TOKIO_PORT" "$BIN/etp-bench-server" "127.0.0.1:$TOKIO_PORT" --runtime tokio
            url=$TOKIO_URL mode=etp
            ;;
        etp-async-std)
            start "$ASYNC_PORT" "$BIN/etp-bench-server" "127.0.0.1:$ASYNC_PORT" --runtime async-std
            url=$ASYNC_URL mode=etp
            ;;
        esac
        pid=$LAST_PID
        bench "$IDLE" "$server${touch:+ (touched)}" "$url" "$mode" --workload idle --conns "$IDLE_CONNS" --server-pid "$pid" --dial-concurrency 128 $touch
        stop "$pid"
    done
done

{
    echo "## Load matrix (medians of $REPS; ratio = etp / raw of the same repetition)"
    echo
    "$BIN/etp-bench" report "$RESULTS"
    echo
    echo "## Idle connections ($IDLE_CONNS)"
    "$BIN/etp-bench" report "$IDLE"
    if [ -s "$LIB" ]; then
        echo
        echo "## etp client library (16 connections, 64 B, against etp-tokio)"
        echo
        "$BIN/etp-bench" report "$LIB"
    fi
} >"$OUT/table.md"
echo "matrix done in ${SECONDS}s: $OUT/table.md" >&2
cat "$OUT/table.md"
