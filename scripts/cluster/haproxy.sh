#!/usr/bin/env bash
# Runs the fleet's HAProxy (Debian's haproxy; scripts/cluster/haproxy.cfg) with
# its pid file, stats socket and the Galera check's login under DIR.
#
#   scripts/cluster/haproxy.sh start  DIR   start it unless it runs; check the
#                                           configuration first
#   scripts/cluster/haproxy.sh stop   DIR   stop it (SIGTERM)
#   scripts/cluster/haproxy.sh status DIR   pid, and each server's state as
#                                           HAProxy sees it (UP/DOWN, which
#                                           Galera node takes the writes)
#
# The addresses come from the environment (scripts/cluster/fleet.sh sets them):
#   FLEET_EDGE_BIND, FLEET_EDGE_MAXCONN   the edge (127.0.0.1:1088, 4000)
#   FLEET_HTTP1, FLEET_HTTP2              the httpservers
#   FLEET_MYSQL_BIND                      the MySQL listener tcpserver uses
#   FLEET_GALERA1..3                      the Galera nodes (node 1 first choice)
#   GALERA_CHECK_USER, GALERA_CHECK_PASSWORD_FILE  the check's MySQL login
#   FLEET_SEND_PROXY_V2                   set (to anything) to send a PROXY
#                                         protocol v2 header to the httpservers
#                                         (fleet.sh does: they are started with
#                                         --trusted-proxy)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

log() { printf '[%s] haproxy: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

running_pid() {
  local pid
  [ -s "$DIR/haproxy.pid" ] || return 1
  pid=$(head -n1 "$DIR/haproxy.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "haproxy .*-f $here/haproxy.cfg" || return 1
  echo "$pid"
}

# The check's client option file (its login, readable by root only), and the
# command HAProxy runs: HAProxy 2.6 gives external checks an empty environment,
# so a wrapper here tells scripts/cluster/galera-check.sh where the login is.
write_check() {
  local password
  password=$(cat "$GALERA_CHECK_PASSWORD_FILE")
  (
    umask 077
    printf '[client]\nuser = %s\npassword = %s\n' "$GALERA_CHECK_USER" "$password" >"$DIR/galera-check.cnf"
    printf '#!/bin/sh\nGALERA_CHECK_CNF=%q exec %q "$@"\n' "$DIR/galera-check.cnf" "$here/galera-check.sh" \
      >"$DIR/galera-check"
  )
  chmod 700 "$DIR/galera-check"
}

# "<server> <state>" for every server of a backend, from the stats socket.
server_states() { # server_states BACKEND
  command -v socat >/dev/null 2>&1 || return 0
  echo "show stat" | socat -t 2 stdio "unix-connect:$DIR/haproxy.sock" 2>/dev/null |
    awk -F, -v b="$1" '$1 == b && $2 != "BACKEND" && $2 != "FRONTEND" { print $2, $18 }'
}

cmd_start() {
  command -v haproxy >/dev/null 2>&1 || die "haproxy is not installed (apt-get install haproxy)"
  if pid=$(running_pid); then
    return 0
  fi
  write_check
  export FLEET_HAPROXY_DIR=$DIR FLEET_GALERA_CHECK=$DIR/galera-check
  haproxy -c -q -f "$here/haproxy.cfg" || die "the configuration does not parse (haproxy -c -f $here/haproxy.cfg)"
  log "starting: edge on $FLEET_EDGE_BIND, MySQL on $FLEET_MYSQL_BIND${FLEET_SEND_PROXY_V2:+, PROXY v2 to the httpservers}"
  haproxy -D -p "$DIR/haproxy.pid" -f "$here/haproxy.cfg" 2>>"$DIR/haproxy.log" ||
    die "haproxy did not start (see $DIR/haproxy.log)"
}

cmd_stop() {
  local pid i
  pid=$(running_pid) || return 0
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$DIR/haproxy.pid"
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    echo "haproxy: up (pid $pid), edge $FLEET_EDGE_BIND, MySQL $FLEET_MYSQL_BIND"
    server_states httpservers | sed 's/^/  edge -> /'
    server_states galera_writes | sed 's/^/  mysql -> /'
  else
    echo "haproxy: down"
  fi
}

[ $# -eq 2 ] || die "usage: $0 start|stop|status DIR"
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
case $1 in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) die "usage: $0 start|stop|status DIR" ;;
esac
