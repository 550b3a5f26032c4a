#!/usr/bin/env bash
# Installs what the browser tests (e2e/tests/browser.rs, qr_browser.rs) drive:
# Debian's headless-capable Chromium and the matching chromedriver, at
# /usr/bin/chromium and /usr/bin/chromedriver, and zbarimg (zbar-tools), which
# reads the scan-to-log-in QR code from a screenshot. Safe to run again: it
# does nothing when all three are present.
#
# Called by ./test.sh before `cargo test`; the browser test fails (it is never
# skipped) when they are missing, so CI always exercises the real pages.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/zbarimg ]; then
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
printf '[%s] installing chromium and chromium-driver with apt-get\n' "$(date +%H:%M:%S)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || true
# zbar-tools: zbarimg, the QR decoder the scan-to-log-in test reads the screen with.
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-noto-cjk fonts-noto-color-emoji zbar-tools >/dev/null
