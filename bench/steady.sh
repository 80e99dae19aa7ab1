#!/bin/bash
# CPU per request of Johi configs under continuous load: a steadier reading than the
# benchmark's 4-second cells when comparing configs (e.g. issue 3's limits ÷ core ratio).
#
# Starts the mock (CPU 1) and one Johi per CONFIG PORT pair (all on CPU 0, one worker
# each), warms up 2 s, then drives one `wrk -t1 -cC` per Johi (CPU 1) for WINDOWS
# back-to-back windows of SECONDS each, printing per window and Johi: requests, CPU µs per
# request (utime + stime, all threads), and the machine's steal ticks.
#
# With two or more pairs the configs are loaded *at the same time*, sharing CPU 0: each
# window measures them under the same host speed, so their ratio is printed per window
# and as a median. On a VM whose vCPU speed drifts by ±30 % from second to second (this
# one, see bench/README.md, 2026-12-07 11:30), that ratio holds where measurements taken
# one after the other do not. (Alternating two processes window by window instead lets
# each resume cold, which penalises the one with more state to warm up.)
#
#   cargo build --release -p johi && python3 bench/configs.py
#   bench/steady.sh bench/johi.yaml 18080                      # one config
#   bench/steady.sh bench/johi.yaml 18080 bench/results/johi-limits.yaml 18082   # paired
#
# Environment: WINDOWS (8), SECONDS_PER_WINDOW (3), CONNECTIONS (64, per Johi), STREAM=1
# for the streaming body, JOHI_BIN (target/release/johi; also runs the mock), JOHI_BINS
# (one binary per CONFIG PORT pair, space-separated, to compare builds: see `ab.sh`).
set -euo pipefail

if [ $# -lt 2 ] || [ $(($# % 2)) -ne 0 ]; then
  echo "usage: $0 CONFIG PORT [CONFIG PORT ...]" >&2
  exit 2
fi
WINDOWS=${WINDOWS:-8}
SECS=${SECONDS_PER_WINDOW:-3}
CONNS=${CONNECTIONS:-64}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${JOHI_BIN:-$HERE/../target/release/johi}
read -r -a BINS <<<"${JOHI_BINS:-}"
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT

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
PIDS+=($!)
CONFIGS=()
PORTS=()
JOHIS=()
while [ $# -gt 0 ]; do
  CONFIGS+=("$1")
  PORTS+=("$2")
  # From the config's directory, as `bench/run.sh` does: relative paths (ledger, audit)
  # land beside it.
  (cd "$(dirname "$1")" && exec taskset -c 0 "${BINS[${#JOHIS[@]}]:-$BIN}" serve \
    --config "$(basename "$1")" --worker-threads 1 >"$TMP/johi-$2.log" 2>&1) &
  PIDS+=($!)
  JOHIS+=($!)
  shift 2
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.1
  done
done
url() { echo "http://127.0.0.1:$1/v1/chat/completions"; }
# Every Johi under load at once for `$1` seconds; each wrk's request count in $TMP/n-PORT.
load() {
  local port waits=()
  for port in "${PORTS[@]}"; do
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$1s" -s "$TMP/steady.lua" "$(url "$port")" \
      | awk '/^RESULT/{print $2}' >"$TMP/n-$port" &
    waits+=($!)
  done
  wait "${waits[@]}"
}
load 2

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
steal() { awk '/^cpu /{print $9}' /proc/stat; }
TCK=$(getconf CLK_TCK)
for w in $(seq "$WINDOWS"); do
  t0=(); for pid in "${JOHIS[@]}"; do t0+=("$(ticks "$pid")"); done
  s0=$(steal)
  load "$SECS"
  s1=$(steal)
  line="window $w:"
  first=""
  for i in "${!JOHIS[@]}"; do
    n=$(cat "$TMP/n-${PORTS[$i]}")
    t=$(($(ticks "${JOHIS[$i]}") - t0[i]))
    us=$(awk -v n="$n" -v t="$t" -v hz="$TCK" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
    line+=" $(basename "${CONFIGS[$i]}") $n requests, $us µs CPU per request;"
    if [ -z "$first" ]; then first=$us; else line+=" ratio $(awk -v a="$us" -v b="$first" 'BEGIN { printf "%.3f", a / b }');"; fi
  done
  echo "$line steal $((s1 - s0)) ticks"
done | tee "$TMP/windows"
if [ ${#JOHIS[@]} -gt 1 ]; then
  # The median of each later config's per-window ratio to the first.
  python3 - "$TMP/windows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
ratios = [[float(w[i + 1].rstrip(";")) for i, word in enumerate(w) if word == "ratio"] for w in rows]
for k, series in enumerate(zip(*ratios), start=2):
    print(f"median ratio of config {k} to the first: {statistics.median(series):.3f} "
          f"(of {len(series)} windows)")
PY
fi
