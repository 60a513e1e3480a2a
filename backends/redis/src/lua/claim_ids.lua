-- Claims the named jobs that are runnable now on the given queues (deliveries from an
-- external queue). KEYS: leases. ARGV: prefix, limit, lease_ms, worker_id, token base, nq,
-- queue names..., then job ids. Returns {now, lease expiry, then one string per claimed job
-- (see `claim_one`)}.
local now = now_ms()
local limit = tonumber(ARGV[2])
local exp = now + tonumber(ARGV[3])
local worker = ARGV[4]
local base = string.sub(ARGV[5], 1, 32)
local nq = tonumber(ARGV[6])
local queues = {}
for i = 1, nq do queues[ARGV[6 + i]] = true end
local out = {n2s(now), n2s(exp)}
local k = 0
for i = 7 + nq, #ARGV do
  if k >= limit then break end
  local id = ARGV[i]
  local key = jkey(id)
  -- A cancel requested during an earlier attempt does not stop the claim: the job is
  -- returned with it, and the worker ends it cancelled (as the claim by queue does).
  local f = redis.call('HMGET', key, 'state', 'queue', 'run_at')
  if f[1] and PENDING[f[1]] and queues[f[2]] and (tonumber(f[3]) or 0) <= now then
    unpend(id, f[2], f[3])
    if claim_one(out, key, id, f[2], now, exp, worker, base, k + 1) then k = k + 1 end
  end
end
flush()
return out
