#!/usr/bin/env bash
# A/B of server builds with the server and the load generator on separate cores.
#
#   benches/pinned.sh WORKLOAD RUNTIME REPS DIR...
#
# The server (DIR/etp-bench-server, or DIR/raw-echo-server when RUNTIME is raw,
# raw-async-std, floor or floor-async-std) runs on CPU 0 with one worker thread; the load generator (the first
# DIR's etp-bench, one thread) on CPU 1; 16 connections, 64 B, k = 16, 2 s per run
# after a warm-up run. Builds are interleaved within each repetition. Prints each
# run's rate, then per build the median rate and the median of its per-repetition
# ratios to the first build.
#
# Why: in the shared-core runs of ab.sh and run-matrix.sh the two programs compete
# for both cores and a cell moves by ±0.1 between runs. Pinned, a server-bound
# workload (`fire`: the client only writes) measures the server's own throughput;
# runs of one build within one invocation agree within about 3 % (absolute rates
# drift by up to 10 % between invocations: compare builds within one). `pipelined`
# and `ack` are bound by the single-threaded load generator here and say less. Use
# it when instruction counts (profile.sh) and wall-clock time might disagree: this
# is how a change with 5 % fewer instructions and 1-8 % less throughput was caught.
set -euo pipefail

WORKLOAD=${1:?fire, pipelined or ack}
RUNTIME=${2:?tokio, async-std, raw, raw-async-std, floor or floor-async-std}
REPS=${3:?repetitions}
shift 3
[ $# -ge 1 ] || { echo "give at least one build directory" >&2; exit 2; }
PORT=${PORT:-9182}
CLIENT=$1/etp-bench
OUT=$(mktemp)
trap 'rm -f "$OUT"; kill "${SERVER:-}" 2>/dev/null || true' EXIT

case $RUNTIME in
raw) MODE=raw SERVER_ARGS=(--runtime tokio) BIN=raw-echo-server ;;
raw-async-std) MODE=raw SERVER_ARGS=(--runtime async-std) BIN=raw-echo-server ;;
floor) MODE=etp SERVER_ARGS=(--runtime tokio --floor) BIN=raw-echo-server ;;
floor-async-std) MODE=etp SERVER_ARGS=(--runtime async-std --floor) BIN=raw-echo-server ;;
tokio | async-std) MODE=etp SERVER_ARGS=(--runtime "$RUNTIME") BIN=etp-bench-server ;;
*) echo "unknown runtime $RUNTIME" >&2; exit 2 ;;
esac

run() {
    timeout 30 taskset -c 1 "$CLIENT" --url "ws://127.0.0.1:$PORT/ws" --mode "$MODE" \
        --workload "$WORKLOAD" --conns 16 --payload 64 --k 16 --threads 1 "$@"
}

for rep in $(seq 1 "$REPS"); do
    for dir in "$@"; do
        ASYNC_STD_THREAD_COUNT=1 taskset -c 0 "$dir/$BIN" "127.0.0.1:$PORT" \
            "${SERVER_ARGS[@]}" --threads 1 >/dev/null 2>&1 &
        SERVER=$!
        sleep 0.3
        run --duration 1s --warmup 100ms >/dev/null
        rate=$(run --duration 2s --warmup 250ms | tail -1 |
            python3 -c 'import json, sys; print(int(json.loads(sys.stdin.read())["rate"]))')
        kill "$SERVER"
        wait "$SERVER" 2>/dev/null || true
        echo "$rep $dir $rate" | tee -a "$OUT"
    done
done

python3 - "$OUT" "$@" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
dirs = sys.argv[2:]
rate = {(int(r), d): float(x) for r, d, x in rows}
reps = sorted({r for r, _ in rate})
base = dirs[0]
print(f"\n{'build':<40} {'median rate':>12} {'ratio to first':>15}")
for d in dirs:
    med = statistics.median(rate[(r, d)] for r in reps)
    ratio = statistics.median(rate[(r, d)] / rate[(r, base)] for r in reps)
    print(f"{d:<40} {med:>12,.0f} {ratio:>15.3f}")
EOF
