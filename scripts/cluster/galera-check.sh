#!/bin/sh
# HAProxy's health check of one Galera node (`external-check command`): exits 0
# only if the node is Synced (wsrep_local_state 4), ready for queries
# (wsrep_ready ON) and in the primary component (wsrep_cluster_status
# Primary). HAProxy's own mysql-check sees only that the server answers the
# handshake, which a node that is a donor, still joining, or cut off from the
# majority (and refusing queries) also does.
#
# HAProxy calls it as: galera-check.sh <proxy addr> <proxy port> <server addr>
# <server port>. It logs in as a user with no privileges (SHOW STATUS needs
# none), whose name and password are in the client option file named by
# GALERA_CHECK_CNF (haproxy.sh writes it, mode 0600, and the wrapper HAProxy
# runs, which sets the variable).
set -eu
status=$(mariadb --defaults-extra-file="$GALERA_CHECK_CNF" --protocol=tcp -h "$3" -P "$4" \
  --connect-timeout=2 -N -B -e \
  "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_ready', 'wsrep_cluster_status')" \
  2>/dev/null) || exit 1
echo "$status" | grep -q '^wsrep_local_state	4$' || exit 1
echo "$status" | grep -q '^wsrep_ready	ON$' || exit 1
echo "$status" | grep -q '^wsrep_cluster_status	Primary$' || exit 1
exit 0
