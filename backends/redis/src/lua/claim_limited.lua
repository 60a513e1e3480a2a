-- Claims up to `limit` runnable jobs of one queue with a global concurrency limit, the count
-- and the claim in one script: per partition (the whole queue, or each kind) at most `L` jobs
-- running with a valid lease. A slot is a lease: the lease set scored by deadline lists every
-- running job, so jobs with an unexpired lease are counted and a dead worker's slots free
-- when its leases expire. Jobs of a full partition are skipped, not waited on.
-- KEYS: leases, ready and schedule of the queue.
-- ARGV: prefix, limit, lease_ms, worker_id, token base, queue, L, partition ('none' | 'kind'),
-- scan (how many ready entries to look at), then job ids (deliveries from an external queue:
-- only these are candidates).
-- Returns {now, lease expiry, then one string per claimed job (see `claim_one`)}.
local now = now_ms()
local nows = n2s(now)
local limit = tonumber(ARGV[2])
local exp = now + tonumber(ARGV[3])
local worker = ARGV[4]
local base = string.sub(ARGV[5], 1, 32)
local q = ARGV[6]
local cap = tonumber(ARGV[7])
local by_kind = ARGV[8] == 'kind'
local scan = tonumber(ARGV[9])

-- A job's partition: its kind (the first part of `spec`, or the field of an older hash).
local function part(spec, kind)
  if not by_kind then return '' end
  if spec then
    local nul = string.find(spec, '\0', 1, true)
    if nul then return string.sub(spec, 1, nul - 1) end
    return spec
  end
  return kind or ''
end

-- Slots in use: running jobs of the queue whose lease is valid.
local used = {}
local live = redis.call('ZRANGEBYSCORE', LEASES, '(' .. nows, '+inf')
for _, m in ipairs(live) do
  local id, tok = lsplit(m)
  local f = redis.call('HMGET', jkey(id), 'queue', 'state', 'lease_token', 'spec', 'kind')
  if f[1] == q and f[2] == 'running' and (tok == nil or f[3] == tok) then
    local p = part(f[4], f[5])
    used[p] = (used[p] or 0) + 1
  end
end

local out = {nows, n2s(exp)}
local k = 0
if #ARGV >= 10 then
  for i = 10, #ARGV do
    if k >= limit then break end
    local id = ARGV[i]
    local key = jkey(id)
    local f = redis.call('HMGET', key, 'state', 'queue', 'run_at', 'spec', 'kind')
    if f[1] and PENDING[f[1]] and f[2] == q and (tonumber(f[3]) or 0) <= now then
      local p = part(f[4], f[5])
      if (used[p] or 0) < cap then
        unpend(id, q, f[3])
        if claim_one(out, key, id, q, now, exp, worker, base, k + 1) then
          k = k + 1
          used[p] = (used[p] or 0) + 1
        end
      end
    end
  end
  flush()
  return out
end

-- Promote due scheduled jobs into the ready set (as claim.lua does).
local due = redis.call('ZRANGEBYSCORE', schkey(q), '-inf', nows, 'LIMIT', '0', '1000')
for _, id in ipairs(due) do
  local f = redis.call('HMGET', jkey(id), 'priority', 'run_at', 'state')
  if f[1] and f[3] and PENDING[f[3]] then
    zadd(rkey(q), -num(f[1], 0), rmember(f[2], id))
  end
  zrem(schkey(q), id)
end
flush()
if not by_kind and (used[''] or 0) >= cap then return out end
local r = redis.call('ZRANGE', rkey(q), '0', n2s(scan - 1))
for j = 1, #r do
  if k >= limit then break end
  local m = r[j]
  local id = string.sub(m, 15)
  local key = jkey(id)
  local p = ''
  if by_kind then
    local f = redis.call('HMGET', key, 'spec', 'kind')
    p = part(f[1], f[2])
  end
  if (used[p] or 0) < cap then
    zrem(rkey(q), m)
    if claim_one(out, key, id, q, now, exp, worker, base, k + 1) then
      k = k + 1
      used[p] = (used[p] or 0) + 1
    end
  end
end
flush()
return out
