-- Publishes messages to one queue. KEYS: ready, delayed, in-flight. ARGV: the wake-up
-- channel, the queue's name, then per message: job id, priority, delay in ms. Returns how many
-- were published.
local now = now_ms()
local ready = false
for i = 3, #ARGV, 3 do
  local id, prio, delay = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if delay <= 0 then
    make_ready(prio, id, now)
    ready = true
  else
    redis.call('ZADD', DELAYED, ms(now + delay), prio .. '|' .. id)
  end
end
if ready then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return (#ARGV - 2) / 3
