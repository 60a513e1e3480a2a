-- Takes or renews a leadership lock. KEYS: the lock. ARGV: prefix, holder, ttl_ms.
-- Returns 1 when `holder` holds it now.
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
