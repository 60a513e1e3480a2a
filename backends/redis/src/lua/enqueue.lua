-- Stores jobs, all or none (checks come before any write). KEYS: unique, queues.
-- ARGV: prefix, count, then per job 10 fields: id, kind, queue, payload, priority,
-- max_attempts, run_at ('' = now), unique ('-' = none, '+key'), timeout_ms ('' = none), tags.
-- Returns per job {1, id} (inserted) or {0, existing id} (duplicate).
local now = now_ms()
local n = tonumber(ARGV[2])
local out = {}
local seen = {}
local queues = {}
local wake = false
for i = 0, n - 1 do
  local b = 3 + i * 10
  local id, kind, q, payload = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local prio, max_attempts, run_raw, uraw = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  local timeout, tags = ARGV[b + 8], ARGV[b + 9]
  local key = jkey(id)
  local dup = nil
  local uk = nil
  if uraw ~= '-' then
    uk = string.sub(uraw, 2)
    if seen[uk] then
      dup = seen[uk]
    else
      local holder = redis.call('HGET', UNIQUE, uk)
      if holder then
        local st = redis.call('HGET', jkey(holder), 'state')
        if st and LIVE[st] then dup = holder end
      end
    end
  end
  -- The id itself is taken (a retried call whose first reply was lost).
  if not dup and redis.call('HSETNX', key, 'id', id) == 0 then dup = id end
  if dup then
    out[#out + 1] = {0, dup}
  else
    local run_at = now
    if run_raw ~= '' then run_at = tonumber(run_raw) end
    local state = 'available'
    if run_at > now then state = 'scheduled' end
    -- Every field a claim or a completion touches exists from the start, the ones they read
    -- first, and the fields no script reads are packed into `spec` (see JOB_LAYOUT in the
    -- prelude); '' stands for "none".
    local f = {'state', state, 'attempt', '0', 'lease_token', '', 'queue', q, 'priority', prio,
      'max_attempts', max_attempts, 'run_at', n2s(run_at), 'errors', '[]', 'result', '',
      'cancel_requested', '0', 'lease_expires_at', '', 'started_at', '', 'worker_id', '',
      'finished_at', '', 'spec', spec(kind, n2s(now), timeout, tags, payload)}
    if uk then
      f[#f + 1] = 'unique_key'
      f[#f + 1] = uk
      redis.call('HSET', UNIQUE, uk, id)
      seen[uk] = id
    end
    redis.call('HSET', key, unpack(f))
    if not queues[q] then
      queues[q] = true
      sadd(QUEUES, q)
    end
    reindex(q, id, nil, state)
    make_pending(id, q, prio, run_at, now)
    if state == 'available' then wake = true end
    out[#out + 1] = {1, id}
  end
end
flush()
if wake then redis.call('PUBLISH', WAKE, '') end
return out
