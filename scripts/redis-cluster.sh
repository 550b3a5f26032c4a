#!/usr/bin/env bash
# A Redis Cluster of six nodes on this machine: three masters, each with one
# replica, for tcpserver's `--redis-cluster` (./run.sh cluster, the tests).
#
#   scripts/redis-cluster.sh start  DIR FIRST_PORT   start the nodes, create the
#                                                    cluster once, wait until ok
#   scripts/redis-cluster.sh stop   DIR FIRST_PORT   stop the nodes (SHUTDOWN,
#                                                    then SIGTERM, then SIGKILL)
#   scripts/redis-cluster.sh status DIR FIRST_PORT   each node's role, its view
#                                                    of cluster_state, its slots
#
# The nodes listen on FIRST_PORT .. FIRST_PORT+5 (and, as every cluster node,
# on port+10000 for the cluster bus), on REDIS_CLUSTER_HOST [127.0.0.1].
# A port an outgoing connection holds at that moment cannot be bound:
# `start` then says which node did not start, at once. Node
# `p` keeps its config (nodes.conf), append-only file, log and pid file under
# DIR/p. Safe to run again: `start` on a running cluster starts only the nodes
# that are down (a killed node comes back and rejoins, as a replica if its
# replica took over) and creates the cluster only where no node has any slot.
#
# Settings (environment):
#   REDIS_CLUSTER_HOST          [127.0.0.1] the address the nodes bind and announce
#   REDIS_MAXMEMORY             [4gb] the data the cluster may hold, as for the
#                               single node (scripts/services.sh); each master
#                               holds a third of the slots, so each node gets a
#                               third of this (replicas hold their master's copy)
#   REDIS_CLUSTER_NODE_TIMEOUT  [5000] ms a master may be unreachable before its
#                               replica takes over (Redis's default is 15000);
#                               lower means a shorter failover window but more
#                               false failovers on a loaded machine
#   REDIS_CLUSTER_WAIT_SECS     [60] how long `start` waits for cluster_state:ok
#
# Choices, and why:
# - maxmemory-policy noeviction, as for the single node: every key has a TTL,
#   and an evicted throttle counter or session index would lift a limit;
#   at the limit writes are refused and tcpserver answers 503.
# - appendonly yes (appendfsync everysec): a master that restarts with no data
#   before its replica took over would come back still owning its slots but
#   empty, and its replica would then copy the empty data set: every session
#   and queued log-in of a third of the slots lost. With the append-only file
#   a restarted node reloads what it had (at most about a second lost).
#   No RDB snapshots (--save ""), as for the single node.
# - cluster-require-full-coverage no: while a dead master's replica is being
#   promoted only that master's slots fail; the other two thirds keep serving.
# - repl-diskless-sync-delay 0, and `start` waits until every replica is in
#   sync: Redis 7 otherwise waits 5 s before a replica's first sync, and a
#   replica that never synced will not take over from a master lost meanwhile.
set -euo pipefail

NODES=6
HOST=${REDIS_CLUSTER_HOST:-127.0.0.1}
NODE_TIMEOUT_MS=${REDIS_CLUSTER_NODE_TIMEOUT:-5000}
WAIT_SECS=${REDIS_CLUSTER_WAIT_SECS:-60}
STOP_WAIT_SECS=10

log() { printf '[%s] redis-cluster: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

# Bytes from Redis's memory notation: 4gb, 512mb, 100kb, 1g, 1000 (no unit: bytes).
to_bytes() {
  local value=${1,,} number unit
  [[ "$value" =~ ^([0-9]+)([a-z]*)$ ]] || die "cannot read the memory size '$1'"
  number=${BASH_REMATCH[1]}
  unit=${BASH_REMATCH[2]}
  case $unit in
  "" | b) echo "$number" ;;
  k) echo $((number * 1000)) ;;
  kb) echo $((number * 1024)) ;;
  m) echo $((number * 1000 * 1000)) ;;
  mb) echo $((number * 1024 * 1024)) ;;
  g) echo $((number * 1000 * 1000 * 1000)) ;;
  gb) echo $((number * 1024 * 1024 * 1024)) ;;
  *) die "unknown unit in the memory size '$1'" ;;
  esac
}

cli() { # cli <port> <command...>: one command, a short timeout, no retries
  timeout 5 redis-cli -h "$HOST" -p "$1" "${@:2}" 2>/dev/null
}

node_up() { [ "$(cli "$1" PING)" = PONG ]; }

# One field of CLUSTER INFO as node <port> sees it.
cluster_field() { # cluster_field <port> <field>
  cli "$1" CLUSTER INFO | tr -d '\r' | sed -n "s/^$2://p"
}

ports() {
  local i
  for ((i = 0; i < NODES; i++)); do echo $((FIRST_PORT + i)); done
}

