#!/usr/bin/env bash
# Makes sure MariaDB and Redis are installed and running, and that the project's
# secrets exist. Sourced by run.sh and test.sh; safe to run again and again.
#
# On a fresh Debian 12 machine it installs the packages with apt-get; where a
# service is installed but stopped, it starts it (there is no systemd here, so
# `service` is tried first and the daemon started directly if that fails).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${USERMGMT_STATE_DIR:-$ROOT/run}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

apt_install() {
  log "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  apt-get install -y -qq "$@" >/dev/null
}

mariadb_up() { mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }

wait_for() { # wait_for <what> <check-function> <seconds>
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    "$2" && return 0
    sleep 0.1
  done
  log "$1 did not come up within $3 s"
  return 1
}

ensure_mariadb() {
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server mariadb-client
  mariadb_up && return 0
  log "starting MariaDB"
  service mariadb start >/dev/null 2>&1 ||
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for MariaDB mariadb_up 60
}

# Redis's memory: a limit (REDIS_MAXMEMORY, default 4gb of this machine's
# 24 GiB) and the policy noeviction. Every key the system writes has a TTL, so
# any evicting policy could drop a throttle counter (fresh guesses for an
# attacker who fills memory) or a session index (the cap lifted); with
# noeviction Redis refuses writes at the limit and tcpserver answers 503
# instead. The throttles and the session cap bound what one account or
# address can store, so the limit is only reached by a flood from many.
REDIS_MAXMEMORY=${REDIS_MAXMEMORY:-4gb}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  if ! redis_up; then
    log "starting Redis"
    service redis-server start >/dev/null 2>&1 ||
      redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_for Redis redis_up 30 || return 1
  fi
  redis-cli -h 127.0.0.1 -p 6379 CONFIG SET maxmemory "$REDIS_MAXMEMORY" maxmemory-policy noeviction >/dev/null ||
    log "could not set Redis's maxmemory and policy (CONFIG SET refused)"
}

# Secrets live in $STATE_DIR/secrets, created once with mode 0600: the pepper
# mixed into every password hash, the RPC secret every connection from
# httpserver to tcpserver proves it knows (proto/src/handshake.rs), the
# application's MySQL password, and the password of the tests' own MySQL user
# (`usermgmt_test`, rights on the test database only), so that running the
# tests never touches the application's.
ensure_secrets() {
  mkdir -p "$STATE_DIR/secrets"
  chmod 700 "$STATE_DIR/secrets"
  if [ ! -s "$STATE_DIR/secrets/pepper" ]; then
    (umask 077 && head -c 32 /dev/urandom >"$STATE_DIR/secrets/pepper")
  fi
  if [ ! -s "$STATE_DIR/secrets/rpc_secret" ]; then
    (umask 077 && head -c 32 /dev/urandom >"$STATE_DIR/secrets/rpc_secret")
  fi
  local name
  for name in mysql_password mysql_test_password; do
    if [ ! -s "$STATE_DIR/secrets/$name" ]; then
      (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$STATE_DIR/secrets/$name")
    fi
  done
  PEPPER_FILE="$STATE_DIR/secrets/pepper"
  RPC_SECRET_FILE="$STATE_DIR/secrets/rpc_secret"
  MYSQL_APP_PASSWORD=$(cat "$STATE_DIR/secrets/mysql_password")
  MYSQL_TEST_PASSWORD=$(cat "$STATE_DIR/secrets/mysql_test_password")
  export PEPPER_FILE RPC_SECRET_FILE MYSQL_APP_PASSWORD MYSQL_TEST_PASSWORD
}

ensure_services() {
  ensure_mariadb && ensure_redis && ensure_secrets
}
