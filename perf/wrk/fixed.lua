-- wrk script for the machine's ceiling: plain GET / against nginx serving a
-- fixed 200 (perf/nginx/nginx.conf). It only adds the JSON summary line.
--
--   wrk -t2 -c200 -d10s -s perf/wrk/fixed.lua http://127.0.0.1:8089/

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

function done(summary, latency, requests)
   report_json("ceiling", summary, latency, summary.errors.status)
end
