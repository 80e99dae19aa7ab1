-- Apply the corrections waiting in this replica (see commit.lua), then check every enforced
-- charge and, only if all fit, apply all of them: all or nothing. A windowed charge may ask
-- for padding (a replica's allotment, see prefetch.rs): taken after every check passed, as
-- much of it as fits under the cap (all of it for a soft cap).
-- KEYS: first the corrections' (two each), then two per charge: the counter (or a gauge's
--       lease ZSET) and a gauge's amounts HASH, a rolling window's previous bucket, or ''
--       (a plain windowed counter).
-- ARGV: the corrections (count first), then now (ms), lease expiry (ms); then seven per
--       charge: amount, enforce (1/0), cap (limit + burst), key expiry (ms), lease id ('' =
--       windowed), previous bucket's weight in millionths (0 unless rolling), padding wanted
-- Returns {1, used_1, ..., used_n, padding_1, ..., padding_n} when granted (used with the
-- padding taken), {0, index (0-based), used} when denied.
local kb = 2 * tonumber(ARGV[1])
local ab = correct(0, 1)
local now = tonumber(ARGV[ab + 1])
local lease_until = tonumber(ARGV[ab + 2])
local n = (#KEYS - kb) / 2
local result = {1}
-- A windowed counter is charged at once (one INCRBY, whose result is what the check
-- needs); a gauge is only read here and leased below. A charge that does not fit undoes the
-- ones already made, so a denied reservation leaves no trace.
local charged = {}
local previous_share = {}
for i = 1, n do
  local b = ab + 2 + (i - 1) * 7
  local key = KEYS[kb + 2 * i - 1]
  local amount = tonumber(ARGV[b + 1])
  local lease = ARGV[b + 5]
  local used -- the counter without this charge
  if lease == '' then
    local v = redis.call('INCRBY', key, amount)
    local created = v == amount
    if created then
      -- A new counter (its window's first charge) gets its expiry once.
      redis.call('PEXPIREAT', key, ARGV[b + 4])
    end
    charged[#charged + 1] = {key, amount, created}
    used = v - amount
    local weight = tonumber(ARGV[b + 6])
    if weight > 0 then
      -- A rolling window adds its previous bucket, weighted and rounded up as `weighted()`
      -- does in Rust.
      local previous = tonumber(redis.call('GET', KEYS[kb + 2 * i])) or 0
      previous_share[i] = math.ceil(previous * weight / 1000000)
      used = used + previous_share[i]
    end
  else
    used = gauge_used(key, KEYS[kb + 2 * i], now)
  end
  -- At least one unit of room: an exhausted budget refuses even a zero estimate.
  if ARGV[b + 2] == '1' and used + math.max(amount, 1) > tonumber(ARGV[b + 3]) then
    for _, c in ipairs(charged) do
      if c[3] then
        redis.call('DEL', c[1])
      else
        redis.call('DECRBY', c[1], c[2])
      end
    end
    return {0, i - 1, used}
  end
  result[i + 1] = used + amount
end
-- Every charge fits: take the padding, read afresh (one counter may be charged twice).
for i = 1, n do
  local b = ab + 2 + (i - 1) * 7
  local pad = tonumber(ARGV[b + 7])
  local taken = 0
  if pad > 0 and ARGV[b + 5] == '' then
    local key = KEYS[kb + 2 * i - 1]
    taken = pad
    if ARGV[b + 2] == '1' then
      local current = (tonumber(redis.call('GET', key)) or 0) + (previous_share[i] or 0)
      taken = math.min(pad, math.max(0, tonumber(ARGV[b + 3]) - current))
    end
    if taken > 0 then
      redis.call('INCRBY', key, taken)
      result[i + 1] = result[i + 1] + taken
    end
  end
  result[n + 1 + i] = taken
end
for i = 1, n do
  local b = ab + 2 + (i - 1) * 7
  local lease = ARGV[b + 5]
  if lease ~= '' then
    local key, amounts = KEYS[kb + 2 * i - 1], KEYS[kb + 2 * i]
    local amount = tonumber(ARGV[b + 1])
    redis.call('ZADD', key, lease_until, lease)
    redis.call('HSET', amounts, lease, amount)
    result[i + 1] = redis.call('HINCRBY', amounts, 'total', amount)
    redis.call('PEXPIREAT', key, ARGV[b + 4])
    redis.call('PEXPIREAT', amounts, ARGV[b + 4])
  end
end
return result
