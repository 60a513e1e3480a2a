-- Receives up to `max` messages of one queue, invisible to other receivers until their lease
-- ends. First moves back what is due: in-flight messages whose lease ended (never acked:
-- their receiver died or gave up) and delayed messages whose time came.
-- KEYS: ready, delayed, in-flight. ARGV: max, lease in ms, nonce (unique per call).
-- Returns the receipts ('<priority>|<job id>|<nonce><k>').
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', INFLIGHT, '-inf', now, 'LIMIT', 0, 1000)
for _, r in ipairs(expired) do
  local prio, id = string.match(r, '^([^|]*)|([^|]*)|')
  redis.call('ZREM', INFLIGHT, r)
  if prio then make_ready(prio, id, now) end
end
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, 1000, 'WITHSCORES')
for i = 1, #due, 2 do
  local prio, id = string.match(due[i], '^([^|]*)|(.*)$')
  redis.call('ZREM', DELAYED, due[i])
  if prio then make_ready(prio, id, tonumber(due[i + 1])) end
end
local popped = redis.call('ZPOPMIN', READY, tonumber(ARGV[1]))
if #popped == 0 then return {} end
local until_ms = ms(now + tonumber(ARGV[2]))
local out, add = {}, {}
for i = 1, #popped, 2 do
  -- 0 - score, not -score: a priority of 0 must print as '0', not '-0'.
  local receipt = ms(0 - tonumber(popped[i + 1])) .. '|' .. string.sub(popped[i], 15) .. '|' ..
    ARGV[3] .. (i + 1) / 2
  out[#out + 1] = receipt
  add[#add + 1] = until_ms
  add[#add + 1] = receipt
end
redis.call('ZADD', INFLIGHT, unpack(add))
return out
