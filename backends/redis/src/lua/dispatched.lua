-- Marks jobs as published to an external queue. ARGV: prefix, ids...
local now = n2s(now_ms())
for i = 2, #ARGV do
  local key = jkey(ARGV[i])
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'dispatched_at', now) end
end
return 0
