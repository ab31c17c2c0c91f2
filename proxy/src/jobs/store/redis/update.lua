-- Compare-and-set of one record on its version; the indexes follow it.
-- KEYS: 1 record, 2 idempotency key ('' for none), 3 owner index, 4 leases
-- ARGV: 1 record JSON, 2 new version, 3 expected version, 4 ttl ms, 5 '1' if terminal, 6 id,
--       7 replica id, 8 lease ms
local function extend(key, ttl)
  local left = redis.call('PTTL', key)
  if left < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
end
local version = redis.call('HGET', KEYS[1], 'v')
if not version then return 'missing' end
if version ~= ARGV[3] then return 'conflict' end
redis.call('HSET', KEYS[1], 'j', ARGV[1], 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if KEYS[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[6] then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
extend(KEYS[3], ARGV[4])
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[4], ARGV[6])
  redis.call('HDEL', KEYS[1], 'o')
elseif not redis.call('ZSCORE', KEYS[4], ARGV[6]) then
  -- Unfinished again (never done by the engine): the writer holds it.
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'o', ARGV[7])
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[8]), ARGV[6])
end
return 'ok'
