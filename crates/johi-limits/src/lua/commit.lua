-- Corrections: replace each reserved amount by the actual one; give gauge leases back.
-- Shared by the commit script (corrections alone) and reserve.lua, which applies the
-- corrections waiting in this replica first, in the same round trip.
--
-- `correct(kb, ab)`: ARGV[ab] is the number of corrections; correction j (1-based) has
--   KEYS[kb + 2j - 1]  the counter (or a gauge's lease ZSET)
--   KEYS[kb + 2j]      a gauge's amounts HASH ('' for a windowed counter)
--   ARGV[ab + 3j - 2], ARGV[ab + 3j - 1], ARGV[ab + 3j]: reserved, actual, lease id ('' for a
--   windowed counter)
-- Returns the index of the last ARGV it read.
local function correct(kb, ab)
  local count = tonumber(ARGV[ab])
  for j = 1, count do
    local key = KEYS[kb + 2 * j - 1]
    local lease = ARGV[ab + 3 * j]
    if lease == '' then
      -- One INCRBY by the difference. Two rare cases are then undone: an absent key is a
      -- window Redis has already forgotten, and INCRBY just brought it back without a TTL
      -- (the correction is dropped: the window is over anyway); a counter holding less than
      -- the reservation (Redis lost data) gets `actual`, as max(v - reserved, 0) + actual.
      local actual = tonumber(ARGV[ab + 3 * j - 1])
      local delta = actual - tonumber(ARGV[ab + 3 * j - 2])
      local v = redis.call('INCRBY', key, delta)
      if v == delta and redis.call('PTTL', key) == -1 then
        redis.call('DEL', key)
      elseif v < actual then
        redis.call('SET', key, actual, 'KEEPTTL')
      end
    else
      -- The lease's own amount is subtracted, once: a lease that already expired (and was
      -- swept by a reservation) is not subtracted again.
      local amounts = KEYS[kb + 2 * j]
      local amount = tonumber(redis.call('HGET', amounts, lease))
      if amount then
        redis.call('HDEL', amounts, lease)
        redis.call('HINCRBY', amounts, 'total', -amount)
      end
      redis.call('ZREM', key, lease)
    end
  end
  return ab + 3 * count
end
