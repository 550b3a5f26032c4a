#!/usr/bin/env bash
# Kernel and file-descriptor settings for thousands of concurrent connections
# on one machine (load generator, httpserver, tcpserver, MariaDB and Redis all
# talk over loopback).
#
#   sysctl/tune.sh           apply what is below the recommendation, report the rest
#   sysctl/tune.sh --check   only print current against recommended; change nothing
#
# Idempotent: a value that already meets the recommendation is left alone, and
# values are only ever raised, never lowered. Where the kernel or a container
# refuses a change (read-only /proc/sys, a setting outside the network
# namespace), the script says so and goes on; it fails only on bad usage.
# Changes last until the next reboot (sysctl/README.md says how to keep them).
set -uo pipefail

mode=apply
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  -h | --help)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

# name | recommended | how to compare | why
#   min:   the current value must be at least the recommended one
#   range: "low high", the current range must cover it
#   equal: the current value must be exactly the recommended one
settings=(
  # Each listening socket's accept queue is capped at somaxconn. When 2000
  # clients connect at once, connections beyond the queue are dropped and
  # retried a second later (a latency cliff), so the cap must exceed any burst.
  "net.core.somaxconn|65535|min|accept queue cap per listener: a burst of 2000 connects must fit"
  # Half-open connections (SYN received, handshake not finished) wait here.
  "net.ipv4.tcp_max_syn_backlog|65535|min|queue of half-open connections during connect bursts"
  # Every outgoing connection (load generator, RPC pool, MySQL and Redis
  # clients) takes an ephemeral port; the default 28k ports run out quickly
  # when closed connections sit in TIME_WAIT for 60 s. The range starts above
  # the ports the system listens on (1088, 1099, 3306, 6379), so a client can
  # never hold a server's port while that server is down.
  "net.ipv4.ip_local_port_range|10240 65535|range|55k ephemeral ports (above every server port) instead of 28k"
  # Lets a new outgoing connection reuse a port in TIME_WAIT when TCP
  # timestamps prove it safe (2, the default, allows it on loopback only).
  # tcp_tw_recycle, which the original notes also set, was removed from Linux
  # in 4.12 because it broke clients behind NAT.
  "net.ipv4.tcp_tw_reuse|1|equal|reuse TIME_WAIT ports for new outgoing connections"
  # Packets waiting for the kernel's receive processing per CPU; the default
  # 1000 overflows under bursts of tiny loopback packets.
  "net.core.netdev_max_backlog|16384|min|per-CPU input packet queue for bursts"
  # System-wide limit of open files; every connection is one, twice over on
  # loopback (both ends live on this machine).
  "fs.file-max|2097152|min|open files for the whole system"
  # The highest value a process's open-files hard limit may be raised to.
  "fs.nr_open|1048576|min|ceiling for a process's open-files hard limit"
)

# Whether $2 meets the recommendation $3 under rule $1.
meets() {
  local rule=$1 current=$2 wanted=$3
  case $rule in
    min) [[ $current =~ ^[0-9]+$ ]] && ((current >= wanted)) ;;
    equal) [ "$current" = "$wanted" ] ;;
    range)
      local cur_lo cur_hi want_lo want_hi
      read -r cur_lo cur_hi <<<"$current"
      read -r want_lo want_hi <<<"$wanted"
      [[ $cur_lo =~ ^[0-9]+$ && $cur_hi =~ ^[0-9]+$ ]] && ((cur_lo <= want_lo && cur_hi >= want_hi))
      ;;
  esac
}

printf '%-30s %-14s %-14s %s\n' setting current recommended status
refused=0
for entry in "${settings[@]}"; do
  IFS='|' read -r name wanted rule why <<<"$entry"
  current=$(sysctl -n "$name" 2>/dev/null | tr -s '\t ' ' ')
  if [ -z "$current" ]; then
    status="unavailable (no such setting here)"
  elif meets "$rule" "$current" "$wanted"; then
    status=ok
  elif [ "$mode" = check ]; then
    status="would raise"
  elif err=$(sysctl -q -w "$name=$wanted" 2>&1); then
    status="raised"
  else
    status="refused: ${err##*: }"
    refused=$((refused + 1))
  fi
  printf '%-30s %-14s %-14s %s\n' "$name" "${current:-?}" "$wanted" "$status"
  printf '    %s\n' "$why"
done

# Open files per process. The hard limit is set by whoever started this shell
# (here: 20000, and only a privileged parent can raise it); a process may raise
# its own soft limit up to it. A script cannot change its caller's limits, so
# the servers get theirs from sysctl/limits.sh, which run.sh and perf/run.sh
# source before starting anything.
soft=$(ulimit -Sn)
hard=$(ulimit -Hn)
if [ "$soft" = "$hard" ]; then
  status=ok
else
  status="raise in the starting shell: source sysctl/limits.sh"
fi
printf '%-30s %-14s %-14s %s\n' "ulimit -n (soft)" "$soft" "$hard" "$status"
printf '    %s\n' "open files per process: 2000 client connections need 2000+ descriptors in each server"
printf '%-30s %-14s %-14s %s\n' "ulimit -n (hard)" "$hard" "$hard" "fixed by the parent (this sandbox: 20000, cannot be raised)"

if [ "$refused" -gt 0 ]; then
  echo "$refused setting(s) refused by the kernel or the sandbox; the rest are in place"
fi
exit 0
