#!/usr/bin/env bash
# The whole fleet on this machine: a Galera cluster of three MariaDB nodes,
# HAProxy (the edge on :1088 and the MySQL address that follows the Galera
# node taking writes), a Redis Cluster of three masters and three replicas,
# two tcpservers and two httpservers. ./run.sh cluster calls it with
# DIR=run/cluster; the fleet tests with a directory and FLEET_PORT_BASE of
# their own (e2e/tests/fleet.rs).
#
#   scripts/cluster/fleet.sh start  DIR   start whatever is not running (a
#                                         killed process comes back and rejoins;
#                                         nothing running is restarted), seed,
#                                         wait until the edge answers
#   scripts/cluster/fleet.sh stop   DIR   stop everything (front to back)
#   scripts/cluster/fleet.sh status DIR   every process (pid, port, up/down),
#                                         Redis Cluster and Galera health, and
#                                         the node HAProxy sends writes to
#
# Settings (environment):
#   FLEET_PORT_BASE   [unset: 1088 and the fixed ports of scripts/cluster/ports.sh]
#   FLEET_BIN_DIR     [target/release] where tcpserver, httpserver and seed are
#   FLEET_STATE_DIR   [run] its secrets/ holds the pepper, the RPC secret and
#                     the MySQL passwords, made once as for the single node
#                     (scripts/services.sh: the same files, so ./run.sh and
#                     ./run.sh cluster share them), plus galera_check_password
#   SEED_ACCOUNTS     [10,000,000] accounts to seed into the first Galera node
#                     before the other two join (they then copy its files,
#                     which is much faster than replicating ten million rows);
#                     0 skips seeding
#   GALERA_BUFFER_POOL, REDIS_MAXMEMORY: see galera.sh and redis-cluster.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
# log, apt_install and ensure_secrets: the single node's, with the fleet's state dir.
USERMGMT_STATE_DIR=${FLEET_STATE_DIR:-$ROOT/run}
source "$ROOT/scripts/services.sh"
source "$here/ports.sh"
source "$here/servers.sh"
# Open-files soft limit up to the hard limit, for 2000 concurrent connections
# through the edge (the servers and HAProxy inherit it).
source "$ROOT/sysctl/limits.sh"

START_TIMEOUT_SECS=60

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

ensure_packages() {
  local missing=()
  [ -e /usr/lib/galera/libgalera_smm.so ] || missing+=(galera-4)
  command -v rsync >/dev/null 2>&1 || missing+=(rsync)
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
  command -v socat >/dev/null 2>&1 || missing+=(socat)
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server mariadb-client)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  [ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
}

ensure_fleet_secrets() {
  ensure_secrets
  SECRETS=$STATE_DIR/secrets
  if [ ! -s "$SECRETS/galera_check_password" ]; then
    (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$SECRETS/galera_check_password")
  fi
}

galera() { "$here/galera.sh" "$1" "$DIR/galera" "$GALERA_FIRST_PORT" "${@:2}"; }

# A running Galera node's socket, for the root's statements.
any_galera_socket() {
  local n
  for n in 1 2 3; do
    if mariadb --no-defaults -uroot --socket="$DIR/galera/node$n/mysqld.sock" -e 'SELECT 1' >/dev/null 2>&1; then
      echo "$DIR/galera/node$n/mysqld.sock"
      return 0
    fi
  done
  return 1
}

haproxy_env() {
  export FLEET_EDGE_BIND="$HOST:$EDGE_PORT" FLEET_EDGE_MAXCONN=4000 \
    FLEET_HTTP1="$HOST:${HTTP_PORTS[0]}" FLEET_HTTP2="$HOST:${HTTP_PORTS[1]}" \
    FLEET_MYSQL_BIND="$HOST:$MYSQL_PORT" \
    FLEET_GALERA1="$HOST:$GALERA_FIRST_PORT" FLEET_GALERA2="$HOST:$((GALERA_FIRST_PORT + 1))" \
    FLEET_GALERA3="$HOST:$((GALERA_FIRST_PORT + 2))" \
    GALERA_CHECK_USER=galera_check GALERA_CHECK_PASSWORD_FILE="$SECRETS/galera_check_password" \
    FLEET_SEND_PROXY_V2=1
}

# Keeps the kernel from handing the fleet's ports to outgoing connections as
# their local port: sysctl/tune.sh widens the ephemeral range to 10240-65535,
# which holds every Redis cluster bus port (node port + 10000) and the test
# fleets' ports, and a node cannot listen on a port some connection happens
# to hold at that moment ("Failed listening on port ... (cluster)"). Reserved
# ports can still be bound by a listener; only automatic choice skips them.
# Best effort: added to what is reserved already; refused without the right.
reserve_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports current want
  want="$((REDIS_FIRST_PORT + 10000))-$((REDIS_FIRST_PORT + 10005))"
  [ -n "${FLEET_PORT_BASE:-}" ] && want+=",$FLEET_PORT_BASE-$((FLEET_PORT_BASE + 65))"
  current=$(cat "$file" 2>/dev/null) || return 0
  sysctl -q -w "net.ipv4.ip_local_reserved_ports=${current:+$current,}$want" >/dev/null 2>&1 ||
    log "could not reserve ports $want from the ephemeral range (net.ipv4.ip_local_reserved_ports)"
}

