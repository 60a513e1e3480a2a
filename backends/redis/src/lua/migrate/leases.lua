-- The schema version 2 -> 3 migration: rewrites each bare-id member of the lease set as
-- `<id>|<lease token>` with the same deadline, and drops those whose job is not running.
-- KEYS: leases. ARGV: the key prefix. Returns how many members it rewrote. (The lease set
-- holds running jobs only, a few per worker slot, so one atomic call takes them all.)
-- Run without the prelude.
local m = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local n = 0
for i = 1, #m, 2 do
  local id = m[i]
  if not string.find(id, '|', 1, true) then
    redis.call('ZREM', KEYS[1], id)
    local f = redis.call('HMGET', ARGV[1] .. 'job:' .. id, 'state', 'lease_token')
    if f[1] == 'running' and f[2] and f[2] ~= '' then
      redis.call('ZADD', KEYS[1], m[i + 1], id .. '|' .. f[2])
    end
    n = n + 1
  end
end
return n
