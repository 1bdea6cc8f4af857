#!/usr/bin/env bash
# bench/tls.sh — the same TLS load against ringlb, HAProxy and nginx (HTTPS listeners).
#
#   bench/tls.sh [--duration S] [--runs N] [--idle-conns N] [--only ringlb|haproxy|nginx]
#                [--port-base P] [--skip-idle] [--cases "keepalive handshake resumed"]
#                [--warmup S] [--idle-settle S] [--out DIR]
#
# Topology as in bench/run.sh: one rlb-backend (2 threads, listeners 127.0.0.1:19101 and
# :19102) and the load generator on CPU 1; each proxy on CPU 0 with ONE worker thread, all three
# terminating TLS with the same freshly generated ECDSA P-256 self-signed certificate (SAN
# bench.test, in bench/out/<timestamp>/, never committed), TLS 1.2 and 1.3 allowed with the
# cipher list, TLS 1.3 suites and groups of ELBSecurityPolicy-TLS13-1-2-2021-06, ALPN
# http/1.1, stateless session tickets on and no server-side session cache, and forwarding in
# plaintext with keep-alive to the two backend listeners (round robin), no logging: ringlb on
# 127.0.0.1:18180, HAProxy on :18181 (bench/peers/haproxy-tls.cfg.in), nginx on :18182
# (bench/peers/nginx-tls.conf.in); --port-base P moves them to P, P+1, P+2.
#
# Cases (each proxy warmed up first, then N runs (--runs, default 3) of S seconds (--duration,
# default 10) alternating ringlb, haproxy, nginx, ringlb, ...):
#   keepalive   TLS keep-alive: `wrk -t2 -c100 -d S --latency https://127.0.0.1:PORT/` (TLS 1.3
#               is negotiated: wrk and all three proxies allow it).
#   handshake   Full TLS 1.3 handshakes, ECDSA P-256 (X25519 key exchange), no resumption:
#               `wrk -t2 -c50 -H "Connection: close"`, so every request is a new connection
#               and a new handshake (handshakes/s = req/s). wrk alone would RESUME sessions:
#               it reuses its SSL object per connection slot and SSL_clear() keeps the session
#               (HAProxy's `show info` shows SslFrontendSessionReuse_pct 100 with plain wrk).
#               So wrk runs with LD_PRELOAD=bench/tls_noresume.c (compiled into the output
#               directory), which drops the session on reconnect and counts the handshakes wrk
#               completed, full and resumed; a run with any resumed handshake is flagged.
#               wrk's latency figures exclude the handshake (its clock starts at the request).
#   resumed     Resumed TLS 1.3 handshakes (PSK from a session ticket, no certificate
#               signature): the same wrk command with the same shim in counting-only mode
#               (TLS_NORESUME_KEEP=1), so wrk offers the ticket of its previous connection, as
#               it does by itself. The shim's counts prove the resumption: the table shows
#               full / resumed handshakes and the resumption rate (only each connection slot's
#               first handshake should be full); a run below 90 % resumed is flagged.
#   --cases picks among keepalive, handshake and resumed (default: all three, in that order).
#   idle        --idle-conns N (default 10000) idle TLS 1.3 keep-alive connections per proxy
#               (bench/idle_conns.py --tls: SNI bench.test, one request each, then idle),
#               opened in two equal batches like `run.sh --idle`: VmRSS growth of the proxy's
#               processes / connections in KiB, over all and over the second batch alone.
#               --skip-idle leaves it out.
# Reported per case and proxy: median req/s (min..max), median p50/p99 latency, proxy CPU seconds
# per 100k requests (utime+stime of all its processes and threads from /proc, before vs after
# each run), the proxy's CPU use during the runs (% of one core: near 100% means the proxy was
# the bottleneck, well below means the client on CPU 1 was) and the req/s ratio against HAProxy.
# `openssl speed -seconds 3 ecdsap256` on CPU 0 gives the machine's ECDSA P-256 sign/s on one
# core: the ceiling for full handshakes (verify/s bounds the client, which checks a signature
# per handshake). The load average is recorded before and after (env.txt).
#
# --warmup S sets the warm-up per proxy and case (default 2 s); --idle-settle S the pause before
# and after each batch of idle connections (default 2 s). The script builds nothing of
# ringlb: it expects build/ringlb and build/rlb-backend (RINGLB_BUILD_DIR overrides the
# directory). It installs haproxy, nginx-light, wrk, openssl (and gcc/libssl-dev for the shim)
# with apt-get when they are missing. Raw results (wrk output, configs, certificate, logs,
# results.tsv, *.md tables) go to bench/out/<timestamp>-tls/ (or --out DIR). Every process it
# starts is stopped on exit; all traffic stays on 127.0.0.1. bench/suite.sh runs it as part of
# the whole suite.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${RINGLB_BUILD_DIR:-$ROOT/build}
PATH=$PATH:/usr/sbin:/sbin

