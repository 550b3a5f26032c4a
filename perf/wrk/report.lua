-- Shared by the wrk scripts in this folder: one JSON line with what wrk
-- measured, in the load generator's terms (ok answers per second, latency
-- percentiles in milliseconds), so perf/run.sh can put both in one table.
-- `bad` counts answers the script's checks refused (status included).

function report_json(scenario, summary, latency, bad)
   local seconds = summary.duration / 1e6
   local e = summary.errors
   local socket_errors = e.connect + e.read + e.write + e.timeout
   local ok = summary.requests - bad
   io.write(string.format(
      '{"tool":"wrk","scenario":"%s","requests":%d,"ok":%d,"errors":%d,"seconds":%.3f,"qps":%.1f,' ..
      '"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f}}\n',
      scenario, summary.requests + socket_errors, ok, bad + socket_errors, seconds, ok / seconds,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000))
end

-- The threads wrk started, kept by setup() (which runs in the main state
-- once per thread) so that done() can read their counters.
threads = {}

function setup(thread)
   table.insert(threads, thread)
end

-- Sums a per-thread counter.
function sum_threads(threads, name)
   local total = 0
   for _, thread in ipairs(threads) do
      total = total + thread:get(name)
   end
   return total
end
