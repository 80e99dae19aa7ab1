-- Replace each reserved amount by the actual one; give gauge leases back.
-- KEYS: two per entry, as in reserve.lua.
-- ARGV: three per entry: reserved, actual, lease id ('' = windowed).
for i = 1, #KEYS / 2 do
  local b = (i - 1) * 3
  local key = KEYS[2 * i - 1]
  local lease = ARGV[b + 3]
  if lease == '' then
    -- An absent key is a window Redis has already forgotten: writing to it would bring it
    -- back without a TTL, so the correction is dropped (the window is over anyway).
    local v = tonumber(redis.call('GET', key))
    if v then
      local base = math.max(v - tonumber(ARGV[b + 1]), 0)
      redis.call('INCRBY', key, base + tonumber(ARGV[b + 2]) - v)
    end
  else
    -- The lease's own amount is subtracted, once: a lease that already expired (and was
    -- swept by a reservation) is not subtracted again.
    local amount = tonumber(redis.call('HGET', KEYS[2 * i], lease))
    if amount then
      redis.call('HDEL', KEYS[2 * i], lease)
      redis.call('HINCRBY', KEYS[2 * i], 'total', -amount)
    end
    redis.call('ZREM', key, lease)
  end
end
return 0
