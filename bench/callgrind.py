#!/usr/bin/env python3
"""Instructions per request, counted by valgrind's callgrind: a repeatable A/B of pipelines.

The load benchmark's CPU figures move by ±20 % on this shared VM; callgrind counts the
instructions Johi executes (user space, every thread), which are the same from run to run
whatever else the machine does. Each config is run twice under callgrind, serving 200 and
then 1200 sequential non-streaming requests (the benchmark's 1182-byte chat body, its API
key) over one keep-alive connection to the mock upstream; the difference divided by 1000 is
the cost of one request, with start-up and shutdown cancelled out. Kernel work (syscalls,
the ledger's file writes) is not counted: use it to compare code, and bench/run.sh for time.

    cargo build --release -p johi && python3 bench/configs.py
    python3 bench/callgrind.py core:18080:bench/johi.yaml limits:18082:bench/results/johi-limits.yaml

Each argument is name:port:config (the config must listen on that port and route
`bench-model` to the mock on 127.0.0.1:18001, as bench/johi.yaml does); the config
`hyper-floor` counts the Rust floor instead (`floor:18086:hyper-floor`, built with
`cargo build --release -p johi-bench-floor`). Needs valgrind.
`STREAM=1` counts streaming requests instead (the benchmark's streaming body);
`BENCH_AUTHORIZATION="Bearer <jwt>"` sends another credential than the benchmark's key.
"""

import http.client
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the benchmark's request body)

JOHI = os.environ.get("JOHI_BIN", os.path.join(ROOT, "target", "release", "johi"))
# BENCH_AUTHORIZATION replaces the benchmark's API key, e.g. with a JWT for an auth.jwt config.
KEY = os.environ.get(
    "BENCH_AUTHORIZATION", "Bearer sk-johi-bench-0000000000000000000000000000000000000"
)
MOCK_PORT = 18001
FLOOR = os.environ.get("FLOOR_BIN", os.path.join(ROOT, "target", "release", "hyper-floor"))
# STREAM=1: the benchmark's streaming request instead (the whole stream is read each time).
STREAM = os.environ.get("STREAM") == "1"


def wait_for(port: int, path: str = "/healthz", tries: int = 600) -> None:
    for _ in range(tries):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered on port {port}")


def instructions(config: str, port: int, requests: int, out: str) -> int:
    """Total instructions of one `johi serve` under callgrind that served `requests`."""
    if os.path.basename(config) == "hyper-floor":
        # The Rust floor (bench/floor): no config, it forwards everything to the mock.
        command = [FLOOR, "--listen", f"127.0.0.1:{port}", "--upstream",
                   f"http://127.0.0.1:{MOCK_PORT}", "--worker-threads", "1"]
    else:
        command = [JOHI, "serve", "--config", config, "--worker-threads", "1"]
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
        cwd=os.path.dirname(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    wait_for(port)
    body = bench.body("bench-model", STREAM)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(requests):
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"Content-Type": "application/json", "Authorization": KEY})
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"{config}: answered {answer.status}")
    time.sleep(1.5)  # let background writers (audit, ledger) finish their batches
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=300)[1].decode(errors="replace")
    found = re.search(r"Collected : (\d+)", stderr)
    if not found:
        raise SystemExit(f"callgrind printed no total for {config}:\n{stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    mock = subprocess.Popen([JOHI, "mock-upstream", "--port", str(MOCK_PORT), "--no-record",
                             "--worker-threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(MOCK_PORT, "/v1/models")
        for spec in sys.argv[1:]:
            name, port, config = spec.split(":", 2)
            config = os.path.abspath(config)
            few = instructions(config, int(port), 200, f"/tmp/johi-callgrind.{name}.200")
            many = instructions(config, int(port), 1200, f"/tmp/johi-callgrind.{name}.1200")
            print(f"{name:12} {(many - few) / 1000:>10,.0f} instructions per request", flush=True)
    finally:
        mock.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
