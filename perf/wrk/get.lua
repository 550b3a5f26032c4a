-- wrk script for a plain GET: the ceilings of perf/run.sh (nginx's fixed 200,
-- a static file from httpserver, httpserver's /healthz). Answers of status
-- 400 and above count as errors (wrk's own count: no response() callback,
-- which would make wrk buffer every body). The one argument names the run in
-- the JSON summary line (report.lua).
--
--   wrk -t2 -c200 -d10s -s perf/wrk/get.lua http://127.0.0.1:1088/healthz -- healthz

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

-- Runs in each thread's own state; done() reads the name back from one.
function init(args)
   name = args[1] or "ceiling"
end

function done(summary, latency, requests)
   report_json(threads[1]:get("name"), summary, latency, summary.errors.status)
end
