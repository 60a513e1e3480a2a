-- The outputs of a step's dependencies: per dependency {step name, '+result' or '-'}, flat.
-- ARGV: prefix, job id.
local out = {}
for _, d in ipairs(redis.call('SMEMBERS', P .. 'wfdeps:' .. ARGV[2])) do
  local f = redis.call('HMGET', jkey(d), 'step', 'state', 'result')
  out[#out + 1] = f[1] or ''
  if f[2] == 'completed' and f[3] and f[3] ~= '' then
    out[#out + 1] = '+' .. f[3]
  else
    out[#out + 1] = '-'
  end
end
return out
