#!/usr/bin/env bash
# bench/callgrind.sh — instructions per request of the hot path's CPU work, under callgrind.
#
#   bench/callgrind.sh [N]      (default N = 20000)
#
# For each stage of build/rlb-micro (parse, desync, rewrite, route1, route10k, balance, all) it
# runs `valgrind --tool=callgrind` with N and with 2N iterations and reports
# (Ir(2N) - Ir(N)) / N: the instructions one more request costs, without start-up (which
# includes building a 10,000-rule index) and without timing noise. Counts are repeatable for
# the same binary, so a regression shows as a changed number.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${RINGLB_BUILD_DIR:-$ROOT/build}
N=${1:-20000}
command -v valgrind >/dev/null || {
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq valgrind >/dev/null
}
[ -x "$BUILD/rlb-micro" ] || { echo "callgrind.sh: $BUILD/rlb-micro missing (cmake --build build --target rlb-micro)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ir() {   # stage n -> total instructions
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$BUILD/rlb-micro" "$1" "$2" \
        >/dev/null 2>"$tmp/err"
    awk '/^summary:/ {print $2}' "$tmp/out"
}
echo "| stage | instructions per request |"
echo "|---|---:|"
for stage in parse desync rewrite route1 route10k balance all; do
    a=$(ir "$stage" "$N")
    b=$(ir "$stage" $((2 * N)))
    echo "| $stage | $(( (b - a) / N )) |"
done
