-- wrk script for the login-fixed scenario, to cross-check the load generator:
-- the same requests as `loadgen --scenario login-fixed` (user00000001 ..
-- user00000200 in turn, password pass<same digits>, Accept: application/json,
-- a urlencoded body), on the same keep-alive connections.
--
--   wrk -t1 -c200 -d10s -s perf/wrk/login.lua http://127.0.0.1:1088
--
-- wrk cannot tell which request an answer belongs to, so it checks what it
-- can: status 200 and `"code":0` in the body. The count of other answers is
-- printed at the end (wrk itself only counts non-2xx/3xx statuses), then a
-- JSON line for perf/run.sh (report.lua).

local USERS = 200
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

function init(args)
   requests = {}
   for i = 1, USERS do
      local body = string.format("username=user%08d&password=pass%08d", i, i)
      requests[i] = wrk.format("POST", "/login", {
         ["Accept"] = "application/json",
         ["Content-Type"] = "application/x-www-form-urlencoded",
      }, body)
   end
   sent = 0
   bad = 0
end

function request()
   sent = sent + 1
   return requests[(sent % USERS) + 1]
end

function response(status, headers, body)
   if status ~= 200 or not string.find(body, '"code":0', 1, true) then
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local bad = sum_threads(threads, "bad")
   io.write(string.format("checked answers: %d not a successful login\n", bad))
   report_json("login-fixed", summary, latency, bad)
end
