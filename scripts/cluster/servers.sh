# The fleet's own programs, tcpserver ×2 and httpserver ×2: start one, stop one,
# find its pid. Sourced by scripts/cluster/fleet.sh, which sets DIR, BIN_DIR,
# SECRETS, ROOT and the ports (scripts/cluster/ports.sh).
#
# Instance `name` (tcpserver1, httpserver2, ...) keeps its pid in
# DIR/name.pid (the tests read it to kill that process) and appends its
# output to DIR/logs/name.log.
# shellcheck shell=bash

STOP_TIMEOUT_SECS=20

# The pid in DIR/<name>.pid if that process is alive and runs <program> with
# that instance's --listen (a stale pid file may name a reused pid).
server_pid() { # server_pid NAME PORT
  local pid_file="$DIR/$1.pid" pid
  [ -s "$pid_file" ] || return 1
  pid=$(cat "$pid_file")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--listen $HOST:$2 " || return 1
  echo "$pid"
}

redis_cluster_nodes() {
  local i list=""
  for ((i = 0; i < 6; i++)); do list+="${list:+,}$HOST:$((REDIS_FIRST_PORT + i))"; done
  echo "$list"
}

# Pictures live in MariaDB (every tcpserver reads and writes them there, every
# httpserver serves them through GetAvatar), so the fleet needs no directory
# for them; --avatar-dir only names where picture files of earlier versions
# are imported from at start, and the fleet has none: an empty directory of its own.
prepare_avatar_import_dir() { mkdir -p "$DIR/avatars-import"; }

start_tcpserver() { # start_tcpserver N (1 or 2)
  local n=$1 name="tcpserver$1" port=${TCP_PORTS[$(($1 - 1))]} pid
  if pid=$(server_pid "$name" "$port"); then
    return 0
  fi
  log "starting $name on $HOST:$port"
  nohup "$BIN_DIR/tcpserver" --listen "$HOST:$port" \
    --mysql-url "mysql://usermgmt@$HOST:$MYSQL_PORT/usermgmt" \
    --mysql-password-file "$SECRETS/mysql_password" --pepper-file "$SECRETS/pepper" \
    --rpc-secret-file "$SECRETS/rpc_secret" --redis-cluster "$(redis_cluster_nodes)" \
    --metrics-listen "$HOST:${TCP_METRICS_PORTS[$((n - 1))]}" \
    --avatar-dir "$DIR/avatars-import" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
}

start_httpserver() { # start_httpserver N (1 or 2)
  local name="httpserver$1" port=${HTTP_PORTS[$(($1 - 1))]} pid
  if pid=$(server_pid "$name" "$port"); then
    return 0
  fi
  log "starting $name on $HOST:$port"
  # Both tcpservers (the httpserver balances its calls over them), and each
  # client's own address from HAProxy's PROXY v2 header, so that the
  # per-address limits see clients, not HAProxy.
  nohup "$BIN_DIR/httpserver" --listen "$HOST:$port" \
    --backend "$HOST:${TCP_PORTS[0]},$HOST:${TCP_PORTS[1]}" --trusted-proxy "$HOST" \
    --rpc-secret-file "$SECRETS/rpc_secret" \
    --static-dir "$ROOT/static" --html-dir "$ROOT/html" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
}

stop_server() { # stop_server NAME PORT
  local name=$1 pid i
  pid=$(server_pid "$name" "$2") || {
    rm -f "$DIR/$name.pid"
    return 0
  }
  kill -TERM "$pid"
  for ((i = 0; i < STOP_TIMEOUT_SECS * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    log "$name did not stop within $STOP_TIMEOUT_SECS s of SIGTERM; killed"
  fi
  rm -f "$DIR/$name.pid"
}

server_status() { # server_status NAME PORT
  local pid
  if pid=$(server_pid "$1" "$2"); then
    echo "$1: up (pid $pid, port $2), log $DIR/logs/$1.log"
  else
    echo "$1: down (port $2)"
  fi
}
