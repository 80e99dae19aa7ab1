#!/usr/bin/env python3
"""Time to first byte of streamed chat completions, for the Johi load benchmark.

Sends N sequential streaming requests over one persistent keep-alive connection
(stdlib ``http.client``) and measures, for each, the time from starting to send
the request to receiving the first bytes of the SSE body (status line and
headers are read first, then the first chunk). The rest of the stream is then
drained so the connection can be reused.

Standalone use::

    python3 bench/ttfb.py --port 18080 --model bench-model [-n 300] [--warmup 20]

bench.py imports :func:`measure` and runs it for every target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import socket
import sys
import time

PATH = "/v1/chat/completions"


def measure(port: int, body: bytes, n: int = 300, warmup: int = 20, host: str = "127.0.0.1") -> dict:
    """Returns {"ttfb_us": [...], "total_us": [...], "errors": int} for ``n`` measured requests."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Content-Length": str(len(body)),
        # The benchmark key (bench/johi.yaml); sent to every target alike.
        "Authorization": "Bearer sk-johi-bench-0000000000000000000000000000000000000",
    }
    ttfb: list[float] = []
    total: list[float] = []
    errors = 0
    for i in range(warmup + n):
        t0 = time.perf_counter_ns()
        # A bytes body goes out in the same send() as the headers.
        conn.request("POST", PATH, body=body, headers=headers)
        resp = conn.getresponse()
        first = resp.read1(65536)
        t1 = time.perf_counter_ns()
        rest = resp.read()
        t2 = time.perf_counter_ns()
        ok = resp.status == 200 and bool(first) and b"[DONE]" in (first + rest)
        if resp.will_close:
            # Should not happen with keep-alive everywhere; reconnect so the run continues.
            conn.close()
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if i < warmup:
            continue
        if not ok:
            errors += 1
            continue
        ttfb.append((t1 - t0) / 1000.0)
        total.append((t2 - t0) / 1000.0)
    conn.close()
    return {"ttfb_us": ttfb, "total_us": total, "errors": errors}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--model", default="mock-small")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    body = json.dumps(
        {
            "model": args.model,
            "messages": [{"role": "user", "content": "x" * 1024}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    r = measure(args.port, body, args.n, args.warmup, args.host)
    for name in ("ttfb_us", "total_us"):
        v = r[name]
        print(f"{name}: p50={percentile(v, 50):.1f} p99={percentile(v, 99):.1f} n={len(v)}")
    print(f"errors: {r['errors']}")
    return 1 if r["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
