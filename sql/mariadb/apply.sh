#!/usr/bin/env bash
# Installs sql/mariadb/usermgmt.cnf as /etc/mysql/mariadb.conf.d/90-usermgmt.cnf
# and brings the running server in line: dynamic settings with SET GLOBAL, and
# one restart only if a setting that MariaDB reads at start-up differs (or the
# server is not running). Idempotent: a second run changes nothing.
#
#   sql/mariadb/apply.sh           # install, apply, restart if needed
#   sql/mariadb/apply.sh --check   # file against running server, change nothing
#
# Runs as root (MariaDB's root over the unix socket). There is no systemd here,
# so a restart is `mariadb-admin shutdown` and then `service mariadb start`
# (under systemd) or the daemon started directly.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/usermgmt.cnf
conf_dir=${MARIADB_CONF_DIR:-/etc/mysql/mariadb.conf.d}
dest=$conf_dir/90-usermgmt.cnf
my_cnf=${MARIADB_MY_CNF:-/etc/mysql/my.cnf}
# Seconds to wait for the server to stop (it writes the buffer-pool dump) and
# to answer again after the start (it reads the redo log).
stop_timeout=120
start_timeout=120

log() { printf '[%s] mariadb: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mariadb_up() { mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; }
server_pid() { cat /run/mysqld/mysqld.pid 2>/dev/null || true; }
running_value() { mariadb -uroot -N -e "SELECT @@GLOBAL.$1" 2>/dev/null || true; }

# "name value" for every setting in the file.
file_settings() { sed -n 's/^\([a-z_][a-z_0-9]*\) *= *\([^ #]*\).*$/\1 \2/p' "$src"; }

to_bytes() {
  case $1 in
    *[kK]) echo $((${1%?} * 1024)) ;;
    *[mM]) echo $((${1%?} * 1024 * 1024)) ;;
    *[gG]) echo $((${1%?} * 1024 * 1024 * 1024)) ;;
    *) echo "$1" ;;
  esac
}
# ON/OFF and 1/0 alike, sizes in bytes, so file and server values compare.
normalize() {
  local v=${1^^}
  case $v in ON | TRUE) echo 1 ;; OFF | FALSE) echo 0 ;; *) to_bytes "$v" ;; esac
}

show_settings() {
  local name value have status
  printf '  %-38s %-12s %-12s\n' setting file running
  while read -r name value; do
    have=$(running_value "$name")
    status=ok
    [ "$(normalize "$value")" = "$(normalize "$have")" ] || status=differs
    printf '  %-38s %-12s %-12s %s\n' "$name" "$value" "$have" "$status"
  done < <(file_settings)
}

# Debian's my.cnf includes the directory; a hand-written one may not.
includes_conf_dir() {
  [ -f "$my_cnf" ] && grep -Eq "^[[:space:]]*!includedir[[:space:]]+${conf_dir%/}/?[[:space:]]*$" "$my_cnf"
}

# Sets what MariaDB lets change at run time; prints the names of the settings
# that only a restart can change (back_log, skip_name_resolve, ...).
sync_running() {
  local name value want
  while read -r name value; do
    want=$(normalize "$value")
    [ "$want" = "$(normalize "$(running_value "$name")")" ] && continue
    if mariadb -uroot -e "SET GLOBAL $name = $want" 2>/dev/null; then
      log "set $name = $value on the running server"
    else
      echo "$name"
    fi
  done < <(file_settings)
}

if [ "${1:-}" = --check ]; then
  if cmp -s "$src" "$dest" && includes_conf_dir; then
    echo "installed: $dest matches $src"
  else
    echo "not installed: $dest differs from $src (or $my_cnf does not include $conf_dir)"
  fi
  if mariadb_up; then show_settings; else echo "MariaDB is not running"; fi
  exit 0
fi

mkdir -p "$conf_dir"
if ! cmp -s "$src" "$dest"; then
  install -m 0644 "$src" "$dest"
  log "installed $dest"
fi
if ! includes_conf_dir; then
  printf '\n# Added by usermgmt sql/mariadb/apply.sh\n!includedir %s/\n' "${conf_dir%/}" >>"$my_cnf"
  log "added !includedir ${conf_dir%/}/ to $my_cnf"
fi

if mariadb_up; then
  static=$(sync_running | paste -sd' ' -)
  if [ -z "$static" ]; then
    log "the running server has every setting; no restart"
    exit 0
  fi
  log "restarting once for: $static"
  pid=$(server_pid)
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
  log "MariaDB did not answer within ${start_timeout}s; see /var/log/mysql/error.log"
  exit 1
fi
log "MariaDB is up with:"
show_settings >&2
