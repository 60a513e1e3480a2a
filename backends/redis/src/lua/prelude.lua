-- Shared by every script. ARGV[1] is the key prefix `{name}:`; every key starts with it, so all
-- keys of one instance hash to one Redis Cluster slot. Keys known before a call are also passed
-- in KEYS; job hashes and per-queue indexes found during a call are built from the same prefix.
local P = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Numbers go to Redis as strings. Formatting a number goes through printf: Lua's own
-- conversion of a number argument to redis.call uses '%.14g', a floating-point format that
-- costs several times an integer one, so the hot paths pass strings (literals, or values from
-- n2s) and never a Lua number. n2s formats an integral number as an integer, each distinct
-- value once per script call: it remembers the first 64 values it formats (a claim or
-- completion batch has a handful: now, the lease expiry, the attempt, the ttl).
local N2S = {}
local N2S_SIZE = 0
local function n2s(n)
  local s = N2S[n]
  if s then return s end
  s = string.format('%d', n)
  if N2S_SIZE < 64 then
    N2S[n] = s
    N2S_SIZE = N2S_SIZE + 1
  end
  return s
end

-- A number field of a job hash, or `default` when it is missing or not a number (a hash
-- damaged or written by hand): a script must not raise an error once it has written, since
-- Redis keeps a failing script's earlier writes (a half-applied batch, a job stranded).
local function num(v, default)
  return tonumber(v) or default
end

local function jkey(id) return P .. 'job:' .. id end
local function rkey(q) return P .. 'ready:' .. q end
local function schkey(q) return P .. 'sched:' .. q end
-- State index keys, built once per queue and state in a call (a claim or a completion batch
-- names the same few).
local SKEYS = {}
local function skey(q, st)
  local byq = SKEYS[q]
  if not byq then byq = {}; SKEYS[q] = byq end
  local k = byq[st]
  if not k then k = P .. 's:' .. q .. ':' .. st; byq[st] = k end
  return k
end
-- The lease set: a running job's '<id>|<lease token>' scored by its lease deadline. A member
-- names the lease, not only the job: an entry left by an older lease is told apart from the
-- job's current one. (Members are 73 bytes, over Redis' 64-byte listpack limit, so the set is
-- a skip list from its first member: inserting into a listpack sorted set parses every score
-- before the insertion point, which cost more than the rest of a claim's index writes.)
local LEASES = P .. 'leases'
local function lmember(id, tok) return id .. '|' .. tok end
-- A lease set member's id and token (schema 2 members are a bare id: token nil).
local function lsplit(m)
  local bar = string.find(m, '|', 1, true)
  if not bar then return m, nil end
  return string.sub(m, 1, bar - 1), string.sub(m, bar + 1)
end
-- The finish log: a list of '<finished_at ms>|<state>|<id>|<queue>', appended in finishing
-- order (server time), which the pruner consumes from its head.
local FINLOG = P .. 'finlog'
local UNIQUE = P .. 'unique'
local QUEUES = P .. 'queues'
local WAKE = P .. 'wake'

-- States with a per-queue index `s:<queue>:<state>` (running jobs are listed by LEASES).
local INDEXED_STATES = {'blocked', 'scheduled', 'available', 'completed', 'retrying', 'failed',
  'cancelled', 'dropped'}
local PENDING = {scheduled = true, available = true, retrying = true}
local LIVE = {scheduled = true, available = true, retrying = true, running = true}

