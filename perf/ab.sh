#!/usr/bin/env bash
# Compares two builds of the servers on one scenario, in one run: both stacks
# run side by side (A on ports 2088/2099, B on 3088/3099, same MariaDB and
# Redis), and short loadgen runs alternate between them, so that the machine's
# noise falls on both alike. Prints each run and the median QPS and p99 of each.
#
#   perf/ab.sh BIN_DIR_A BIN_DIR_B [SCENARIO] [ROUNDS] [SECS] [CONCURRENCY]
#   perf/ab.sh /work/targets/base/release target/release login-fixed 5 5 200
#
# SCENARIO is one of loadgen's (perf/README.md), or `healthz-close`: wrk
# asking for /healthz on a new connection each time (`Connection: close`), as
# clients without keep-alive do, which prices a connection's set-up and end.
#
# Each BIN_DIR holds `tcpserver` and `httpserver` release binaries; loadgen is
# taken from target/release. Needs the system's secrets (./run.sh start made
# them) and the seeded accounts. AB_TCP_ARGS_A / AB_TCP_ARGS_B add tcpserver
# flags to one side, AB_HTTP_ARGS_A / AB_HTTP_ARGS_B httpserver flags (to
# compare settings with one build: pass the same dir twice).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
A=${1:?bin dir A} B=${2:?bin dir B}
SCENARIO=${3:-login-fixed} ROUNDS=${4:-5} SECS=${5:-5} CONCURRENCY=${6:-200}
LOADGEN=$ROOT/target/release/loadgen
WORK=$(mktemp -d /tmp/ab.XXXXXX)
# The stacks' Redis key prefixes start with this (see start_stack).
PREFIX=ab$$
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The stacks' keys (sessions, records, counters): none is left behind.
  redis-cli --scan --pattern "$PREFIX-*" 2>/dev/null | xargs -r -n 1000 redis-cli del >/dev/null 2>&1 || true
}
trap cleanup EXIT

