-- Cancels a workflow: {cancelled, requested} counts, or {-1} when there is none.
-- ARGV: prefix, workflow id.
local wid = ARGV[2]
local head = P .. 'wf:' .. wid
if redis.call('EXISTS', head) == 0 then return {-1} end
local now = now_ms()
if (redis.call('HGET', head, 'cancelled') or '') == '' then
  redis.call('HSET', head, 'cancelled', n2s(now))
end
local cancelled, requested = 0, 0
for _, id in ipairs(redis.call('LRANGE', P .. 'wfsteps:' .. wid, 0, -1)) do
  local key = jkey(id)
  local f = redis.call('HMGET', key, 'state', 'queue', 'run_at')
  local st, q = f[1], f[2]
  if st and (PENDING[st] or st == 'blocked') then
    unpend(id, q, f[3])
    finish_core(key, id, q, st, 'cancelled', now, 0, nil, nil, nil)
    cancelled = cancelled + 1
  elseif st == 'running' then
    redis.call('HSET', key, 'cancel_requested', '1')
    requested = requested + 1
  end
end
flush()
return {cancelled, requested}