DURATION=10
RUNS=3
IDLE_N=10000
ONLY=""
PORT_BASE=18180
SKIP_IDLE=0
THREADS=1
WARMUP=2
SETTLE=2
CASES="keepalive handshake resumed"
OUT=""
KEEPALIVE_CONNS=100
HANDSHAKE_CONNS=50
SNI=bench.test

declare -A PID=()
IDLE_PIDS=()

usage() {
    sed -n '4,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

die() {
    echo "tls.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
        --duration) DURATION=${2:?}; shift 2 ;;
        --runs) RUNS=${2:?}; shift 2 ;;
        --idle-conns) IDLE_N=${2:?}; shift 2 ;;
        --only) ONLY=${2:?}; shift 2 ;;
        --port-base) PORT_BASE=${2:?}; shift 2 ;;
        --skip-idle) SKIP_IDLE=1; shift ;;
        --cases) CASES=${2?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --idle-settle) SETTLE=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "tls.sh: unknown argument $1" >&2; usage ;;
    esac
done
in_range "$DURATION" 1 3600 || die "--duration wants 1..3600 seconds"
in_range "$RUNS" 1 100 || die "--runs wants 1..100"
in_range "$IDLE_N" 2 1000000 || die "--idle-conns wants 2..1000000"
in_range "$PORT_BASE" 1024 65000 || die "--port-base wants 1024..65000"
in_range "$WARMUP" 0 600 || die "--warmup wants 0..600 seconds"
[[ $SETTLE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--idle-settle wants seconds"
for k in $CASES; do
    case $k in keepalive|handshake|resumed) ;; *) die "--cases wants keepalive, handshake, resumed" ;; esac
done
BACKEND1=127.0.0.1:19101
BACKEND2=127.0.0.1:19102
declare -A PORT=([ringlb]=$PORT_BASE [haproxy]=$((PORT_BASE + 1)) [nginx]=$((PORT_BASE + 2)))
[ "$DURATION" -lt "$WARMUP" ] && WARMUP=$DURATION
case $ONLY in
    "") PROXIES=(ringlb haproxy nginx) ;;
    ringlb|haproxy|nginx) PROXIES=("$ONLY") ;;
    *) die "--only wants ringlb, haproxy or nginx" ;;
esac

# ------------------------------------------------------------------------------------------
# prerequisites

[ -x "$BUILD/rlb-backend" ] ||
    die "$BUILD/rlb-backend missing: cmake -S . -B build && cmake --build build --target rlb-backend"
if [[ " ${PROXIES[*]} " == *" ringlb "* ]]; then
    [ -x "$BUILD/ringlb" ] ||
        die "$BUILD/ringlb missing: cmake -S . -B build && cmake --build build --target ringlb"
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
command -v taskset >/dev/null || missing+=(util-linux)
command -v cc >/dev/null || missing+=(gcc)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
for p in "${PROXIES[@]}"; do
    case $p in
        haproxy) command -v haproxy >/dev/null || missing+=(haproxy) ;;
        nginx) command -v nginx >/dev/null || missing+=(nginx-light) ;;
    esac
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "tls.sh: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# File descriptors: 10k idle connections (client and proxy side).
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 1048576 ]; then
    ulimit -Hn 1048576 2>/dev/null || true
    hard=$(ulimit -Hn)
