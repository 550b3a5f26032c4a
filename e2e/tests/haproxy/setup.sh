#!/usr/bin/env bash
# Installs Debian's HAProxy (/usr/sbin/haproxy), which e2e/tests/proxy_protocol.rs
# starts privately on a free port, in front of a test httpserver, to check
# that `send-proxy-v2` gives httpserver the client's address. Only the
# package is installed; its own service is stopped and disabled, so nothing
# listens on this machine's defaults behind the tests' back.
#
# Called by ./test.sh before `cargo test`; the test fails (it is never
# skipped) when HAProxy is missing. Safe to run again.
set -euo pipefail

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  printf '[%s] installing haproxy with apt-get\n' "$(date +%H:%M:%S)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq --no-install-recommends haproxy >/dev/null
  $SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true
fi
