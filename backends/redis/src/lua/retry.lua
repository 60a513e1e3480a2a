-- Runs a finished job again. KEYS: unique. ARGV: prefix, id.
-- Returns {'requeued'}, {'not_finished', state}, {'not_found'} or {'conflict', holder}.
local id = ARGV[2]
local key = jkey(id)
local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'attempt', 'max_attempts',
  'unique_key')
local st, q = f[1], f[2]
if not st then return {'not_found'} end
if PENDING[st] or st == 'running' then return {'not_finished', st} end
local uk = f[6]
if uk then
  local holder = redis.call('HGET', UNIQUE, uk)
  if holder and holder ~= id then
    local hs = redis.call('HGET', jkey(holder), 'state')
    if hs and LIVE[hs] then return {'conflict', holder} end
  end
  redis.call('HSET', UNIQUE, uk, id)
end
local now = now_ms()
redis.call('PERSIST', key)
-- Its finish log entry stays: the pruner skips an entry whose job no longer has that state
-- and finish time.
redis.call('HSET', key, 'finished_at', '')
local max_attempts = math.max(num(f[5], 1), num(f[4], 0) + 1)
requeue(key, id, q, st, f[3], now, now, {'state', 'available', 'run_at', n2s(now),
  'cancel_requested', 0, 'max_attempts', max_attempts})
flush()
redis.call('PUBLISH', WAKE, '')
return {'requeued'}
