-- GCRA for the sidecar's global rate-limit rules (proxy/src/limits/global.rs): governor's
-- algorithm, the one the local rules run, on the Redis server's clock (TIME), so the replicas'
-- clocks never matter. One call decides every global rule a request matches, atomically.
--
-- KEYS[i]: a bucket, holding its theoretical arrival time (TAT) in microseconds since the epoch.
-- ARGV, five per key: emission interval T (us), burst tolerance tau = T * (burst - 1) (us),
-- requests n, extra (requests to reserve ahead for the replica's local budget, if they fit now),
-- shadow (1: decided alone and never refusing the others).
-- Enforced keys are all-or-nothing: their new TATs are stored only when every one admits, so a
-- refused request consumes nothing. Shadow keys are stored when they admit.
-- Each stored key expires when its bucket is full again (TAT - now): an idle key vanishes, since
-- a full bucket is indistinguishable from no key. No sweeper.
--
-- Returns four integers per key: status (1 admitted, 0 refused, -1 never: n > burst),
-- remaining burst after it (extra excluded), wait in us until it would be admitted, extra
-- reserved.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local out = {}
local store = {}
local all_admitted = true
for i = 1, #KEYS do
  local a = (i - 1) * 5
  local t = tonumber(ARGV[a + 1])
  local tau = tonumber(ARGV[a + 2])
  local n = tonumber(ARGV[a + 3])
  local extra = tonumber(ARGV[a + 4])
  local shadow = ARGV[a + 5] == '1'
  local status, remaining, wait, reserved = 0, 0, 0, 0
  if (n - 1) * t > tau then
    status = -1
  else
    local tat = tonumber(redis.call('GET', KEYS[i])) or now
    local earliest = tat + (n - 1) * t - tau
    if now < earliest then
      wait = earliest - now
    else
      status = 1
      local base = math.max(tat, now)
      remaining = math.floor(math.min(now + tau + t - (base + n * t), tau + t) / t)
      reserved = math.min(extra, remaining)
      remaining = remaining - reserved
      store[#store + 1] = { i, base + (n + reserved) * t, shadow }
    end
  end
  if status ~= 1 and not shadow then
    all_admitted = false
  end
  local o = (i - 1) * 4
  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = status, remaining, wait, reserved
end
for _, s in ipairs(store) do
  if s[3] or all_admitted then
    local ttl = math.max(1, math.ceil((s[2] - now) / 1000))
    redis.call('SET', KEYS[s[1]], string.format('%d', s[2]), 'PX', ttl)
  end
end
return out
