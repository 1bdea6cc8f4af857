#!/usr/bin/env bash
# bench/callgrind.sh — instructions per request of the hot path's CPU work, under callgrind.
#
#   bench/callgrind.sh [N]      (default N = 20000)
#
# For each stage of build/rlb-micro (parse, desync, rewrite, route1, route10k, balance, all) it
# runs `valgrind --tool=callgrind --toggle-collect=micro_measured` once with N iterations:
# callgrind counts only the instructions executed inside micro_measured() (the N iterations;
# not the start-up, which includes building a 10,000-rule index, nor rlb-micro's warm-up
# iterations), and the table shows that count / N. No timing noise: the counts are the same
# for the same binary whatever the machine's load, so a regression shows as a changed number.
# (Before this version the script took (Ir(2N) - Ir(N)) / N over whole runs: the same figure
# up to a few instructions, at twice the runs.) A few minutes at the default N on 2 cores;
# bench/suite.sh uses N = 2000. RINGLB_BUILD_DIR selects the build directory (default build/).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${RINGLB_BUILD_DIR:-$ROOT/build}
N=${1:-20000}
if ! [[ $N =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: bench/callgrind.sh [N]" >&2
    exit 2
fi
command -v valgrind >/dev/null || {
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq valgrind >/dev/null
}
[ -x "$BUILD/rlb-micro" ] || { echo "callgrind.sh: $BUILD/rlb-micro missing (cmake --build build --target rlb-micro)" >&2; exit 1; }
tmp=$(mktemp -d)
VG=""
cleanup() {
    [ -z "$VG" ] || kill -TERM "$VG" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ir() {   # stage n -> instructions counted inside micro_measured()
    valgrind --tool=callgrind --toggle-collect=micro_measured \
        --callgrind-out-file="$tmp/out" "$BUILD/rlb-micro" "$1" "$2" >/dev/null 2>"$tmp/err" &
    VG=$!
    wait "$VG" || { VG=""; echo "callgrind.sh: valgrind failed: $(tail -n 3 "$tmp/err")" >&2; exit 1; }
    VG=""
    awk '/^summary:/ {print $2}' "$tmp/out"
}
echo "| stage | instructions per request |"
echo "|---|---:|"
for stage in parse desync rewrite route1 route10k balance all; do
    echo "| $stage | $(( $(ir "$stage" "$N") / N )) |"
done
