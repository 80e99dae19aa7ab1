-- What one counter holds now. KEYS as for one charge of reserve.lua.
-- ARGV[1] now (ms), ARGV[2] 1 for a gauge, 0 for a windowed counter.
return used_of(1, ARGV[2] == '1', tonumber(ARGV[1]))
