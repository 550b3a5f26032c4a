#!/usr/bin/env bash
# Installs sql/mariadb/usermgmt.cnf as /etc/mysql/mariadb.conf.d/90-usermgmt.cnf
# and restarts MariaDB once, only if that changed anything. Idempotent: a second
# run finds the same content and neither copies nor restarts.
#
#   sql/mariadb/apply.sh           # install and, if needed, restart
#   sql/mariadb/apply.sh --check   # say whether the running server matches, change nothing
#
# Runs as root (MariaDB's root over the unix socket). There is no systemd here,
# so the restart is `mariadb-admin shutdown` and then `service mariadb start`,
# or the daemon started directly when the init script is missing or fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/usermgmt.cnf
conf_dir=${MARIADB_CONF_DIR:-/etc/mysql/mariadb.conf.d}
dest=$conf_dir/90-usermgmt.cnf
my_cnf=${MARIADB_MY_CNF:-/etc/mysql/my.cnf}
# Seconds to wait for the server to stop (it dumps the buffer pool list) and to
# answer again after the start (it reads the redo log and the dump back).
stop_timeout=120
start_timeout=120

log() { printf '[%s] mariadb: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mariadb_up() { mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; }
server_pid() { cat /run/mysqld/mysqld.pid 2>/dev/null || true; }

# The values the running server reports for the settings in the file, next to
# the file's own, so a reader sees at once whether the restart took effect.
show_settings() {
  local names
  names=$(grep -E '^[a-z_]+ *=' "$src" | sed 's/ *=.*//' | paste -sd, -)
  mariadb -uroot -N -e "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES
    WHERE FIND_IN_SET(LOWER(VARIABLE_NAME), '$names') ORDER BY 1" |
    awk '{ printf "  %-40s %s\n", tolower($1), $2 }'
}

# Debian's my.cnf includes the directory; a hand-written one may not.
includes_conf_dir() {
  [ -f "$my_cnf" ] && grep -Eq "^[[:space:]]*!includedir[[:space:]]+${conf_dir%/}/?[[:space:]]*$" "$my_cnf"
}

if [ "${1:-}" = --check ]; then
  if cmp -s "$src" "$dest" && includes_conf_dir; then
    echo "installed: $dest matches $src"
  else
    echo "not installed: $dest differs from $src (or $my_cnf does not include $conf_dir)"
  fi
  mariadb_up && { echo "running server:"; show_settings; }
  exit 0
fi

changed=0
mkdir -p "$conf_dir"
if ! cmp -s "$src" "$dest"; then
  install -m 0644 "$src" "$dest"
  log "installed $dest"
  changed=1
fi
if ! includes_conf_dir; then
  printf '\n# Added by usermgmt sql/mariadb/apply.sh\n!includedir %s/\n' "${conf_dir%/}" >>"$my_cnf"
  log "added !includedir ${conf_dir%/}/ to $my_cnf"
  changed=1
fi
if [ "$changed" = 0 ]; then
  log "settings already installed; no restart"
  exit 0
fi

if mariadb_up; then
  pid=$(server_pid)
  log "restarting to apply the settings"
  mariadb-admin -uroot shutdown
  for ((i = 0; i < stop_timeout * 10; i++)); do
    { [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; } && ! mariadb_up && break
    sleep 0.1
  done
fi
# Under systemd the service manager owns the daemon. Without it (containers,
# this sandbox) Debian's SysV script waits ~30 s for its own maintenance login
# after the server is already up, so the daemon is started directly instead; it
# reads the same /etc/mysql/my.cnf either way.
if [ -d /run/systemd/system ]; then
  service mariadb start
else
  install -d -o mysql -g mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
for ((i = 0; i < start_timeout * 10; i++)); do
  mariadb_up && break
  sleep 0.1
done
if ! mariadb_up; then
  log "MariaDB did not answer within ${start_timeout}s after the restart; see /var/log/mysql/error.log"
  exit 1
fi
log "MariaDB is back with:"
show_settings >&2