# The pid in DIR/<port>/redis.pid if that process is alive and is the
# redis-server of that port (a stale pid file may name a reused pid).
node_pid() {
  local pid_file="$DIR/$1/redis.pid" pid
  [ -s "$pid_file" ] || return 1
  pid=$(cat "$pid_file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "redis-server.*:$1\b" || return 1
  echo "$pid"
}

start_node() {
  local port=$1 node_dir="$DIR/$1"
  if node_up "$port"; then
    # Something answers on the port: it must be a cluster node, and ours
    # (its data directory is this one's), not another cluster's.
    cli "$port" CLUSTER INFO | grep -q '^cluster_state:' ||
      die "port $port answers but is not a Redis Cluster node; choose another FIRST_PORT"
    [ "$(cli "$port" CONFIG GET dir | sed -n 2p)" = "$node_dir" ] ||
      die "port $port is a Redis node of another cluster (not under $DIR); choose another FIRST_PORT"
    return 0
  fi
  mkdir -p "$node_dir"
  # Where this start's lines begin in the log, to tell a node that gave up.
  touch "$node_dir/redis.log"
  wc -c <"$node_dir/redis.log" >"$node_dir/log.offset"
  redis-server \
    --bind "$HOST" --port "$port" --protected-mode no \
    --daemonize yes --dir "$node_dir" \
    --pidfile "$node_dir/redis.pid" --logfile "$node_dir/redis.log" \
    --cluster-enabled yes --cluster-config-file "$node_dir/nodes.conf" \
    --cluster-node-timeout "$NODE_TIMEOUT_MS" \
    --cluster-require-full-coverage no \
    --save "" --appendonly yes --appendfsync everysec \
    --repl-diskless-sync-delay 0 \
    --maxmemory "$NODE_MAXMEMORY" --maxmemory-policy noeviction
}

wait_until() { # wait_until <seconds> <check...>
  local secs=$1 i
  shift
  for ((i = 0; i < secs * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

all_up() {
  local port
  for port in $(ports); do node_up "$port" || return 1; done
}

# The line with which node <port> gave up since it was started here (its
# port taken, say), if it did.
node_gave_up() {
  local log="$DIR/$1/redis.log" offset
  [ -s "$DIR/$1/log.offset" ] || return 1
  offset=$(cat "$DIR/$1/log.offset")
  tail -c +"$((offset + 1))" "$log" 2>/dev/null | grep -m1 -E 'aborting|FATAL'
}

# Up, or stop waiting at once when a node gave up.
all_up_or_failed() {
  local port line
  for port in $(ports); do
    if line=$(node_gave_up "$port"); then
      die "node $port did not start: ${line#*# } (log: $DIR/$port/redis.log)"
    fi
  done
  all_up
}

# Every node says ok, knows all six nodes and sees all 16384 slots served,
# and every replica has its master's data (a replica that never finished its
# first sync refuses to take over: until then losing its master loses the slots).
all_ok() {
  local port
  for port in $(ports); do
    [ "$(cluster_field "$port" cluster_state)" = ok ] || return 1
    [ "$(cluster_field "$port" cluster_known_nodes)" = "$NODES" ] || return 1
    [ "$(cluster_field "$port" cluster_slots_ok)" = 16384 ] || return 1
    if cli "$port" INFO replication | grep -q '^role:slave'; then
      cli "$port" INFO replication | grep -q '^master_link_status:up' || return 1
    fi
  done
}

# How many nodes have any slot assigned in their view (0: not yet created).
nodes_with_slots() {
  local port count=0
  for port in $(ports); do
    [ "$(cluster_field "$port" cluster_slots_assigned)" != 0 ] && count=$((count + 1))
  done
  echo "$count"
}

cmd_start() {
  command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed (apt-get install redis-server)"
  NODE_MAXMEMORY=$(($(to_bytes "${REDIS_MAXMEMORY:-4gb}") / 3))
  mkdir -p "$DIR"
  local port
  for port in $(ports); do start_node "$port"; done
  wait_until 30 all_up_or_failed || die "not every node answers PING after 30 s (logs: $DIR/*/redis.log)"
  if [ "$(nodes_with_slots)" = 0 ]; then
    log "creating the cluster on $HOST:$FIRST_PORT..$((FIRST_PORT + NODES - 1))"
    local addresses=()
    for port in $(ports); do addresses+=("$HOST:$port"); done
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 ||
      die "redis-cli --cluster create failed (see $DIR/create.log)"
  fi
  wait_until "$WAIT_SECS" all_ok || {
    cmd_status >&2
    die "the cluster is not ok on every node after $WAIT_SECS s"
  }
  log "cluster ok on $HOST:$FIRST_PORT..$((FIRST_PORT + NODES - 1))"
}

# The process has exited: gone, or a zombie its parent has not reaped yet (a
# daemonized node's parent is this machine's init, which may reap late).
exited() {
  ! kill -0 "$1" 2>/dev/null || grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

cmd_stop() {
  local port pid
  for port in $(ports); do
    pid=$(node_pid "$port") || {
      rm -f "$DIR/$port/redis.pid"
      continue
    }
    # SHUTDOWN writes the append-only file out; SIGTERM does the same if the
    # node does not answer; SIGKILL if it does not exit at all.
    cli "$port" SHUTDOWN >/dev/null || kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until "$STOP_WAIT_SECS" exited "$pid"; then
      log "node $port did not stop within $STOP_WAIT_SECS s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/$port/redis.pid"
  done
}

cmd_status() {
  local port role state assigned slots
  for port in $(ports); do
    if ! node_up "$port"; then
      printf '%s:%s down\n' "$HOST" "$port"
      continue
    fi
    role=$(cli "$port" ROLE | head -1)
    state=$(cluster_field "$port" cluster_state)
    assigned=$(cluster_field "$port" cluster_slots_assigned)
    # This node's own line of CLUSTER NODES: fields 9.. are its slot ranges.
    slots=$(cli "$port" CLUSTER NODES | awk '$3 ~ /myself/ { s = ""; for (i = 9; i <= NF; i++) s = s (s ? "," : "") $i; print s }')
    printf '%s:%s role=%s cluster_state=%s slots_assigned=%s own_slots=%s\n' \
      "$HOST" "$port" "$role" "$state" "$assigned" "${slots:--}"
  done
}

[ $# -eq 3 ] || usage
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
FIRST_PORT=$3
[[ "$FIRST_PORT" =~ ^[0-9]+$ ]] && [ "$FIRST_PORT" -ge 1 ] && [ $((FIRST_PORT + NODES - 1)) -le 55535 ] ||
  die "FIRST_PORT must be a port number with room for $NODES ports (and +10000 for the cluster bus)"
case $1 in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) usage ;;
esac