# As in perf/run.sh: the throttles on successful log-ins raised for a load
# from one address. Environment variables, which a build from before these
# settings ignores.
export LOGINS_PER_USER=1000000000/600 LOGINS_PER_ADDR=1000000000/600
export LOGIN_FAILURES_PER_ADDR=1000000000/300
# MySQL over its unix socket, as ./run.sh connects tcpserver (a build from
# before tcpserver stopped switching loopback TCP to the socket by itself
# reaches the same socket either way).
MYSQL_URL=${MYSQL_URL:-mysql://usermgmt@localhost:3306/usermgmt?socket=$(mariadb -uroot -N -B -e 'SELECT @@socket')}
export MYSQL_URL
# The RPC secret both servers of a stack prove and check, by environment too.
export RPC_SECRET_FILE=$ROOT/run/secrets/rpc_secret

# Each stack keeps its keys under a prefix of its own (not the running
# system's, nor the other stack's: a stack's log-in records are drained by its
# own tcpserver only), and serves its metrics on the port below its
# tcpserver's, where `drained` reads how many records its drainer has left.
# Both by environment, which a build from before these settings ignores.
start_stack() { # name bin_dir http_port tcp_port extra_tcpserver_args extra_httpserver_args
  local name=$1 dir=$2 http=$3 tcp=$4
  # shellcheck disable=SC2086 # the extra flags are meant to split into words
  REDIS_PREFIX="$PREFIX-$name:" METRICS_LISTEN="127.0.0.1:$((tcp - 1))" "$dir/tcpserver" --listen "127.0.0.1:$tcp" $5 \
    --mysql-password-file "$ROOT/run/secrets/mysql_password" --pepper-file "$ROOT/run/secrets/pepper" \
    --avatar-dir "$WORK/avatars-$name" >"$WORK/$name-tcp.log" 2>&1 &
  PIDS+=($!)
  # The load comes from one address (127.0.0.1): its per-address shares are
  # raised to the whole cap and budget (perf/README.md). By environment rather
  # than flags, so that a build from before those settings still starts.
  HTTP_MAX_CONNECTIONS_PER_ADDR=4096 HTTP_UPLOAD_BUDGET_PER_ADDR_MIB=256 \
    "$dir/httpserver" --listen "127.0.0.1:$http" --backend "127.0.0.1:$tcp" $6 \
    --static-dir "$ROOT/static" --html-dir "$ROOT/html" >"$WORK/$name-http.log" 2>&1 &
  PIDS+=($!)
}

start_stack a "$A" 2088 2099 "${AB_TCP_ARGS_A:-}" "${AB_HTTP_ARGS_A:-}"
start_stack b "$B" 3088 3099 "${AB_TCP_ARGS_B:-}" "${AB_HTTP_ARGS_B:-}"
for port in 2088 3088; do
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.2
  done
done

# Waits (at most 30 s) until neither stack's history drainer has records
# left, so that one run's drain never falls into the next run: the gauge is
# set by each drainer round, and a round follows the last log-ins within a
# quarter-second. A build without the gauge counts as drained.
drained() {
  local port left total
  sleep 0.5
  for _ in $(seq 150); do
    total=0
    for port in 2098 3098; do
      left=$(curl -fs "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '$1 == "usermgmt_history_queued" { print $2 }') || left=0
      total=$((total + ${left:-0}))
    done
    ((total == 0)) && return 0
    sleep 0.2
  done
  echo "ab.sh: history records still queued after 30 s; going on" >&2
}

# The processes whose CPU each run is charged with: its own stack's two
# servers, and the MariaDB and Redis both stacks share (the other stack is
# idle meanwhile, but for its drainer's quarter-second checks).
MARIADB_PID=$(pgrep -x mariadbd | head -n 1 || true)
REDIS_PID=$(redis-cli INFO server 2>/dev/null | awk -F: '$1 == "process_id" { print $2 }' | tr -d '\r')
charged() { # name
  local tcp http
  if [ "$1" = a ]; then tcp=${PIDS[0]} http=${PIDS[1]}; else tcp=${PIDS[2]} http=${PIDS[3]}; fi
  echo "tcpserver=$tcp httpserver=$http mariadbd=$MARIADB_PID redis=$REDIS_PID"
}
# CPU ticks (user + system) of each name=pid given, as name=ticks words.
ticks() {
  local pair
  for pair in "$@"; do
    echo "${pair%%=*}=$(awk '{ print $14 + $15 }' "/proc/${pair#*=}/stat" 2>/dev/null || echo 0)"
  done
}

run() { # name port
  local before
  # shellcheck disable=SC2046 # name=pid words
  before=$(ticks $(charged "$1"))
  if [ "$SCENARIO" = healthz-close ]; then
    wrk -t2 -c"$CONCURRENCY" -d"${SECS}s" --timeout 5s -H 'Connection: close' -s perf/wrk/get.lua \
      "http://127.0.0.1:$2/healthz" -- healthz-close 2>/dev/null | grep '^{"tool":"wrk"' >>"$WORK/$1.jsonl" || true
  else
    "$LOADGEN" --addr "127.0.0.1:$2" --scenario "$SCENARIO" --duration "$SECS" \
      --concurrency "$CONCURRENCY" --json 2>/dev/null | tail -n 1 >>"$WORK/$1.jsonl" || true
  fi
  # shellcheck disable=SC2046
  echo "$before" "$(ticks $(charged "$1"))" | tr '\n' ' ' >>"$WORK/$1.cpu"
  echo >>"$WORK/$1.cpu"
  tail -n 1 "$WORK/$1.jsonl" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%s: qps=%.0f p99=%.1fms errors=%d" % (sys.argv[1], r["qps"], r["latency_ms"]["p99"], r["errors"]))' "$1" \
    2>/dev/null || echo "$1: no report"
}

for ((i = 0; i < ROUNDS; i++)); do
  if ((i % 2 == 0)); then
    run a 2088; drained; run b 3088; drained
  else
    run b 3088; drained; run a 2088; drained
  fi
done

python3 - "$WORK" "$(getconf CLK_TCK)" <<'EOF'
import json, statistics, sys
work, tick = sys.argv[1], 1e6 / int(sys.argv[2])
medians = {}
for name in "ab":
    rows = [json.loads(l) for l in open(f"{work}/{name}.jsonl") if l.strip()]
    if rows:
        qps = statistics.median(r["qps"] for r in rows)
        p99 = statistics.median(r["latency_ms"]["p99"] for r in rows)
        print(f"{name.upper()}: median qps {qps:.0f}, median p99 {p99:.1f} ms over {len(rows)} runs")
        medians[name] = qps
        # CPU per request of each process charged with the run (medians over
        # the runs): where a difference in qps comes from.
        per_process = {}
        for row, line in zip(rows, open(f"{work}/{name}.cpu")):
            words = [w.split("=") for w in line.split()]
            half = len(words) // 2
            for (process, t0), (_, t1) in zip(words[:half], words[half:]):
                if row["requests"]:
                    per_process.setdefault(process, []).append((float(t1) - float(t0)) * tick / row["requests"])
        print("   CPU per request: " + ", ".join(
            f"{process} {statistics.median(v):.1f} us" for process, v in per_process.items()))
if medians.get("a") and "b" in medians:
    print(f"B against A: {100 * (medians['b'] / medians['a'] - 1):+.1f} % qps")
EOF
