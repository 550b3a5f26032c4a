#!/usr/bin/env bash
# The fleet's database, on its Galera cluster: the schema and the application's
# user (sql/setup.sh, as for the single node), HAProxy's check user, and the
# seeded accounts (the seed tool). Run on one node; Galera replicates it all
# (users and grants included) to the others, or hands it to a joining node in
# its first full copy.
#
#   scripts/cluster/database.sh SOCKET SECRETS_DIR BIN_DIR LOG
#
# SOCKET is a running node's unix socket (MariaDB's root logs in over it),
# SECRETS_DIR holds mysql_password, galera_check_password and pepper, BIN_DIR
# the seed binary; the seed's output goes to LOG.
#
# Settings (environment): SEED_ACCOUNTS [10000000, the seed tool's default;
# 0 skips seeding], as for the single node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root_dir=$(cd "$here/../.." && pwd)
[ $# -eq 4 ] || {
  echo "usage: $0 SOCKET SECRETS_DIR BIN_DIR LOG" >&2
  exit 2
}
socket=$1 secrets=$2 bin_dir=$3 seed_log=$4
log() { printf '[%s] database: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# Never the machine's own server: without a socket, sql/setup.sh and the
# seed would fall back to its default one.
[ -S "$socket" ] || {
  log "$socket is not a unix socket (no Galera node to set up)"
  exit 1
}

MARIADB_SOCKET=$socket "$root_dir/sql/setup.sh" usermgmt "$(cat "$secrets/mysql_password")" >/dev/null

# HAProxy's check logs in as a user with no privileges at all: SHOW STATUS needs none.
check_password=$(cat "$secrets/galera_check_password")
mariadb --no-defaults -uroot --socket="$socket" <<SQL
CREATE USER IF NOT EXISTS 'galera_check'@'127.0.0.1' IDENTIFIED BY '${check_password//\'/\'\'}';
ALTER USER 'galera_check'@'127.0.0.1' IDENTIFIED BY '${check_password//\'/\'\'}';
SQL

if [ "${SEED_ACCOUNTS:-}" != 0 ]; then
  log "seeding accounts (${SEED_ACCOUNTS:-default number}); a rerun only checks"
  if ! SEED_MYSQL_URL="mysql://root@localhost/usermgmt?socket=$socket" PEPPER_FILE="$secrets/pepper" \
    "$bin_dir/seed" >>"$seed_log" 2>&1; then
    log "seeding failed (see $seed_log)"
    exit 1
  fi
  tail -n 8 "$seed_log" | grep -m1 'seeded accounts' >&2 || true
fi
