#!/usr/bin/env python3
"""Drives the Johi load benchmark and writes its Markdown report (stdlib only).

bench/run.sh starts the mock upstream, nginx and Johi, then runs this script
pinned to the load-generator core. For each mode (non-streaming, streaming),
each concurrency and each target (direct to the mock, nginx, Johi) it runs wrk
with bench/chat.lua: a warm-up run, then a measured run bracketed by readings of
the target's CPU time from /proc/PID/stat, ROUNDS times with the targets
interleaved, keeping the median of each figure. Then it measures streaming time
to first byte (ttfb.py), reads peak RSS (VmHWM), and prints the report.

Environment (set by run.sh): JOHI_PID, NGINX_PID, MOCK_PID, JOHI_LOG,
DURATION, WARMUP, ROUNDS, CONCURRENCIES, MODES, TTFB_N, TTFB_WARMUP, LOADGEN_CPU,
JOHI_BIN, NGINX_BIN; PAIRED_WINDOWS, PAIRED_SECONDS, PAIRED_CONNECTIONS for the paired CPU
measurement of the EXTRA gateways against the core Johi; C1_ROUNDS, C1_SECONDS for the paired
single-client latency (every target in short c=1 runs, round after round).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ttfb  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "chat.lua")
PATH = "/v1/chat/completions"
CLK_TCK = int(subprocess.run(["getconf", "CLK_TCK"], capture_output=True, text=True, check=True).stdout)


@dataclass
class Target:
    name: str
    port: int
    model: str
    pids: list[int] = field(default_factory=list)  # processes whose CPU time is charged


MODE_NAMES = {"nonstream": "Non-streaming", "stream": "Streaming"}
# The Rust floor's name and port (bench/run.sh starts it; see bench/floor).
FLOOR = "hyper-floor"
FLOOR_PORT = 18086

# Bars the issue judges the gateway by (informational).
BAR_CPU = 2.5
BAR_P50 = 1.5
BAR_P99 = 2.0
BAR_TTFB = 1.5
BAR_RSS_MIB = 60.0


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- request bodies ---------------------------------------------------------------------------

def prompt_1k() -> str:
    """A deterministic ~1 KB user prompt (exactly 1024 characters, plain ASCII)."""
    text = (
        "You are reviewing the design of an HTTP gateway that sits in front of several large "
        "language model providers. Summarise the trade-offs between buffering and streaming "
        "responses, explain how retries interact with streams that have already started, and "
        "list the metrics an operator should watch to notice a slow upstream. "
    )
    out = ""
    while len(out) < 1024:
        out += text
    return out[:1024]


def body(model: str, stream: bool) -> bytes:
    req: dict = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": prompt_1k()},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
    }
    if stream:
        req["stream"] = True
        req["stream_options"] = {"include_usage": True}
    return json.dumps(req, separators=(",", ":")).encode()


# --- /proc readings ---------------------------------------------------------------------------

def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


def cpu_ticks_sum(pids: list[int]) -> int:
    return sum(cpu_ticks(p) for p in pids)


def system_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    steal = v[7] if len(v) > 7 else 0
    return busy, steal


def own_ticks(pids: list[int]) -> float:
    """CPU ticks of the benchmark's own processes: the servers, this script and its waited-for
    children (wrk)."""
    t = os.times()
    return cpu_ticks_sum(pids) + (t.user + t.system + t.children_user + t.children_system) * CLK_TCK


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return sorted(out)


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2:].split()[0] != "Z"


# --- wrk ----------------------------------------------------------------------------------------

def run_wrk(port: int, body_file: str, conc: int, duration: int) -> dict:
    cpu = os.environ.get("LOADGEN_CPU", "1")
    cmd = [
        "taskset", "-c", cpu, "wrk", "-t1", f"-c{conc}", f"-d{duration}s", "--timeout", "5s",
        "-s", LUA, f"http://127.0.0.1:{port}{PATH}",
    ]
    env = dict(os.environ, BENCH_BODY=body_file)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError(f"wrk gave no result (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")


def paired_cpu(first: Target, second: Target, body_file: str, conc: int, windows: int,
               secs: int, first_body: str | None = None) -> list[float]:
    """CPU per request of `second` ÷ that of `first`, with both under load *at the same
    time* (each its own wrk, both gateways sharing their core), once per window.

    The cells above measure one target after another; on this VM the core's speed moves by
    tens of percent between them, which swamps a 20 % difference. Loaded together, both
    see the same speed in every window, so their ratio holds (bench/README.md, 2026-12-07).
    `first_body` is `first`'s request body when it differs (nginx names the mock's model).
    """
    cpu = os.environ.get("LOADGEN_CPU", "1")

    def start(t: Target, duration: int) -> subprocess.Popen:
        bf = first_body if (t is first and first_body) else body_file
        env = dict(os.environ, BENCH_BODY=bf)
        return subprocess.Popen(
            ["taskset", "-c", cpu, "wrk", "-t1", f"-c{conc}", f"-d{duration}s", "--timeout", "5s",
             "-s", LUA, f"http://127.0.0.1:{t.port}{PATH}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )

    def requests(p: subprocess.Popen, duration: int) -> int:
        out, _ = p.communicate(timeout=duration + 60)
        for line in out.splitlines():
            if line.startswith("BENCH_RESULT "):
                return json.loads(line[len("BENCH_RESULT "):])["requests"]
        raise RuntimeError(f"wrk gave no result (exit {p.returncode})")

    warm = [start(first, 2), start(second, 2)]
    for p in warm:
        requests(p, 2)
    ratios = []
    for _ in range(windows):
        before = [cpu_ticks_sum(first.pids), cpu_ticks_sum(second.pids)]
        loads = [start(first, secs), start(second, secs)]
        n = [requests(p, secs) for p in loads]
        used = [cpu_ticks_sum(first.pids) - before[0], cpu_ticks_sum(second.pids) - before[1]]
        if n[0] and n[1] and used[0]:
            ratios.append((used[1] / n[1]) / (used[0] / n[0]))
    return ratios


def paired_c1(targets: list[Target], body_files: dict, mode: str, rounds: int,
              secs: int) -> dict[str, list[float]]:
    """Each target's c=1 p50 latency (µs) in `rounds` rounds of one `secs`-second wrk run per
    target, the order rotated every round.

    A c=1 cell of the main grid moves by ±20–40 µs between rounds on this VM (the vCPUs'
    speed drifts), more than the 20 µs some bars ask about. Runs of all targets a second
    apart see nearly the same machine, so differences taken within a round, then their
    median over many rounds, measure what a target adds rather than when it ran.
    """
    p50: dict[str, list[float]] = {t.name: [] for t in targets}
    for t in targets:
        run_wrk(t.port, body_files[(t.name, mode)], 1, 1)
    for rnd in range(rounds):
        k = rnd % len(targets)
        for t in targets[k:] + targets[:k]:
            r = run_wrk(t.port, body_files[(t.name, mode)], 1, secs)
            p50[t.name].append(float(r["latency_us"]["p50"]))
    return p50


def round_deltas(p50: dict[str, list[float]], base: str, other: str) -> list[float]:
    """`other`'s p50 minus `base`'s, round by round (µs)."""
    return [b - a for a, b in zip(p50[base], p50[other])]


# --- formatting ---------------------------------------------------------------------------------

def ms(us: float | None) -> str:
    return "—" if us is None else f"{us / 1000.0:.3f}"


def signed_ms(us: float | None) -> str:
    return "—" if us is None else f"{us / 1000.0:+.3f}"


def ratio(johi_added: float, nginx_added: float, who: str = "Johi") -> tuple[str, float | None]:
    """Johi's (or `who`'s) added ÷ nginx's added, with the degenerate cases spelled out."""
    if johi_added <= 0:
        return (f"{who} adds ≤ 0", 0.0)
    if nginx_added <= 0:
        return ("∞ (nginx adds ≤ 0)", None)
    r = johi_added / nginx_added
    return (f"{r:.2f}×", r)


