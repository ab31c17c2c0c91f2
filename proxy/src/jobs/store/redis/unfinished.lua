-- Every unfinished job's record (the leases set is the unfinished index); entries whose record
-- is gone are dropped.
-- KEYS: 1 leases
-- ARGV: 1 record key prefix
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local record = redis.call('HGET', ARGV[1] .. id, 'j')
  if record then out[#out + 1] = record else redis.call('ZREM', KEYS[1], id) end
end
return out
