#!/usr/bin/env bash
# Creates a database, a MySQL user for it and the tables. Idempotent: running it
# again changes nothing but that user's password (set to the one given).
#
#   sql/setup.sh <database> <password> [<user>]
#
# <user> defaults to `usermgmt`, the application's account (run.sh and
# perf/run.sh: `sql/setup.sh usermgmt "$MYSQL_APP_PASSWORD"`). test.sh passes
# its own user, `usermgmt_test`, so that running the tests never resets the
# password the running system logs in with.
#
# Runs as MariaDB's root over the unix socket: the machine's server's, or the
# one named by MARIADB_SOCKET (a node of the fleet's Galera cluster,
# scripts/cluster/database.sh). The user gets the same narrow
# rights whoever it is: read and write rows of <database>, nothing else (no
# schema changes; those are made here, by sql/schema.sql).
set -euo pipefail
usage="usage: sql/setup.sh <database> <password> [<user>]"
db=${1:?$usage}
password=${2:?$usage}
user=${3:-usermgmt}
here=$(cd "$(dirname "$0")" && pwd)
[[ $db =~ ^[A-Za-z0-9_]+$ ]] || { echo "bad database name: $db" >&2; exit 2; }
[[ $user =~ ^[A-Za-z0-9_]+$ ]] || { echo "bad user name: $user" >&2; exit 2; }
password_sql=${password//\'/\'\'}
root=(mariadb -uroot ${MARIADB_SOCKET:+--socket="$MARIADB_SOCKET"})

"${root[@]}" <<SQL
CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$password_sql';
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$password_sql';
ALTER USER '$user'@'localhost' IDENTIFIED BY '$password_sql';
ALTER USER '$user'@'127.0.0.1' IDENTIFIED BY '$password_sql';
GRANT SELECT, INSERT, UPDATE, DELETE ON \`$db\`.* TO '$user'@'localhost', '$user'@'127.0.0.1';
SQL
# The schema, and its migrations: each statement of schema.sql is idempotent,
# and a table that needs filling from existing rows (avatars) is filled in the
# statement that creates it, so only ever once.
"${root[@]}" "$db" <"$here/schema.sql"