fi
ulimit -n "$hard" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
MAXCONN=$((NOFILE - 500))
[ "$MAXCONN" -gt 100000 ] && MAXCONN=100000
if [ "$SKIP_IDLE" -eq 0 ] && [ "$NOFILE" -lt $((IDLE_N + 200)) ]; then
    die "open-file limit $NOFILE is too low for --idle-conns $IDLE_N"
fi

NCPU=$(nproc)
PROXY_CPU=0
LOAD_CPU=1
if [ "$NCPU" -lt 2 ]; then
    echo "tls.sh: warning: one CPU only: proxy, backend and wrk share CPU 0" >&2
    LOAD_CPU=0
fi

for p in 19101 19102 "${PORT[@]}"; do
    ! port_busy "$p" || die "127.0.0.1:$p is already in use (a previous run still alive?)"
done

[ -n "$OUT" ] || OUT=$ROOT/bench/out/$(date +%Y%m%d-%H%M%S)-tls
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------------------------------------
# certificate and the no-resumption shim for wrk

CERT=$OUT/cert.pem
KEY=$OUT/key.pem
PEM=$OUT/cert-key.pem
(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$KEY" -out "$CERT" -days 30 -subj "/CN=$SNI" -addext "subjectAltName=DNS:$SNI" \
    >"$OUT/openssl-req.log" 2>&1) || die "certificate generation failed: $(cat "$OUT/openssl-req.log")"
(umask 077 && cat "$CERT" "$KEY" >"$PEM")

SHIM=$OUT/tls_noresume.so
cc -O2 -Wall -shared -fPIC -o "$SHIM" "$ROOT/bench/tls_noresume.c" -ldl -lssl \
    >"$OUT/shim-cc.log" 2>&1 || die "cannot build the wrk shim: $(cat "$OUT/shim-cc.log")"

# ------------------------------------------------------------------------------------------
# processes

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PID[@]}" "${IDLE_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        local alive=0
        for p in "${PID[@]}" "${IDLE_PIDS[@]}"; do
            kill -0 "$p" 2>/dev/null && alive=1
        done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    for p in "${PID[@]}" "${IDLE_PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


wait_https() {   # port timeout_s -> 0 when GET / over TLS answers with the backend's body
    local port=$1 deadline=$((SECONDS + $2)) body
    while [ $SECONDS -lt "$deadline" ]; do
        body=$(curl -sk -m 2 --resolve "$SNI:$port:127.0.0.1" "https://$SNI:$port/" \
            2>/dev/null || true)
        [[ $body == "hello from "* ]] && return 0
        sleep 0.2
    done
    return 1
}

start_backend() {
    taskset -c "$LOAD_CPU" "$BUILD/rlb-backend" --listen "$BACKEND1" --listen "$BACKEND2" \
        --threads 2 --name bench >"$OUT/backend.log" 2>&1 &
    PID[backend]=$!
    local deadline=$((SECONDS + 10))
    while [ "$(grep -c '^listening ' "$OUT/backend.log" 2>/dev/null)" -lt 2 ]; do
        kill -0 "${PID[backend]}" 2>/dev/null || die "rlb-backend exited: $(cat "$OUT/backend.log")"
        [ $SECONDS -lt $deadline ] || die "rlb-backend did not start"
        sleep 0.05
    done
}

fill_template() {   # template output port
    sed -e "s|@THREADS@|$THREADS|g" -e "s|@BACKEND1@|$BACKEND1|g" -e "s|@BACKEND2@|$BACKEND2|g" \
        -e "s|@MAXCONN@|$MAXCONN|g" -e "s|@OUT@|$OUT|g" -e "s|@PORT@|$3|g" \
        -e "s|@CERT@|$CERT|g" -e "s|@KEY@|$KEY|g" -e "s|@PEM@|$PEM|g" "$1" >"$2"
}

write_ringlb_config() {   # file port
    cat >"$1" <<EOF
# Generated by bench/tls.sh: one HTTPS listener forwarding to both rlb-backend listeners.
# idle_timeout 120s like HAProxy's and nginx's keep-alive timeouts.
threads: $THREADS
shutdown_timeout: 2s
listeners:
  - name: bench
    listen: "127.0.0.1:$2"
    protocol: HTTPS
    idle_timeout: 120s
    tls:
      certificates:
        - { cert: "$CERT", key: "$KEY" }
      security_policy: ELBSecurityPolicy-TLS13-1-2-2021-06
    rules: []
    default_action:
      forward:
        target_groups:
          - { name: bench }
target_groups:
  - name: bench
    protocol: HTTP
    algorithm: round_robin
    health_check:
      enabled: false
    targets:
      - $BACKEND1
      - $BACKEND2
EOF
}

start_proxy() {
    local name=$1 port=${PORT[$1]}
    case $name in
        ringlb)
            write_ringlb_config "$OUT/ringlb.yaml" "$port"
            taskset -c "$PROXY_CPU" "$BUILD/ringlb" -c "$OUT/ringlb.yaml" --threads "$THREADS" \
                --log-level warn >"$OUT/ringlb.log" 2>&1 &
            ;;
        haproxy)
            fill_template "$ROOT/bench/peers/haproxy-tls.cfg.in" "$OUT/haproxy.cfg" "$port"
            taskset -c "$PROXY_CPU" haproxy -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
            ;;
        nginx)
            mkdir -p "$OUT/nginx-client-body" "$OUT/nginx-proxy-temp"
            fill_template "$ROOT/bench/peers/nginx-tls.conf.in" "$OUT/nginx.conf" "$port"
            taskset -c "$PROXY_CPU" nginx -c "$OUT/nginx.conf" -p "$OUT" -e "$OUT/nginx-error.log" \
                >"$OUT/nginx.log" 2>&1 &
            ;;
    esac
    PID[$name]=$!
    if ! wait_https "$port" 15; then
        echo "tls.sh: $name did not answer on https://127.0.0.1:$port; its log:" >&2
        tail -n 20 "$OUT/$name.log" >&2 || true
        [ "$name" = nginx ] && tail -n 20 "$OUT/nginx-error.log" >&2 2>/dev/null
        exit 1
    fi
}

