#!/usr/bin/env bash
# Johi load benchmark: mock upstream direct vs. nginx (the floor) vs. Johi, same run.
# See bench/README.md. Usage:
#
#   bench/run.sh                                   # full run (~4 minutes)
#   ROUNDS=1 DURATION=2 CONCURRENCIES="1 16" bench/run.sh   # smoke run
#
# Environment: DURATION (s, default 5), WARMUP (s, default 2), ROUNDS (default 3), CONCURRENCIES (default
# "1 16 64"), MODES (default "nonstream stream"), TTFB_N (default 300), TTFB_WARMUP (default
# 20), SKIP_BUILD=1 (use the existing binary), JOHI_BIN (binary path), JOHI_CONFIG (another
# config for Johi; it must listen on 127.0.0.1:18080 and route model bench-model to the mock on
# 127.0.0.1:18001), KEEP_AUDIT=1 (keep bench/results/audit.jsonl, which grows by several
# hundred MB in a full run).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
export DURATION="${DURATION:-5}"
export ROUNDS="${ROUNDS:-3}"
export WARMUP="${WARMUP:-2}"
export CONCURRENCIES="${CONCURRENCIES:-1 16 64}"
export MODES="${MODES:-nonstream stream}"
export TTFB_N="${TTFB_N:-300}"
export TTFB_WARMUP="${TTFB_WARMUP:-20}"

MOCK_PORT=18001   # also in bench/johi.yaml
JOHI_PORT=18080   # also in bench/johi.yaml
NGINX_PORT=18081
GATEWAY_CPU=0     # Johi and nginx
LOADGEN_CPU=1     # wrk, the mock, the TTFB client
export LOADGEN_CPU GATEWAY_CPU

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# --- prerequisites ------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (Debian packages)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed (try: apt-get update)"
fi
NGINX_BIN="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
export NGINX_BIN
for tool in taskset getconf python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
[ "$(nproc --all)" -ge 2 ] || die "needs at least 2 CPUs (gateway on CPU $GATEWAY_CPU, load on CPU $LOADGEN_CPU)"
taskset -c "$LOADGEN_CPU" true 2>/dev/null || die "cannot pin to CPU $LOADGEN_CPU"

# --- build ----------------------------------------------------------------------------------------
JOHI_BIN="${JOHI_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/johi}"
if [ "${SKIP_BUILD:-0}" != "1" ]; then
    say "building johi and the Rust floor (release)"
    (cd "$ROOT" && cargo build --release -p johi -p johi-bench-floor) >&2
fi
[ -x "$JOHI_BIN" ] || die "no johi binary at $JOHI_BIN"
# The Rust floor (bench/floor): hyper + Johi's upstream transport, no pipeline. FLOOR=0
# leaves it out.
FLOOR_BIN="${FLOOR_BIN:-$(dirname "$JOHI_BIN")/hyper-floor}"
FLOOR_PORT=18086
export JOHI_BIN
JOHI_CONFIG="${JOHI_CONFIG:-$HERE/johi.yaml}"
"$JOHI_BIN" check --config "$JOHI_CONFIG" >/dev/null || die "$JOHI_CONFIG does not check"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$MOCK_PORT" "$JOHI_PORT" "$NGINX_PORT" "$FLOOR_PORT"; do
    port_busy "$p" && die "port $p is already in use (a previous run still going?)"
done

# --- processes --------------------------------------------------------------------------------------
TMP="$(mktemp -d /tmp/johi-bench.XXXXXX)"
export BENCH_TMP="$TMP"
mkdir -p "$HERE/results"
rm -f "$HERE/results/audit.jsonl"
MOCK_PID="" JOHI_PID="" NGINX_PID="" BENCH_PID="" EXTRA_PIDS="" REDIS_PID="" FLOOR_PID=""

