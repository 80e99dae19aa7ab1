#!/bin/bash
# CPU per request of one Johi config under continuous load: a steadier reading than the
# benchmark's 4-second cells when comparing two configs (e.g. issue 3's limits ÷ core ratio).
#
# Starts the mock (CPU 1) and Johi with CONFIG (CPU 0, one worker), warms up 2 s, then
# drives `wrk -t1 -cC` (CPU 1) for WINDOWS back-to-back windows of SECONDS each, printing
# requests, CPU µs per request (utime + stime of Johi, all threads) and the machine's steal
# ticks per window. Run one config after the other and compare the medians; alternating
# two processes window by window instead lets each resume cold, which penalises the one
# with more state to warm up (see bench/README.md, 2026-12-07 evening).
#
#   cargo build --release -p johi && python3 bench/configs.py
#   bench/steady.sh bench/johi.yaml 18080
#   bench/steady.sh bench/results/johi-limits.yaml 18082
#
# Environment: WINDOWS (8), SECONDS_PER_WINDOW (3), CONNECTIONS (64), STREAM=1 for the
# streaming body, JOHI_BIN (target/release/johi).
set -euo pipefail

CONFIG=$1
PORT=$2
WINDOWS=${WINDOWS:-8}
SECS=${SECONDS_PER_WINDOW:-3}
CONNS=${CONNECTIONS:-64}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${JOHI_BIN:-$HERE/../target/release/johi}
TMP=$(mktemp -d)
trap 'kill $JOHI $MOCK 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT

STREAM=${STREAM:-0} BENCH_DIR=$HERE python3 - "$TMP/body.json" <<'PY'
import os, sys
sys.path.insert(0, os.environ.get("BENCH_DIR", "bench"))
import bench
open(sys.argv[1], "wb").write(bench.body("bench-model", os.environ["STREAM"] == "1"))
PY
cat >"$TMP/steady.lua" <<LUA
wrk.method = "POST"
wrk.body = io.open("$TMP/body.json"):read("*a")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-johi-bench-0000000000000000000000000000000000000"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d\n", summary.requests))
end
LUA

taskset -c 1 "$BIN" mock-upstream --port 18001 --worker-threads 1 --no-record >/dev/null 2>&1 &
MOCK=$!
taskset -c 0 "$BIN" serve --config "$CONFIG" --worker-threads 1 >"$TMP/johi.log" 2>&1 &
JOHI=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
  sleep 0.1
done
URL="http://127.0.0.1:$PORT/v1/chat/completions"
taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$TMP/steady.lua" "$URL" >/dev/null

ticks() { awk '{print $14 + $15}' "/proc/$JOHI/stat"; }
steal() { awk '/^cpu /{print $9}' /proc/stat; }
TCK=$(getconf CLK_TCK)
for w in $(seq "$WINDOWS"); do
  t0=$(ticks); s0=$(steal)
  n=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$TMP/steady.lua" "$URL" | awk '/^RESULT/{print $2}')
  t1=$(ticks); s1=$(steal)
  awk -v w="$w" -v n="$n" -v t="$((t1 - t0))" -v hz="$TCK" -v st="$((s1 - s0))" \
    'BEGIN { printf "window %d: %d requests, %.1f µs CPU per request, steal %d ticks\n", w, n, t * 1e6 / hz / n, st }'

done
