# Sourced, not run: raises the open-files soft limit of the current shell to its
# hard limit, so that the servers and the load generator it starts can hold
# thousands of connections. (A script cannot change the limits of the shell
# that runs it, hence sourcing.) The hard limit itself is set by whoever
# started the shell; in this sandbox it is 20000 and cannot be raised.
#
#   source sysctl/limits.sh     # used by run.sh and perf/run.sh
#
# Safe under `set -euo pipefail`; says so when the limit stays lower.

usermgmt_raise_nofile() {
  local soft hard
  soft=$(ulimit -Sn)
  hard=$(ulimit -Hn)
  [ "$soft" = "$hard" ] && return 0
  if ulimit -Sn "$hard" 2>/dev/null; then
    echo "open files: soft limit raised from $soft to $hard" >&2
  else
    echo "open files: could not raise the soft limit from $soft (hard limit $hard)" >&2
  fi
  return 0
}
usermgmt_raise_nofile
