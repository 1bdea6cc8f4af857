#!/usr/bin/env bash
# bench/suite.sh — the whole performance suite of issue #10 in one command: ringlb vs HAProxy 2.6
# vs nginx 1.22 on this machine, every line, tables and charts.
#
#   bench/suite.sh [--quick] [--duration S] [--runs N] [--warmup S] [--idle-conns N]
#                  [--callgrind-n N] [--steps "STEP ..."] [--skip "STEP ..."] [--publish]
#                  [--out DIR] [--plan]
#
# Every step runs bench/run.sh, bench/tls.sh or bench/callgrind.sh with the same backend
# (rlb-backend), each proxy on CPU 0 with one worker, rlb-backend and the load generator on
# CPU 1, and within a step N runs (--runs, default 3) of S seconds (--duration, default 5) per
# proxy alternating ringlb, HAProxy, nginx, ringlb, ... after a warm-up (--warmup, default 2):
#   ka100      plaintext keep-alive, 100 connections (run.sh --conns 100)
#   targets    2 vs 1,000 targets in the group, 100 connections (run.sh --conns 100
#              --targets 1000: six variants alternate). A step of its own: an idle HAProxy
#              or nginx with 1,000 servers running beside the measured one costs the measured
#              one (HAProxy at 2 targets: about half its req/s, measured), so the peer
#              comparison of ka100 must not have them alive.
#   ka1000     plaintext keep-alive, 1,000 connections (run.sh --conns 1000)
#   close      plaintext, a new client connection per request: wrk -H "Connection: close",
#              backend keep-alive kept (run.sh --close --conns 100)
#   bytes      1 MiB responses, 20 connections: MB/s (run.sh --bytes 1048576 --conns 20)
#   tls        TLS 1.3 keep-alive (100 connections), full handshakes and resumed handshakes
#              (50 connections, a new connection per request), and idle TLS connections
#              (tls.sh; the client counts full and resumed handshakes)
#   idle       idle plaintext keep-alive connections (run.sh --idle; --idle-conns, 10,000)
#   rules      ringlb with 1 vs 10,000 host rules (run.sh --rules 10000 --conns 100)
#   obs        ringlb: metrics only vs access log on tmpfs vs on disk (run.sh --observability)
#   callgrind  instructions per request of parse, desync, rewrite, routing (1 and 10,000
#              rules) and balancing (bench/callgrind.sh N, --callgrind-n, default 2000)
# Each line reports req/s (median, min..max), p50/p99 latency, proxy CPU seconds per 100k
# requests (utime+stime of the proxy's processes from /proc) and the ratios to HAProxy.
#
# --quick is a ~2-minute smoke run (1 s runs, 1 run, no warm-up, 1,000 idle connections with
# 0.5 s pauses, callgrind N 500): it checks that every step works, its numbers mean nothing. --plan prints
# the steps and the time budget and exits. --steps / --skip choose steps by name.
# The planned time is printed first (the full suite fits in 15 minutes on 2 cores).
#
# Output: bench/out/suite-<timestamp>/ (or --out DIR): one directory and one .log per step
# (the raw output of run.sh/tls.sh), callgrind.md, env.txt, suite.env, and the generated
# results.md (every table, the ratios, the issue #10 targets met or not) and charts/*.svg
# (bench/plot.sh; gnuplot). --publish copies the charts to bench/charts/. To redo the report
# and charts of an existing run: bench/plot.sh [--publish] bench/out/suite-<timestamp>.
#
# Builds nothing: expects build/ringlb, build/rlb-backend and build/rlb-micro
# (RINGLB_BUILD_DIR=dir to use another build directory). Missing packages (haproxy,
# nginx-light, wrk, valgrind, gnuplot-nox) are installed with apt-get (scripts/deps.sh --bench).
# Ctrl-C or SIGTERM stops the running step, which stops every process it started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RINGLB_BUILD_DIR=${RINGLB_BUILD_DIR:-$ROOT/build}
BUILD=$RINGLB_BUILD_DIR
PATH=$PATH:/usr/sbin:/sbin

ALL_STEPS="ka100 ka1000 targets close bytes tls idle rules obs callgrind"
MODE=full
DURATION=5
RUNS=3
WARMUP=2
SETTLE=2
IDLE_N=10000
CG_N=2000
STEPS=$ALL_STEPS
SKIP=""
PUBLISH=0
PLAN=0
OUT=""
TARGETS=1000
RULES=10000
BYTES=1048576
BYTES_CONNS=20
declare -A SET=()

die() {
    echo "suite.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
        --quick) MODE=quick; shift ;;
        --duration) DURATION=${2:?}; SET[d]=1; shift 2 ;;
        --runs) RUNS=${2:?}; SET[r]=1; shift 2 ;;
        --warmup) WARMUP=${2:?}; SET[w]=1; shift 2 ;;
        --idle-conns) IDLE_N=${2:?}; SET[i]=1; shift 2 ;;
        --callgrind-n) CG_N=${2:?}; SET[c]=1; shift 2 ;;
        --steps) STEPS=${2:?}; shift 2 ;;
        --skip) SKIP=${2:?}; shift 2 ;;
        --publish) PUBLISH=1; shift ;;
        --out) OUT=${2:?}; shift 2 ;;
        --plan) PLAN=1; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "suite.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
