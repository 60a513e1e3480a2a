-- Deletes a schedule. ARGV: prefix, id. Returns 1 when there was one.
local n = redis.call('DEL', P .. 'schedule:' .. ARGV[2])
redis.call('SREM', P .. 'schedules', ARGV[2])
return n
