-- Gives up a leadership lock held by `holder`. KEYS: the lock. ARGV: prefix, holder.
if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DEL', KEYS[1]) end
return 0
