-- Deletes workflows whose every step finished before ARGV[2] (ms), whole, until ARGV[3] jobs
-- were deleted; looks at the 1,000 oldest workflows at most. Returns the jobs deleted.
-- ARGV: prefix, before_ms, limit.
local before, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = 0
for _, wid in ipairs(redis.call('ZRANGE', P .. 'workflows', 0, 999)) do
  if n >= limit then break end
  local ids = redis.call('LRANGE', P .. 'wfsteps:' .. wid, 0, -1)
  local done = true
  local rows = {}
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', jkey(id), 'state', 'finished_at', 'queue')
    if f[1] then
      local fin = tonumber(f[2] or '')
      if not (f[1] == 'completed' or f[1] == 'failed' or f[1] == 'cancelled'
          or f[1] == 'dropped') or not fin or fin >= before then
        done = false
        break
      end
      rows[#rows + 1] = {id, f[1], f[3]}
    end
  end
  if done then
    for _, r in ipairs(rows) do
      redis.call('DEL', jkey(r[1]), P .. 'wfdeps:' .. r[1], P .. 'wfnext:' .. r[1])
      redis.call('ZREM', skey(r[3], r[2]), r[1])
      n = n + 1
    end
    redis.call('DEL', P .. 'wf:' .. wid, P .. 'wfsteps:' .. wid, P .. 'wfnames:' .. wid)
    redis.call('ZREM', P .. 'workflows', wid)
  end
end
return n
