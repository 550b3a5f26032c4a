#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on this machine (Debian's galera-4), for
# ./run.sh cluster and the fleet tests.
#
#   scripts/cluster/galera.sh bootstrap DIR FIRST_PORT  start node 1 as a new
#                          cluster, only if no node of DIR is running (a first
#                          start creates its datadir); the caller may then load
#                          data into it alone, before the others copy it (SST)
#   scripts/cluster/galera.sh start  DIR FIRST_PORT    bootstrap if needed, then
#                          start every node that is down; each joins the
#                          running ones (IST from their write-set cache, or a
#                          full copy, SST, when it has no usable state);
#                          waits until every node is Synced
#   scripts/cluster/galera.sh start-node DIR FIRST_PORT N   start node N (1..3)
#                          and let it rejoin; never bootstraps
#   scripts/cluster/galera.sh stop   DIR FIRST_PORT    stop every node (SIGTERM,
#                          a clean shutdown, so the last one can bootstrap again)
#   scripts/cluster/galera.sh status DIR FIRST_PORT    each node's pid, port,
#                          state (wsrep_local_state_comment) and cluster size
#
# Node N (1..3) listens for SQL on FIRST_PORT+N-1 and its unix socket
# DIR/nodeN/mysqld.sock; Galera's group channel on GALERA_BASE_PORT+10(N-1),
# IST on that +1 and the rsync SST on that +2. Everything of node N is under
# DIR/nodeN: data/, my.cnf, error.log, node.pid (its pid, for the tests). The machine's own MariaDB
# (3306, /var/lib/mysql) is never touched: each node reads only its own
# my.cnf (--defaults-file).
#
# Bootstrapping is the one dangerous step of Galera: a node started with
# --wsrep-new-cluster while others run makes a second cluster that diverges.
# So this script bootstraps only when no node of DIR runs, and then the node
# Galera marked safe_to_bootstrap (the last to stop cleanly); after a crash of
# all three (none marked) the one with the highest recovered position
# (mariadbd --wsrep-recover). Every other start joins.
#
# Settings (environment):
#   GALERA_BASE_PORT     [4567] node 1's group port (4567, 4577, 4587)
#   GALERA_BUFFER_POOL   [1G] innodb_buffer_pool_size of each node; ten million
#                        accounts take 2.9 GB (sql/README.md): give the node
#                        taking writes that much for random log-ins from memory
#   GALERA_WAIT_SECS     [900] how long start waits for a node to be Synced (a
#                        full copy of ten million accounts takes minutes)
#   GALERA_CLUSTER_NAME  [usermgmt]
set -euo pipefail

NODES=3
BASE_PORT=${GALERA_BASE_PORT:-4567}
BUFFER_POOL=${GALERA_BUFFER_POOL:-1G}
WAIT_SECS=${GALERA_WAIT_SECS:-900}
CLUSTER_NAME=${GALERA_CLUSTER_NAME:-usermgmt}
PROVIDER=/usr/lib/galera/libgalera_smm.so
STOP_WAIT_SECS=120

log() { printf '[%s] galera: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "$*"
  exit 1
}
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

node_dir() { echo "$DIR/node$1"; }
sql_port() { echo $((FIRST_PORT + $1 - 1)); }
group_port() { echo $((BASE_PORT + 10 * ($1 - 1))); }
socket_of() { echo "$DIR/node$1/mysqld.sock"; }

# Runs SQL on node N as MariaDB's root over its unix socket (root@localhost
# authenticates by the OS user: this script runs as root).
node_sql() { # node_sql N SQL
  timeout 10 mariadb --no-defaults -uroot --socket="$(socket_of "$1")" -N -B -e "$2" 2>/dev/null
}

# One wsrep status variable of node N.
wsrep_status() { # wsrep_status N NAME
  node_sql "$1" "SHOW GLOBAL STATUS LIKE '$2'" | cut -f2
}