stop() { # pid name
    local pid="$1" i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    say "$2 did not stop on SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop "$BENCH_PID" bench.py
    for pid in ${EXTRA_PIDS:-}; do stop "$pid" johi-extra; done
    stop "${REDIS_PID:-}" redis
    stop "$JOHI_PID" johi
    stop "$NGINX_PID" nginx
    stop "${FLOOR_PID:-}" hyper-floor
    stop "$MOCK_PID" mock
    wait 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        for f in mock.log johi.log nginx/error.log; do
            if [ -s "$TMP/$f" ]; then
                say "last lines of $f:"
                tail -n 20 "$TMP/$f" >&2
            fi
        done
    fi
    rm -rf "$TMP"
    [ "${KEEP_AUDIT:-0}" = "1" ] || rm -f "$HERE/results/audit.jsonl"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_port() { # port pid name
    local i
    for i in $(seq 100); do
        port_busy "$1" && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited during startup"
        sleep 0.1
    done
    die "$3 did not listen on port $1 within 10 s"
}

say "starting the mock upstream on :$MOCK_PORT (CPU $LOADGEN_CPU)"
taskset -c "$LOADGEN_CPU" "$JOHI_BIN" mock-upstream --port "$MOCK_PORT" --no-record --worker-threads 1 \
    >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
wait_port "$MOCK_PORT" "$MOCK_PID" mock

say "starting johi on :$JOHI_PORT (CPU $GATEWAY_CPU)"
taskset -c "$GATEWAY_CPU" "$JOHI_BIN" serve --config "$JOHI_CONFIG" --worker-threads 1 \
    >"$TMP/johi.log" 2>&1 &
JOHI_PID=$!
wait_port "$JOHI_PORT" "$JOHI_PID" johi

say "starting nginx on :$NGINX_PORT (CPU $GATEWAY_CPU)"
mkdir -p "$TMP/nginx"
sed -e "s|@PREFIX@|$TMP/nginx|g" \
    -e "s|@LISTEN@|127.0.0.1:$NGINX_PORT|g" \
    -e "s|@UPSTREAM@|127.0.0.1:$MOCK_PORT|g" \
    "$HERE/nginx.conf.in" >"$TMP/nginx/nginx.conf"
"$NGINX_BIN" -t -q -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    || die "nginx config test failed"
# `daemon off` in the config: the master stays in the foreground, so $! is its pid.
taskset -c "$GATEWAY_CPU" "$NGINX_BIN" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!
wait_port "$NGINX_PORT" "$NGINX_PID" nginx
sleep 0.3 # let the worker come up

if [ "${FLOOR:-1}" = "1" ]; then
    [ -x "$FLOOR_BIN" ] || die "no hyper-floor binary at $FLOOR_BIN (cargo build --release -p johi-bench-floor, or FLOOR=0)"
    say "starting hyper-floor on :$FLOOR_PORT (CPU $GATEWAY_CPU)"
    taskset -c "$GATEWAY_CPU" "$FLOOR_BIN" --listen "127.0.0.1:$FLOOR_PORT" \
        --upstream "http://127.0.0.1:$MOCK_PORT" --worker-threads 1 >"$TMP/floor.log" 2>&1 &
    FLOOR_PID=$!
    wait_port "$FLOOR_PORT" "$FLOOR_PID" hyper-floor
fi

# --- optional: a Redis for configs with limit_store, and extra Johi configs -----------------
REDIS_PID=""
if [ "${BENCH_REDIS:-0}" = "1" ]; then
    command -v redis-server >/dev/null 2>&1 || die "BENCH_REDIS=1 needs redis-server (apt-get install redis-server)"
    port_busy 18379 && die "port 18379 is already in use"
    say "starting redis-server on :18379 (CPU $LOADGEN_CPU)"
    taskset -c "$LOADGEN_CPU" redis-server --port 18379 --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$TMP" >"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_port 18379 "$REDIS_PID" redis
fi
# EXTRA="name:port:config[:binary] ...": more Johi gateways, each with its own config (listening on
# that port), measured as further targets in the same run (e.g. the identity-and-limits
# pipeline beside the core one).
EXTRA_PIDS=""
EXTRA_TARGETS=""
# An optional fourth field names another johi binary for that target (an A/B of two builds
# in one run: name:port:config:/path/to/johi).
for spec in ${EXTRA:-}; do
    IFS=: read -r name port config bin <<<"$spec"
    bin="${bin:-$JOHI_BIN}"
    [ -n "$name" ] && [ -n "$port" ] && [ -f "$config" ] || die "EXTRA entry '$spec' is not name:port:config-file[:binary]"
    [ -x "$bin" ] || die "EXTRA entry '$spec': $bin is not executable"
    port_busy "$port" && die "port $port is already in use"
    "$bin" check --config "$config" >/dev/null || die "$config does not check"
    say "starting johi '$name' on :$port (CPU $GATEWAY_CPU) with $config ($bin)"
    taskset -c "$GATEWAY_CPU" "$bin" serve --config "$config" --worker-threads 1 \
        >"$TMP/johi-$name.log" 2>&1 &
    pid=$!
    EXTRA_PIDS="$EXTRA_PIDS $pid"
    wait_port "$port" "$pid" "johi-$name"
    EXTRA_TARGETS="$EXTRA_TARGETS johi-$name:$port:$pid:$TMP/johi-$name.log"
done
export EXTRA_TARGETS REDIS_PID

export MOCK_PID JOHI_PID NGINX_PID FLOOR_PID JOHI_CONFIG JOHI_LOG="$TMP/johi.log"

say "measuring: modes [$MODES], concurrencies [$CONCURRENCIES], ${WARMUP}s warm-up + ${DURATION}s per cell"
# In the background + wait, so that a signal to this script runs the cleanup at once.
taskset -c "$LOADGEN_CPU" python3 "$HERE/bench.py" "$HERE/results/latest.md" &
BENCH_PID=$!
wait "$BENCH_PID"
