#!/usr/bin/env bash
# Machine-load-independent figures of one server: instructions per operation
# (callgrind) and system calls per operation (perf's syscall tracepoints).
#
#   benches/profile.sh instructions BIN_DIR SERVER WORKLOAD [OPS] [PORT]
#   benches/profile.sh syscalls     BIN_DIR SERVER WORKLOAD [OPS] [PORT]
#
# BIN_DIR holds a release build's etp-bench-server, raw-echo-server and etp-bench;
# SERVER is tokio, async-std (etp-bench-server), raw or raw-async-std
# (raw-echo-server), floor or floor-async-std (raw-echo-server --floor: the least an
# etp server must do); WORKLOAD is fire, pipelined or ack (16 connections, 64 B, k=16).
# OPS defaults to 50000, PORT to 9150. SERVER_FLAGS adds arguments to the server's
# command line (etp-bench-server --keepalive, for instance); CONNS (16) sets the
# number of connections.
#
# instructions: the server runs under callgrind with one worker thread; a first run
# of 5,000 operations warms it up (connections, buffers), the counters are zeroed,
# OPS operations run, and the dump's total divided by OPS is printed with the dump's
# path (read it with `callgrind_annotate --inclusive=yes FILE`). The figure includes
# everything the server process executes: the runtime, tungstenite, etp.
#
# syscalls: the server runs natively; after the warm-up, `perf stat` counts the
# process's entries into recvfrom, sendto, epoll_ctl, epoll_wait, epoll_pwait, futex,
# read and write while OPS operations run, each printed per operation. Tracepoints do
# not slow the system calls down as strace does, so the timing (and with it how many
# reads find no data) stays as it is without them.
set -euo pipefail

WHAT=${1:?instructions or syscalls}
BIN=${2:?directory of the binaries}
SERVER=${3:?tokio, async-std, raw, raw-async-std, floor or floor-async-std}
WORKLOAD=${4:?fire, pipelined or ack}
OPS=${5:-50000}
PORT=${6:-9150}
CONNS=${CONNS:-16}
OUT=${OUT:-target/etp-bench/profile}
mkdir -p "$OUT"

case $SERVER in
tokio) CMD=("$BIN/etp-bench-server" "127.0.0.1:$PORT" --runtime tokio) MODE=etp ;;
async-std) CMD=("$BIN/etp-bench-server" "127.0.0.1:$PORT" --runtime async-std) MODE=etp ;;
raw) CMD=("$BIN/raw-echo-server" "127.0.0.1:$PORT" --runtime tokio) MODE=raw ;;
raw-async-std) CMD=("$BIN/raw-echo-server" "127.0.0.1:$PORT" --runtime async-std) MODE=raw ;;
floor) CMD=("$BIN/raw-echo-server" "127.0.0.1:$PORT" --runtime tokio --floor) MODE=etp ;;
floor-async-std) CMD=("$BIN/raw-echo-server" "127.0.0.1:$PORT" --runtime async-std --floor) MODE=etp ;;
*)
    echo "unknown server $SERVER" >&2
    exit 2
    ;;
esac

# SERVER_FLAGS: more arguments for the server, for instance --keepalive.
read -r -a EXTRA <<<"${SERVER_FLAGS:-}"
CMD+=("${EXTRA[@]}")

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$PORT" >&2
    return 1
}

# load OPS: one bounded run of the workload.
load() {
    timeout 600 "$BIN/etp-bench" --url "ws://127.0.0.1:$PORT/ws" --mode "$MODE" \
        --workload "$WORKLOAD" --conns "$CONNS" --payload 64 --k 16 --warmup 0s \
        --duration 500s --max-ops "$1" >/dev/null
}

TAG=$SERVER.$WORKLOAD.$CONNS.$(basename "$BIN")
case $WHAT in
instructions)
    FILE=$OUT/callgrind.$TAG.out
    rm -f "$FILE" "$FILE".*
    # One worker, so that the counts do not depend on how work spreads over threads.
    if [ "$SERVER" = tokio ] || [ "$SERVER" = raw ] || [ "$SERVER" = floor ]; then
        CMD+=(--threads 1)
    fi
    ASYNC_STD_THREAD_COUNT=1 valgrind --tool=callgrind --callgrind-out-file="$FILE" \
        "${CMD[@]}" 2>"$OUT/callgrind.$TAG.log" &
    SERVER_PID=$!
    wait_port
    load 5000
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    load "$OPS"
    callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
    sleep 1
    DUMP=$(ls "$FILE".* | tail -1)
    TOTAL=$(callgrind_annotate "$DUMP" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    echo "$SERVER $WORKLOAD: $((TOTAL / OPS)) instructions per operation ($TOTAL / $OPS; $DUMP)"
    ;;
syscalls)
    "${CMD[@]}" 2>/dev/null &
    SERVER_PID=$!
    wait_port
    load 5000
    EVENTS=recvfrom,sendto,epoll_ctl,epoll_wait,epoll_pwait,futex,read,write
    FILE=$OUT/syscalls.$TAG.csv
    perf stat -x, -o "$FILE" -p "$SERVER_PID" \
        -e "$(echo "$EVENTS" | sed 's/\([a-z_]*\)/syscalls:sys_enter_\1/g')" &
    PERF_PID=$!
    sleep 0.3
    load "$OPS"
    kill -INT "$PERF_PID"
    wait "$PERF_PID" || true
    awk -F, -v ops="$OPS" -v label="$SERVER $WORKLOAD" '
        $3 ~ /^syscalls:/ { n = $1 + 0; total += n; sub("syscalls:sys_enter_", "", $3); out = out sprintf(" %s=%.2f", $3, n / ops) }
        END { printf "%s: %.2f system calls per operation:%s\n", label, total / ops, out }' "$FILE"
    ;;
*)
    echo "instructions or syscalls, not $WHAT" >&2
    exit 2
    ;;
esac
