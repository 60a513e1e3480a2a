-- Records finished attempts, each fenced by its lease token.
-- KEYS: leases, finlog, unique. ARGV: prefix, finished_ttl_s, then per completion 5 fields:
-- id, token, outcome (S succeeded, R retry, F failed, C cancelled, A aborted, L released,
-- Z snoozed), a1, a2.
-- S: a1 = '+result' or '-'. R: a1 = error, a2 = run_at ms. F, A: a1 = error. Z: a2 = run_at ms.
-- C: a1 = '+error' or '-'. Returns per completion 1 (applied) or 0 (stale).
local now = now_ms()
local ttl = tonumber(ARGV[2])
local out = {}
local wake = false
for i = 3, #ARGV, 5 do
  local id, tok, code, a1, a2 = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = jkey(id)
  -- What every outcome needs; a retry or an abort reads the rest (a success, the hot path,
  -- reads no more fields of the hash than it must, see JOB_LAYOUT).
  local f = redis.call('HMGET', key, 'state', 'lease_token', 'queue')
  if f[1] ~= 'running' or f[2] ~= tok then
    out[#out + 1] = 0
  else
    local q, uk, lease = f[3], nil, lmember(id, tok)
    if has_unique(tok) then uk = redis.call('HGET', key, 'unique_key') end
    local prio, run_at, attempt, max_attempts
    if code == 'R' or code == 'A' or code == 'L' or code == 'Z' then
      local more = redis.call('HMGET', key, 'priority', 'run_at', 'attempt', 'max_attempts')
      prio, run_at, attempt, max_attempts = more[1], more[2], more[3], more[4]
    end
    if code == 'S' then
      local extra = nil
      if string.byte(a1) == 43 then extra = {'result', string.sub(a1, 2)} end -- '+'
      finish(key, id, q, 'running', 'completed', now, ttl, uk, extra, lease)
    elseif code == 'R' then
      requeue(key, id, q, 'running', prio, a2, now,
        {'state', 'retrying', 'run_at', a2, 'errors', with_error(key, a1)}, lease)
      if tonumber(a2) <= now then wake = true end
    elseif code == 'L' then
      -- Released unstarted: pending again with the claim's attempt undone.
      requeue(key, id, q, 'running', prio, run_at, now,
        {'state', 'available', 'attempt', n2s(math.max(num(attempt, 1) - 1, 0))}, lease)
      wake = true
    elseif code == 'Z' then
      -- Snoozed: waits for a2 with the claim's attempt undone, no error recorded.
      requeue(key, id, q, 'running', prio, a2, now,
        {'state', 'scheduled', 'run_at', a2, 'attempt', n2s(math.max(num(attempt, 1) - 1, 0))},
        lease)
      if tonumber(a2) <= now then wake = true end
    elseif code == 'F' then
      finish(key, id, q, 'running', 'failed', now, ttl, uk, {'errors', with_error(key, a1)},
        lease)
    elseif code == 'C' then
      local extra = nil
      if string.sub(a1, 1, 1) == '+' then
        extra = {'errors', with_error(key, string.sub(a1, 2))}
      end
      finish(key, id, q, 'running', 'cancelled', now, ttl, uk, extra, lease)
    else
      local errors = with_error(key, a1)
      if num(attempt, 0) < num(max_attempts, 0) then
        requeue(key, id, q, 'running', prio, run_at, now,
          {'state', 'available', 'errors', errors}, lease)
        wake = true
      else
        finish(key, id, q, 'running', 'dropped', now, ttl, uk, {'errors', errors}, lease)
      end
    end
    out[#out + 1] = 1
  end
end
flush()
if wake then redis.call('PUBLISH', WAKE, '') end
return out
