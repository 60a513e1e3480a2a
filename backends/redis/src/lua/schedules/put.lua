-- Writes a schedule by compare-and-set. ARGV: prefix, id, expected version ('' = insert only
-- if absent), def, paused ('0'/'1'), cursor (ms), last_fired (ms or ''), last_job (id or '').
-- Returns 1 when it wrote, 0 otherwise.
local id = ARGV[2]
local key = P .. 'schedule:' .. id
local expected = ARGV[3]
if expected == '' then
  if redis.call('EXISTS', key) == 1 then return 0 end
  redis.call('HSET', key, 'def', ARGV[4], 'paused', ARGV[5], 'cursor', ARGV[6],
    'last_fired', ARGV[7], 'last_job', ARGV[8], 'version', '1')
  redis.call('SADD', P .. 'schedules', id)
  return 1
end
if redis.call('HGET', key, 'version') ~= expected then return 0 end
redis.call('HSET', key, 'def', ARGV[4], 'paused', ARGV[5], 'cursor', ARGV[6])
redis.call('HINCRBY', key, 'version', 1)
return 1
