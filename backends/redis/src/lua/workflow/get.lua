-- One workflow: {name, created_at, cancelled, then per step 6 strings: id, step name, state,
-- policy, kind, its dependencies' ids joined by ','}, or {} when there is none.
-- ARGV: prefix, workflow id.
local wid = ARGV[2]
local h = redis.call('HMGET', P .. 'wf:' .. wid, 'name', 'created_at', 'cancelled')
if not h[1] then return {} end
local out = {h[1], h[2] or '0', h[3] or ''}
for _, id in ipairs(redis.call('LRANGE', P .. 'wfsteps:' .. wid, 0, -1)) do
  local f = redis.call('HMGET', jkey(id), 'step', 'state', 'policy', 'spec', 'kind')
  local kind = f[5]
  if not kind and f[4] then kind = string.match(f[4], '^([^%z]*)') end
  out[#out + 1] = id
  out[#out + 1] = f[1] or ''
  out[#out + 1] = f[2] or 'dropped'
  out[#out + 1] = f[3] or 'cancel'
  out[#out + 1] = kind or ''
  out[#out + 1] = table.concat(redis.call('SMEMBERS', P .. 'wfdeps:' .. id), ',')
end
return out
