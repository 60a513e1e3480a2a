-- Renews leases still held. KEYS: leases. ARGV: prefix, lease_ms, then id, token pairs.
-- Returns per lease 0 (lost), 1 (held) or 2 (held, cancel requested).
local exp = now_ms() + tonumber(ARGV[2])
local exps = n2s(exp)
local out = {}
for i = 3, #ARGV, 2 do
  local id, tok = ARGV[i], ARGV[i + 1]
  local key = jkey(id)
  local f = redis.call('HMGET', key, 'state', 'lease_token', 'cancel_requested')
  if f[1] == 'running' and f[2] == tok then
    redis.call('HSET', key, 'lease_expires_at', exps)
    zadd(LEASES, exps, lmember(id, tok))
    if f[3] == '1' then out[#out + 1] = 2 else out[#out + 1] = 1 end
  else
    out[#out + 1] = 0
  end
end
flush()
return out
