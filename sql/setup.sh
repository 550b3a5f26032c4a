#!/usr/bin/env bash
# Creates a database, the application's MySQL user and the tables. Idempotent:
# running it again changes nothing but the user's password (set to the one given).
#
#   sql/setup.sh <database> <app password>
#
# Runs as MariaDB's root over the unix socket. The application itself connects as
# `usermgmt`, which may only read and write rows of the usermgmt databases.
set -euo pipefail
db=${1:?usage: sql/setup.sh <database> <app password>}
password=${2:?usage: sql/setup.sh <database> <app password>}
here=$(cd "$(dirname "$0")" && pwd)
[[ $db =~ ^[A-Za-z0-9_]+$ ]] || { echo "bad database name: $db" >&2; exit 2; }
password_sql=${password//\'/\'\'}

mariadb -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'usermgmt'@'localhost' IDENTIFIED BY '$password_sql';
CREATE USER IF NOT EXISTS 'usermgmt'@'127.0.0.1' IDENTIFIED BY '$password_sql';
ALTER USER 'usermgmt'@'localhost' IDENTIFIED BY '$password_sql';
ALTER USER 'usermgmt'@'127.0.0.1' IDENTIFIED BY '$password_sql';
GRANT SELECT, INSERT, UPDATE, DELETE ON \`$db\`.* TO 'usermgmt'@'localhost', 'usermgmt'@'127.0.0.1';
SQL
mariadb -uroot "$db" <"$here/schema.sql"
