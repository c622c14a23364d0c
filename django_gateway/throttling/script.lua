-- All the limits of one request, checked and counted atomically (see redis_limiter.py).
--
-- KEYS[k]            the window of limit k: a hash of bucket index -> count, plus
--                    w (bucket width, ms), n (sum of the buckets) and lo (oldest bucket)
-- ARGV[1]            now in ms; negative means "use the Redis clock"
-- ARGV[2]            cost of the request; 0 peeks (decides for one request, writes nothing)
-- ARGV[1+2k], [2+2k] limit and period (ms) of limit k
-- Returns {allowed (1/0), retry_after_ms, remaining_1, reset_ms_1, remaining_2, ...}.
--
-- n and lo keep the usual call to three commands per limit whatever the window holds: every
-- bucket is read only when the oldest one has expired (about once per bucket width on a busy
-- key), or when a denied request must wait for more than the oldest bucket to leave.

local BUCKETS = 60

local now = tonumber(ARGV[1])
if now < 0 then
  -- One clock for every gateway machine. Redis >= 5 replicates a script's effects (the
  -- HINCRBYs), not the script, so reading TIME before writing is allowed and replicas agree.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local cost = tonumber(ARGV[2])
local need = math.max(cost, 1)

local function field(index)
  return string.format('%d', index)
end

-- When bucket i stops counting: the first time t with floor((t - period) / w) > i.
local function leaves(win, i)
  return (i + 1) * win.w + win.period - now
end

-- The counted buckets, oldest first, as {index, count}; the expired ones go to win.stale.
local function buckets(win)
  local flat = redis.call('HGETALL', win.key)
  local live = {}
  for j = 1, #flat, 2 do
    local i = tonumber(flat[j]) -- nil for w, n and lo
    if i ~= nil and i < win.first then
      win.stale[#win.stale + 1] = flat[j]
    elseif i ~= nil then
      live[#live + 1] = {i, tonumber(flat[j + 1])}
    end
  end
  table.sort(live, function(a, b) return a[1] < b[1] end)
  return live
end

local function load(key, limit, period)
  local w = math.max(1, math.floor(period / BUCKETS))
  local win = {key = key, limit = limit, period = period, w = w, stale = {}, n = 0}
  -- Every request at or after now - period is in a bucket >= first (the oldest counts whole).
  win.first = math.floor((now - period) / w)
  local meta = redis.call('HMGET', key, 'w', 'n', 'lo')
  local n, lo = tonumber(meta[2]), tonumber(meta[3])
  if tonumber(meta[1]) ~= w or n == nil or lo == nil then
    -- No window yet, or one cut for another period: start empty, replace it on a write.
    win.replace = true
    return win
  end
  win.n, win.lo = n, lo
  if lo < win.first then
    local live = buckets(win)
    win.n, win.lo, win.rewrite = 0, nil, true
    for _, b in ipairs(live) do win.n = win.n + b[2] end
    if live[1] ~= nil then win.lo = live[1][1] end
  end
  return win
end

-- How long until enough has left the window for this request to fit.
local function wait(win)
  if need > win.limit or win.lo == nil then return win.period end
  local left = win.n - (tonumber(redis.call('HGET', win.key, field(win.lo))) or 0)
  if left + need <= win.limit then return leaves(win, win.lo) end -- the usual case: full
  left = win.n
  for _, b in ipairs(buckets(win)) do
    left = left - b[2]
    if left + need <= win.limit then return leaves(win, b[1]) end
  end
  return win.period
end

local function count(win)
  local cur = math.floor(now / win.w)
  local created = redis.call('HINCRBY', win.key, field(cur), cost) == cost
  win.n = win.n + cost
  if win.lo == nil or cur < win.lo then
    win.lo, win.rewrite = cur, true
  end
  if win.rewrite then
    redis.call('HSET', win.key, 'w', win.w, 'n', win.n, 'lo', field(win.lo))
  else
    redis.call('HINCRBY', win.key, 'n', cost)
  end
  -- A key lives until its newest bucket stops counting: (cur + 1) * w + period <= now + w + period.
  if created then redis.call('PEXPIRE', win.key, win.period + win.w) end
end

local function save(win, counted)
  if win.replace then
    redis.call('DEL', win.key)
  elseif #win.stale > 0 then
    redis.call('HDEL', win.key, unpack(win.stale))
  end
  if counted then
    count(win)
  elseif win.rewrite and win.lo == nil then
    redis.call('DEL', win.key)
  elseif win.rewrite then
    redis.call('HSET', win.key, 'n', win.n, 'lo', field(win.lo))
  end
end

local windows = {}
local allowed, retry = 1, 0
for k = 1, #KEYS do
  local win = load(KEYS[k], tonumber(ARGV[1 + 2 * k]), tonumber(ARGV[2 + 2 * k]))
  windows[k] = win
  if win.n + need > win.limit then
    allowed = 0
    retry = math.max(retry, wait(win))
  end
end

local reply = {allowed, retry}
for k, win in ipairs(windows) do
  if cost > 0 then save(win, allowed == 1) end
  reply[1 + 2 * k] = math.max(win.limit - win.n, 0)
  reply[2 + 2 * k] = win.lo == nil and win.period or leaves(win, win.lo)
end
return reply
