-- What one counter holds now. KEYS as for one charge of reserve.lua.
-- ARGV[1] now (ms), ARGV[2] 1 for a gauge, 0 for a windowed counter, ARGV[3] a rolling
-- window's previous-bucket weight in millionths (0 otherwise).
return used_of(1, ARGV[2] == '1', tonumber(ARGV[1]), tonumber(ARGV[3]))
