-- Deletes up to `limit` jobs that finished before `before`, with their index entries; forgets
-- queues left without jobs. KEYS: finlog, queues, leases. ARGV: prefix, before_ms, limit.
-- Returns how many jobs were deleted.
--
-- The finish log is in finishing order, so the jobs to delete are at its head: the walk stops
-- at the first entry not yet due, and the consumed head is trimmed off in one LTRIM. Entries
-- that delete nothing (a job run again since, or a hash that expired with its index entry
-- already gone) do not count against `limit`, so a caller that prunes until a call deletes
-- fewer than `limit` is not stopped early by them; the walk reads at most ten times `limit`.
local before = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local entries = redis.call('LRANGE', FINLOG, 0, limit * 10 - 1)
local n = 0
local consumed = 0
local touched = {}
for _, e in ipairs(entries) do
  if n >= limit then break end
  local at, state, id, q = string.match(e, '^(%d+)|([^|]*)|([^|]*)|(.*)$')
  if at and tonumber(at) >= before then break end
  consumed = consumed + 1
  if at then
    local key = jkey(id)
    local f = redis.call('HMGET', key, 'state', 'finished_at', 'wf')
    if not f[1] then
      -- The hash expired already (finished_ttl); its index entry still goes.
      n = n + redis.call('ZREM', skey(q, state), id)
    elseif f[1] == state and f[2] == at and not f[3] then -- a workflow goes as a unit
      redis.call('DEL', key)
      redis.call('ZREM', skey(q, state), id)
      n = n + 1
    end
    -- Otherwise the job was run again since (retry): the entry is stale, the job stays.
    touched[q] = true
  end
end
if consumed > 0 then redis.call('LTRIM', FINLOG, consumed, -1) end
-- Queues with a running job (running jobs have no per-queue index: their lease entries and
-- hashes tell), read once and only if some touched queue is otherwise empty.
local running = nil
local function runs_a_job(q)
  if not running then
    running = {}
    for _, m in ipairs(redis.call('ZRANGE', LEASES, 0, -1)) do
      local f = redis.call('HMGET', jkey((lsplit(m))), 'state', 'queue')
      if f[1] == 'running' and f[2] then running[f[2]] = true end
    end
  end
  return running[q]
end
for q, _ in pairs(touched) do
  local empty = redis.call('EXISTS', rkey(q), schkey(q)) == 0
  if empty then
    for _, s in ipairs(INDEXED_STATES) do
      if redis.call('EXISTS', skey(q, s)) == 1 then empty = false break end
    end
  end
  if empty and not runs_a_job(q) then redis.call('SREM', QUEUES, q) end
end
return n