# One HTTP request with bash's /dev/tcp; prints the status line and the body.
http_request() { # http_request PORT METHOD PATH [JSON BODY]
  local body=${4:-}
  timeout 10 bash -c '
    exec 3<>"/dev/tcp/$0" || exit 1
    printf "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s" \
      "$1" "$2" "${#3}" "$3" >&3
    cat <&3' "$HOST/$1" "$2" "$3" "$body" 2>/dev/null
}

healthy() { http_request "$1" GET /healthz | head -n1 | grep -q ' 200 '; }

# Both httpservers UP in HAProxy's view (its /healthz checks), and the edge
# answering. The httpservers are not asked directly: once they trust HAProxy's
# PROXY header (--trusted-proxy 127.0.0.1) they refuse a loopback connection
# without one.
edge_servers_up() { [ "$("$here/haproxy.sh" status "$DIR/haproxy" | grep -c '^  edge -> .* UP$')" = 2 ]; }

wait_until_healthy() {
  local i
  for ((i = 0; i < START_TIMEOUT_SECS * 5; i++)); do
    edge_servers_up && healthy "$EDGE_PORT" && return 0
    sleep 0.2
  done
  log "the edge and both httpservers were not healthy within $START_TIMEOUT_SECS s; see $DIR/logs/"
  "$here/haproxy.sh" status "$DIR/haproxy" >&2
  return 1
}

ensure_demo_user() {
  local reply
  reply=$(http_request "$EDGE_PORT" POST /signUp '{"username":"demo","password":"demo-password","nickname":"Demo"}')
  case $(head -n1 <<<"$reply") in
  *" 201 "* | *" 409 "*) ;;
  *) log "could not create the demo account: $(head -n1 <<<"$reply")" ;;
  esac
}

cmd_start() {
  ensure_packages
  ensure_fleet_secrets
  reserve_ports
  mkdir -p "$DIR/logs"
  for bin in tcpserver httpserver seed; do
    [ -x "$BIN_DIR/$bin" ] || die "no $BIN_DIR/$bin (build it, or set FLEET_BIN_DIR)"
  done
  # The first node alone, seeded, then the others: they copy its files.
  galera bootstrap
  local socket
  socket=$(any_galera_socket) || die "no Galera node of $DIR/galera answers on its socket"
  "$here/database.sh" "$socket" "$SECRETS" "$BIN_DIR" "$DIR/logs/seed.log"
  galera start
  haproxy_env
  "$here/haproxy.sh" start "$DIR/haproxy"
  "$ROOT/scripts/redis-cluster.sh" start "$DIR/redis" "$REDIS_FIRST_PORT"
  prepare_avatar_import_dir
  start_tcpserver 1
  start_tcpserver 2
  start_httpserver 1
  start_httpserver 2
  wait_until_healthy
  ensure_demo_user
}

cmd_stop() {
  # Front to back, so that no request arrives at a tier going away.
  stop_server httpserver1 "${HTTP_PORTS[0]}"
  stop_server httpserver2 "${HTTP_PORTS[1]}"
  haproxy_env
  "$here/haproxy.sh" stop "$DIR/haproxy"
  stop_server tcpserver1 "${TCP_PORTS[0]}"
  stop_server tcpserver2 "${TCP_PORTS[1]}"
  "$ROOT/scripts/redis-cluster.sh" stop "$DIR/redis" "$REDIS_FIRST_PORT"
  galera stop
}

# The Galera node a new connection through HAProxy lands on: the one taking writes.
galera_writer() {
  local password
  password=$(cat "$SECRETS/galera_check_password")
  MYSQL_PWD=$password timeout 5 mariadb --no-defaults --protocol=tcp -h "$HOST" -P "$MYSQL_PORT" -ugalera_check \
    -N -B -e 'SELECT CONCAT(@@wsrep_node_name, " (port ", @@port, ")")' 2>/dev/null || echo "none (no node reachable)"
}

cmd_status() {
  ensure_fleet_secrets
  local up=0
  server_status httpserver1 "${HTTP_PORTS[0]}"
  server_status httpserver2 "${HTTP_PORTS[1]}"
  server_status tcpserver1 "${TCP_PORTS[0]}"
  server_status tcpserver2 "${TCP_PORTS[1]}"
  haproxy_env
  "$here/haproxy.sh" status "$DIR/haproxy"
  echo "redis cluster:"
  "$ROOT/scripts/redis-cluster.sh" status "$DIR/redis" "$REDIS_FIRST_PORT" | while read -r node rest; do
    # The node's pid beside what redis-cluster.sh says of it.
    local pid_file="$DIR/redis/${node##*:}/redis.pid" pid=-
    [ -s "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null && pid=$(cat "$pid_file")
    echo "  $node (pid $pid) $rest"
  done
  echo "galera:"
  galera status | sed 's/^/  /'
  echo "  writes go to: $(galera_writer)"
  if healthy "$EDGE_PORT"; then
    echo "edge: http://localhost:$EDGE_PORT/healthz answers 200"
  else
    echo "edge: http://localhost:$EDGE_PORT/healthz does not answer 200"
    up=1
  fi
  return $up
}

die() {
  log "$*"
  exit 1
}

[ $# -eq 2 ] || usage
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
BIN_DIR=${FLEET_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
SECRETS=$STATE_DIR/secrets
case $1 in
start) cmd_start ;;
stop)
  ensure_fleet_secrets
  cmd_stop
  ;;
status) cmd_status ;;
*) usage ;;
esac
