-- Deletes up to `limit` jobs that finished before `before`, with their index entries; forgets
-- queues left without jobs. KEYS: finished, queues, leases. ARGV: prefix, before_ms, limit.
-- Returns how many jobs were deleted.
local ms = redis.call('ZRANGEBYSCORE', FINISHED, '-inf', '(' .. ARGV[2], 'LIMIT', 0,
  tonumber(ARGV[3]))
local n = 0
local touched = {}
for _, m in ipairs(ms) do
  local state, id, q = string.match(m, '^([^|]*)|([^|]*)|(.*)$')
  redis.call('ZREM', FINISHED, m)
  if state then
    local key = jkey(id)
    local st = redis.call('HGET', key, 'state')
    -- The hash may have expired already (finished_ttl); its index entries still go.
    if not st or st == state then
      redis.call('DEL', key)
      redis.call('ZREM', skey(q, state), id)
      n = n + 1
    end
    touched[q] = true
  end
end
-- A queue is forgotten only while no job at all runs (running jobs are indexed by LEASES,
-- not per queue), so a queue is never forgotten under a running job.
local idle = redis.call('ZCARD', LEASES) == 0
for q, _ in pairs(touched) do
  local empty = idle and redis.call('EXISTS', rkey(q), schkey(q)) == 0
  if empty then
    for _, s in ipairs(INDEXED_STATES) do
      if redis.call('EXISTS', skey(q, s)) == 1 then empty = false break end
    end
  end
  if empty then redis.call('SREM', QUEUES, q) end
end
return n