versions() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $NCPU CPUs, $(uname -sr)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pinning: proxies on CPU $PROXY_CPU (1 worker thread); rlb-backend (2 threads) and wrk (-t 2) on CPU $LOAD_CPU"
    for p in "${PROXIES[@]}"; do
        case $p in
            ringlb) echo "ringlb: $("$BUILD/ringlb" version 2>&1 | head -n1 || true) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))" ;;
            haproxy) echo "haproxy: $(haproxy -v 2>&1 | head -n1)" ;;
            nginx) echo "nginx: $(nginx -v 2>&1 | head -n1)" ;;
        esac
    done
    echo "openssl: $(openssl version)"
    echo "wrk: $(wrk -v 2>&1 | head -n1)"
    echo "certificate: ECDSA P-256 self-signed, SAN $SNI"
    echo "duration ${DURATION}s; runs $RUNS; warm-up ${WARMUP}s; cases $CASES; keep-alive conns $KEEPALIVE_CONNS; handshake conns $HANDSHAKE_CONNS; idle conns $([ "$SKIP_IDLE" -eq 1 ] && echo skipped || echo "$IDLE_N")"
}

# The ceiling for full handshakes: ECDSA P-256 signatures per second on one core (CPU 0).
ecdsa_speed() {
    timeout 60 taskset -c "$PROXY_CPU" openssl speed -seconds 3 ecdsap256 >"$OUT/openssl-speed.txt" 2>&1 ||
        true
    awk '/nistp256/ {print $(NF-1), $NF}' "$OUT/openssl-speed.txt" | tail -n1
}

# What a default OpenSSL client (as wrk) negotiates with each proxy: protocol, suite, group,
# signature. The same everywhere, or the comparison is not fair.
negotiated() {   # proxy
    local port=${PORT[$1]} o
    o=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername "$SNI" \
        -alpn http/1.1 </dev/null 2>&1 || true)
    printf '%s: %s, %s, signature %s, ALPN %s\n' "$1" \
        "$(sed -n 's/^New, \(.*\), Cipher is /\1, /p' <<<"$o")" \
        "$(sed -n 's/^Server Temp Key: //p' <<<"$o")" \
        "$(sed -n 's/^Peer signature type: //p' <<<"$o")" \
        "$(sed -n 's/^ALPN protocol: //p' <<<"$o")"
}

