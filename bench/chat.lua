-- wrk script for the Johi load benchmark (bench/run.sh drives it; see bench/README.md).
--
-- POSTs one chat-completions request body, read from the file named by $BENCH_BODY
-- (written by bench.py: ~1 KB user prompt, `"stream": true` for the streaming mode), over
-- keep-alive connections, and at the end prints one machine-readable line:
--
--   BENCH_RESULT {"requests":..,"duration_us":..,"non2xx":..,"errors":{..},"latency_us":{..}}
--
-- wrk records the latency of the whole response (for streams: until the last chunk).

local body_path = os.getenv("BENCH_BODY")
if not body_path then
  error("set BENCH_BODY to the file holding the request body")
end
local f = assert(io.open(body_path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
-- Johi authenticates this key (bench/johi.yaml holds its hash); the mock and nginx ignore
-- it, so every target receives the same bytes.
wrk.headers["Authorization"] = "Bearer sk-johi-bench-0000000000000000000000000000000000000"

-- Per-thread state: every thread counts the answers whose status is not 2xx.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

non2xx = 0

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + (t:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes, n,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
