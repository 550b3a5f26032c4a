#!/usr/bin/env bash
# Installs what the browser test (e2e/tests/browser.rs) drives: Debian's
# headless-capable Chromium and the matching chromedriver, at /usr/bin/chromium and
# /usr/bin/chromedriver. Safe to run again: it does nothing when both are present.
#
# Called by ./test.sh before `cargo test`; the browser test fails (it is never
# skipped) when they are missing, so CI always exercises the real pages.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
printf '[%s] installing chromium and chromium-driver with apt-get\n' "$(date +%H:%M:%S)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || true
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-noto-cjk fonts-noto-color-emoji >/dev/null
