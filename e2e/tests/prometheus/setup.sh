#!/usr/bin/env bash
# Installs what the monitoring tests need:
# - Debian's Prometheus server (/usr/bin/prometheus), which e2e/tests/prometheus.rs
#   starts privately on a free port to scrape both servers of a test stack;
# - schemathesis, from PyPI, in a virtual environment under target/venv-schemathesis,
#   which e2e/tests/openapi.rs runs against /openapi.json.
# Safe to run again: it does nothing when both are present. Only the package is
# installed; its own service is stopped and disabled, so no Prometheus scrapes
# this machine's defaults behind the tests' back.
#
# Called by ./test.sh before `cargo test`; the tests fail (they are never
# skipped) when these are missing.
set -euo pipefail
cd "$(dirname "$0")/../../.."

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
if [ ! -x /usr/bin/prometheus ]; then
  printf '[%s] installing prometheus with apt-get\n' "$(date +%H:%M:%S)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null || true
  # policy-rc.d: the package's post-install would start its own service.
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi

VENV=target/venv-schemathesis
# Pinned: the tests read its output and its options.
SCHEMATHESIS_VERSION=4.32.5
if [ ! -x "$VENV/bin/schemathesis" ]; then
  printf '[%s] installing schemathesis %s in %s\n' "$(date +%H:%M:%S)" "$SCHEMATHESIS_VERSION" "$VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi
