#!/usr/bin/env bash
# Brings the whole usermgmt system up on this machine, in the background.
#
#   ./run.sh          install what is missing (MariaDB, Redis, a Rust toolchain),
#                     create the database, build in release mode, seed the
#                     accounts, start tcpserver and httpserver, wait until they
#                     answer, print the URL and a login to try
#   ./run.sh status   say what is running
#   ./run.sh stop     stop both servers (SIGTERM, then wait)
#   ./run.sh restart  stop, then start
#
#   ./run.sh cluster         the same programs as a fleet on this machine
#                            (scripts/cluster/fleet.sh): HAProxy on 1088 in front
#                            of two httpservers, two tcpservers, a Redis Cluster
#                            (3 masters, 3 replicas) and a three-node Galera
#                            cluster for MariaDB; installs haproxy and galera-4
#                            when missing, seeds, prints the URL. All its data
#                            is under run/cluster/. The single node (./run.sh)
#                            must be stopped first: both serve on 1088
#   ./run.sh cluster status  every process, Redis Cluster and Galera health, and
#                            the Galera node taking writes
#   ./run.sh cluster stop    stop the whole fleet
#
# Safe to run again: what is done is not redone, and servers already up stay up.
# Logs and pid files live under run/ (run/logs/*.log, run/*.pid).
#
# Settings (environment):
#   HTTPSERVER_LISTEN  [127.0.0.1:1088]  where the web front end listens. The
#                      seeded accounts' passwords follow a published pattern
#                      (user00000001 / pass00000001), so the default is this
#                      machine only; on any other address (0.0.0.0:1088 for
#                      every interface) this script warns loudly
#   TCPSERVER_LISTEN   [127.0.0.1:1099]  where the back end listens
#   SEED_ACCOUNTS      [the seed tool's default: 10,000,000] accounts to seed;
#                      the first full seed takes about 15 minutes on two cores,
#                      SEED_ACCOUNTS=10000 takes seconds; 0 skips seeding
#   CARGO_TARGET_DIR   [target]          where cargo builds
#   GALERA_BUFFER_POOL [2G] (cluster)    InnoDB buffer pool of each Galera node;
#                      ten million accounts take 2.9 GB, so 4G keeps random
#                      log-ins in memory, at three times the memory
# Both servers also read their own settings from the environment, which passes
# through to them (`target/release/httpserver --help`), e.g.
#   HTTP_MAX_CONNECTIONS_PER_ADDR [256]  connections per client address;
#   HTTP_UPLOAD_BUDGET_PER_ADDR_MIB [16] upload bodies in flight per address
#                      (perf/run.sh raises both: its load comes from one address)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
source scripts/services.sh
# Open-files soft limit up to the hard limit, for 2000 concurrent connections.
source sysctl/limits.sh

RUN_DIR=$STATE_DIR
LOG_DIR=$RUN_DIR/logs
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
HTTP_LISTEN=${HTTPSERVER_LISTEN:-127.0.0.1:1088}
TCP_LISTEN=${TCPSERVER_LISTEN:-127.0.0.1:1099}
HTTP_PORT=${HTTP_LISTEN##*:}
# The listening host without IPv6 brackets: 127.0.0.1, 0.0.0.0, ::1, ...
HTTP_HOST=${HTTP_LISTEN%:*}
HTTP_HOST=${HTTP_HOST#[}
HTTP_HOST=${HTTP_HOST%]}
# Where this script reaches httpserver: a wildcard address is reachable on loopback.
case $HTTP_HOST in
0.0.0.0 | ::) HTTP_CONNECT_HOST=127.0.0.1 ;;
*) HTTP_CONNECT_HOST=$HTTP_HOST ;;
esac
DEMO_USER=demo
DEMO_PASSWORD=demo-password
# How long the servers may take to answer after starting, and to stop after SIGTERM.
START_TIMEOUT_SECS=60
STOP_TIMEOUT_SECS=20

# The pid in run/<name>.pid if that process is alive and is really <name>
# (a stale pid file may name a pid reused by something else).
running_pid() {
  local pid_file="$RUN_DIR/$1.pid" pid
  [ -s "$pid_file" ] || return 1
  pid=$(cat "$pid_file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "/$1 " || return 1
  echo "$pid"
}

# One HTTP request to httpserver with bash's /dev/tcp (no curl on a fresh
# machine); prints the status line and the body.
http_request() { # http_request <method> <path> [json body]
  local body=${3:-}
  timeout 10 bash -c '
    exec 3<>"/dev/tcp/$0" || exit 1
    printf "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s" \
      "$1" "$2" "${#3}" "$3" >&3
    cat <&3' "$HTTP_CONNECT_HOST/$HTTP_PORT" "$1" "$2" "$body" 2>/dev/null
}

# Whether httpserver's address is reachable from this machine only.
loopback_only() {
  case $HTTP_HOST in
  127.* | ::1 | ::ffff:127.*) return 0 ;;
  *) return 1 ;;
  esac
}

