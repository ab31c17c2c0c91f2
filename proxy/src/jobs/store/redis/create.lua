-- Stores a new job, atomically with its idempotency key, its owner-index entry and (unfinished)
-- its lease held by the creating replica.
-- KEYS: 1 record, 2 idempotency key ('' for none), 3 owner index, 4 leases
-- ARGV: 1 record JSON, 2 version, 3 ttl ms, 4 owner-index member, 5 id, 6 '1' if unfinished,
--       7 replica id, 8 lease ms, 9 record key prefix
local function extend(key, ttl)
  local left = redis.call('PTTL', key)
  if left < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
end
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then
    local record = redis.call('HGET', ARGV[9] .. existing, 'j')
    if record then return {'existing', record} end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'conflict'} end
redis.call('HSET', KEYS[1], 'j', ARGV[1], 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[3]) end
redis.call('ZADD', KEYS[3], 0, ARGV[4])
extend(KEYS[3], ARGV[3])
if ARGV[6] == '1' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'o', ARGV[7])
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[8]), ARGV[5])
end
return {'new'}
