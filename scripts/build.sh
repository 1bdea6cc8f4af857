#!/usr/bin/env bash
# build.sh — configure and build ringlb: release into build/ (default) or ASan+UBSan into
# build-asan/ (--asan). Warnings are errors. Incremental: fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
args=(-DCMAKE_BUILD_TYPE=Release -DRINGLB_WERROR=ON)
if [[ "${1:-}" == "--asan" ]]; then
    dir=build-asan
    args=(-DCMAKE_BUILD_TYPE=Debug -DRINGLB_SANITIZE=ON -DRINGLB_WERROR=ON)
fi
if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    cmake -S . -B "$dir" "${args[@]}" >/dev/null
fi
cmake --build "$dir" -j"$(nproc)"
