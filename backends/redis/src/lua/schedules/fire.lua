-- The firing step of a schedule, after `enqueue_jobs` (enqueue.lua wrapped in a function).
-- ARGV: prefix, count, 10 fields per job (as enqueue.lua), then the schedule id, the expected
-- version, the new cursor (ms), the instant fired for (ms or ''), the overlap policy.
-- Returns {-1, {}} on a version mismatch (nothing written), else {held back 0/1, the
-- enqueue outcomes}.
local count = tonumber(ARGV[2])
local b = 3 + count * 10
local id, expected, cursor, fired_for, overlap = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
local key = P .. 'schedule:' .. id
local v = redis.call('HGET', key, 'version')
if not v or v ~= expected then return {-1, {}} end
local held = 0
local last = redis.call('HGET', key, 'last_job')
if overlap ~= 'allow' and last and last ~= '' then
  local st = redis.call('HGET', jkey(last), 'state')
  if st then
    if overlap == 'skip' and LIVE[st] then held = 1 end
    if overlap == 'buffer_one' and PENDING[st] then held = 1 end
  end
end
local out = {}
if held == 0 and count > 0 then out = enqueue_jobs() end
local f = {'cursor', cursor}
if #out > 0 then
  f[#f + 1] = 'last_job'
  f[#f + 1] = out[#out][2]
  if fired_for ~= '' then
    f[#f + 1] = 'last_fired'
    f[#f + 1] = fired_for
  end
end
redis.call('HSET', key, unpack(f))
redis.call('HINCRBY', key, 'version', 1)
return {held, out}