-- Sorted-set, set and list changes are collected per key and sent as one variadic command per
-- key by flush(), which every script calls before it returns (and before it reads a set it changed).
-- Job hashes are always written at once, so a later step of the same script sees them.
local ZREMS, ZADDS, SADDS, RPUSHES = {}, {}, {}, {}
local function push(t, key, a, b)
  local l = t[key]
  if not l then l = {}; t[key] = l end
  l[#l + 1] = a
  if b ~= nil then l[#l + 1] = b end
end
local function zrem(key, m) push(ZREMS, key, m) end
local function zadd(key, score, m) push(ZADDS, key, score, m) end
local function sadd(key, m) push(SADDS, key, m) end
local function rpush(key, m) push(RPUSHES, key, m) end
local function flush()
  for key, l in pairs(ZREMS) do
    for i = 1, #l, 1000 do redis.call('ZREM', key, unpack(l, i, math.min(i + 999, #l))) end
  end
  for key, l in pairs(ZADDS) do
    for i = 1, #l, 1000 do redis.call('ZADD', key, unpack(l, i, math.min(i + 999, #l))) end
  end
  for key, l in pairs(SADDS) do
    for i = 1, #l, 1000 do redis.call('SADD', key, unpack(l, i, math.min(i + 999, #l))) end
  end
  for key, l in pairs(RPUSHES) do
    for i = 1, #l, 1000 do redis.call('RPUSH', key, unpack(l, i, math.min(i + 999, #l))) end
  end
  ZREMS, ZADDS, SADDS, RPUSHES = {}, {}, {}, {}
end

-- Member of a ready set: run_at (13 digits) then id, so that within one score (= -priority)
-- members sort by run_at, then id. The claim reads the id from offset 15, so run_at is held
-- to 13 digits: a time before 1970 (it can be any past time) sorts as 1970, one past 2286
-- as 2286.
local function rmember(run_at, id)
  local t = num(run_at, 0)
  if t < 0 then t = 0 elseif t > 9999999999999 then t = 9999999999999 end
  return string.format('%013d', t) .. '|' .. id
end

-- Moves a job between state indexes of its queue. Running jobs have no state index: LEASES
-- lists them (a claim and a completion each skip one sorted-set write that way).
local function reindex(q, id, from, to)
  if from and from ~= 'running' then zrem(skey(q, from), id) end
  if to ~= 'running' then zadd(skey(q, to), '0', id) end
end

-- Puts a pending job where claims find it: the ready set when due, else the schedule.
local function make_pending(id, q, prio, run_at, now)
  if num(run_at, now) <= now then
    zadd(rkey(q), -num(prio, 0), rmember(run_at, id))
  else
    zadd(schkey(q), tonumber(run_at), id)
  end
end

-- Takes a pending job out of the ready set and the schedule.
local function unpend(id, q, run_at)
  zrem(rkey(q), rmember(run_at, id))
  zrem(schkey(q), id)
end

-- The job's error history (a JSON array) with one more error (a JSON object).
local function with_error(key, err)
  local errs = redis.call('HGET', key, 'errors')
  if not errs or errs == '[]' or errs == '' then
    return '[' .. err .. ']'
  end
  return string.sub(errs, 1, -2) .. ',' .. err .. ']'
end

-- JOB_LAYOUT. A job hash is a listpack while it is small, so every field read or write is a
-- scan from its first field, and a missing field costs a scan of all of them (plus an append
-- when written). enqueue.lua therefore creates every field the claim and completion paths
-- touch, those read first at the front, with '' for "none"; the lease fields are set to ''
-- rather than deleted; and a finished job keeps its last lease's fields, which mean nothing
-- unless the state is running (record.rs ignores them then, and every fence tests the state
-- before the token). `unique_key` exists only when the job has one; the claim marks such a
-- job's lease token (see `token`) so that a completion reads the field only when it exists.
-- The fields no script reads or changes (kind, created_at, timeout_ms, tags, payload) are one
-- field, `spec`: five fewer fields for every lookup to pass and a claim to read (hashes of
-- schema 2 and before have them apart; the claim and record.rs read both forms).
local LEASE_CLEARED = {'lease_token', '', 'lease_expires_at', '', 'worker_id', '',
  'dispatched_at', ''}

-- A job that was running (or pending) is pending again: clears its lease, `fields` are set
-- (state, run_at, errors ...), in one write. `lease` is its lease set member when `from` is
-- running.
local function requeue(key, id, q, from, prio, run_at, now, fields, lease)
  local all = {unpack(fields)}
  for _, v in ipairs(LEASE_CLEARED) do all[#all + 1] = v end
  redis.call('HSET', key, unpack(all))
  if from == 'running' then zrem(LEASES, lease) end
  reindex(q, id, from, fields[2])
  make_pending(id, q, prio, run_at, now)
end

-- A job reached a finished state at `now` (server time, so the finish log stays in order):
-- stamp it (plus `extra` field, value pairs), drop its lease (`lease`, its lease set member
-- when `from` is running; its lease fields stay, meaningless, see JOB_LAYOUT), log it for the
-- pruner, release its unique key and let its hash expire as a safety net.
local function finish_core(key, id, q, from, state, now, ttl, uk, extra, lease)
  local at = n2s(now)
  if extra then
    redis.call('HSET', key, 'state', state, 'finished_at', at, unpack(extra))
  else
    redis.call('HSET', key, 'state', state, 'finished_at', at)
  end
  if from == 'running' then zrem(LEASES, lease) end
  reindex(q, id, from, state)
  rpush(FINLOG, at .. '|' .. state .. '|' .. id .. '|' .. q)
  if uk and redis.call('HGET', UNIQUE, uk) == id then
    redis.call('HDEL', UNIQUE, uk)
  end
  if ttl > 0 then redis.call('EXPIRE', key, n2s(ttl)) end
end

-- WORKFLOWS. A workflow step is a job hash with the fields `wf` (its workflow's id), `step` (its
-- name), `policy` (cancel, ignore, always) and `deps_left` (dependencies it still waits for,
-- while `blocked`). Per workflow: `wf:<id>` (name, created_at, cancelled), `wfsteps:<id>` (its
-- job ids in insertion order), `wfnames:<id>` (step name -> job id); per step: `wfdeps:<job>`
-- (the jobs it waits for) and `wfnext:<job>` (its dependents); `workflows` scores every
-- workflow by its creation time.
local function wf_iso(ms)
  local s = math.floor(ms / 1000)
  local msr = ms - s * 1000
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(rem / 3600),
    math.floor((rem % 3600) / 60), rem % 60, msr)
end

-- Whether a job's last error says a dependency cancelled it (the cascade).
local function wf_cascaded(errors)
  if not errors or not string.find(errors, 'dependency_failed', 1, true) then return false end
  local ok, list = pcall(cjson.decode, errors)
  if not ok or type(list) ~= 'table' or #list == 0 then return false end
  return list[#list].kind == 'dependency_failed'
end

-- A step finished in `st`: its blocked dependents that count it as done lose one dependency
-- and are released at zero; the others are cancelled (naming it), which settles their own
-- dependents in turn (a stack, not recursion). Nothing happens once a user cancelled the
-- workflow.
local function wf_settle(id0, st0, now)
  local stack = {id0, st0}
  local woke = false
  while #stack > 0 do
    local st = table.remove(stack)
    local id = table.remove(stack)
    local h = redis.call('HMGET', jkey(id), 'wf', 'step', 'errors')
    local wid = h[1]
    if wid and wid ~= '' and (redis.call('HGET', P .. 'wf:' .. wid, 'cancelled') or '') == '' then
      local cascaded = st ~= 'completed' and wf_cascaded(h[3])
      for _, dep in ipairs(redis.call('SMEMBERS', P .. 'wfnext:' .. id)) do
        local dk = jkey(dep)
        local d = redis.call('HMGET', dk, 'state', 'policy', 'deps_left', 'queue', 'priority',
          'run_at', 'attempt')
        if d[1] == 'blocked' then
          local sat = st == 'completed' or d[2] == 'always' or (d[2] == 'ignore' and not cascaded)
          if sat then
            local left = num(d[3], 1) - 1
            if left > 0 then
              redis.call('HSET', dk, 'deps_left', n2s(left))
            else
              local to = 'available'
              if num(d[6], 0) > now then to = 'scheduled' end
              redis.call('HSET', dk, 'state', to, 'deps_left', '0')
              reindex(d[4], dep, 'blocked', to)
              make_pending(dep, d[4], d[5], d[6], now)
              woke = true
            end
          else
            local err = cjson.encode({attempt = num(d[7], 0), at = wf_iso(now),
              kind = 'dependency_failed',
              message = 'upstream step `' .. (h[2] or '?') .. '` ended ' .. st})
            finish_core(dk, dep, d[4], 'blocked', 'cancelled', now, 0, nil,
              {'errors', with_error(dk, err)}, nil)
            stack[#stack + 1] = dep
            stack[#stack + 1] = 'cancelled'
          end
        end
      end
    end
  end
  if woke then redis.call('PUBLISH', WAKE, '') end
end

-- A job reached a finished state (see finish_core). A workflow step's hash does not expire
-- (the workflow is pruned as a unit), and its dependents are settled in the same script.
local function finish(key, id, q, from, state, now, ttl, uk, extra, lease)
  local wid = redis.call('HGET', key, 'wf')
  if wid then ttl = 0 end
  finish_core(key, id, q, from, state, now, ttl, uk, extra, lease)
  if wid then wf_settle(id, state, now) end
end

-- The `spec` field: kind, created_at (ms), timeout_ms ('' = none), tags (JSON) and payload
-- (JSON), joined by NUL bytes (none can hold one, see `claim_one`).
local SPEC_PARTS = {'kind', 'created_at', 'timeout_ms', 'tags', 'payload'}
local function spec(kind, created_at, timeout_ms, tags, payload)
  return kind .. '\0' .. created_at .. '\0' .. timeout_ms .. '\0' .. tags .. '\0' .. payload
end

-- The lease token of the `k`th job of a claim: the claim's UUID with its last four hex digits
-- replaced by k (a claim takes at most 1,000 jobs), plus 0x8000 when the job has a unique key
-- (see JOB_LAYOUT and `has_unique`).
local HEX = {[0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'}
local function token(base, k, unique)
  if unique then k = k + 0x8000 end
  local d0 = k % 16
  local d1 = (k - d0) / 16 % 16
  local d2 = (k - d0 - d1 * 16) / 256 % 16
  local d3 = (k - d0 - d1 * 16 - d2 * 256) / 4096
  return base .. HEX[d3] .. HEX[d2] .. HEX[d1] .. HEX[d0]
end

-- Whether a lease token was made for a job with a unique key.
local function has_unique(tok)
  return string.byte(tok, 33) >= 56 -- '8' .. '9', 'a' .. 'f'
end

-- Claims one job (already out of the ready set) if it is pending: running until `exp` under
-- the token for the `k`th job of a claim. Appends one string to `out`: the fields state,
-- attempt, queue, priority, max_attempts, run_at, errors, result, unique_key,
-- cancel_requested and spec as they were before the claim, then the id and the token, joined
-- by NUL bytes (record.rs `decode_claimed` splits it). None of them can hold a NUL: JSON
-- escapes it, and kind, queue, unique key and tags are refused at enqueue when they contain
-- one; an absent unique key is '', told apart from an empty one by the token. One string per
-- job costs a fraction of 17 replies. Returns true, or false when the job is not pending.
--
-- Everything that could fail (a field missing from a hash an older version wrote) is dealt
-- with before the first write: Redis keeps a failing script's earlier writes.
local function claim_one(out, key, id, q, now, exp, worker, base, k)
  local f = redis.call('HMGET', key, 'state', 'attempt', 'queue', 'priority', 'max_attempts',
    'run_at', 'errors', 'result', 'unique_key', 'cancel_requested', 'spec')
  local st = f[1]
  if not st or not PENDING[st] then return false end
  if not f[11] then
    -- A hash of schema 2 or before: its spec fields are apart.
    local o = redis.call('HMGET', key, unpack(SPEC_PARTS))
    for i = 1, 5 do o[i] = o[i] or '' end
    f[11] = spec(o[1], o[2], o[3], o[4], o[5])
  end
  local uk = f[9]
  local tok = token(base, k, uk)
  local attempt = (tonumber(f[2]) or 0) + 1
  -- Fields older versions did not always create (`result`, `cancel_requested` ...) read as
  -- '' (written out: cheaper than a loop on this path).
  f[2], f[3], f[4], f[5], f[6] = f[2] or '', f[3] or '', f[4] or '', f[5] or '', f[6] or ''
  f[7], f[8], f[9], f[10] = f[7] or '', f[8] or '', f[9] or '', f[10] or ''
  f[12] = id
  f[13] = tok
  local entry = table.concat(f, '\0')
  redis.call('HSET', key, 'state', 'running', 'attempt', n2s(attempt), 'lease_token', tok,
    'lease_expires_at', n2s(exp), 'started_at', n2s(now), 'worker_id', worker)
  zadd(LEASES, n2s(exp), lmember(id, tok))
  reindex(q, id, st, 'running')
  out[#out + 1] = entry
  return true
end
