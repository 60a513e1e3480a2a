-- Claims up to `limit` runnable jobs of one queue with global limits, the counts and the
-- claim in one script: per partition (the whole queue, or each kind) at most `L` jobs running
-- with a valid lease, and at most `N` attempt starts in any sliding window of `period` ms. A
-- slot is a lease: the lease set scored by deadline lists every running job, so jobs with an
-- unexpired lease are counted and a dead worker's slots free when its leases expire. Starts
-- are a sorted set per partition scored by server time, trimmed to the window here and
-- expiring with it. Jobs of a full partition are skipped, not waited on.
-- KEYS: leases, ready and schedule of the queue.
-- ARGV: prefix, limit, lease_ms, worker_id, token base, queue, L ('' = none), partition
-- ('none' | 'kind' | 'payload.<field>'), scan (how many ready entries to look at), N ('' = none), period ms, then
-- job ids (deliveries from an external queue: only these are candidates).
-- Returns {now, lease expiry, then one string per claimed job (see `claim_one`)}.
local now = now_ms()
local nows = n2s(now)
local limit = tonumber(ARGV[2])
local exp = now + tonumber(ARGV[3])
local worker = ARGV[4]
local base = string.sub(ARGV[5], 1, 32)
local q = ARGV[6]
local cap = tonumber(ARGV[7])
local mode = ARGV[8]
local by_kind = mode == 'kind'
local field = nil
if string.sub(mode, 1, 8) == 'payload.' then field = string.sub(mode, 9) end
local partitioned = by_kind or field ~= nil
local scan = tonumber(ARGV[9])
local rate = tonumber(ARGV[10])
local period = tonumber(ARGV[11]) or 0
local FIRST_ID = 12

-- A payload field's value as the partition key: a string as it is, a number as its text,
-- anything else (absent, null, a table, a payload that does not decode) as ''.
local function field_of(payload)
  if not payload then return '' end
  local ok, doc = pcall(cjson.decode, payload)
  if not ok or type(doc) ~= 'table' then return '' end
  local v = doc[field]
  local t = type(v)
  if t == 'string' then return v end
  if t == 'number' then
    if v == math.floor(v) and v > -1e15 and v < 1e15 then return string.format('%d', v) end
    return tostring(v)
  end
  if t == 'boolean' then return tostring(v) end
  return ''
end

-- A job's partition: its kind (the first part of `spec`, or the field of an older hash), or
-- a field of its payload (the last part of `spec`, or the field of an older hash).
local function part(spec, kind, payload)
  if not partitioned then return '' end
  if by_kind then
    if spec then
      local nul = string.find(spec, '\0', 1, true)
      if nul then return string.sub(spec, 1, nul - 1) end
      return spec
    end
    return kind or ''
  end
  if spec then
    local last = nil
    local from = 1
    while true do
      local nul = string.find(spec, '\0', from, true)
      if not nul then break end
      last = nul
      from = nul + 1
    end
    if last then return field_of(string.sub(spec, last + 1)) end
  end
  return field_of(payload)
end

-- Slots in use: running jobs of the queue whose lease is valid.
local used = {}
if cap then
  local live = redis.call('ZRANGEBYSCORE', LEASES, '(' .. nows, '+inf')
  for _, m in ipairs(live) do
    local id, tok = lsplit(m)
    local f = redis.call('HMGET', jkey(id), 'queue', 'state', 'lease_token', 'spec', 'kind',
      'payload')
    if f[1] == q and f[2] == 'running' and (tok == nil or f[3] == tok) then
      local p = part(f[4], f[5], f[6])
      used[p] = (used[p] or 0) + 1
    end
  end
end

-- Starts inside the window, per partition, read (and trimmed) on first use.
local started = {}
local touched = {}
local function skey_of(p) return P .. 'starts:' .. q .. '\0' .. p end
local function starts(p)
  local n = started[p]
  if n then return n end
  local key = skey_of(p)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', n2s(now - period))
  n = redis.call('ZCARD', key)
  started[p] = n
  return n
end

-- Whether partition `p` has budget for one more job.
local function room(p)
  if cap and (used[p] or 0) >= cap then return false end
  if rate and starts(p) >= rate then return false end
  return true
end

-- Counts a claimed job against its partition.
local function take(p, id)
  used[p] = (used[p] or 0) + 1
  if rate then
    started[p] = starts(p) + 1
    zadd(skey_of(p), nows, id .. '|' .. nows)
    touched[p] = true
  end
end

-- Lets the windows of the partitions this claim started jobs in expire with the window.
local function expire_windows()
  for p in pairs(touched) do
    redis.call('PEXPIRE', skey_of(p), n2s(period))
  end
end

local out = {nows, n2s(exp)}
local k = 0
if #ARGV >= FIRST_ID then
  for i = FIRST_ID, #ARGV do
    if k >= limit then break end
    local id = ARGV[i]
    local key = jkey(id)
    local f = redis.call('HMGET', key, 'state', 'queue', 'run_at', 'spec', 'kind', 'payload')
    if f[1] and PENDING[f[1]] and f[2] == q and (tonumber(f[3]) or 0) <= now then
      local p = part(f[4], f[5], f[6])
      if room(p) then
        unpend(id, q, f[3])
        if claim_one(out, key, id, q, now, exp, worker, base, k + 1) then
          k = k + 1
          take(p, id)
        end
      end
    end
  end
  flush()
  expire_windows()
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
if not partitioned and not room('') then return out end
local r = redis.call('ZRANGE', rkey(q), '0', n2s(scan - 1))
for j = 1, #r do
  if k >= limit then break end
  local m = r[j]
  local id = string.sub(m, 15)
  local key = jkey(id)
  local p = ''
  if partitioned then
    local f = redis.call('HMGET', key, 'spec', 'kind', 'payload')
    p = part(f[1], f[2], f[3])
  end
  if room(p) then
    zrem(rkey(q), m)
    if claim_one(out, key, id, q, now, exp, worker, base, k + 1) then
      k = k + 1
      take(p, id)
    end
  end
end
flush()
expire_windows()
return out
