-- Rescues running jobs whose lease expired before `now`. KEYS: leases, finlog, unique.
-- ARGV: prefix, now_ms, now (RFC 3339), limit, finished_ttl_s.
-- Returns {retried ids, dropped ids}.
local now = tonumber(ARGV[2])
local at = ARGV[3]
local limit = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local server_now = now_ms()
local retried, dropped = {}, {}
local leases = redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. n2s(now), 'LIMIT', 0, limit)
for _, m in ipairs(leases) do
  local id, tok = lsplit(m)
  local key = jkey(id)
  local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'run_at', 'attempt',
    'max_attempts', 'worker_id', 'unique_key', 'lease_token')
  -- A bare-id entry (schema 2, written by a process of an older version) is the job's lease
  -- only when the job has no entry under its current token.
  local current = f[9] == tok
  if not tok and f[1] == 'running' and f[9] then
    current = redis.call('ZSCORE', LEASES, lmember(id, f[9])) == false
  end
  if f[1] == 'running' and current then
    local q = f[2]
    local attempt = num(f[5], 0)
    local errors = with_error(key, cjson.encode({
      attempt = attempt, at = at, kind = 'lease_expired',
      message = 'lease expired: worker ' .. (f[7] or '?') ..
        ' stopped renewing it (crashed or stalled)'}))
    if attempt < num(f[6], 0) then
      requeue(key, id, q, 'running', f[3], f[4], server_now,
        {'state', 'available', 'errors', errors}, m)
      retried[#retried + 1] = id
    else
      finish(key, id, q, 'running', 'dropped', server_now, ttl, f[8], {'errors', errors}, m)
      dropped[#dropped + 1] = id
    end
  else
    -- Not running any more, or under another lease (or its hash is gone): the entry is stale.
    zrem(LEASES, m)
  end
end
flush()
if #retried > 0 then redis.call('PUBLISH', WAKE, '') end
return {retried, dropped}
