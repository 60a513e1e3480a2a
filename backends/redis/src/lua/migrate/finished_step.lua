-- One step of the schema version 1 -> 2 migration: moves the first thousand members of the
-- `finished` sorted set (`<state>|<id>|<queue>` scored by finish time) to the end of the
-- finish log as `<finished_at>|<state>|<id>|<queue>`. KEYS: finished, finlog.
-- Returns how many moved. Run without the prelude.
local m = redis.call('ZRANGE', KEYS[1], 0, 999, 'WITHSCORES')
if #m == 0 then return 0 end
local out = {}
for i = 1, #m, 2 do out[#out + 1] = string.format('%.0f', tonumber(m[i + 1])) .. '|' .. m[i] end
redis.call('RPUSH', KEYS[2], unpack(out))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #out - 1)
return #out
