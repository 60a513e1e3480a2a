-- Cancels one job. KEYS: finlog, unique. ARGV: prefix, id, finished_ttl_s.
-- Returns {'cancelled'}, {'requested'}, {'finished', state} or {'not_found'}.
local id = ARGV[2]
local key = jkey(id)
local f = redis.call('HMGET', key, 'state', 'queue', 'run_at', 'unique_key')
local st, q = f[1], f[2]
if not st then return {'not_found'} end
if PENDING[st] or st == 'blocked' then -- blocked: a workflow step
  unpend(id, q, f[3])
  finish(key, id, q, st, 'cancelled', now_ms(), tonumber(ARGV[3]), f[4], nil)
  flush()
  return {'cancelled'}
elseif st == 'running' then
  redis.call('HSET', key, 'cancel_requested', 1)
  return {'requested'}
end
return {'finished', st}
