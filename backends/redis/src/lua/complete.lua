-- Records finished attempts, each fenced by its lease token.
-- KEYS: leases, finished, unique. ARGV: prefix, finished_ttl_s, then per completion 5 fields:
-- id, token, outcome (S succeeded, R retry, F failed, C cancelled, A aborted), a1, a2.
-- S: a1 = '+result' or '-'. R: a1 = error, a2 = run_at ms. F, A: a1 = error.
-- C: a1 = '+error' or '-'. Returns per completion 1 (applied) or 0 (stale).
local now = now_ms()
local ttl = tonumber(ARGV[2])
local out = {}
local wake = false
for i = 3, #ARGV, 5 do
  local id, tok, code, a1, a2 = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = jkey(id)
  local f = redis.call('HMGET', key, 'state', 'lease_token', 'queue', 'priority', 'run_at',
    'attempt', 'max_attempts')
  if f[1] ~= 'running' or f[2] ~= tok then
    out[#out + 1] = 0
  else
    local q = f[3]
    clear_lease(key, id)
    if code == 'S' then
      if string.sub(a1, 1, 1) == '+' then
        redis.call('HSET', key, 'result', string.sub(a1, 2))
      end
      finish(key, id, q, 'running', 'completed', now, ttl)
    elseif code == 'R' then
      append_error(key, a1)
      redis.call('HSET', key, 'state', 'retrying', 'run_at', a2)
      redis.call('HDEL', key, 'dispatched_at')
      reindex(q, id, 'running', 'retrying')
      make_pending(id, q, f[4], a2, now)
      if tonumber(a2) <= now then wake = true end
    elseif code == 'F' then
      append_error(key, a1)
      finish(key, id, q, 'running', 'failed', now, ttl)
    elseif code == 'C' then
      if string.sub(a1, 1, 1) == '+' then append_error(key, string.sub(a1, 2)) end
      finish(key, id, q, 'running', 'cancelled', now, ttl)
    else
      append_error(key, a1)
      if tonumber(f[6]) < tonumber(f[7]) then
        redis.call('HSET', key, 'state', 'available')
        redis.call('HDEL', key, 'dispatched_at')
        reindex(q, id, 'running', 'available')
        make_pending(id, q, f[4], f[5], now)
        wake = true
      else
        finish(key, id, q, 'running', 'dropped', now, ttl)
      end
    end
    out[#out + 1] = 1
  end
end
if wake then redis.call('PUBLISH', WAKE, '') end
return out