# The database is for demonstration and benchmarks: its passwords are public.
# Said before start-up and again after the welcome, where it cannot be missed.
warn_if_exposed() {
  loopback_only && return 0
  cat >&2 <<EOF

WARNING: httpserver listens on $HTTP_LISTEN, which other machines can reach,
WARNING: and its database holds accounts whose passwords are public: the demo
WARNING: account ($DEMO_USER / $DEMO_PASSWORD) and the seeded accounts, whose
WARNING: passwords follow a documented pattern (user00000001 / pass00000001).
WARNING: Anyone who can reach $HTTP_LISTEN can log in as any of them.
WARNING: Serve it on loopback (unset HTTPSERVER_LISTEN: 127.0.0.1:1088), or
WARNING: only on a network where that is acceptable.

EOF
}

healthy() { http_request GET /healthz | head -n1 | grep -q ' 200 '; }

ensure_build_tools() {
  command -v cc >/dev/null 2>&1 || apt_install build-essential pkg-config
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      PATH="$HOME/.cargo/bin:$PATH"
    else
      log "installing Rust with rustup (https://rustup.rs)"
      command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
      PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
}

build() {
  log "building in release mode"
  cargo build --release --quiet -p tcpserver -p httpserver -p seed
}

seed() {
  if [ "${SEED_ACCOUNTS:-}" = 0 ]; then
    return 0
  fi
  log "seeding accounts (${SEED_ACCOUNTS:-default number}); a rerun only checks"
  if ! "$BIN_DIR/seed" >>"$LOG_DIR/seed.log" 2>&1; then
    log "seeding failed (see $LOG_DIR/seed.log); carrying on with the demo account only"
    return 0
  fi
  tail -n 6 "$LOG_DIR/seed.log" | grep -m1 'seeded accounts' >&2 || true
}

start_tcpserver() {
  if pid=$(running_pid tcpserver); then
    log "tcpserver already running (pid $pid)"
    return 0
  fi
  log "starting tcpserver on $TCP_LISTEN"
  # MySQL over the server's unix socket, named: tcpserver connects exactly
  # where it is told (it never switches from TCP to a socket by itself, so that
  # the fleet's HAProxy is never bypassed), and on one machine the socket is
  # the shorter path. MYSQL_URL in the environment wins.
  local socket
  socket=$(mariadb -uroot -N -B -e 'SELECT @@socket')
  MYSQL_URL=${MYSQL_URL:-mysql://usermgmt@localhost:3306/usermgmt?socket=$socket} \
    nohup "$BIN_DIR/tcpserver" --listen "$TCP_LISTEN" \
    --mysql-password-file "$RUN_DIR/secrets/mysql_password" --pepper-file "$PEPPER_FILE" \
    --rpc-secret-file "$RPC_SECRET_FILE" \
    --avatar-dir "$ROOT/static/avatars" >>"$LOG_DIR/tcpserver.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/tcpserver.pid"
}

start_httpserver() {
  if pid=$(running_pid httpserver); then
    log "httpserver already running (pid $pid)"
    return 0
  fi
  log "starting httpserver on $HTTP_LISTEN"
  nohup "$BIN_DIR/httpserver" --listen "$HTTP_LISTEN" --backend "$TCP_LISTEN" \
    --rpc-secret-file "$RPC_SECRET_FILE" \
    --static-dir "$ROOT/static" --html-dir "$ROOT/html" >>"$LOG_DIR/httpserver.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/httpserver.pid"
}

wait_until_healthy() {
  local i
  for ((i = 0; i < START_TIMEOUT_SECS * 5; i++)); do
    healthy && return 0
    for name in tcpserver httpserver; do
      if ! running_pid "$name" >/dev/null; then
        log "$name exited; the end of $LOG_DIR/$name.log:"
        tail -n 20 "$LOG_DIR/$name.log" >&2
        return 1
      fi
    done
    sleep 0.2
  done
  log "the servers did not answer /healthz within $START_TIMEOUT_SECS s; see $LOG_DIR/"
  return 1
}

# The demo account, signed up through the API (409: it exists already).
ensure_demo_user() {
  local reply
  reply=$(http_request POST /signUp "{\"username\":\"$DEMO_USER\",\"password\":\"$DEMO_PASSWORD\",\"nickname\":\"Demo\"}")
  case $(head -n1 <<<"$reply") in
  *" 201 "* | *" 409 "*) ;;
  *) log "could not create the demo account: $(head -n1 <<<"$reply")" ;;
  esac
}

