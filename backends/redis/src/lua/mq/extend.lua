-- Keeps received messages invisible for another `lease` ms from now. Receipts no longer in
-- flight are left alone. KEYS: ready, delayed, in-flight. ARGV: lease in ms, receipts...
-- Returns how many were extended.
local until_ms = ms(now_ms() + tonumber(ARGV[1]))
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', INFLIGHT, 'XX', 'CH', until_ms, ARGV[i])
end
return n