# ------------------------------------------------------------------------------------------
# wrk runs



wrk_cmd() {   # case proxy seconds -> the load command, one word per line
    local port=${PORT[$2]}
    case $1 in
        keepalive)
            printf '%s\n' timeout $(($3 + 60)) taskset -c "$LOAD_CPU" wrk -t 2 \
                -c "$KEEPALIVE_CONNS" -d "${3}s" --latency "https://127.0.0.1:$port/" ;;
        handshake)
            printf '%s\n' timeout $(($3 + 60)) env "LD_PRELOAD=$SHIM" taskset -c "$LOAD_CPU" \
                wrk -t 2 -c "$HANDSHAKE_CONNS" -d "${3}s" --latency -H "Connection: close" \
                "https://127.0.0.1:$port/" ;;
        resumed)
            printf '%s\n' timeout $(($3 + 60)) env "LD_PRELOAD=$SHIM" TLS_NORESUME_KEEP=1 \
                taskset -c "$LOAD_CPU" wrk -t 2 -c "$HANDSHAKE_CONNS" -d "${3}s" --latency \
                -H "Connection: close" "https://127.0.0.1:$port/" ;;
    esac
}

run_wrk() {   # case proxy run
    local kase=$1 name=$2 run=$3 f="$OUT/wrk-$1-$2-r$3.txt" before after t0 t1 cmd
    mapfile -t cmd < <(wrk_cmd "$kase" "$name" "$DURATION")
    before=$(proc_tree "${PID[$name]}")
    t0=$(date +%s.%N)
    run_bg "$f" "${cmd[@]}"
    t1=$(date +%s.%N)
    after=$(proc_tree "${PID[$name]}")
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name died during the run (see $OUT/$name.log)"
    local rps reqs p50 p99 errs non2xx ticks cpu util full resumed
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    reqs=$(awk '/ requests in / {print $1}' "$f")
    p50=$(awk '$1 == "50%" {print $2}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f")
    if [ -z "$rps" ] || [ -z "$reqs" ] || [ -z "$p50" ] || [ -z "$p99" ]; then
        die "cannot parse wrk output $f: $(head -c 500 "$f")"
    fi
    errs=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$f")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
    [ "$reqs" -gt 0 ] || echo "tls.sh: warning: $name served no request in $kase (see $f)" >&2
    ticks=$(( ${after%% *} - ${before%% *} ))
    cpu=$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", t / hz }')
    util=$(awk -v c="$cpu" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", 100 * c / (b - a) }')
    full=-
    resumed=-
    if [ "$kase" = handshake ] || [ "$kase" = resumed ]; then
        full=$(awk '/^tls_noresume: / {print $3}' "$f")
        resumed=$(awk '/^tls_noresume: / {print $5}' "$f")
        [ -n "$full" ] || die "no handshake count from the wrk shim in $f"
        if [ "$kase" = handshake ]; then
            [ "$resumed" -eq 0 ] ||
                echo "tls.sh: warning: $name: $resumed of $((full + resumed)) handshakes resumed (see $f)" >&2
        elif [ $((resumed * 10)) -lt $(((full + resumed) * 9)) ]; then
            echo "tls.sh: warning: $name: only $resumed of $((full + resumed)) handshakes resumed (see $f)" >&2
        fi
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kase" "$name" "$run" "$rps" \
        "$(to_ms "$p50")" "$(to_ms "$p99")" "$cpu" "$reqs" "$(( ${errs:-0} + ${non2xx:-0} ))" \
        "$util" "$full" "$resumed" >>"$OUT/results.tsv"
    printf '  %-9s %-8s run %s: %10s req/s  p50 %8s  p99 %8s  cpu %6ss (%5s%%)  errors %s%s\n' \
        "$kase" "$name" "$run" "$rps" "$p50" "$p99" "$cpu" "$util" \
        "$(( ${errs:-0} + ${non2xx:-0} ))" \
        "$([ "$full" = - ] || echo "  handshakes full $full resumed $resumed")" >&2
}

run_case() {   # case
    local kase=$1 p r cmd
    for p in "${PROXIES[@]}"; do
        [ "$WARMUP" -gt 0 ] || break
        echo "warm-up: $kase $p ${WARMUP}s" >&2
        mapfile -t cmd < <(wrk_cmd "$kase" "$p" "$WARMUP")
        run_bg /dev/null "${cmd[@]}"
    done
    for r in $(seq "$RUNS"); do
        for p in "${PROXIES[@]}"; do
            run_wrk "$kase" "$p" "$r"
        done
    done
}

summarize() {   # case
    python3 - "$OUT/results.tsv" "$1" <<'EOF'
import statistics, sys
kase = sys.argv[2]
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
rows = [r for r in rows if r[0] == kase]
order = [p for p in ("ringlb", "haproxy", "nginx") if any(r[1] == p for r in rows)]
base = "haproxy"
unit = "handshakes/s" if kase in ("handshake", "resumed") else "req/s"
med = {p: statistics.median(float(r[3]) for r in rows if r[1] == p) for p in order}
extra = " | handshakes full / resumed" if kase in ("handshake", "resumed") else ""
if kase == "resumed":
    extra += " | resumed %"
print(f"| proxy | {unit} (median) | {unit} min..max | p50 ms | p99 ms "
      f"| proxy CPU s / 100k req | proxy CPU % of a core | {unit} vs HAProxy | errors{extra} |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:" + "|---:" * extra.count("|") + "|")
for p in order:
    rs = [r for r in rows if r[1] == p]
    rps = [float(r[3]) for r in rs]
    cpu = sum(float(r[6]) for r in rs) / max(1, sum(int(r[7]) for r in rs)) * 100000
    util = statistics.median(float(r[9]) for r in rs)
    ratio = f"{med[p] / med[base]:.2f}x" if med.get(base) else "n/a"
    line = (f"| {p} | {med[p]:,.0f} | {min(rps):,.0f}..{max(rps):,.0f} "
            f"| {statistics.median(float(r[4]) for r in rs):.2f} "
            f"| {statistics.median(float(r[5]) for r in rs):.2f} | {cpu:.3f} | {util:.0f} "
            f"| {ratio} | {sum(int(r[8]) for r in rs)}")
    if extra:
        full, resumed = sum(int(r[10]) for r in rs), sum(int(r[11]) for r in rs)
        line += f" | {full} / {resumed}"
        if kase == "resumed":
            line += f" | {100 * resumed / max(1, full + resumed):.1f}"
    print(line + " |")
EOF
}

# ------------------------------------------------------------------------------------------
# idle connections (as run.sh --idle, over TLS)

open_idle() {   # port n log: start idle_conns.py --tls, wait until its connections are open
    local port=$1 n=$2 log=$3 deadline pid
    taskset -c "$LOAD_CPU" python3 "$ROOT/bench/idle_conns.py" --port "$port" -n "$n" \
        --hold 900 --tls --sni "$SNI" >"$log" 2>&1 &
    pid=$!
    IDLE_PIDS+=("$pid")
    deadline=$((SECONDS + 300))
    until grep -q '^ready ' "$log"; do
        kill -0 "$pid" 2>/dev/null || die "idle_conns.py failed: $(cat "$log")"
        [ $SECONDS -lt $deadline ] || die "idle_conns.py did not finish opening connections"
        sleep 0.2
    done
    sleep "$SETTLE"
}

run_idle() {   # proxy
    local name=$1 port=${PORT[$1]} before mid after half n1 n2 p
    curl -sk -o /dev/null --resolve "$SNI:$port:127.0.0.1" "https://$SNI:$port/"
    sleep "$SETTLE"
    half=$((IDLE_N / 2))
    IDLE_PIDS=()
    before=$(proc_tree "${PID[$name]}")
    open_idle "$port" "$half" "$OUT/idle-$1-a.log"
    mid=$(proc_tree "${PID[$name]}")
    open_idle "$port" "$((IDLE_N - half))" "$OUT/idle-$1-b.log"
    after=$(proc_tree "${PID[$name]}")
    for p in "${IDLE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${IDLE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    IDLE_PIDS=()
    n1=$(awk '/^ready / {print $2}' "$OUT/idle-$1-a.log")
    n2=$(awk '/^ready / {print $2}' "$OUT/idle-$1-b.log")
    local rb=${before##* } rm=${mid##* } ra=${after##* }
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$n1" "$n2" "$rb" "$rm" "$ra" >>"$OUT/idle.tsv"
    awk -v p="$name" -v a="$ra" -v m="$rm" -v b="$rb" -v n1="$n1" -v n2="$n2" 'BEGIN {
        n = n1 + n2
        printf "| %s | %d | %.1f | %.1f | %.2f | %.2f |\n", p, n, b / 1024, a / 1024,
            n ? (a - b) / n : 0, n2 ? (a - m) / n2 : 0
    }' >>"$OUT/idle.md"
    sleep "$SETTLE"; sleep 1    # let the proxy close the released connections before the next one
}

# ------------------------------------------------------------------------------------------

versions >"$OUT/env.txt"
speed=$(ecdsa_speed)
echo "ecdsap256 on CPU $PROXY_CPU (openssl speed -seconds 3): sign/s ${speed% *}, verify/s ${speed#* }" \
    >>"$OUT/env.txt"
cat "$OUT/env.txt" >&2
start_backend
for p in "${PROXIES[@]}"; do
    start_proxy "$p"
    echo "negotiated with $(negotiated "$p")" | tee -a "$OUT/env.txt" >&2
done

printf 'case\tproxy\trun\treq_s\tp50_ms\tp99_ms\tcpu_s\trequests\terrors\tcpu_pct\thandshakes_full\thandshakes_resumed\n' \
    >"$OUT/results.tsv"
for kase in $CASES; do
    case $kase in
        keepalive) echo "case: TLS keep-alive, $KEEPALIVE_CONNS connections" >&2 ;;
        handshake) echo "case: full TLS handshakes, $HANDSHAKE_CONNS connections, Connection: close" >&2 ;;
        resumed) echo "case: resumed TLS handshakes, $HANDSHAKE_CONNS connections, Connection: close" >&2 ;;
    esac
    run_case "$kase"
    summarize "$kase" >"$OUT/$kase.md"
