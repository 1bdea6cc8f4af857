#!/usr/bin/env bash
# test.sh — install what is missing, build release and ASan+UBSan, run the whole suite with
# ctest in both builds, then each libFuzzer target for FUZZ_SECONDS (default 30). Exits
# non-zero on any failure. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

status=0
scripts/build.sh
echo "== release build: ctest"
(cd build && ctest --output-on-failure -j2 --timeout 600) || status=1

scripts/build.sh --asan
echo "== ASan+UBSan build: ctest"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:quarantine_size_mb=16"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd build-asan && ctest --output-on-failure -j2 --timeout 900) || status=1

# Fuzzing (libFuzzer, clang; bounded): request head path and configuration loader.
echo "== fuzz targets (${FUZZ_SECONDS:-30}s each)"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} scripts/fuzz.sh || status=1

if [[ $status -ne 0 ]]; then
    echo "test.sh: FAILED" >&2
else
    echo "test.sh: all tests passed in both builds"
fi
exit $status