print_welcome() {
  local host=$HTTP_HOST
  case $host in
  0.0.0.0 | 127.0.0.1) host=localhost ;;
  *:*) host="[$host]" ;;
  esac
  echo
  echo "usermgmt is up: http://$host:$HTTP_PORT/"
  echo "  log in as $DEMO_USER / $DEMO_PASSWORD"
  if [ "${SEED_ACCOUNTS:-}" != 0 ]; then
    echo "  or as any seeded account, e.g. user00000001 / pass00000001"
  fi
  echo "  logs: $LOG_DIR/   stop: ./run.sh stop   status: ./run.sh status"
  warn_if_exposed
}

# Whether ./run.sh cluster's HAProxy runs (it holds port 1088).
fleet_running() {
  local pid_file="$RUN_DIR/cluster/haproxy/haproxy.pid"
  [ -s "$pid_file" ] && kill -0 "$(head -n1 "$pid_file")" 2>/dev/null
}

start() {
  mkdir -p "$LOG_DIR" "$ROOT/static/avatars"
  if fleet_running; then
    log "the fleet (./run.sh cluster) is running and holds port 1088: stop it first (./run.sh cluster stop)"
    return 1
  fi
  if running_pid tcpserver >/dev/null && running_pid httpserver >/dev/null && healthy; then
    log "usermgmt is already running"
    print_welcome
    return 0
  fi
  ensure_services
  # Buffer pool, redo log and local_infile before the seed (sql/mariadb/usermgmt.cnf);
  # a no-op when the server already has every setting.
  sql/mariadb/apply.sh
  # Kernel settings for high concurrency; reports rather than fails where refused.
  sysctl/tune.sh >/dev/null || log "sysctl/tune.sh could not apply every setting (see sysctl/tune.sh --check)"
  warn_if_exposed
  sql/setup.sh usermgmt "$MYSQL_APP_PASSWORD" >/dev/null
  ensure_build_tools
  build
  seed
  start_tcpserver
  start_httpserver
  wait_until_healthy
  ensure_demo_user
  print_welcome
}

stop_one() {
  local name=$1 pid i
  if ! pid=$(running_pid "$name"); then
    echo "$name: not running"
    rm -f "$RUN_DIR/$name.pid"
    return 0
  fi
  kill -TERM "$pid"
  for ((i = 0; i < STOP_TIMEOUT_SECS * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    echo "$name: did not stop within $STOP_TIMEOUT_SECS s of SIGTERM; killed (pid $pid)"
  else
    echo "$name: stopped (pid $pid)"
  fi
  rm -f "$RUN_DIR/$name.pid"
}

stop() {
  # The front end first, so that no request arrives at a back end going away.
  stop_one httpserver
  stop_one tcpserver
}

status() {
  local name pid up=0
  for name in tcpserver httpserver; do
    if pid=$(running_pid "$name"); then
      echo "$name: running (pid $pid), log $LOG_DIR/$name.log"
      up=$((up + 1))
    else
      echo "$name: stopped"
    fi
  done
  if [ "$up" = 2 ] && healthy; then
    echo "health: http://localhost:$HTTP_PORT/healthz answers 200 (front end reaches the back end)"
  elif [ "$up" -gt 0 ]; then
    echo "health: /healthz does not answer 200"
    return 1
  else
    return 3
  fi
}

# The fleet: everything under run/cluster, by scripts/cluster/fleet.sh.
cluster() {
  local fleet=(scripts/cluster/fleet.sh "${1:-start}" "$RUN_DIR/cluster")
  case "${1:-start}" in
  start)
    if running_pid httpserver >/dev/null || running_pid tcpserver >/dev/null; then
      log "the single node is running and holds port 1088: stop it first (./run.sh stop)"
      return 1
    fi
    ensure_build_tools
    sysctl/tune.sh >/dev/null || log "sysctl/tune.sh could not apply every setting (see sysctl/tune.sh --check)"
    build
    GALERA_BUFFER_POOL=${GALERA_BUFFER_POOL:-2G} FLEET_BIN_DIR=$BIN_DIR "${fleet[@]}"
    echo
    echo "usermgmt (fleet) is up: http://localhost:1088/"
    echo "  log in as $DEMO_USER / $DEMO_PASSWORD"
    if [ "${SEED_ACCOUNTS:-}" != 0 ]; then
      echo "  or as any seeded account, e.g. user00000001 / pass00000001"
    fi
    echo "  logs: $RUN_DIR/cluster/logs/   status: ./run.sh cluster status   stop: ./run.sh cluster stop"
    ;;
  stop | status) FLEET_BIN_DIR=$BIN_DIR "${fleet[@]}" ;;
  *)
    echo "usage: $0 cluster [start|stop|status]" >&2
    return 2
    ;;
  esac
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) status ;;
restart) stop && start ;;
cluster) cluster "${2:-start}" ;;
*)
  echo "usage: $0 [start|stop|status|restart|cluster [start|stop|status]]" >&2
  exit 2
  ;;
esac
