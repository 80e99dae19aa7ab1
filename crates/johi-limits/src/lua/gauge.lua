-- Shared by reserve.lua and current.lua (prepended to each).
--
-- A gauge (concurrent requests) is a set of leases rather than a bare number, so that a
-- replica that crashes between reserve and release cannot hold its share forever:
--   `leases`  ZSET  member = lease id, score = lease expiry (ms since the epoch)
--   `amounts` HASH  lease id -> amount, and the field `total` -> the sum of live leases
-- Expired leases are dropped (and their amounts subtracted) before the gauge is read.
local function gauge_used(leases, amounts, now)
  local stale = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  if #stale > 0 then
    local freed = 0
    for _, id in ipairs(stale) do
      freed = freed + (tonumber(redis.call('HGET', amounts, id)) or 0)
      redis.call('HDEL', amounts, id)
    end
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
    redis.call('HINCRBY', amounts, 'total', -freed)
  end
  return math.max(tonumber(redis.call('HGET', amounts, 'total')) or 0, 0)
end

-- What counter `i` holds: a windowed counter is a plain integer key (absent = 0). A rolling
-- window (weight > 0, in millionths) adds its previous bucket, the second key, weighted and
-- rounded up as `weighted()` does in Rust. Returns the total and that share.
local function used_of(i, gauge, now, weight)
  if gauge then
    return gauge_used(KEYS[2 * i - 1], KEYS[2 * i], now)
  end
  local used = tonumber(redis.call('GET', KEYS[2 * i - 1])) or 0
  local share = 0
  if weight > 0 then
    local previous = tonumber(redis.call('GET', KEYS[2 * i])) or 0
    share = math.ceil(previous * weight / 1000000)
  end
  return used + share, share
end
