-- Rescues running jobs whose lease expired before `now`. KEYS: leases, finished, unique.
-- ARGV: prefix, now_ms, now (RFC 3339), limit, finished_ttl_s.
-- Returns {retried ids, dropped ids}.
local now = tonumber(ARGV[2])
local at = ARGV[3]
local limit = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local retried, dropped = {}, {}
local ids = redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. n2s(now), 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local key = jkey(id)
  local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'run_at', 'attempt',
    'max_attempts', 'worker_id', 'lease_expires_at')
  redis.call('ZREM', LEASES, id)
  if f[1] == 'running' and tonumber(f[8]) < now then
    local q = f[2]
    local attempt = tonumber(f[5])
    append_error(key, cjson.encode({
      attempt = attempt, at = at, kind = 'lease_expired',
      message = 'lease expired: worker ' .. (f[7] or '?') ..
        ' stopped renewing it (crashed or stalled)'}))
    clear_lease(key, id)
    if attempt < tonumber(f[6]) then
      redis.call('HSET', key, 'state', 'available')
      redis.call('HDEL', key, 'dispatched_at')
      reindex(q, id, 'running', 'available')
      make_pending(id, q, f[3], f[4], now_ms())
      retried[#retried + 1] = id
    else
      finish(key, id, q, 'running', 'dropped', now, ttl)
      dropped[#dropped + 1] = id
    end
  elseif f[1] == 'running' and f[8] then
    -- Renewed after it was listed: keep it under its current deadline.
    redis.call('ZADD', LEASES, tonumber(f[8]), id)
  end
end
if #retried > 0 then redis.call('PUBLISH', WAKE, '') end
return {retried, dropped}
