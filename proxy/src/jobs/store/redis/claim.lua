-- Claims unfinished jobs whose lease has run out (their replica died or lost Redis): this
-- replica becomes their holder, with a fresh lease. Times are Redis's, so replicas' clocks
-- do not matter.
-- KEYS: 1 leases
-- ARGV: 1 replica id, 2 lease ms, 3 record key prefix, 4 limit
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))) do
  local key = ARGV[3] .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'o', ARGV[1])
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    out[#out + 1] = id
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
