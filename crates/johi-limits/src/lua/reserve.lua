-- Check every enforced charge, and only if all fit, apply all of them: all or nothing.
-- KEYS: two per charge: the counter (or a gauge's lease ZSET) and a gauge's amounts HASH
--       (unused for windowed counters), or a rolling window's previous bucket.
-- ARGV[1] now (ms), ARGV[2] lease expiry (ms); then six per charge: amount, enforce (1/0),
--       cap (limit + burst), key expiry (ms), lease id ('' = windowed), previous bucket's
--       weight in millionths (0 unless rolling)
-- Returns {1, used_1, ..., used_n} when granted, {0, index (0-based), used} when denied.
local now = tonumber(ARGV[1])
local lease_until = tonumber(ARGV[2])
local n = #KEYS / 2
local share = {}
for i = 1, n do
  local b = 2 + (i - 1) * 6
  local u, s = used_of(i, ARGV[b + 5] ~= '', now, tonumber(ARGV[b + 6]))
  share[i] = s or 0
  if ARGV[b + 2] == '1' then
    -- At least one unit of room: an exhausted budget refuses even a zero estimate.
    local amount = math.max(tonumber(ARGV[b + 1]), 1)
    if u + amount > tonumber(ARGV[b + 3]) then
      return {0, i - 1, u}
    end
  end
end
local result = {1}
for i = 1, n do
  local b = 2 + (i - 1) * 6
  local key = KEYS[2 * i - 1]
  local amount = tonumber(ARGV[b + 1])
  local expire_at = ARGV[b + 4]
  local lease = ARGV[b + 5]
  if lease == '' then
    -- what the window holds with this charge, a rolling window's previous share included
    result[i + 1] = redis.call('INCRBY', key, amount) + share[i]
  else
    redis.call('ZADD', key, lease_until, lease)
    redis.call('HSET', KEYS[2 * i], lease, amount)
    result[i + 1] = redis.call('HINCRBY', KEYS[2 * i], 'total', amount)
    redis.call('PEXPIREAT', KEYS[2 * i], expire_at)
  end
  redis.call('PEXPIREAT', key, expire_at)
end
return result