if [ "$MODE" = quick ]; then
    [ -n "${SET[d]:-}" ] || DURATION=1
    [ -n "${SET[r]:-}" ] || RUNS=1
    [ -n "${SET[w]:-}" ] || WARMUP=0
    [ -n "${SET[i]:-}" ] || IDLE_N=1000
    [ -n "${SET[c]:-}" ] || CG_N=500
    SETTLE=0.5
fi
for s in $STEPS $SKIP; do
    [[ " $ALL_STEPS " == *" $s "* ]] || die "unknown step '$s' (steps: $ALL_STEPS)"
done
RUN_STEPS=()
for s in $ALL_STEPS; do   # always in the suite's order
    [[ " $STEPS " == *" $s "* ]] && [[ " $SKIP " != *" $s "* ]] && RUN_STEPS+=("$s")
done
[ ${#RUN_STEPS[@]} -gt 0 ] || die "no step left to run"

# ------------------------------------------------------------------------------------------
# time budget: seconds per step, from the durations and from fixed costs measured on the
# 2-core development machine: start-up of backend and proxies ~4 s per run.sh (~8 s with the
# 1,000-target configurations), ~16 s for tls.sh (certificate, shim, `openssl speed`); ~0.4 s
# of bookkeeping per wrk run; idle connections: 4 pauses of --idle-settle plus ~2 s per proxy,
# plus ~0.5 s (plaintext) or ~1.2 s (TLS) per 1,000 connections; callgrind ~35 s (valgrind
# start-up, 7 stages).

step_secs() {   # step -> planned seconds
    awk -v step="$1" -v d="$DURATION" -v r="$RUNS" -v w="$WARMUP" -v s="$SETTLE" \
        -v n="$IDLE_N" -v cg="$CG_N" 'BEGIN {
        per = w + r * d + r * 0.4                 # one variant: warm-up, runs, bookkeeping
        idle = 4 * s + 2                          # one proxy: pauses and start of the client
        if (step == "targets") t = 8 + 6 * per
        else if (step == "rules") t = 6 + 2 * per
        else if (step == "tls") t = 16 + 9 * per + 3 * (idle + n * 1.2 / 1000)
        else if (step == "idle") t = 4 + 3 * (idle + n * 0.5 / 1000)
        else if (step == "callgrind") t = 35 + cg / 1000
        else t = 4 + 3 * per                      # ka100, ka1000, close, bytes, obs
        printf "%d\n", t + 0.5 }'
}

PLANNED=0
plan() {
    local s t
    printf 'bench/suite.sh %s: %s run(s) of %s s after a %s s warm-up per line and proxy; %s idle connections; callgrind N %s\n' \
        "$MODE" "$RUNS" "$DURATION" "$WARMUP" "$IDLE_N" "$CG_N"
    for s in "${RUN_STEPS[@]}"; do
        t=$(step_secs "$s")
        PLANNED=$((PLANNED + t))
        printf '  %-10s ~%4d s\n' "$s" "$t"
    done
    PLANNED=$((PLANNED + 5))   # report and charts
    printf 'planned: ~%d s (%d min %d s)\n' "$PLANNED" $((PLANNED / 60)) $((PLANNED % 60))
}
plan
[ "$PLAN" -eq 0 ] || exit 0
if [ "$MODE" = full ] && [ "$PLANNED" -gt 900 ]; then
    echo "suite.sh: warning: the plan exceeds 15 minutes" >&2
fi

# ------------------------------------------------------------------------------------------
# prerequisites

for b in ringlb rlb-backend rlb-micro; do
    [ -x "$BUILD/$b" ] || die "$BUILD/$b missing: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build"
done
need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v valgrind >/dev/null || need+=(valgrind)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
    echo "suite.sh: installing ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi

[ -n "$OUT" ] || OUT=$ROOT/bench/out/suite-$(date +%Y%m%d-%H%M%S)
[ ! -e "$OUT/suite.env" ] || die "$OUT already holds a suite run"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# ------------------------------------------------------------------------------------------
# steps run in the background and are waited for, so that a signal stops them at once: each
# script's own trap then stops every process it started

CHILD=""
on_signal() {
    trap - INT TERM
    if [ -n "$CHILD" ]; then
        echo "suite.sh: stopping the running step" >&2
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    echo "suite.sh: interrupted; partial results in $OUT" >&2
    exit 130
}
trap on_signal INT TERM

FAILED=()
run_step() {   # step command...
    local step=$1 t0=$SECONDS rc=0
    shift
    printf '[%s] %-10s (planned ~%s s) ...' "$(date +%H:%M:%S)" "$step" "$(step_secs "$step")" >&2
    "$@" >"$OUT/$step.log" 2>&1 &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    if [ "$rc" -ne 0 ]; then
        FAILED+=("$step")
        printf ' FAILED (exit %s) after %s s, see %s\n' "$rc" $((SECONDS - t0)) "${OUT#"$ROOT"/}/$step.log" >&2
        tail -n 5 "$OUT/$step.log" | sed 's/^/    /' >&2
    else
        printf ' %s s\n' $((SECONDS - t0)) >&2
    fi
    echo "$step $((SECONDS - t0))" >>"$OUT/steps.txt"
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, $(uname -sr)"
    echo "ringlb: $("$BUILD/ringlb" version 2>&1 | head -n1 || true), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -z "$(git -C "$ROOT" status --porcelain -- src include 2>/dev/null)" ] || echo ' (src/ modified)'), build $BUILD"
    echo "haproxy: $(haproxy -v 2>&1 | head -n1)"
    echo "nginx: $(nginx -v 2>&1 | head -n1)"
    echo "wrk: $(wrk -v 2>&1 | head -n1)"
    echo "openssl: $(openssl version)"
    echo "pinning: each proxy on CPU 0 (1 worker); rlb-backend (2 threads) and the load generator on CPU 1"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
cat >"$OUT/suite.env" <<EOF
ROOT=$ROOT
MODE=$MODE
DURATION=$DURATION
RUNS=$RUNS
WARMUP=$WARMUP
IDLE_N=$IDLE_N
CALLGRIND_N=$CG_N
TARGETS=$TARGETS
RULES=$RULES
BYTES=$BYTES
BYTES_CONNS=$BYTES_CONNS
PLANNED=$PLANNED
STEPS=${RUN_STEPS[*]}
EOF

T0=$SECONDS
COMMON=(--duration "$DURATION" --runs "$RUNS" --warmup "$WARMUP")
for step in "${RUN_STEPS[@]}"; do
    case $step in
        ka100) run_step ka100 "$ROOT/bench/run.sh" "${COMMON[@]}" --conns 100 --out "$OUT/ka100" ;;
        targets) run_step targets "$ROOT/bench/run.sh" "${COMMON[@]}" --conns 100 --targets "$TARGETS" --out "$OUT/targets" ;;
        ka1000) run_step ka1000 "$ROOT/bench/run.sh" "${COMMON[@]}" --conns 1000 --out "$OUT/ka1000" ;;
        close) run_step close "$ROOT/bench/run.sh" "${COMMON[@]}" --conns 100 --close --out "$OUT/close" ;;
        bytes) run_step bytes "$ROOT/bench/run.sh" "${COMMON[@]}" --conns "$BYTES_CONNS" --bytes "$BYTES" --out "$OUT/bytes" ;;
        tls) run_step tls "$ROOT/bench/tls.sh" "${COMMON[@]}" --idle-conns "$IDLE_N" \
            --idle-settle "$SETTLE" --out "$OUT/tls" ;;
        idle) run_step idle "$ROOT/bench/run.sh" --idle --idle-conns "$IDLE_N" --idle-settle "$SETTLE" \
            --out "$OUT/idle" ;;
        rules) run_step rules "$ROOT/bench/run.sh" "${COMMON[@]}" --conns 100 --rules "$RULES" --out "$OUT/rules" ;;
        obs) run_step obs "$ROOT/bench/run.sh" "${COMMON[@]}" --conns 100 --observability --out "$OUT/obs" ;;
        callgrind)
            run_step callgrind "$ROOT/bench/callgrind.sh" "$CG_N"
            grep '^|' "$OUT/callgrind.log" >"$OUT/callgrind.md" || rm -f "$OUT/callgrind.md" ;;
    esac
done
ELAPSED=$((SECONDS - T0))
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
{
    echo "ELAPSED=$ELAPSED"
    echo "FAILED=${FAILED[*]}"
} >>"$OUT/suite.env"

python3 "$ROOT/bench/report.py" "$OUT" >/dev/null || { echo "suite.sh: report.py failed" >&2; FAILED+=(report); }
plot_args=()
[ "$PUBLISH" -eq 0 ] || plot_args=(--publish)
"$ROOT/bench/plot.sh" ${plot_args[@]+"${plot_args[@]}"} "$OUT" >"$OUT/plot.log" 2>&1 ||
    { echo "suite.sh: plot.sh failed: $(tail -n 5 "$OUT/plot.log")" >&2; FAILED+=(plot); }

echo
echo "suite took ${ELAPSED} s (planned ~${PLANNED} s); results: ${OUT#"$ROOT"/}/results.md; charts: ${OUT#"$ROOT"/}/charts/"
[ "$PUBLISH" -eq 0 ] || echo "charts published to bench/charts/"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "suite.sh: failed steps: ${FAILED[*]}" >&2
    exit 1
fi
