-- Gives up this replica's leases at shutdown: they end now, so a survivor's next scan takes
-- the jobs over instead of waiting for the lease to run out. The holder is cleared too, so a
-- renewal still in flight cannot extend the lease again.
-- KEYS: 1 leases
-- ARGV: 1 replica id, 2 record key prefix, 3.. ids
local released = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', ARGV[2] .. id, 'o') == ARGV[1] and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', 0, id)
    redis.call('HDEL', ARGV[2] .. id, 'o')
    released = released + 1
  end
end
return released
