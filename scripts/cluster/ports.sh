# The fleet's ports, sourced by scripts/cluster/fleet.sh. Two layouts:
#
# - ./run.sh cluster (FLEET_PORT_BASE unset): the edge on the single node's
#   1088 (the same URL), and fixed, documented ports for everything else:
#
#     edge (HAProxy)          1088          httpserver 1, 2        1081, 1082
#     tcpserver 1, 2          1101, 1102    their /metrics         9101, 9102
#     MySQL (HAProxy)         3310          Galera nodes 1..3      3307..3309
#     Galera group channels   4567, 4577, 4587 (IST +1, SST +2 each)
#     Redis Cluster           7001..7006 (cluster bus 17001..17006)
#
# - FLEET_PORT_BASE=B (the tests' small fleet, so that it never collides with
#   the one above): everything at fixed offsets from B, below 55535 so the
#   Redis cluster bus (+10000) fits:
#
#     edge B, httpservers B+1, B+2, tcpservers B+11, B+12 (metrics B+13, B+14),
#     MySQL B+20, Galera nodes B+21..B+23, group channels B+30, B+40, B+50,
#     Redis Cluster B+60..B+65
#
# HOST is 127.0.0.1 throughout: every process of the fleet serves this machine
# only, as the single node does (the seeded passwords are public).
# shellcheck shell=bash disable=SC2034 # the variables are fleet.sh's

HOST=127.0.0.1
if [ -n "${FLEET_PORT_BASE:-}" ]; then
  [[ "$FLEET_PORT_BASE" =~ ^[0-9]+$ ]] && [ "$FLEET_PORT_BASE" -ge 1024 ] && [ "$FLEET_PORT_BASE" -le 55400 ] || {
    echo "FLEET_PORT_BASE must be a port number from 1024 to 55400" >&2
    exit 2
  }
  B=$FLEET_PORT_BASE
  EDGE_PORT=$B
  HTTP_PORTS=($((B + 1)) $((B + 2)))
  TCP_PORTS=($((B + 11)) $((B + 12)))
  TCP_METRICS_PORTS=($((B + 13)) $((B + 14)))
  MYSQL_PORT=$((B + 20))
  GALERA_FIRST_PORT=$((B + 21))
  GALERA_BASE_PORT=$((B + 30))
  REDIS_FIRST_PORT=$((B + 60))
else
  EDGE_PORT=1088
  HTTP_PORTS=(1081 1082)
  TCP_PORTS=(1101 1102)
  TCP_METRICS_PORTS=(9101 9102)
  MYSQL_PORT=3310
  GALERA_FIRST_PORT=3307
  GALERA_BASE_PORT=4567
  REDIS_FIRST_PORT=7001
fi
export GALERA_BASE_PORT
