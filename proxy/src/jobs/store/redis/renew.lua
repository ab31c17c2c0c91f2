-- Renews this replica's leases; answers the jobs it no longer holds (taken over) and those
-- whose cancellation was asked through another replica.
-- KEYS: 1 leases
-- ARGV: 1 replica id, 2 lease ms, 3 record key prefix, 4 cancel key prefix, 5.. ids
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lost, cancel = {}, {}
for i = 5, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', ARGV[3] .. id, 'o') == ARGV[1] and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id)
    if redis.call('EXISTS', ARGV[4] .. id) == 1 then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