done

if [ "$SKIP_IDLE" -eq 0 ]; then
    printf '| proxy | idle TLS connections | RSS before MiB | RSS after MiB | KiB / idle conn (all) | KiB / idle conn (second half) |\n' \
        >"$OUT/idle.md"
    printf '|---|---:|---:|---:|---:|---:|\n' >>"$OUT/idle.md"
    for p in "${PROXIES[@]}"; do
        echo "case 3: idle TLS keep-alive: $p, $IDLE_N connections" >&2
        run_idle "$p"
    done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"

echo
sed 's/^/    /' "$OUT/env.txt"
echo
for kase in $CASES; do
    case $kase in
        keepalive) echo "### TLS keep-alive, $KEEPALIVE_CONNS connections (wrk -t2 -c$KEEPALIVE_CONNS -d${DURATION}s --latency https://...)" ;;
        handshake) echo "### Full TLS handshakes, $HANDSHAKE_CONNS connections (wrk -t2 -c$HANDSHAKE_CONNS -d${DURATION}s -H 'Connection: close', no resumption)" ;;
        resumed) echo "### Resumed TLS handshakes, $HANDSHAKE_CONNS connections (wrk -t2 -c$HANDSHAKE_CONNS -d${DURATION}s -H 'Connection: close', session tickets)" ;;
    esac
    echo
    cat "$OUT/$kase.md"
    echo
done
echo "Ceiling: ECDSA P-256 sign/s on one core (openssl speed): ${speed% *}"
if [ "$SKIP_IDLE" -eq 0 ]; then
    echo
    echo "### Idle TLS 1.3 keep-alive connections ($IDLE_N, two batches)"
    echo
    cat "$OUT/idle.md"
fi
echo
echo "raw results: ${OUT#"$ROOT"/}"
