-- Gives a received message back, ready again after `delay` ms (0: at once). A receipt no
-- longer in flight (its lease ended and the message was handed out again, or it was acked)
-- changes nothing. KEYS: ready, delayed, in-flight. ARGV: receipt, delay in ms, the wake-up
-- channel, the queue's name.
-- Returns 1 if the message was given back, else 0.
local receipt, delay = ARGV[1], tonumber(ARGV[2])
if redis.call('ZREM', INFLIGHT, receipt) == 0 then return 0 end
local prio, id = string.match(receipt, '^([^|]*)|([^|]*)|')
local now = now_ms()
if delay <= 0 then
  make_ready(prio, id, now)
  redis.call('PUBLISH', ARGV[3], ARGV[4])
else
  redis.call('ZADD', DELAYED, ms(now + delay), prio .. '|' .. id)
end
return 1
