-- Claims up to `limit` runnable jobs on the given queues, in priority, run_at, id order.
-- KEYS: leases, then ready and schedule of each queue.
-- ARGV: prefix, limit, lease_ms, worker_id, token base (a UUID), nq, queue names...
-- Returns {now, lease expiry, then one string per claimed job (see `claim_one`)}.
local now = now_ms()
local nows = n2s(now)
local limit = tonumber(ARGV[2])
local exp = now + tonumber(ARGV[3])
local worker = ARGV[4]
local base = string.sub(ARGV[5], 1, 32)
local nq = tonumber(ARGV[6])
-- Promote due scheduled jobs into their ready set.
for i = 1, nq do
  local q = ARGV[6 + i]
  local due = redis.call('ZRANGEBYSCORE', schkey(q), '-inf', nows, 'LIMIT', '0', '1000')
  for _, id in ipairs(due) do
    local f = redis.call('HMGET', jkey(id), 'priority', 'run_at', 'state')
    if f[1] and f[3] and PENDING[f[3]] then
      zadd(rkey(q), -num(f[1], 0), rmember(f[2], id))
    end
    zrem(schkey(q), id)
  end
end
flush()
local out = {nows, n2s(exp)}
local k = 0
if nq == 1 then
  -- One queue (the common case): pop its best `limit` at once. An entry whose job is no
  -- longer pending is dropped all the same; the next claim takes more.
  -- (ZRANGE + ZREMRANGEBYRANK rather than ZPOPMIN, whose reply carries every score as a
  -- formatted double.)
  local q = ARGV[7]
  local last = n2s(limit - 1)
  local r = redis.call('ZRANGE', rkey(q), '0', last)
  if #r == limit then
    redis.call('ZREMRANGEBYRANK', rkey(q), '0', last)
  elseif #r > 0 then
    redis.call('ZREMRANGEBYRANK', rkey(q), '0', n2s(#r - 1))
  end
  for j = 1, #r do
    local id = string.sub(r[j], 15)
    if claim_one(out, jkey(id), id, q, now, exp, worker, base, k + 1) then k = k + 1 end
  end
  flush()
  return out
end
-- Several queues: the best `limit` of each, merged.
local cands = {}
for i = 1, nq do
  local q = ARGV[6 + i]
  local r = redis.call('ZRANGE', rkey(q), '0', n2s(limit - 1), 'WITHSCORES')
  for j = 1, #r, 2 do
    cands[#cands + 1] = {tonumber(r[j + 1]), r[j], q}
  end
end
table.sort(cands, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)
for _, c in ipairs(cands) do
  if k >= limit then break end
  local m, q = c[2], c[3]
  local id = string.sub(m, 15)
  zrem(rkey(q), m)
  if claim_one(out, jkey(id), id, q, now, exp, worker, base, k + 1) then k = k + 1 end
end
flush()
return out
