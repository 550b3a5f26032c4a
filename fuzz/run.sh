#!/usr/bin/env bash
# Runs one fuzz target under AFL++ for a chosen time:
#
#   fuzz/run.sh <frame|image|http|multipart|chunked|proxy> <seconds>
#
# Installs cargo-afl (which builds AFL++ on first use) if missing, builds the
# instrumented harness, and fuzzes from corpus/<target>/ with dict/<target>.dict.
# Findings go to out/<target>/default/{crashes,hangs}; a second run resumes
# from out/<target>. Ends with the run's statistics. Environment: FUZZ_JOBS
# (default 1) starts that many fuzzer processes on the same target.
set -euo pipefail
cd "$(dirname "$0")"

AFL_VERSION=0.18.2
targets="frame image http multipart chunked proxy"
target=${1:-}
seconds=${2:-}
if [[ ! " $targets " == *" $target "* || ! "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 <${targets// /|}> <seconds>" >&2
  exit 2
fi

if ! cargo afl --version 2>/dev/null | grep -q "$AFL_VERSION"; then
  cargo install cargo-afl --locked --version "$AFL_VERSION"
fi

# Instrumented builds get their own directory so they never invalidate the plain
# ones used by smoke.sh.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target}/afl"
cargo afl build --release --features afl --bin "$target"

export AFL_SKIP_CPUFREQ=1        # No CPU governor to set in a container.
export AFL_NO_AFFINITY=1         # Share the cores with whatever else is running.
export AFL_AUTORESUME=1          # A second run continues from out/<target>.
export AFL_NO_UI=1               # Plain status lines, fit for logs.
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
out="out/$target"
mkdir -p "$out"
# One generous timeout for all targets; no input needs more than milliseconds.
cargo afl fuzz -V "$seconds" -t 2000 -i "corpus/$target" -o "$out" -x "dict/$target.dict" \
  "$CARGO_TARGET_DIR/release/$target"

stats="$out/default/fuzzer_stats"
echo "== $target: $stats"
grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|bitmap_cvg|stability|saved_crashes|saved_hangs)\b' "$stats"
crashes=$(find "$out/default/crashes" -type f -name 'id:*' | wc -l)
hangs=$(find "$out/default/hangs" -type f -name 'id:*' | wc -l)
if (( crashes + hangs > 0 )); then
  echo "== $target: $crashes crash(es), $hangs hang(s) in $out/default; see README.md, 'When it finds something'"
  exit 1
fi
