#!/usr/bin/env bash
# What one feature costs: the same commit built twice, once as it ships and
# once with that feature's work left out (`--cfg usermgmt_without="<what>"`),
# compared by perf/ab.sh in one run (A: without, B: as shipped).
#
#   perf/cost.sh metrics [SCENARIO] [ROUNDS] [SECS] [CONCURRENCY]
#   perf/cost.sh history login-fixed 8 5 200
#
# What each leaves out:
#   metrics  every counter, gauge and histogram update of both servers
#            (hostsupport/src/metrics.rs); the clock reads the access lines
#            share stay
#   history  the queueing of log-in records (tcpserver/src/history/record.rs),
#            and with it the drainer's inserts and new-device checks
# The shipped build goes to target/release (as `cargo build --release`), the
# other to target/without-<what>, so neither overwrites the other.
# Needs what perf/ab.sh needs: ./run.sh started once (secrets, seeded accounts).
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:?what to leave out: metrics or history}
shift
case $WHAT in
  metrics | history) ;;
  *) echo "cost.sh: unknown feature '$WHAT' (metrics or history)" >&2; exit 2 ;;
esac
cargo build --release --quiet -p tcpserver -p httpserver -p loadgen
RUSTFLAGS="${RUSTFLAGS:-} --cfg usermgmt_without=\"$WHAT\"" CARGO_TARGET_DIR=target/without-$WHAT \
  cargo build --release --quiet -p tcpserver -p httpserver
echo "A: without $WHAT (target/without-$WHAT/release), B: as shipped (target/release)"
exec perf/ab.sh "target/without-$WHAT/release" target/release "$@"
