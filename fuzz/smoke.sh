#!/usr/bin/env bash
# The short pass of every fuzz target, for the test command: replays the seed
# corpus and every saved crash input (regressions/) through each target's
# checks as a plain `cargo test`, with no fuzzer. Takes well under a second once
# built. Shares the workspace's target directory unless CARGO_TARGET_DIR is set,
# so the crates it tests are not built twice. Not --locked: when a product
# crate gains a dependency, cargo adds it to fuzz/Cargo.lock (keeping every
# version already there) instead of failing the test command.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target}"
exec cargo test "$@"
