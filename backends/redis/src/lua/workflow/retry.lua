-- Retries a workflow: its failed, cancelled and dropped steps run again (blocked until their
-- dependencies completed), completed ones are kept; clears a user's cancel. Returns how many
-- steps were reset, or -1 when there is no such workflow. ARGV: prefix, workflow id.
local wid = ARGV[2]
local head = P .. 'wf:' .. wid
if redis.call('EXISTS', head) == 0 then return -1 end
redis.call('HSET', head, 'cancelled', '')
local now = now_ms()
local ids = redis.call('LRANGE', P .. 'wfsteps:' .. wid, 0, -1)
local state = {}
for _, id in ipairs(ids) do state[id] = redis.call('HGET', jkey(id), 'state') end
local reset = 0
local wake = false
for _, id in ipairs(ids) do
  local st = state[id]
  local again = st == 'failed' or st == 'cancelled' or st == 'dropped'
  if again or st == 'blocked' then
    local waiting = 0
    for _, d in ipairs(redis.call('SMEMBERS', P .. 'wfdeps:' .. id)) do
      if state[d] ~= 'completed' then waiting = waiting + 1 end
    end
    local key = jkey(id)
    if again then
      local f = redis.call('HMGET', key, 'queue', 'priority', 'attempt', 'max_attempts')
      local to = 'available'
      if waiting > 0 then to = 'blocked' end
      redis.call('HSET', key, 'state', to, 'deps_left', n2s(waiting), 'run_at', n2s(now),
        'finished_at', '', 'cancel_requested', '0', 'dispatched_at', '',
        'max_attempts', n2s(math.max(num(f[4], 1), num(f[3], 0) + 1)))
      reindex(f[1], id, st, to)
      if to == 'available' then
        make_pending(id, f[1], f[2], now, now)
        wake = true
      end
      reset = reset + 1
    else
      redis.call('HSET', key, 'deps_left', n2s(waiting))
    end
  end
end
flush()
if wake then redis.call('PUBLISH', WAKE, '') end
return reset
