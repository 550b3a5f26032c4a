-- wrk script for the profile scenario: GET /profile with `Authorization:
-- Bearer <token>` and Accept: application/json, one session per request in
-- turn. The tokens come from a file, one per line (perf/run.sh logs users in
-- with the load generator's session set-up and writes it):
--
--   wrk -t1 -c200 -d10s -s perf/wrk/profile.lua http://127.0.0.1:1088 -- tokens.txt
--
-- Checks status 200 and `"code":0` like login.lua.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

function init(args)
   local path = args[1] or "tokens.txt"
   requests = {}
   for token in io.lines(path) do
      if token ~= "" then
         table.insert(requests, wrk.format("GET", "/profile", {
            ["Accept"] = "application/json",
            ["Authorization"] = "Bearer " .. token,
         }))
      end
   end
   if #requests == 0 then
      error("no tokens in " .. path)
   end
   sent = 0
   bad = 0
end

function request()
   sent = sent + 1
   return requests[(sent % #requests) + 1]
end

function response(status, headers, body)
   if status ~= 200 or not string.find(body, '"code":0', 1, true) then
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local bad = sum_threads(threads, "bad")
   io.write(string.format("checked answers: %d not a successful profile read\n", bad))
   report_json("profile", summary, latency, bad)
end
