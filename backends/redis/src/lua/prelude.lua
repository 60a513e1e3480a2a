-- Shared by every script. ARGV[1] is the key prefix `{name}:`; every key starts with it, so all
-- keys of one instance hash to one Redis Cluster slot. Keys known before a call are also passed
-- in KEYS; job hashes and per-queue indexes found during a call are built from the same prefix.
local P = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function n2s(n)
  return string.format('%.0f', n)
end

local function jkey(id) return P .. 'job:' .. id end
local function rkey(q) return P .. 'ready:' .. q end
local function schkey(q) return P .. 'sched:' .. q end
local function skey(q, st) return P .. 's:' .. q .. ':' .. st end
local LEASES = P .. 'leases'
local FINISHED = P .. 'finished'
local UNIQUE = P .. 'unique'
local QUEUES = P .. 'queues'
local WAKE = P .. 'wake'

local STATES = {'scheduled', 'available', 'running', 'completed', 'retrying', 'failed',
                'cancelled', 'dropped'}
local PENDING = {scheduled = true, available = true, retrying = true}
local LIVE = {scheduled = true, available = true, retrying = true, running = true}

-- Member of a ready set: run_at (13 digits) then id, so that within one score (= -priority)
-- members sort by run_at, then id.
local function rmember(run_at, id)
  return string.format('%013.0f', tonumber(run_at)) .. '|' .. id
end

-- Moves a job between state indexes of its queue.
local function reindex(q, id, from, to)
  if from then redis.call('ZREM', skey(q, from), id) end
  redis.call('ZADD', skey(q, to), 0, id)
end

-- Puts a pending job where claims find it: the ready set when due, else the schedule.
local function make_pending(id, q, prio, run_at, now)
  if tonumber(run_at) <= now then
    redis.call('ZADD', rkey(q), -tonumber(prio), rmember(run_at, id))
  else
    redis.call('ZADD', schkey(q), tonumber(run_at), id)
  end
end

-- Takes a pending job out of the ready set and the schedule.
local function unpend(id, q, run_at)
  redis.call('ZREM', rkey(q), rmember(run_at, id))
  redis.call('ZREM', schkey(q), id)
end

-- Appends one error (a JSON object) to the job's history (a JSON array).
local function append_error(key, err)
  local errs = redis.call('HGET', key, 'errors')
  if not errs or errs == '[]' or errs == '' then
    errs = '[' .. err .. ']'
  else
    errs = string.sub(errs, 1, -2) .. ',' .. err .. ']'
  end
  redis.call('HSET', key, 'errors', errs)
end

local function clear_lease(key, id)
  redis.call('HDEL', key, 'lease_token', 'lease_expires_at', 'worker_id')
  redis.call('ZREM', LEASES, id)
end

-- A job reached a finished state: stamp it, index it for the pruner, release its unique key
-- and let its hash expire as a safety net.
local function finish(key, id, q, from, state, now, ttl)
  redis.call('HSET', key, 'state', state, 'finished_at', n2s(now))
  redis.call('HDEL', key, 'dispatched_at')
  reindex(q, id, from, state)
  redis.call('ZADD', FINISHED, now, state .. '|' .. id .. '|' .. q)
  local uk = redis.call('HGET', key, 'unique_key')
  if uk and redis.call('HGET', UNIQUE, uk) == id then
    redis.call('HDEL', UNIQUE, uk)
  end
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end

-- Claims one pending job (already out of the ready set): running under `tok` until `exp`.
local function claim_one(key, id, q, from, now, exp, worker, tok)
  redis.call('HINCRBY', key, 'attempt', 1)
  redis.call('HSET', key, 'state', 'running', 'lease_token', tok, 'lease_expires_at', n2s(exp),
    'started_at', n2s(now), 'worker_id', worker)
  redis.call('ZADD', LEASES, exp, id)
  reindex(q, id, from, 'running')
  return redis.call('HGETALL', key)
end