# The pid of node N's mariadbd if it runs (a stale pid file may name a reused pid).
node_pid() {
  local pid_file
  pid_file="$(node_dir "$1")/node.pid"
  [ -s "$pid_file" ] || return 1
  local pid
  pid=$(cat "$pid_file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--defaults-file=$(node_dir "$1")/my.cnf" || return 1
  echo "$pid"
}

running_nodes() {
  local n
  for ((n = 1; n <= NODES; n++)); do node_pid "$n" >/dev/null && echo "$n"; done
  return 0
}

synced() { [ "$(wsrep_status "$1" wsrep_local_state)" = 4 ]; }

wait_until() { # wait_until SECONDS CHECK...
  local secs=$1 i
  shift
  for ((i = 0; i < secs * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

write_config() {
  local n=$1 dir gport addresses="" m
  dir=$(node_dir "$n")
  gport=$(group_port "$n")
  for ((m = 1; m <= NODES; m++)); do
    addresses+="${addresses:+,}127.0.0.1:$(group_port "$m")"
  done
  # Donors for a full copy: the other nodes, the one after this first. An rsync
  # donor is blocked for writes while it copies, so node 1 (HAProxy's first
  # choice for writes) is asked last.
  local donors="" k
  for ((k = 2; k <= NODES; k++)); do
    [ "$k" = "$n" ] || donors+="node$k,"
  done
  [ "$n" = 1 ] || donors+="node1,"
  cat >"$dir/my.cnf.tmp" <<CNF
# Node $n of the Galera cluster in $DIR. Written by scripts/cluster/galera.sh;
# edits are overwritten at the next start.
[mysqld]
user = mysql
datadir = $dir/data
socket = $dir/mysqld.sock
pid-file = $dir/mysqld.pid
log-error = $dir/error.log
bind-address = 127.0.0.1
port = $(sql_port "$n")
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
local_infile = ON
max_connections = 500
back_log = 1024
thread_cache_size = 500
innodb_buffer_pool_size = $BUFFER_POOL
innodb_log_file_size = 512M
innodb_flush_log_at_trx_commit = 2
innodb_flush_neighbors = 0
innodb_io_capacity = 2000

# What Galera requires: row-based replication, InnoDB, interleaved auto-increment
# locks (no table lock for inserts, which replication cannot order).
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2

wsrep_on = ON
wsrep_provider = $PROVIDER
wsrep_cluster_name = $CLUSTER_NAME
wsrep_cluster_address = gcomm://$addresses
wsrep_node_name = node$n
wsrep_node_address = 127.0.0.1:$gport
# IST on the group port + 1; a 256 MB write-set cache lets a node that was
# down for minutes of sign-ups catch up by IST instead of a full copy.
wsrep_provider_options = "base_port=$gport;ist.recv_addr=127.0.0.1:$((gport + 1));gcache.size=256M"
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:$((gport + 2))
wsrep_sst_donor = "${donors%,},"
wsrep_slave_threads = 2
# Each node gives auto-increment ids offset by its index, stepping by the
# cluster size, so two nodes never hand out the same id: ids have gaps.
wsrep_auto_increment_control = ON
CNF
  mv "$dir/my.cnf.tmp" "$dir/my.cnf"
}

# A new, empty datadir with the system tables; root logs in by the OS user only.
init_datadir() {
  local n=$1 dir
  dir=$(node_dir "$n")
  log "node $n: creating its datadir"
  mariadb-install-db --defaults-file="$dir/my.cnf" --user=mysql --skip-test-db \
    --auth-root-authentication-method=socket >"$dir/install.log" 2>&1 ||
    die "node $n: mariadb-install-db failed (see $dir/install.log)"
}

prepare_node() {
  local n=$1 dir
  dir=$(node_dir "$n")
  mkdir -p "$dir/data"
  touch "$dir/error.log"
  chown mysql:mysql "$dir" "$dir/data" "$dir/error.log"
  write_config "$n"
}

launch() { # launch N [--wsrep-new-cluster]
  local n=$1 dir
  dir=$(node_dir "$n")
  shift
  log "node $n: starting on port $(sql_port "$n") ${1:+($1)}"
  # Its own session, so that a terminal's Ctrl-C does not reach it (setsid
  # execs, so $! is mariadbd's pid). Its pid goes to node.pid at once: the
  # server writes its own mysqld.pid only after a full copy (SST) has arrived.
  setsid /usr/sbin/mariadbd --defaults-file="$dir/my.cnf" "$@" </dev/null >>"$dir/mysqld.out" 2>&1 &
  echo $! >"$dir/node.pid"
}

wait_synced() { # wait_synced N
  local n=$1 i
  for ((i = 0; i < WAIT_SECS * 10; i++)); do
    synced "$n" && return 0
    if ((i > 50)) && ! node_pid "$n" >/dev/null; then
      tail -n 20 "$(node_dir "$n")/error.log" >&2
      die "node $n exited while starting (see $(node_dir "$n")/error.log)"
    fi
    sleep 0.1
  done
  die "node $n is not Synced after $WAIT_SECS s (see $(node_dir "$n")/error.log)"
}

# The node to bootstrap from when none runs: the one Galera marked safe, else
# (all crashed) the one with the highest recovered sequence number.
bootstrap_candidate() {
  local n state best=1 best_seqno=-2 seqno
  for ((n = 1; n <= NODES; n++)); do
    state="$(node_dir "$n")/data/grastate.dat"
    [ -f "$state" ] || continue
    if grep -q '^safe_to_bootstrap: *1' "$state"; then
      echo "$n"
      return 0
    fi
  done
  for ((n = 1; n <= NODES; n++)); do
    [ -f "$(node_dir "$n")/data/grastate.dat" ] || continue
    # The server writes the position to its error log: a log of its own here.
    local recover_log
    recover_log="$(node_dir "$n")/recover.log"
    install -o mysql -g mysql -m 0640 /dev/null "$recover_log"
    /usr/sbin/mariadbd --defaults-file="$(node_dir "$n")/my.cnf" --log-error="$recover_log" --wsrep-recover \
      >/dev/null 2>&1 || true
    seqno=$(sed -n 's/.*Recovered position: [^:]*:\(-\{0,1\}[0-9]*\).*/\1/p' "$recover_log" | tail -n1)
    seqno=${seqno:--1}
    if ((seqno > best_seqno)); then
      best=$n
      best_seqno=$seqno
    fi
  done
  sed -i 's/^safe_to_bootstrap: *0/safe_to_bootstrap: 1/' "$(node_dir "$best")/data/grastate.dat"
  log "no node was marked safe to bootstrap; node $best has the highest position ($best_seqno)"
  echo "$best"
}

cmd_bootstrap() {
  [ -e "$PROVIDER" ] || die "$PROVIDER is missing (apt-get install galera-4)"
  if [ -n "$(running_nodes)" ]; then
    return 0
  fi
  local n
  for ((n = 1; n <= NODES; n++)); do prepare_node "$n"; done
  if [ ! -d "$(node_dir 1)/data/mysql" ] && [ ! -f "$(node_dir 2)/data/grastate.dat" ] &&
    [ ! -f "$(node_dir 3)/data/grastate.dat" ]; then
    init_datadir 1
    n=1
  else
    n=$(bootstrap_candidate)
  fi
  launch "$n" --wsrep-new-cluster
  wait_synced "$n"
  log "node $n: bootstrapped a new cluster"
}

cmd_start_node() { # cmd_start_node N
  local n=$1
  if node_pid "$n" >/dev/null; then
    return 0
  fi
  [ -n "$(running_nodes)" ] || die "no node runs: node $n cannot join (use start, which bootstraps)"
  prepare_node "$n"
  launch "$n"
}

cmd_start() {
  cmd_bootstrap
  local n
  for ((n = 1; n <= NODES; n++)); do
    node_pid "$n" >/dev/null && continue
    cmd_start_node "$n"
    # One joiner at a time: two full copies at once would share one donor.
    wait_synced "$n"
  done
  log "cluster of $(wsrep_status "$(running_nodes | head -n1)" wsrep_cluster_size) nodes on ports $FIRST_PORT..$((FIRST_PORT + NODES - 1))"
}

cmd_stop() {
  local n pid
  # One at a time, node 1 last: Galera marks the last node to leave
  # safe_to_bootstrap, and the next start bootstraps from it.
  for ((n = NODES; n >= 1; n--)); do
    pid=$(node_pid "$n") || continue
    kill -TERM "$pid"
    wait_until "$STOP_WAIT_SECS" bash -c "! kill -0 $pid 2>/dev/null" ||
      {
        log "node $n did not stop within $STOP_WAIT_SECS s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
      }
  done
  return 0
}

cmd_status() {
  local n pid
  for ((n = 1; n <= NODES; n++)); do
    if pid=$(node_pid "$n"); then
      printf 'galera node%s: up (pid %s, port %s) state=%s cluster_size=%s cluster_status=%s\n' "$n" "$pid" \
        "$(sql_port "$n")" "$(wsrep_status "$n" wsrep_local_state_comment)" \
        "$(wsrep_status "$n" wsrep_cluster_size)" "$(wsrep_status "$n" wsrep_cluster_status)"
    else
      printf 'galera node%s: down (port %s)\n' "$n" "$(sql_port "$n")"
    fi
  done
}

[ $# -ge 3 ] || usage
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
FIRST_PORT=$3
[[ "$FIRST_PORT" =~ ^[0-9]+$ ]] || die "FIRST_PORT must be a port number"
case $1 in
bootstrap) cmd_bootstrap ;;
start) cmd_start ;;
start-node)
  [[ "${4:-}" =~ ^[1-3]$ ]] || usage
  cmd_start_node "$4"
  ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) usage ;;
esac
