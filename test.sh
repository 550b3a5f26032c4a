#!/usr/bin/env bash
# Runs every test of the project against real MariaDB and Redis.
#
# On a fresh Debian 12 machine it first installs and starts what the tests need
# (MariaDB, Redis, Chromium for the browser test), creates the separate test
# database `usermgmt_test`, and then runs `cargo test --workspace`. Extra
# arguments go to cargo test (`./test.sh -p proto`, `./test.sh -- --nocapture`).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/services.sh

ensure_services
# Chromium and chromedriver for the browser test (e2e/tests/browser.rs); never skipped.
e2e/tests/browser/setup.sh
sql/setup.sh usermgmt_test "$MYSQL_APP_PASSWORD"

export USERMGMT_TEST_MYSQL_URL="mysql://usermgmt:${MYSQL_APP_PASSWORD}@127.0.0.1:3306/usermgmt_test"
# Redis database 1: the tests' keys (each test under its own prefix) stay apart
# from the running system's in database 0, which a benchmark may have filled
# with millions of sessions that every cleanup SCAN would otherwise walk.
export USERMGMT_TEST_REDIS_URL="redis://127.0.0.1:6379/1"
export USERMGMT_TEST_PEPPER_FILE="$PEPPER_FILE"

# With no arguments every crate is tested; with `-p <crate>` only that one.
if [ $# -gt 0 ]; then
  cargo test "$@"
else
  cargo test --workspace
  # The short pass of every fuzz target: seed corpus and saved crash inputs
  # replayed through each target's checks (fuzz/ is its own cargo project).
  fuzz/smoke.sh
fi
