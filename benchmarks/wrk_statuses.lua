-- wrk_report.lua's JSON line (prefixed "BENCH_JSON ") plus every response counted by status and by
-- the X-Upstream header that named the instance ("-" when absent), for benchmarks/loadgen.py.
-- Each thread counts in its own Lua state; done() collects them through setup()'s thread handles.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  upstreams = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local label = headers["X-Upstream"] or headers["x-upstream"] or "-"
  upstreams[label] = (upstreams[label] or 0) + 1
end

local function merge(into, counts)
  for key, count in pairs(counts or {}) do
    local name = tostring(key):gsub("[^%w%-_.]", "_")  -- safe inside a JSON string
    into[name] = (into[name] or 0) + count
  end
end

local function json_object(counts)
  local keys = {}
  for key in pairs(counts) do table.insert(keys, key) end
  table.sort(keys)
  local parts = {}
  for _, key in ipairs(keys) do
    table.insert(parts, string.format('"%s": %d', key, counts[key]))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

done = function(summary, latency, requests)
  local all_statuses, all_upstreams = {}, {}
  for _, thread in ipairs(threads) do
    merge(all_statuses, thread:get("statuses"))
    merge(all_upstreams, thread:get("upstreams"))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}, ' ..
    '"statuses": %s, "upstreams": %s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    json_object(all_statuses), json_object(all_upstreams)))
end
