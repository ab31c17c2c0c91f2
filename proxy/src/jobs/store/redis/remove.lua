-- Removes a record and its index entries (the idempotency key only if it names this job).
-- KEYS: 1 record, 2 idempotency key ('' for none), 3 owner index, 4 leases
-- ARGV: 1 id, 2 owner-index member
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
if KEYS[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
