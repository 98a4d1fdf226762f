-- wrk script: one ~300-byte event per POST /v1/events, as `stele bench
-- http --batch 1` sends them (unique actor and resource per request), to
-- cross-check the built-in load generator with an independent one.
--
--   STELE_TOKEN=<writer token> wrk -t2 -c64 -d10s --latency \
--       -s scripts/wrk-events.lua https://127.0.0.1:7800
--
-- wrk (Debian package `wrk`) does not verify the server's certificate and
-- has no warm-up: the first second is measured too. Any answer other than
-- 2xx is counted in "non-2xx"; a receipt is not checked.

local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local token = os.getenv("STELE_TOKEN")
  if token == nil or token == "" then
    error("set STELE_TOKEN to a token with the writer role")
  end
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }
end

function request()
  counter = counter + 1
  local head = string.format(
    '{"actor":"wrk-%d-%d@example.com","action":"document.read",' ..
    '"resource":"documents/wrk/%d/%d","outcome":"success",' ..
    '"attributes":{"ip":"10.0.%d.%d","pad":"',
    tid, counter, tid, counter, math.floor(counter / 256) % 256, counter % 256)
  local pad = math.max(0, 300 - #head - 3)
  return wrk.format("POST", "/v1/events", headers, head .. string.rep("x", pad) .. '"}}')
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  io.write(string.format(
    "wrk: %d requests in %.1f s, %.0f requests/s, p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms, non-2xx %d, socket errors %d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
