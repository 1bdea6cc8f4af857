#!/usr/bin/env bash
# fuzz.sh — build the libFuzzer targets of tests/fuzz with clang, ASan and UBSan in build-fuzz/
# and run each for a bounded time; fails on any crash, leak, timeout or sanitizer report.
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh fuzz_config          only the named target(s)
#   FUZZ_SECONDS=600 scripts/fuzz.sh     longer runs
# Inputs found along the way accumulate in build-fuzz/corpus/<target> (the committed seeds in
# tests/fuzz/corpus/<target> are only read); findings go to build-fuzz/artifacts/<target>/ and
# reproduce with: build-fuzz/fuzz/<target> build-fuzz/artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

# clang and its compiler-rt (libFuzzer, sanitizer runtimes), installed only when missing.
pkgs=(clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "fuzz.sh: need root (or sudo) to install: ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "fuzz.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

secs=${FUZZ_SECONDS:-60}
build=build-fuzz
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(fuzz_request_head fuzz_config)

# Warnings are not errors here: clang warns about things gcc (the CI compiler) does not.
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DRINGLB_FUZZ=ON -DRINGLB_SANITIZE=ON -DRINGLB_WERROR=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
    mkdir -p "$build/corpus/$t" "$build/artifacts/$t"
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix="$build/artifacts/$t/")
    [[ -f tests/fuzz/$t.dict ]] && args+=(-dict="tests/fuzz/$t.dict")
    log="$build/$t.log"
    echo "fuzz.sh: $t for ${secs}s"
    if "$build/fuzz/$t" "${args[@]}" "$build/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
        grep -E "^Done [0-9]+ runs" "$log" | sed "s/^/fuzz.sh: $t: /" || true
    else
        echo "fuzz.sh: $t FAILED (log: $log, artifacts: $build/artifacts/$t/)" >&2
        grep -E "ERROR|SUMMARY|runtime error|Test unit written|deadly signal" "$log" | head -20 >&2
        status=1
    fi
done
exit $status
