-- Shared by the queue scripts (`RedisQueue`). Per Switchyard queue, three keys (all under the
-- instance's `{prefix}` hash tag, passed in KEYS as ready, delayed, in-flight):
--   ready     sorted set, score -priority, member '<ready since, ms, 13 digits>|<job id>', so
--             ZPOPMIN takes the highest priority first, then the oldest;
--   delayed   sorted set, score = due time (ms), member '<priority>|<job id>';
--   in-flight sorted set, score = when the message is visible again (ms), member = the
--             receipt '<priority>|<job id>|<nonce>'.
local READY, DELAYED, INFLIGHT = KEYS[1], KEYS[2], KEYS[3]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n) return string.format('%.0f', n) end

-- Makes a job id ready: highest priority first, then oldest.
local function make_ready(prio, id, since)
  redis.call('ZADD', READY, -tonumber(prio), string.format('%013.0f', since) .. '|' .. id)
end
