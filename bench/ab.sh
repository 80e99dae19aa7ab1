#!/bin/bash
# A/B of two Johi builds: CPU per request of NEW against OLD, both serving the same config
# *at the same time* on CPU 0, one `wrk -t1 -cC` each on CPU 1, compared window by window.
#
# On this VM the speed of user-space code moves by ±30 % within minutes (bench/README.md,
# 2026-12-08), so two builds measured one after the other cannot be compared to a few
# per cent; loaded together they see the same machine. callgrind (bench/callgrind.py) is
# exact but blind to what copying and cold allocations cost; this is the time it misses.
#
#   cp target/release/johi /tmp/johi.old        # before the change
#   cargo build --release -p johi               # after it
#   bench/ab.sh /tmp/johi.old target/release/johi
#   bench/ab.sh target/release/johi /tmp/johi.old   # the slots swapped: expect ~1/ratio
#   bench/ab.sh /tmp/johi.old /tmp/johi.old         # A/A: expect ~1.00
#
# Prints, per window of SECONDS_PER_WINDOW (3) seconds, NEW's CPU per request ÷ OLD's, then
# the median. Requests per window are counted as the server's write system calls (each
# plain request is answered with one `writev` to the client and one to the upstream, the
# same for both builds). Environment: WINDOWS (8), CONNECTIONS (32, per build), STREAM=1
# for the streaming body. Uses ports 18001 (the mock, from NEW), 18080 (OLD), 18082 (NEW).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 OLD_JOHI_BINARY NEW_JOHI_BINARY" >&2
  exit 2
fi
OLD=$(realpath "$1")
NEW=$(realpath "$2")
WINDOWS=${WINDOWS:-8}
SECS=${SECONDS_PER_WINDOW:-3}
CONNS=${CONNECTIONS:-32}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT

for port in 18001 18080 18082; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use (a benchmark or another A/B still running?)" >&2
    exit 1
  fi
done

# The benchmark's request body (bench.py writes it), and a wrk script that posts it.
python3 -c "import sys; sys.path.insert(0, sys.argv[1]); import bench; \
open(sys.argv[2], 'wb').write(bench.body('bench-model', sys.argv[3] == '1'))" \
  "$HERE" "$TMP/body.json" "${STREAM:-0}"
printf 'wrk.method = "POST"\nwrk.body = io.open("%s"):read("*a")\n%s\n%s\n' "$TMP/body.json" \
  'wrk.headers["Content-Type"] = "application/json"' \
  'wrk.headers["Authorization"] = "Bearer sk-johi-bench-0000000000000000000000000000000000000"' \
  >"$TMP/ab.lua"
# The benchmark's config twice, each build on its own port with its own audit file.
sed -e 's|results/audit.jsonl|audit-old.jsonl|' "$HERE/johi.yaml" >"$TMP/old.yaml"
sed -e 's|18080|18082|' -e 's|results/audit.jsonl|audit-new.jsonl|' "$HERE/johi.yaml" \
  >"$TMP/new.yaml"

taskset -c 1 "$NEW" mock-upstream --port 18001 --worker-threads 1 --no-record >/dev/null 2>&1 &
PIDS+=($!)
(cd "$TMP" && exec taskset -c 0 "$OLD" serve --config old.yaml --worker-threads 1 \
  >"$TMP/old.log" 2>&1) &
OLD_PID=$!
PIDS+=($OLD_PID)
(cd "$TMP" && exec taskset -c 0 "$NEW" serve --config new.yaml --worker-threads 1 \
  >"$TMP/new.log" 2>&1) &
NEW_PID=$!
PIDS+=($NEW_PID)
for port in 18080 18082; do
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.1
  done
done

for port in 18080 18082; do
  taskset -c 1 wrk -t1 -c"$CONNS" -d"$((WINDOWS * SECS + 4))s" -s "$TMP/ab.lua" \
    "http://127.0.0.1:$port/v1/chat/completions" >/dev/null &
  PIDS+=($!)
done
sleep 2 # warm-up

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
writes() { awk '/^syscw/{print $2}' "/proc/$1/io"; }
RATIOS=()
for w in $(seq "$WINDOWS"); do
  o0=$(ticks $OLD_PID) n0=$(ticks $NEW_PID) ow0=$(writes $OLD_PID) nw0=$(writes $NEW_PID)
  sleep "$SECS"
  o1=$(ticks $OLD_PID) n1=$(ticks $NEW_PID) ow1=$(writes $OLD_PID) nw1=$(writes $NEW_PID)
  ratio=$(python3 -c "print('%.3f' % ((($n1 - $n0) / ($nw1 - $nw0)) / (($o1 - $o0) / ($ow1 - $ow0))))")
  echo "window $w: writes old $((ow1 - ow0)) new $((nw1 - nw0)); CPU per request new ÷ old $ratio"
  RATIOS+=("$ratio")
done
python3 -c "
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
print('new ÷ old, CPU per request: median %.3f [%.3f, %.3f]' % (statistics.median(v), min(v), max(v)))
" "${RATIOS[@]}"
