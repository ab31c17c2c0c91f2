-- One owner's jobs on one upstream, newest first, after a cursor. Index entries whose record
-- has expired (Redis dropped it) are removed on the way, so a page is only short at the end.
-- KEYS: 1 owner index
-- ARGV: 1 where to start ('+', or '(' .. the cursor's member), 2 limit, 3 record key prefix
local out = {}
local start = ARGV[1]
local limit = tonumber(ARGV[2])
while #out < limit do
  local members = redis.call('ZRANGE', KEYS[1], start, '-', 'BYLEX', 'REV', 'LIMIT', 0, limit - #out)
  if #members == 0 then break end
  for _, member in ipairs(members) do
    local record = redis.call('HGET', ARGV[3] .. string.sub(member, 21), 'j')
    if record then out[#out + 1] = record else redis.call('ZREM', KEYS[1], member) end
  end
  start = '(' .. members[#members]
end
return out
