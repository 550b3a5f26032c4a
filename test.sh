#!/usr/bin/env bash
# Runs every test of the project against real MariaDB and Redis.
#
# On a fresh Debian 12 machine it first installs and starts what the tests need
# (MariaDB, Redis, Chromium for the browser test, Prometheus and schemathesis
# for the monitoring tests), creates the separate test
# database `usermgmt_test` and the tests' own MySQL user `usermgmt_test` (rights
# on that database only), and then runs `cargo test --workspace`. Extra
# arguments go to cargo test (`./test.sh -p proto`, `./test.sh -- --nocapture`).
#
# The running system shares the MariaDB server, so after the tests this checks
# that they stayed out of its way: the tests' user cannot read the `usermgmt`
# database, and the application user's password hash is what it was before.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/services.sh

TEST_DB=usermgmt_test
TEST_USER=usermgmt_test
APP_USER=usermgmt

# The stored password hashes of the application user, one line per host.
app_user_hashes() {
  mariadb -uroot -N -B -e \
    "SELECT host, authentication_string FROM mysql.user WHERE user = '$APP_USER' ORDER BY host"
}

# Runs SQL as the tests' MySQL user over TCP, as the tests connect.
as_test_user() {
  MYSQL_PWD="$MYSQL_TEST_PASSWORD" mariadb --protocol=tcp -h127.0.0.1 -P3306 -u"$TEST_USER" -N -B -e "$1"
}

# Fails the run if the tests could have touched the running system's data:
# reading `usermgmt` must be refused, and, so that this holds on a machine where
# that database does not exist yet, the user may hold no privilege (global,
# database or table) beyond the test database.
check_isolation() {
  local before=$1 failed=0
  local beyond_test_db="SELECT
    (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE <> 'USAGE')
    + (SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES WHERE TABLE_SCHEMA <> '$TEST_DB')
    + (SELECT COUNT(*) FROM information_schema.TABLE_PRIVILEGES WHERE TABLE_SCHEMA <> '$TEST_DB')"
  if ! as_test_user 'SELECT 1' >/dev/null; then
    log "isolation check: cannot log in as $TEST_USER"
    failed=1
  elif as_test_user 'SELECT 1 FROM usermgmt.users LIMIT 1' >/dev/null 2>&1 ||
    as_test_user 'SHOW DATABASES' | grep -qx usermgmt ||
    [ "$(as_test_user "$beyond_test_db")" != 0 ]; then
    log "isolation check: the tests' MySQL user $TEST_USER can read the usermgmt database"
    failed=1
  fi
  if [ "$(app_user_hashes)" != "$before" ]; then
    log "isolation check: the password of the application's MySQL user $APP_USER changed during the tests"
    failed=1
  fi
  return $failed
}

# The tests' private Redis Clusters (tcpserver/tests/util/cluster.rs) listen
# on ports from 21000 to 22699 and their cluster buses 10000 above. Where the
# ephemeral range covers them (sysctl/tune.sh widens it to 10240-65535), an
# outgoing connection may hold one of those ports just when a killed node
# restarts on it ("Failed listening on port"): keep them out of automatic
# choice. Best effort, added to what is reserved already; listeners may
# still bind reserved ports.
reserve_test_cluster_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports current want=21000-22699,31000-32699
  current=$(cat "$file" 2>/dev/null) || return 0
  case ",$current," in *",$want,"*) return 0 ;; esac
  sysctl -q -w "net.ipv4.ip_local_reserved_ports=${current:+$current,}$want" >/dev/null 2>&1 ||
    log "could not reserve the test clusters' ports $want from the ephemeral range"
}

ensure_services
reserve_test_cluster_ports
# Chromium and chromedriver for the browser test (e2e/tests/browser.rs); never skipped.
e2e/tests/browser/setup.sh
# Prometheus (Debian's package) and schemathesis (PyPI, in a virtual environment
# under target/) for the monitoring tests (e2e/tests/prometheus.rs, openapi.rs).
e2e/tests/prometheus/setup.sh
# HAProxy (Debian's package) for the PROXY protocol test (e2e/tests/proxy_protocol.rs).
e2e/tests/haproxy/setup.sh
app_hashes_before=$(app_user_hashes)
sql/setup.sh "$TEST_DB" "$MYSQL_TEST_PASSWORD" "$TEST_USER"

export USERMGMT_TEST_MYSQL_URL="mysql://${TEST_USER}:${MYSQL_TEST_PASSWORD}@127.0.0.1:3306/${TEST_DB}"
# Redis database 1: the tests' keys (each test under its own prefix) stay apart
# from the running system's in database 0, which a benchmark may have filled
# with millions of sessions that every cleanup SCAN would otherwise walk.
export USERMGMT_TEST_REDIS_URL="redis://127.0.0.1:6379/1"
export USERMGMT_TEST_PEPPER_FILE="$PEPPER_FILE"

# The tcpserver tests also run on Redis Cluster: each test binary that needs
# one starts its own six nodes (scripts/redis-cluster.sh, ports from 27000,
# data under target/tmp/redis-clusters/) and a watcher that stops them when the
# binary exits. Should a binary be killed before its watcher ran, whatever is
# left there is stopped here when this script ends, however it ends (each
# directory is named after its binary's pid: one still running, of another
# run of this script, keeps its cluster).
stop_test_clusters() {
  local dir first owner
  for dir in "${CARGO_TARGET_DIR:-target}"/tmp/redis-clusters/*/; do
    [ -d "$dir" ] || continue
    owner=$(basename "$dir")
    owner=${owner%%-*}
    [[ "$owner" =~ ^[0-9]+$ ]] && kill -0 "$owner" 2>/dev/null && continue
    first=$(find "$dir" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' -printf '%f\n' | sort -n | head -1)
    [ -n "$first" ] && scripts/redis-cluster.sh stop "$dir" "$first" >/dev/null 2>&1
    rm -rf "$dir"
  done
}
trap stop_test_clusters EXIT

# With no arguments every crate is tested; with `-p <crate>` only that one.
if [ $# -gt 0 ]; then
  cargo test "$@"
else
  cargo test --workspace
  # The short pass of every fuzz target: seed corpus and saved crash inputs
  # replayed through each target's checks (fuzz/ is its own cargo project).
  fuzz/smoke.sh
fi
check_isolation "$app_hashes_before"