def verdict(value: float | None, limit: float) -> str:
    return "PASS" if value is not None and value <= limit else "FAIL"


def machine_line() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    nproc = subprocess.run(["nproc", "--all"], capture_output=True, text=True).stdout.strip()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{nproc} CPUs ({model}){mem}, Linux {platform.release()}, {now}"


def versions() -> str:
    def first_line(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    johi_bin = os.environ.get("JOHI_BIN", "johi")
    johi = first_line([johi_bin, "--version"])
    try:
        built = datetime.datetime.fromtimestamp(os.stat(johi_bin).st_mtime, datetime.timezone.utc)
        johi += f" (binary built {built.strftime('%Y-%m-%d %H:%M UTC')})"
    except OSError:
        pass
    rev = first_line(["git", "-C", HERE, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    nginx = first_line([os.environ.get("NGINX_BIN", "nginx"), "-v"]).replace("nginx version: ", "")
    wrk = first_line(["wrk", "-v"]).split(" Copyright")[0]
    py = platform.python_version()
    return f"{johi}, source tree git {rev}{'+dirty' if dirty else ''}; {nginx}, {wrk}, Python {py}"


# --- main ---------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def median_cell(runs: list[dict]) -> dict:
    """One cell from its rounds: the median of every rate, latency and CPU figure; errors and
    non-2xx answers summed; other load and steal as their worst round."""
    cell = dict(runs[-1])
    cell["rounds"] = len(runs)
    cell["rps"] = median([r["rps"] for r in runs])
    cell["requests"] = sum(r["requests"] for r in runs)
    cell["latency_us"] = {
        k: median([r["latency_us"][k] for r in runs]) for k in runs[0]["latency_us"]
    }
    for k in ("cpu_us_per_req", "core_pct"):
        values = [r[k] for r in runs if r[k] is not None]
        cell[k] = median(values) if values else None
    cell["err_total"] = sum(r["err_total"] for r in runs)
    cell["non2xx"] = sum(r["non2xx"] for r in runs)
    cell["bg_pct"] = max(r["bg_pct"] for r in runs)
    cell["steal_pct"] = max(r["steal_pct"] for r in runs)
    return cell


def main() -> int:
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results", "latest.md")
    duration = env_int("DURATION", 5)
    warmup = env_int("WARMUP", 2)
    concs = [int(c) for c in os.environ.get("CONCURRENCIES", "1 16 64").split()]
    modes = os.environ.get("MODES", "nonstream stream").split()
    for m in modes:
        if m not in MODE_NAMES:
            raise SystemExit(f"unknown mode {m!r} (known: {' '.join(MODE_NAMES)})")
    ttfb_n = env_int("TTFB_N", 300)
    ttfb_warm = env_int("TTFB_WARMUP", 20)
    johi_pid = int(os.environ["JOHI_PID"])
    nginx_pid = int(os.environ["NGINX_PID"])
    mock_pid = int(os.environ["MOCK_PID"])
    nginx_workers = children(nginx_pid)
    if len(nginx_workers) != 1:
        log(f"warning: expected one nginx worker, found {nginx_workers}")

    targets = [
        Target("direct", 18001, "mock-small"),
        Target("nginx", 18081, "mock-small", [nginx_pid] + nginx_workers),
        Target("johi", 18080, "bench-model", [johi_pid]),
    ]
    watched = {"mock": mock_pid, "nginx": nginx_pid, "johi": johi_pid}
    # The Rust floor (bench/floor): hyper and Johi's upstream transport with no pipeline,
    # between nginx and Johi. It forwards the model name as nginx does.
    floor_pid = int(os.environ.get("FLOOR_PID") or 0)
    if floor_pid:
        targets.insert(2, Target(FLOOR, FLOOR_PORT, "mock-small", [floor_pid]))
        watched[FLOOR] = floor_pid
    # Further Johi gateways with other configs (run.sh's EXTRA), as name:port:pid:log.
    extra_logs: dict[str, str] = {}
    for spec in os.environ.get("EXTRA_TARGETS", "").split():
        name, port, pid, logfile = spec.split(":", 3)
        targets.append(Target(name, int(port), "bench-model", [int(pid)]))
        watched[name] = int(pid)
        extra_logs[name] = logfile
    extras = [t for t in targets if t.name in extra_logs]

    def check_alive() -> None:
        dead = [n for n, p in watched.items() if not alive(p)]
        if dead:
            raise RuntimeError(f"process(es) died during the benchmark: {', '.join(dead)}")

    tmp = os.environ.get("BENCH_TMP", "/tmp")
    body_files: dict[tuple[str, str], str] = {}
    for t in targets:
        for m in modes:
            path = os.path.join(tmp, f"body-{t.model}-{m}.json")
            with open(path, "wb") as f:
                f.write(body(t.model, m == "stream"))
            body_files[(t.name, m)] = path
    body_size = len(body("bench-model", False))

    all_pids = [mock_pid, johi_pid, nginx_pid] + nginx_workers + [t.pids[0] for t in extras]
    if floor_pid:
        all_pids.append(floor_pid)
    redis_pid = int(os.environ.get("REDIS_PID") or 0)
    if redis_pid:
        all_pids.append(redis_pid)
    b0, _ = system_ticks()
    o0 = own_ticks(all_pids)
    time.sleep(1.0)
    idle_load = 100.0 * ((system_ticks()[0] - b0) - (own_ticks(all_pids) - o0)) / CLK_TCK
    if idle_load > 15.0:
        log(f"warning: other processes use {idle_load:.0f} % of a core right now; the figures will be disturbed")
    # Every (mode, concurrency) cell is measured ROUNDS times, the three targets interleaved
    # within each round, and each figure reported is the median over the rounds: on a shared
    # VM the machine's speed drifts by tens of percent within minutes, and interleaving keeps
    # Johi and nginx measured under the same conditions.
    rounds = max(1, env_int("ROUNDS", 3))
    # per_round[(mode, conc, target)] = [dict(wrk result + cpu), ...]
    per_round: dict[tuple[str, int, str], list[dict]] = {}
    total_runs = len(modes) * len(concs) * len(targets) * rounds
    n = 0
    t_start = time.monotonic()
    for m in modes:
        for c in concs:
            for rnd in range(rounds):
                for t in targets:
                    n += 1
                    check_alive()
                    bf = body_files[(t.name, m)]
                    if warmup > 0:
                        run_wrk(t.port, bf, c, warmup)
                    sys0, steal0, own0 = *system_ticks(), own_ticks(all_pids)
                    before = cpu_ticks_sum(t.pids) if t.pids else 0
                    r = run_wrk(t.port, bf, c, duration)
                    after = cpu_ticks_sum(t.pids) if t.pids else 0
                    sys1, steal1, own1 = *system_ticks(), own_ticks(all_pids)
                    secs = r["duration_us"] / 1e6
                    # CPU used by processes outside the benchmark during the cell, and hypervisor
                    # steal, in % of one core (the measured run's wall time, which wrk's duration
                    # approximates).
                    r["bg_pct"] = max(0.0, 100.0 * ((sys1 - sys0) - (own1 - own0)) / CLK_TCK / secs) if secs else 0.0
                    r["steal_pct"] = 100.0 * (steal1 - steal0) / CLK_TCK / secs if secs else 0.0
                    r["rps"] = r["requests"] / secs if secs > 0 else 0.0
                    r["err_total"] = sum(v for k, v in r["errors"].items() if k != "status")  # socket errors
                    if t.pids and r["requests"] > 0:
                        cpu_s = (after - before) / CLK_TCK
                        r["cpu_us_per_req"] = cpu_s * 1e6 / r["requests"]
                        r["core_pct"] = 100.0 * cpu_s / secs
                    else:
                        r["cpu_us_per_req"] = None
                        r["core_pct"] = None
                    per_round.setdefault((m, c, t.name), []).append(r)
                    lat = r["latency_us"]
                    cpu = "" if r["cpu_us_per_req"] is None else f"  cpu {r['cpu_us_per_req']:.1f} µs/req"
                    log(
                        f"[{n}/{total_runs}] {m:9} c={c:<3} {t.name:6} round {rnd + 1}/{rounds} "
                        f"{r['rps']:9.0f} req/s  "
                        f"p50 {lat['p50'] / 1000:.3f} p99 {lat['p99'] / 1000:.3f} ms  "
                        f"err {r['err_total']} non2xx {r['non2xx']}{cpu}  other load {r['bg_pct']:.0f}%"
                    )
    results = {key: median_cell(runs) for key, runs in per_round.items()}
    check_alive()

    log("streaming time to first byte (c=1, sequential, keep-alive) ...")
    ttfb_res: dict[str, dict] = {}
    samples: dict[str, dict] = {t.name: {"ttfb_us": [], "total_us": [], "errors": 0} for t in targets}
    for _ in range(rounds):
        for t in targets:
            r = ttfb.measure(t.port, body(t.model, True), ttfb_n, ttfb_warm)
            samples[t.name]["ttfb_us"] += r["ttfb_us"]
            samples[t.name]["total_us"] += r["total_us"]
            samples[t.name]["errors"] += r["errors"]
    for t in targets:
        r = samples[t.name]
        ttfb_res[t.name] = {
            "p50": ttfb.percentile(r["ttfb_us"], 50),
            "p99": ttfb.percentile(r["ttfb_us"], 99),
            "total_p50": ttfb.percentile(r["total_us"], 50),
            "n": len(r["ttfb_us"]),
            "errors": r["errors"],
        }
        log(f"  {t.name:6} ttfb p50 {ttfb_res[t.name]['p50']:.1f} µs  p99 {ttfb_res[t.name]['p99']:.1f} µs  "
            f"errors {r['errors']}")
    check_alive()

    # Each extra config's CPU per request against the core Johi's, both loaded at once.
    paired_windows = env_int("PAIRED_WINDOWS", 6)
    paired_secs = env_int("PAIRED_SECONDS", 3)
    paired_conc = env_int("PAIRED_CONNECTIONS", 32)
    paired: dict[tuple[str, str], list[float]] = {}
    if paired_windows > 0:
        johi_t = next(t for t in targets if t.name == "johi")
        # The core Johi against the nginx floor the same way (issue 2's CPU bar).
        nginx_t = next(t for t in targets if t.name == "nginx")
        for m in modes:
            log(f"paired CPU: nginx and johi loaded together, {m}, "
                f"{paired_windows} × {paired_secs} s ...")
            paired[("johi", m)] = paired_cpu(
                nginx_t, johi_t, body_files[("johi", m)], paired_conc, paired_windows, paired_secs,
                first_body=body_files[("nginx", m)])
            log("  ratios " + ", ".join(f"{r:.3f}" for r in paired[("johi", m)]))
            check_alive()
        floor_t = next((t for t in targets if t.name == FLOOR), None)
        for m in modes if floor_t else []:
            log(f"paired CPU: nginx and {FLOOR}, then {FLOOR} and johi, loaded together, {m}, "
                f"{paired_windows} × {paired_secs} s each ...")
            paired[(FLOOR, m)] = paired_cpu(
                nginx_t, floor_t, body_files[(FLOOR, m)], paired_conc, paired_windows,
                paired_secs)
            paired[("johi÷floor", m)] = paired_cpu(
                floor_t, johi_t, body_files[("johi", m)], paired_conc, paired_windows,
                paired_secs, first_body=body_files[(FLOOR, m)])
            log("  ratios " + ", ".join(f"{r:.3f}" for r in paired[(FLOOR, m)]) + " / "
                + ", ".join(f"{r:.3f}" for r in paired[("johi÷floor", m)]))
            check_alive()
        for t in extras:
            for m in modes:
                log(f"paired CPU: johi and {t.name} loaded together, {m}, "
                    f"{paired_windows} × {paired_secs} s ...")
                paired[(t.name, m)] = paired_cpu(
                    johi_t, t, body_files[(t.name, m)], paired_conc, paired_windows, paired_secs)
                log("  ratios " + ", ".join(f"{r:.3f}" for r in paired[(t.name, m)]))
                check_alive()

    # Single-client latency, paired round by round (see `paired_c1`).
    c1_rounds = env_int("C1_ROUNDS", 12)
    c1_secs = env_int("C1_SECONDS", 1)
    c1: dict[str, dict[str, list[float]]] = {}
    if c1_rounds > 0 and 1 in concs:
        for m in modes:
            log(f"paired c=1 latency: {len(targets)} targets, {m}, {c1_rounds} rounds × {c1_secs} s ...")
            c1[m] = paired_c1(targets, body_files, m, c1_rounds, c1_secs)
            log("  median p50 µs: " + ", ".join(f"{n} {median(v):.0f}" for n, v in c1[m].items()))
            check_alive()

    extra_hwm = {t.name: status_kib(t.pids[0], "VmHWM") for t in extras}
    # Beside Redis (same CPU, the issue's yardstick), and from the gateways' CPU, as Johi's own
    # calls go: across cores, which on a VM costs a cross-CPU wake-up each way.
    redis_ping = None
    if redis_pid:
        redis_ping = redis_round_trip(os.environ.get("LOADGEN_CPU", "1"))
        if redis_ping is not None:
            redis_ping["from_gateway_cpu"] = redis_round_trip(os.environ.get("GATEWAY_CPU", "0"))
    johi_hwm = status_kib(johi_pid, "VmHWM")
    johi_rss = status_kib(johi_pid, "VmRSS")
    nginx_hwm = {p: status_kib(p, "VmHWM") for p in [nginx_pid] + nginx_workers}
    elapsed = time.monotonic() - t_start

    johi_log_issues: list[str] = []
    for jl in [os.environ.get("JOHI_LOG")] + list(extra_logs.values()):
        if jl and os.path.exists(jl):
            with open(jl, errors="replace") as f:
                for line in f:
                    clean = re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip()
                    if " WARN " in clean or " ERROR " in clean:
                        johi_log_issues.append(clean)

    # --- report -----------------------------------------------------------------------------
    L: list[str] = []
    L.append("# Johi load benchmark")
    L.append("")
    L.append(f"* Machine: {machine_line()}")
    L.append(f"* Software: {versions()}")
    L.append(
        f"* Setup: Johi (`--worker-threads 1`) and nginx (`worker_processes 1`) pinned to CPU 0; "
        f"wrk (`-t1`) and the mock upstream (`--worker-threads 1 --no-record`) pinned to CPU 1. "
        f"Request: POST {PATH}, {body_size} B JSON body with a 1024-character user prompt; "
        f"the mock answers ~10 words (streams: role chunk, one chunk per word, finish, usage, [DONE])."
    )
    L.append(
        f"* Each cell: {rounds} round(s), the targets interleaved within each round; per "
        f"round {warmup} s warm-up, then {duration} s measured with `wrk -t1 -cC`. Every figure is "
        f"the median over the rounds (errors: the sum). Latency is "
        f"wrk's full-response latency (for streams, to the last chunk). Added = target − direct at "
        f"the same percentile. CPU = utime+stime of the target process(es) over the measured run ÷ "
        f"requests (nginx: master + worker); core % = CPU seconds ÷ wall seconds."
    )
    L.append(f"* Total time measuring: {elapsed:.0f} s")
    L.append("")

    for m in modes:
        L.append(f"## {MODE_NAMES[m]}")
        L.append("")
        L.append("| target | conc | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms "
                 "| CPU µs/req | core % | socket errors | non-2xx |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in concs:
            d = results[(m, c, "direct")]["latency_us"]
            for t in targets:
                r = results[(m, c, t.name)]
                lat = r["latency_us"]
                a50 = None if t.name == "direct" else lat["p50"] - d["p50"]
                a99 = None if t.name == "direct" else lat["p99"] - d["p99"]
                cpu = "—" if r["cpu_us_per_req"] is None else f"{r['cpu_us_per_req']:.1f}"
                core = "—" if r["core_pct"] is None else f"{r['core_pct']:.0f}"
                L.append(
                    f"| {t.name} | {c} | {r['rps']:.0f} | {ms(lat['p50'])} | {ms(lat['p90'])} | "
                    f"{ms(lat['p99'])} | {signed_ms(a50)} | {signed_ms(a99)} | {cpu} | {core} | "
                    f"{r['err_total']} | {r['non2xx']} |"
                )
        L.append("")

    L.append("## Streaming time to first byte (c=1)")
    L.append("")
    L.append(
        f"{ttfb_n} sequential streaming requests per target and round over one keep-alive "
        f"connection (after {ttfb_warm} warm-up), {rounds} round(s) with the targets interleaved "
        f"and the samples pooled, Python `http.client` on CPU 1: time from sending the "
        f"request to receiving the first SSE body bytes."
    )
    L.append("")
    L.append("| target | TTFB p50 ms | TTFB p99 ms | added p50 ms | added p99 ms | full stream p50 ms | errors |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    td = ttfb_res["direct"]
    for t in targets:
        r = ttfb_res[t.name]
        a50 = None if t.name == "direct" else r["p50"] - td["p50"]
        a99 = None if t.name == "direct" else r["p99"] - td["p99"]
        L.append(
            f"| {t.name} | {ms(r['p50'])} | {ms(r['p99'])} | {signed_ms(a50)} | {signed_ms(a99)} | "
            f"{ms(r['total_p50'])} | {r['errors']} |"
        )
    L.append("")

    L.append("## Peak memory")
    L.append("")
    L.append(f"* Johi: peak RSS (VmHWM) {johi_hwm / 1024:.1f} MiB (RSS at the end {johi_rss / 1024:.1f} MiB)")
    ng = ", ".join(
        f"{'master' if p == nginx_pid else 'worker'} {kib / 1024:.1f} MiB" for p, kib in nginx_hwm.items()
    )
    L.append(f"* nginx: peak RSS (VmHWM) {ng}")
    if floor_pid:
        L.append(f"* {FLOOR}: peak RSS (VmHWM) {status_kib(floor_pid, 'VmHWM') / 1024:.1f} MiB")
    for name, kib in extra_hwm.items():
        L.append(f"* {name}: peak RSS (VmHWM) {kib / 1024:.1f} MiB")
    L.append("")

    if c1:
        L.extend(c1_section(targets, c1, c1_rounds, c1_secs))
    if extras:
        L.extend(pipeline_cost(extras, modes, concs, results, ttfb_res, redis_ping, paired))
        L.extend(pipeline_bars(extras, modes, concs, results, redis_ping, paired, c1))

    # --- bars ---
    cpu_c = 64 if 64 in concs else max(concs)
    bars = issue_bars("johi", "Johi", modes, concs, cpu_c, results, paired, paired_conc, c1,
                      ttfb_res)
    bars.append((
        "Johi peak RSS",
        f"{johi_hwm / 1024:.1f} MiB",
        f"≤ {BAR_RSS_MIB:.0f} MiB",
        verdict(johi_hwm / 1024, BAR_RSS_MIB),
    ))
    if floor_pid:
        L.extend(floor_section(modes, concs, cpu_c, results, paired, paired_conc, c1, ttfb_res))

    L.append("## Bars (informational)")
    L.append("")
    L.extend(bar_table(bars))
    failed = sum(1 for b in bars if b[3] != "PASS")
    L.append(f"{len(bars) - failed} of {len(bars)} bars pass.")
    L.append("")

    total_err = sum(r["err_total"] + r["non2xx"] for r in results.values()) + sum(
        r["errors"] for r in ttfb_res.values()
    )
    L.append("## Sanity")
    L.append("")
    L.append(f"* Socket errors + non-2xx answers across all wrk runs and TTFB requests: {total_err}")
    cells = [(k, r) for k, r in results.items()]
    worst_k, worst = max(cells, key=lambda kr: kr[1]["bg_pct"])
    mean_bg = sum(r["bg_pct"] for _, r in cells) / len(cells)
    max_steal = max(r["steal_pct"] for _, r in cells)
    L.append(
        f"* CPU used by other processes on the machine during the measured cells: mean "
        f"{mean_bg:.1f} %, max {worst['bg_pct']:.1f} % of one core ({worst_k[0]} c={worst_k[1]} "
        f"{worst_k[2]}); hypervisor steal max {max_steal:.1f} %."
    )
    noisy = [(k, r) for k, r in cells if r["bg_pct"] > 10.0 or r["steal_pct"] > 10.0]
    if noisy:
        L.append(
            "* **Warning:** other load or steal above 10 % of a core in "
            + ", ".join(f"{k[0]} c={k[1]} {k[2]} ({r['bg_pct']:.0f} % / steal {r['steal_pct']:.0f} %)"
                        for k, r in noisy)
            + "; those cells are disturbed, rerun on a quiet machine."
        )
    if johi_log_issues:
        L.append(f"* Johi logged {len(johi_log_issues)} WARN/ERROR line(s); the first ones:")
        L.append("")
        L.append("```")
        L.extend(johi_log_issues[:10])
        L.append("```")
    else:
        L.append("* Johi logged no WARN/ERROR lines.")
    L.append("")

    report = "\n".join(L)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        f.write(report + "\n")
    print(report, flush=True)
    log(f"report written to {out_path}")
    return 0


def issue_bars(name: str, label: str, modes, concs, cpu_c, results, paired, paired_conc, c1,
               ttfb_res) -> list[tuple[str, str, str, str]]:
    """Issue 2's bars for target `name` against nginx: CPU per request (cells and paired),
    added p50/p99 at c=1 and c=16, paired c=1 p50, stream TTFB. Johi's are the issue's bars;
    the floor's are the same yardstick applied to the bare Rust stack."""
    bars: list[tuple[str, str, str, str]] = []
    for m in modes:
        j = results[(m, cpu_c, name)]["cpu_us_per_req"]
        g = results[(m, cpu_c, "nginx")]["cpu_us_per_req"]
        val = j / g if (j is not None and g) else None
        bars.append((
            f"{MODE_NAMES[m]}: {label} CPU/req ÷ nginx CPU/req at c={cpu_c}",
            "—" if val is None else f"{val:.2f}× ({j:.1f} vs {g:.1f} µs)",
            f"≤ {BAR_CPU}×",
            verdict(val, BAR_CPU),
        ))
        windows = paired.get((name, m)) or []
        if windows:
            val = median(windows)
            bars.append((
                f"{MODE_NAMES[m]}: {label} CPU/req ÷ nginx CPU/req, paired (both loaded at once, c={paired_conc} each)",
                f"{val:.2f}× [{', '.join(f'{r:.2f}' for r in windows)}]",
                f"≤ {BAR_CPU}×",
                verdict(val, BAR_CPU),
            ))
    for pct, limit in (("p50", BAR_P50), ("p99", BAR_P99)):
        for m in modes:
            for c in [c for c in concs if c in (1, 16)]:
                d = results[(m, c, "direct")]["latency_us"][pct]
                ja = results[(m, c, name)]["latency_us"][pct] - d
                na = results[(m, c, "nginx")]["latency_us"][pct] - d
                text, val = ratio(ja, na, label)
                bars.append((
                    f"{MODE_NAMES[m]}: {label} added {pct} ÷ nginx added {pct} at c={c}",
                    f"{text} ({ja / 1000:.3f} vs {na / 1000:.3f} ms)",
                    f"≤ {limit}×",
                    verdict(val, limit),
                ))
    for m, p50 in c1.items():
        ja = median(round_deltas(p50, "direct", name))
        na = median(round_deltas(p50, "direct", "nginx"))
        text, val = ratio(ja, na, label)
        bars.append((
            f"{MODE_NAMES[m]}: {label} added p50 ÷ nginx added p50 at c=1, paired rounds",
            f"{text} ({ja / 1000:.3f} vs {na / 1000:.3f} ms)",
            f"≤ {BAR_P50}×",
            verdict(val, BAR_P50),
        ))
    td = ttfb_res["direct"]
    ja = ttfb_res[name]["p50"] - td["p50"]
    na = ttfb_res["nginx"]["p50"] - td["p50"]
    text, val = ratio(ja, na, label)
    bars.append((
        f"Stream TTFB: {label} added p50 ÷ nginx added p50 (c=1)",
        f"{text} ({ja / 1000:.3f} vs {na / 1000:.3f} ms)",
        f"≤ {BAR_TTFB}×",
        verdict(val, BAR_TTFB),
    ))
    return bars


def floor_section(modes, concs, cpu_c, results, paired, paired_conc, c1, ttfb_res) -> list[str]:
    """The Rust floor: issue 2's yardstick applied to hyper with Johi's upstream transport
    and no pipeline, and what Johi's pipeline costs on top of it."""
    L = [f"## The Rust floor ({FLOOR})", ""]
    L.append(
        f"`{FLOOR}` (bench/floor) is hyper's server and Johi's own upstream transport with "
        "nothing between them: no routing, validation, authentication, audit or metering. "
        "Its rows split Johi's distance from nginx into what the Rust stack costs (floor ÷ "
        "nginx) and what Johi's pipeline adds (Johi ÷ floor). Informational: the issue's bars "
        "judge Johi."
    )
    L.append("")
    L.append("| | measured | limit | verdict |")
    L.append("|---|---|---|---|")
    for b in issue_bars(FLOOR, "floor", modes, concs, cpu_c, results, paired, paired_conc, c1,
                        ttfb_res):
        L.append(f"| {' | '.join(b)} |")
    L.append("")
    L.append("| mode | Johi ÷ floor CPU/req at c=" + str(cpu_c) + " (cells) | Johi ÷ floor, paired "
             "| Johi − floor added p50 at c=1 (paired rounds) | at c=16 (cells) |")
    L.append("|---|---:|---:|---:|---:|")
    for m in modes:
        j = results[(m, cpu_c, "johi")]["cpu_us_per_req"]
        f = results[(m, cpu_c, FLOOR)]["cpu_us_per_req"]
        cells = "—" if not (j and f) else f"{j / f:.2f}× ({f:.1f} → {j:.1f} µs)"
        windows = paired.get(("johi÷floor", m)) or []
        pair = "—" if not windows else f"{median(windows):.2f}× [{', '.join(f'{r:.2f}' for r in windows)}]"
        c1d = "—"
        if m in c1:
            c1d = signed_ms(median(round_deltas(c1[m], FLOOR, "johi")))
        c16 = "—"
        if 16 in concs:
            c16 = signed_ms(results[(m, 16, "johi")]["latency_us"]["p50"]
                            - results[(m, 16, FLOOR)]["latency_us"]["p50"])
        L.append(f"| {MODE_NAMES[m]} | {cells} | {pair} | {c1d} | {c16} |")
    L.append("")
    return L


def redis_round_trip(cpu: str) -> dict | None:
    """One Redis round trip on this machine: `redis-benchmark -t ping` with one client on
    `cpu` against the benchmark's Redis (:18379), as latency percentiles in µs."""
    try:
        out = subprocess.run(
            ["taskset", "-c", cpu, "redis-benchmark", "-p", "18379",
             "-t", "ping", "-c", "1", "-n", "50000"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log(f"redis-benchmark failed: {e}")
        return None
    # "latency summary (msec):" then a header line "avg min p50 p95 p99 max" and the values,
    # once per ping variant (PING_INLINE, PING_MBULK); take the first.
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if "latency summary" in line and i + 2 < len(lines):
            names = lines[i + 1].split()
            values = [float(v) for v in lines[i + 2].split()]
            return {k: v * 1000.0 for k, v in zip(names, values)}
    log("redis-benchmark: no latency summary in its output")
    return None


def c1_section(targets: list[Target], c1: dict, rounds: int, secs: int) -> list[str]:
    """The paired single-client latency: per target and mode, the median p50 and the medians
    of its round-by-round differences from direct and from the core Johi."""
    L = ["## Single-client latency, paired rounds (c=1)", ""]
    L.append(
        f"{rounds} rounds; in each, every target in turn for {secs} s with `wrk -t1 -c1` (the "
        f"order rotated every round). *Added* and *over johi* are medians of the differences "
        f"taken within each round (their spread in brackets: lowest and highest), so that the "
        f"VM's drift between rounds cancels. The bars below judge single-client latency by these."
    )
    L.append("")
    L.append("| target | mode | p50 ms (median) | added p50 ms | over johi ms |")
    L.append("|---|---|---:|---:|---:|")
    for m, p50 in c1.items():
        for t in targets:
            cells = [MODE_NAMES[m], ms(median(p50[t.name]))]
            for base in ("direct", "johi"):
                if t.name == base or (base == "johi" and t.name in ("direct", "nginx", FLOOR)):
                    cells.append("—")
                    continue
                d = round_deltas(p50, base, t.name)
                cells.append(f"{signed_ms(median(d))} [{min(d) / 1000:+.3f}, {max(d) / 1000:+.3f}]")
            L.append(f"| {t.name} | " + " | ".join(cells) + " |")
    L.append("")
    return L


def pipeline_cost(extras, modes, concs, results, ttfb_res, redis_ping, paired) -> list[str]:
    """What each extra config costs over the core Johi, measured in the same run."""
    L = ["## Pipeline cost over the core Johi (same run)", ""]
    L.append(
        "Each extra gateway is the same binary with another config, measured interleaved with "
        "the others. CPU ratio at the highest concurrency (the proxy's core saturated); added "
        "p50 difference = (extra − direct) − (johi − direct) at the same concurrency."
    )
    L.append("")
    if redis_ping:
        L.append(
            f"One Redis round trip here (`redis-benchmark -t ping -c 1`, :18379, CPU 1): p50 "
            f"{redis_ping.get('p50', float('nan')) / 1000:.3f} ms, p99 "
            f"{redis_ping.get('p99', float('nan')) / 1000:.3f} ms."
        )
        across = redis_ping.get("from_gateway_cpu")
        if across:
            L.append("")
            L.append(
                f"The same from the gateways' CPU 0 (how Johi's own calls go, across cores): p50 "
                f"{across.get('p50', float('nan')) / 1000:.3f} ms, p99 "
                f"{across.get('p99', float('nan')) / 1000:.3f} ms."
            )
        L.append("")
    cpu_c = 64 if 64 in concs else max(concs)
    L.append(
        "*Paired CPU ratio*: the config and the core Johi loaded **at the same time** (one wrk "
        "each, both gateways on CPU 0), CPU per request of the config ÷ the core's, median of "
        "the windows (each window's ratio in brackets). This is the figure to judge a CPU ratio "
        "by: the sequential cells' ratio moves with the VM's speed between cells."
    )
    L.append("")
    L.append("| config | mode | CPU µs/req (johi → config) | CPU ratio (cells) | paired CPU ratio | added p50 Δ ms (c=1) | added p50 Δ ms (c=16) | TTFB p50 Δ ms |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for t in extras:
        for m in modes:
            j = results[(m, cpu_c, "johi")]["cpu_us_per_req"]
            x = results[(m, cpu_c, t.name)]["cpu_us_per_req"]
            ratio_text = f"{x / j:.2f}×" if (j and x) else "—"
            deltas = []
            for c in (1, 16):
                if c in concs:
                    deltas.append(
                        f"{(results[(m, c, t.name)]['latency_us']['p50'] - results[(m, c, 'johi')]['latency_us']['p50']) / 1000:+.3f}"
                    )
                else:
                    deltas.append("—")
            ttfb_d = (ttfb_res[t.name]["p50"] - ttfb_res["johi"]["p50"]) / 1000
            windows = paired.get((t.name, m)) or []
            paired_text = (
                f"**{median(windows):.3f}×** [{', '.join(f'{r:.2f}' for r in windows)}]"
                if windows else "—"
            )
            L.append(
                f"| {t.name} | {MODE_NAMES[m]} | {j:.1f} → {x:.1f} | {ratio_text} | {paired_text} | "
                f"{deltas[0]} | {deltas[1]} | {ttfb_d:+.3f} |"
            )
    L.append("")
    return L


def pipeline_bars(extras, modes, concs, results, redis_ping, paired, c1) -> list[str]:
    """Issue 3's bars, for the extras named as `bench/configs.py` names them: `limits` (a key
    check, three limits and the ledger), `100k` (the same with 100 000 keys and 10 000
    tenants), `redis` (the same limits on Redis), `redis-prefetch` (Redis, counted ahead)."""
    names = {t.name for t in extras}
    if "johi-limits" not in names or 1 not in concs:
        return []
    bars: list[tuple[str, str, str, str]] = []

    def cells(name: str, m: str) -> float:
        """The config's c=1 p50 minus the core's, from the grid's cells (ms)."""
        return (results[(m, 1, name)]["latency_us"]["p50"] - results[(m, 1, "johi")]["latency_us"]["p50"]) / 1000

    def added(name: str, m: str) -> float:
        """The same, as the median of the paired rounds' differences when they ran (ms)."""
        if m in c1 and name in c1[m]:
            return median(round_deltas(c1[m], "johi", name)) / 1000
        return cells(name, m)

    source = "paired rounds" if c1 else "cells"

    for m in modes:
        windows = paired.get(("johi-limits", m)) or []
        value = median(windows) if windows else None
        bars.append((
            f"{MODE_NAMES[m]}: limits + ledger CPU ÷ core CPU (paired)",
            "—" if value is None else f"{value:.3f}×",
            "≤ 1.2×",
            verdict(value, 1.2),
        ))
    for m in modes:
        delta = added("johi-limits", m)
        bars.append((
            f"{MODE_NAMES[m]}: limits + ledger added p50 over the core at c=1 ({source})",
            f"{delta:+.3f} ms (cells {cells('johi-limits', m):+.3f})",
            "≤ +0.020 ms",
            verdict(delta, 0.020),
        ))
    if "johi-100k" in names:
        for m in modes:
            big, small = paired.get(("johi-100k", m)) or [], paired.get(("johi-limits", m)) or []
            value = median(big) / median(small) if big and small else None
            bars.append((
                f"{MODE_NAMES[m]}: 100 000 keys' paired CPU ratio ÷ limits' (same pipeline)",
                "—" if value is None else f"{value:.3f}",
                "≤ 1.10",
                verdict(value, 1.10),
            ))
    redis_configs = [("johi-redis", "Redis"), ("johi-redis-prefetch", "Redis with prefetch 1 %")]
    for name, label in redis_configs:
        if name not in names or not redis_ping:
            continue
        trip = (redis_ping.get("from_gateway_cpu") or redis_ping).get("p50")
        for m in modes:
            if m in c1:
                delta = median(round_deltas(c1[m], "johi-limits", name)) / 1000
            else:
                delta = cells(name, m) - cells("johi-limits", m)
            bars.append((
                f"{MODE_NAMES[m]}: {label} added p50 over the memory backend at c=1 ÷ one round trip ({source})",
                f"{delta:+.3f} ms vs {trip / 1000:.3f} ms",
                "≤ 1 round trip",
                verdict(delta / (trip / 1000) if trip else None, 1.0),
            ))
    L = ["## Issue 3 bars (informational)", ""]
    L.append(
        "The Redis round trip is `redis-benchmark -t ping -c 1` run from the gateways' CPU, as "
        "Johi's own calls go."
    )
    L.append("")
    L.extend(bar_table(bars))
    return L


def bar_table(bars: list[tuple[str, str, str, str]]) -> list[str]:
    """A Markdown table of (bar, measured, limit, verdict) rows, then a blank line."""
    rows = ["| bar | measured | limit | verdict |", "|---|---|---|---|"]
    rows += [f"| {b[0]} | {b[1]} | {b[2]} | {b[3]} |" for b in bars]
    return rows + [""]


def _on_term(signum, frame):  # noqa: ARG001
    # Raise, so that a running subprocess.run() kills its wrk before we exit.
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_term)
    try:
        sys.exit(main())
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        log(f"benchmark failed: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("benchmark interrupted")
        sys.exit(130)
