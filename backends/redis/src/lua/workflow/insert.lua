-- Inserts a workflow (ARGV[3] = '1') or appends steps to one ('0'), all or none: every check
-- comes before the first write. ARGV: prefix, workflow id, create flag, workflow name, step
-- count, then per step 13 fields: the 10 job fields of enqueue.lua (no unique key), the step
-- name, its policy and its dependencies' step names as a JSON array. Steps come in a
-- topological order (the caller validated the graph against the existing names).
-- Returns {'ok'}, {'exists'} (a workflow with this id), {'not_found'}, {'cancelled'} or
-- {'duplicate', name}.
local wid, create, n = ARGV[2], ARGV[3] == '1', tonumber(ARGV[5])
local head = P .. 'wf:' .. wid
local names = P .. 'wfnames:' .. wid
local now = now_ms()
if create then
  if redis.call('EXISTS', head) == 1 then return {'exists'} end
else
  local c = redis.call('HMGET', head, 'name', 'cancelled')
  if not c[1] then return {'not_found'} end
  if c[2] and c[2] ~= '' then return {'cancelled'} end
end
for i = 0, n - 1 do
  local name = ARGV[6 + i * 13 + 10]
  if redis.call('HEXISTS', names, name) == 1 then return {'duplicate', name} end
end
if create then
  redis.call('HSET', head, 'name', ARGV[4], 'created_at', n2s(now), 'cancelled', '')
  redis.call('ZADD', P .. 'workflows', n2s(now), wid)
end
local wake = false
-- States of the steps inserted by this call (a new step's dependency may be one of them).
for i = 0, n - 1 do
  local b = 6 + i * 13
  local id, kind, q, payload = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local prio, max_attempts, run_raw = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  local timeout, tags = ARGV[b + 8], ARGV[b + 9]
  local name, policy, deps = ARGV[b + 10], ARGV[b + 11], cjson.decode(ARGV[b + 12])
  local key = jkey(id)
  local run_at = now
  if run_raw ~= '' then run_at = tonumber(run_raw) end
  local waiting, why = 0, nil
  local dep_ids = {}
  for _, dname in ipairs(deps) do
    local did = redis.call('HGET', names, dname)
    dep_ids[#dep_ids + 1] = did
    local f = redis.call('HMGET', jkey(did), 'state', 'errors')
    local st = f[1] or 'dropped'
    if st == 'completed' then
      -- done
    elseif st == 'failed' or st == 'cancelled' or st == 'dropped' then
      local sat = policy == 'always' or (policy == 'ignore' and not wf_cascaded(f[2]))
      if not sat and not why then why = {dname, st} end
    else
      waiting = waiting + 1
    end
  end
  local state = 'available'
  if why then state = 'cancelled'
  elseif waiting > 0 then state = 'blocked'
  elseif run_at > now then state = 'scheduled' end
  local errors = '[]'
  local finished = ''
  if why then
    errors = '[' .. cjson.encode({attempt = 0, at = wf_iso(now), kind = 'dependency_failed',
      message = 'upstream step `' .. why[1] .. '` ended ' .. why[2]}) .. ']'
    finished = n2s(now)
  end
  redis.call('HSET', key, 'id', id, 'state', state, 'attempt', '0', 'lease_token', '',
    'queue', q, 'priority', prio, 'max_attempts', max_attempts, 'run_at', n2s(run_at),
    'errors', errors, 'result', '', 'cancel_requested', '0', 'lease_expires_at', '',
    'started_at', '', 'worker_id', '', 'finished_at', finished,
    'spec', spec(kind, n2s(now), timeout, tags, payload),
    'wf', wid, 'step', name, 'policy', policy, 'deps_left', n2s(waiting))
  sadd(QUEUES, q)
  reindex(q, id, nil, state)
  if state == 'cancelled' then
    rpush(FINLOG, finished .. '|cancelled|' .. id .. '|' .. q)
  elseif state ~= 'blocked' then
    make_pending(id, q, prio, run_at, now)
    if state == 'available' then wake = true end
  end
  for _, did in ipairs(dep_ids) do
    redis.call('SADD', P .. 'wfdeps:' .. id, did)
    redis.call('SADD', P .. 'wfnext:' .. did, id)
  end
  redis.call('HSET', names, name, id)
  redis.call('RPUSH', P .. 'wfsteps:' .. wid, id)
end
flush()
if wake then redis.call('PUBLISH', WAKE, '') end
return {'ok'}
