#!/usr/bin/env bash
# bench/run.sh — the same plaintext keep-alive load against ringlb, HAProxy and nginx.
#
#   bench/run.sh [--duration S] [--runs N] [--conns "100 1000"] [--threads T]
#                [--only ringlb|haproxy|nginx] [--idle] [--idle-conns N] [--port-base P]
#                [--rules N] [--observability] [--close] [--targets N] [--bytes N]
#                [--warmup S] [--idle-settle S] [--out DIR]
#
# bench/suite.sh runs every mode below (and bench/tls.sh, bench/callgrind.sh) in one go.
#
# Throughput mode (default): one rlb-backend (2 threads, listeners 127.0.0.1:19001 and :19002)
# and wrk run on CPU 1; each proxy runs on CPU 0 with T worker threads (--threads, default 1)
# and round-robins over the two backend listeners: ringlb on 127.0.0.1:18080, HAProxy on :18081,
# nginx on :18082 (--port-base P moves them to P, P+1, P+2). For every connection count, N runs of `wrk -t 2 -c CONNS -d S --latency`
# alternate between the proxies (ringlb, haproxy, nginx, ringlb, ...), after a short warm-up.
# Reported per connection count and proxy: median req/s (min..max), median p50 and p99
# latency, the proxy's CPU seconds per 100k requests (utime+stime of all its processes and
# threads from /proc, before vs after each run) and the req/s ratio against HAProxy.
#
# Rules mode (--rules N): ringlb alone, twice side by side in the same run: "ringlb-r1" with one
# host rule and "ringlb-rN" with N host rules (h1.example.com .. hN.example.com, each
# forwarding to the bench group); wrk sends "Host: hN.example.com", the last rule, so a linear
# scan would pay for all N. The ratio column compares against ringlb-r1.
#
# Observability mode (--observability): ringlb alone, three ways side by side in the same run:
# "ringlb-metrics" (metrics only — they are always on, there is no switch to turn them off),
# "ringlb-log-shm" (metrics + access log to a file on /dev/shm: formatting and the writer
# thread, no disk) and "ringlb-log-disk" (metrics + access log to a file under bench/out, on the
# real file system). Each has an admin listener; after every run the access log's lines and
# dropped lines (ringlb_access_log_lines_total / _dropped_total) are read from /metrics and the
# log files are truncated (the disk use stays bounded). The ratio column compares against
# ringlb-metrics; obs.md lists the log lines written and dropped.
#
# Connection churn (--close): wrk sends "Connection: close" with every request, so every request
# is a new client connection (wrk reconnects after each response). The proxies' configurations
# are unchanged: each answers with "Connection: close" and closes the client connection (checked
# with curl before the runs, recorded in env.txt) while keeping its keep-alive connections to the
# backend. rlb-backend's /stats is read before and after every run: the table adds the backend
# connections opened per 1,000 requests (about 0 when the upstream keep-alive holds).
#
# Targets (--targets N, N <= 1000): the three proxies run twice side by side in the same run,
# with the usual 2 targets and with one group of N targets ("ringlb-tN", "haproxy-tN",
# "nginx-tN" on ports P+11..P+13): rlb-backend also listens on 127.0.0.1:20000..20000+N-1
# (--listen-range), ringlb has one target group of N targets, HAProxy N server lines, nginx N
# upstream servers, all round robin; nginx's upstream keep-alive cache is raised to N+256
# connections so that each target keeps an idle connection, as ringlb's and HAProxy's
# per-target pools do. Runs alternate over all six; the ratio column of a -tN row compares it
# with the same proxy's 2-target row.
#
# Large responses (--bytes N): wrk fetches /bytes/N (N body bytes from rlb-backend) instead of
# /; the table adds MB/s (req/s x N / 10^6). nginx gets `proxy_max_temp_file_size 0` and
# 8 x 16 KiB proxy buffers so that it streams through memory like ringlb and HAProxy (its
# default would spill responses above 32 KiB to temporary files).
#
# Idle mode (--idle): bench/idle_conns.py opens N (default 10000) keep-alive connections to each
# proxy, sends one request on each and holds them; the proxy's VmRSS growth (all of its
# processes) divided by N is its memory per idle connection (KiB/conn). The connections are
# opened in two equal batches; the growth over the second batch alone (KiB/conn, second half)
# leaves out fixed costs that only appear with first use (buffer pools, allocator arenas).
#
# --warmup S sets the warm-up per proxy before the runs (default 2 s); --idle-settle S the pause
# before and after each batch of idle connections (default 2 s). The script builds
# nothing: it expects build/ringlb and build/rlb-backend (RINGLB_BUILD_DIR overrides the
# directory). It installs haproxy, nginx-light and wrk with apt-get when they are missing. Raw
# results (wrk output, configs, logs, results.tsv, table.md) go to bench/out/<timestamp>/ (or
# --out DIR). Every process it starts is stopped on exit; all traffic stays on 127.0.0.1.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${RINGLB_BUILD_DIR:-$ROOT/build}
PATH=$PATH:/usr/sbin:/sbin

DURATION=10
RUNS=3
CONNS="100 1000"
THREADS=1
ONLY=""
IDLE=0
IDLE_N=10000
RULES=0
OBS=0
WARMUP=2
SETTLE=2
CLOSE=0
TARGETS=0
BYTES=0
OUT=""
TGT_PORT_BASE=20000

PORT_BASE=18080
declare -A PID=()
IDLE_PIDS=()

usage() {
    sed -n '3,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

die() {
    echo "run.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
        --duration) DURATION=${2:?}; shift 2 ;;
        --runs) RUNS=${2:?}; shift 2 ;;
        --conns) CONNS=${2:?}; shift 2 ;;
        --threads) THREADS=${2:?}; shift 2 ;;
        --only) ONLY=${2:?}; shift 2 ;;
        --idle) IDLE=1; shift ;;
        --idle-conns) IDLE_N=${2:?}; shift 2 ;;
        --port-base) PORT_BASE=${2:?}; shift 2 ;;
        --rules) RULES=${2:?}; shift 2 ;;
        --observability) OBS=1; shift ;;
        --close) CLOSE=1; shift ;;
        --targets) TARGETS=${2:?}; shift 2 ;;
        --bytes) BYTES=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --idle-settle) SETTLE=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; usage ;;
    esac
done
in_range "$DURATION" 1 3600 || die "--duration wants 1..3600 seconds"
in_range "$RUNS" 1 100 || die "--runs wants 1..100"
in_range "$THREADS" 1 64 || die "--threads wants 1..64"
in_range "$IDLE_N" 1 1000000 || die "--idle-conns wants 1..1000000"
in_range "$PORT_BASE" 1024 65000 || die "--port-base wants 1024..65000"
in_range "$WARMUP" 0 600 || die "--warmup wants 0..600 seconds"
[[ $SETTLE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--idle-settle wants seconds"
in_range "$TARGETS" 0 1000 || die "--targets wants 3..1000"
[ "$TARGETS" -eq 0 ] || [ "$TARGETS" -ge 3 ] || die "--targets wants 3..1000 (2 is the default)"
in_range "$BYTES" 0 1073741824 || die "--bytes wants 1..1073741824"
for c in $CONNS; do
    in_range "$c" 2 1000000 || die "--conns wants numbers >= 2 (wrk -t 2), got '$c'"
done
BACKEND1=127.0.0.1:19001
BACKEND2=127.0.0.1:19002
declare -A PORT=([ringlb]=$PORT_BASE [haproxy]=$((PORT_BASE + 1)) [nginx]=$((PORT_BASE + 2)))
[ "$DURATION" -lt "$WARMUP" ] && WARMUP=$DURATION
case $ONLY in
    "") PROXIES=(ringlb haproxy nginx) ;;
    ringlb|haproxy|nginx) PROXIES=("$ONLY") ;;
    *) die "--only wants ringlb, haproxy or nginx" ;;
esac
WRK_HEADER=()
WRK_PATH=/
[ "$BYTES" -eq 0 ] || WRK_PATH=/bytes/$BYTES
[ "$CLOSE" -eq 0 ] || WRK_HEADER=(-H "Connection: close")
NGINX_EXTRA=""
[ "$BYTES" -eq 0 ] ||
    NGINX_EXTRA=$'            proxy_max_temp_file_size 0;\n            proxy_buffer_size 16k;\n            proxy_buffers 8 16k;'
declare -A NTARGETS=()
if [ "$TARGETS" -gt 0 ]; then
    if [ "$RULES" -ne 0 ] || [ "$OBS" -ne 0 ]; then
        die "--targets runs apart from --rules and --observability"
    fi
    base=("${PROXIES[@]}")
    PROXIES=()
    for p in "${base[@]}"; do
        PROXIES+=("$p" "$p-t$TARGETS")
        NTARGETS[$p-t$TARGETS]=$TARGETS
    done
    PORT[ringlb-t$TARGETS]=$((PORT_BASE + 11))
    PORT[haproxy-t$TARGETS]=$((PORT_BASE + 12))
    PORT[nginx-t$TARGETS]=$((PORT_BASE + 13))
fi
if [ "$RULES" -gt 0 ]; then
    in_range "$RULES" 1 100000 || die "--rules wants 1..100000"
    PROXIES=(ringlb-r1 "ringlb-r$RULES")
    PORT[ringlb-r1]=$((PORT_BASE + 3))
    PORT[ringlb-r$RULES]=$((PORT_BASE + 4))
    WRK_HEADER=(-H "Host: h$RULES.example.com")
fi
OBS_SHM_DIR=""
if [ "$OBS" -eq 1 ]; then
    [ "$RULES" -eq 0 ] || die "--observability and --rules are separate runs"
    PROXIES=(ringlb-metrics ringlb-log-shm ringlb-log-disk)
    PORT[ringlb-metrics]=$((PORT_BASE + 5))
    PORT[ringlb-log-shm]=$((PORT_BASE + 6))
    PORT[ringlb-log-disk]=$((PORT_BASE + 7))
    declare -A ADMIN_PORT=([ringlb-metrics]=$((PORT_BASE + 8)) [ringlb-log-shm]=$((PORT_BASE + 9))
        [ringlb-log-disk]=$((PORT_BASE + 10)))
    declare -A ALOG=()
fi

# ------------------------------------------------------------------------------------------
# prerequisites

[ -x "$BUILD/rlb-backend" ] ||
    die "$BUILD/rlb-backend missing: cmake -S . -B build && cmake --build build --target rlb-backend"
if [[ " ${PROXIES[*]} " == *" ringlb"* ]]; then
    [ -x "$BUILD/ringlb" ] ||
        die "$BUILD/ringlb missing: cmake -S . -B build && cmake --build build --target ringlb"
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
command -v taskset >/dev/null || missing+=(util-linux)
for p in "${PROXIES[@]}"; do
    case $p in
        haproxy*) command -v haproxy >/dev/null || missing+=(haproxy) ;;
        nginx*) command -v nginx >/dev/null || missing+=(nginx-light) ;;
    esac
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "run.sh: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# File descriptors: 10k idle connections, or 1000 client + upstream connections per proxy.
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
if [ "$IDLE" -eq 1 ] && [ "$NOFILE" -lt $((IDLE_N + 200)) ]; then
    die "open-file limit $NOFILE is too low for --idle-conns $IDLE_N"
fi

NCPU=$(nproc)
PROXY_CPU=0
LOAD_CPU=1
if [ "$NCPU" -lt 2 ]; then
    echo "run.sh: warning: one CPU only: proxy, backend and wrk share CPU 0" >&2
    LOAD_CPU=0
fi

for p in 19001 19002 "${PORT[@]}" ${ADMIN_PORT[@]+"${ADMIN_PORT[@]}"}; do
    ! port_busy "$p" || die "127.0.0.1:$p is already in use (a previous run still alive?)"
done
# (the --targets range is checked by rlb-backend itself: it refuses a port in use)

[ -n "$OUT" ] || OUT=$ROOT/bench/out/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CLK_TCK=$(getconf CLK_TCK)

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
        for p in "${PID[@]}"; do
            kill -0 "$p" 2>/dev/null && alive=1
        done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    for p in "${PID[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [ -z "$OBS_SHM_DIR" ] || rm -rf "$OBS_SHM_DIR"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


wait_http() {   # port timeout_s -> 0 when GET / answers 200 with the backend's body
    local port=$1 deadline=$((SECONDS + $2)) body
    while [ $SECONDS -lt "$deadline" ]; do
        body=$(curl -s -m 2 "http://127.0.0.1:$port/" 2>/dev/null || true)
        [[ $body == "hello from "* ]] && return 0
        sleep 0.2
    done
    return 1
}

start_backend() {
    local range=() want=2
    if [ "$TARGETS" -gt 0 ]; then
        range=(--listen-range "127.0.0.1:$TGT_PORT_BASE-$((TGT_PORT_BASE + TARGETS - 1))")
        want=$((2 + TARGETS))
    fi
    taskset -c "$LOAD_CPU" "$BUILD/rlb-backend" --listen "$BACKEND1" --listen "$BACKEND2" \
        ${range[@]+"${range[@]}"} --threads 2 --name bench >"$OUT/backend.log" 2>&1 &
    PID[backend]=$!
    local deadline=$((SECONDS + 10))
    while [ "$(grep -c '^listening ' "$OUT/backend.log" 2>/dev/null)" -lt "$want" ]; do
        kill -0 "${PID[backend]}" 2>/dev/null || die "rlb-backend exited: $(cat "$OUT/backend.log")"
        [ $SECONDS -lt $deadline ] || die "rlb-backend did not start"
        sleep 0.05
    done
}

# With N targets (N > 2) the server line of @BACKEND1@ is repeated for every target (b1..bN,
# 127.0.0.1:20000..) and the one of @BACKEND2@ dropped; nginx's `keepalive 256` becomes N+256.
# NGINX_EXTRA (--bytes) goes after nginx's proxy_set_header line.
fill_template() {   # template output port [targets]
    awk -v n="${4:-2}" -v base="$TGT_PORT_BASE" -v extra="$NGINX_EXTRA" '
        n != 2 && !/^ *#/ && /@BACKEND2@/ { next }
        n != 2 && !/^ *#/ && /@BACKEND1@/ {
            for (i = 1; i <= n; i++) {
                l = $0; sub(/ b1 /, " b" i " ", l); sub(/@BACKEND1@/, "127.0.0.1:" (base + i - 1), l)
                print l
            }
            next
        }
        n != 2 && /^ *keepalive 256;/ { sub(/256/, n + 256) }
        { print }
        extra != "" && /proxy_set_header Connection "";/ { print extra }' "$1" |
    sed -e "s|@THREADS@|$THREADS|g" -e "s|@BACKEND1@|$BACKEND1|g" -e "s|@BACKEND2@|$BACKEND2|g" \
        -e "s|@MAXCONN@|$MAXCONN|g" -e "s|@OUT@|$OUT|g" -e "s|@PORT@|$3|g" >"$2"
}

targets_yaml() {   # n -> the YAML list items of the bench group's targets
    local i
    if [ "${1:-2}" -le 2 ]; then
        printf '      - %s\n      - %s\n' "$BACKEND1" "$BACKEND2"
        return
    fi
    for ((i = 0; i < $1; i++)); do
        printf '      - 127.0.0.1:%d\n' $((TGT_PORT_BASE + i))
    done
}

write_ringlb_config() {   # file [port [rules [admin_port [access_log [targets]]]]]
    local port=${2:-${PORT[ringlb]}} nrules=${3:-0} admin=${4:-} alog=${5:-} ntg=${6:-2}
    cat >"$1" <<EOF
# Generated by bench/run.sh: one plaintext listener forwarding to the rlb-backend listeners.
threads: $THREADS
shutdown_timeout: 2s
$( [ -z "$admin" ] || printf 'admin: { listen: "127.0.0.1:%s" }' "$admin")
$( [ -z "$alog" ] || printf 'access_log: { path: "%s" }' "$alog")
listeners:
  - name: bench
    listen: "127.0.0.1:$port"
    protocol: HTTP
    rules:$( [ "$nrules" -gt 0 ] || printf ' []')
$(
    # rule i: host hI.example.com -> the bench group; numbered so that the last one is
    # the one wrk's Host header asks for
    i=1
    while [ "$i" -le "$nrules" ]; do
        printf '      - { priority: %d, conditions: { host_header: [h%d.example.com] }, ' "$i" \
            "$((i + RULES - nrules))"
        printf 'action: { forward: { target_groups: [ { name: bench } ] } } }\n'
        i=$((i + 1))
    done
)
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
$(targets_yaml "$ntg")
EOF
}

start_proxy() {
    local name=$1 port=${PORT[$1]} ntg=${NTARGETS[$1]:-2}
    case $name in
        ringlb|ringlb-t*)
            write_ringlb_config "$OUT/$name.yaml" "$port" 0 "" "" "$ntg"
            taskset -c "$PROXY_CPU" "$BUILD/ringlb" -c "$OUT/$name.yaml" --threads "$THREADS" \
                --log-level warn >"$OUT/$name.log" 2>&1 &
            ;;
        ringlb-r*)
            write_ringlb_config "$OUT/$name.yaml" "$port" "${name#ringlb-r}"
            taskset -c "$PROXY_CPU" "$BUILD/ringlb" -c "$OUT/$name.yaml" --threads "$THREADS" \
                --log-level warn >"$OUT/$name.log" 2>&1 &
            ;;
        ringlb-metrics|ringlb-log-*)
            case $name in
                ringlb-log-shm) ALOG[$name]=$OBS_SHM_DIR/access.log ;;
                ringlb-log-disk) ALOG[$name]=$OUT/access-disk.log ;;
            esac
            write_ringlb_config "$OUT/$name.yaml" "$port" 0 "${ADMIN_PORT[$name]}" \
                "${ALOG[$name]:-}"
            taskset -c "$PROXY_CPU" "$BUILD/ringlb" -c "$OUT/$name.yaml" --threads "$THREADS" \
                --log-level warn >"$OUT/$name.log" 2>&1 &
            ;;
        haproxy|haproxy-t*)
            fill_template "$ROOT/bench/peers/haproxy.cfg.in" "$OUT/$name.cfg" "$port" "$ntg"
            taskset -c "$PROXY_CPU" haproxy -db -f "$OUT/$name.cfg" >"$OUT/$name.log" 2>&1 &
            ;;
        nginx|nginx-t*)
            # each nginx gets its own pid file and temporary directories
            mkdir -p "$OUT/$name"/{client-body,proxy-temp}
            fill_template "$ROOT/bench/peers/nginx.conf.in" "$OUT/$name.conf" "$port" "$ntg"
            sed -i -e "s|$OUT/nginx.pid|$OUT/$name/nginx.pid|" \
                -e "s|$OUT/nginx-client-body|$OUT/$name/client-body|" \
                -e "s|$OUT/nginx-proxy-temp|$OUT/$name/proxy-temp|" \
                -e "s|$OUT/nginx-error.log|$OUT/$name-error.log|" "$OUT/$name.conf"
            taskset -c "$PROXY_CPU" nginx -c "$OUT/$name.conf" -p "$OUT" -e "$OUT/$name-error.log" \
                >"$OUT/$name.log" 2>&1 &
            ;;
    esac
    PID[$name]=$!
    if ! wait_http "$port" 15; then
        echo "run.sh: $name did not answer on 127.0.0.1:$port; its log:" >&2
        tail -n 20 "$OUT/$name.log" >&2 || true
        [[ $name == nginx* ]] && tail -n 20 "$OUT/$name-error.log" >&2 2>/dev/null
        exit 1
    fi
    if [ "$CLOSE" -eq 1 ]; then
        # the proxy must answer "Connection: close" and close: else wrk would keep the connection
        local h
        h=$(curl -s -m 5 -D - -o /dev/null -H "Connection: close" "http://127.0.0.1:$port/" |
            tr -d '\r' | awk 'tolower($1) == "connection:" {print tolower($2)}')
        echo "close check: $name answers a Connection: close request with Connection: ${h:-(none)}" \
            >>"$OUT/env.txt"
        [ "$h" = close ] || echo "run.sh: warning: $name did not answer Connection: close" >&2
    fi
}

versions() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $NCPU CPUs, $(uname -sr)"
    echo "pinning: proxies on CPU $PROXY_CPU; rlb-backend (2 threads) and wrk (-t 2) on CPU $LOAD_CPU"
    for p in "${PROXIES[@]}"; do
        case $p in
            ringlb|ringlb-metrics)
                echo "ringlb: $("$BUILD/ringlb" version 2>&1 | head -n1 || true)" ;;
            haproxy) echo "haproxy: $(haproxy -v 2>&1 | head -n1)" ;;
            nginx) echo "nginx: $(nginx -v 2>&1 | head -n1)" ;;
        esac
    done
    echo "wrk: $(wrk -v 2>&1 | head -n1)"
    echo "proxy worker threads: $THREADS; duration ${DURATION}s; runs $RUNS; conns $CONNS; warm-up ${WARMUP}s"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "request: GET $WRK_PATH${WRK_HEADER[*]:+ (wrk ${WRK_HEADER[*]})}$([ "$TARGETS" -eq 0 ] || echo "; targets 2 and $TARGETS")"
}

backend_conns() {   # -> connections rlb-backend has accepted so far (its /stats; +1 for this one)
    curl -s -m 5 "http://$BACKEND1/stats" | sed -n 's/.*"connections":\([0-9]*\).*/\1/p'
}

# ------------------------------------------------------------------------------------------
# throughput runs



run_wrk() {   # proxy conns run
    local name=$1 conns=$2 run=$3 port=${PORT[$1]}
    local f="$OUT/wrk-$name-c$conns-r$run.txt" before after bc0 bc1
    bc0=$(backend_conns)
    before=$(proc_tree "${PID[$name]}")
    run_bg "$f" timeout $((DURATION + 60)) taskset -c "$LOAD_CPU" wrk -t 2 -c "$conns" \
        -d "${DURATION}s" --latency ${WRK_HEADER[@]+"${WRK_HEADER[@]}"} \
        "http://127.0.0.1:$port$WRK_PATH"
    after=$(proc_tree "${PID[$name]}")
    bc1=$(backend_conns)
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name died during the run (see $OUT/$name.log)"
    local rps reqs p50 p99 errs non2xx ticks cpu
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    reqs=$(awk '/ requests in / {print $1}' "$f")
    p50=$(awk '$1 == "50%" {print $2}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f")
    if [ -z "$rps" ] || [ -z "$reqs" ] || [ -z "$p50" ] || [ -z "$p99" ]; then
        die "cannot parse wrk output $f: $(head -c 500 "$f")"
    fi
    errs=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$f")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
    [ "$reqs" -gt 0 ] || echo "run.sh: warning: $name served no request at c=$conns (see $f)" >&2
    ticks=$(( ${after%% *} - ${before%% *} ))
    cpu=$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", t / hz }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" "$run" "$rps" \
        "$(to_ms "$p50")" "$(to_ms "$p99")" "$cpu" "$reqs" "$(( ${errs:-0} + ${non2xx:-0} ))" \
        "$(( ${bc1:-0} - ${bc0:-0} - 1 ))" >>"$OUT/results.tsv"
    printf '  %-8s c=%-5s run %s: %10s req/s  p50 %8s  p99 %8s  cpu %6ss  errors %s\n' \
        "$name" "$conns" "$run" "$rps" "$p50" "$p99" "$cpu" "$(( ${errs:-0} + ${non2xx:-0} ))" >&2
    [ "$OBS" -eq 0 ] || obs_after_run "$name" "$conns" "$run" "$reqs"
}

# Observability mode: the access log counters after a run, then truncate the log file (ringlb
# appends, so it goes on writing at the new end).
obs_after_run() {   # proxy conns run requests
    local name=$1 lines dropped
    local m
    m=$(curl -s -m 5 "http://127.0.0.1:${ADMIN_PORT[$name]}/metrics" || true)
    lines=$(awk '$1 == "ringlb_access_log_lines_total" {print $2}' <<<"$m")
    dropped=$(awk '$1 == "ringlb_access_log_dropped_total" {print $2}' <<<"$m")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$2" "$3" "$4" "${lines:-?}" "${dropped:-?}" \
        >>"$OUT/obs.tsv"
    if [ -n "${ALOG[$name]:-}" ] && [ -f "${ALOG[$name]}" ]; then
        : >"${ALOG[$name]}"
    fi
}

summarize() {
    python3 - "$OUT/results.tsv" "$BYTES" "$CLOSE" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if not l.startswith("proxy\t")]
nbytes, close = int(sys.argv[2]), sys.argv[3] == "1"
order = ["ringlb", "haproxy", "nginx"]
obs = ["ringlb-metrics", "ringlb-log-shm", "ringlb-log-disk"]
tgts = {r[0] for r in rows if r[0].split("-t")[0] in order and "-t" in r[0]}
rules = sorted({r[0] for r in rows if r[0].startswith("ringlb-r")},
               key=lambda n: int(n[len("ringlb-r"):]))
order = [q for p in order for q in [p] + sorted(t for t in tgts if t.startswith(p + "-"))]
order += rules + obs
base = "haproxy" if any(r[0] == "haproxy" for r in rows) else (rules[0] if rules else "haproxy")
if any(r[0] == "ringlb-metrics" for r in rows):
    base = "ringlb-metrics"
def base_of(p):   # a -tN row compares with the same proxy's 2-target row
    return p.rsplit("-t", 1)[0] if p in tgts else base
conns = sorted({int(r[1]) for r in rows})
vs = base + " (-tN rows: 2-target row)" if tgts else base
print("| conns | proxy | req/s (median) | req/s min..max | p50 ms | p99 ms "
      f"| proxy CPU s / 100k req | req/s vs {vs} | errors"
      + (" | MB/s (median)" if nbytes else "")
      + (" | backend conns / 1k req" if close else "") + " |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:" + ("|---:" if nbytes else "")
      + ("|---:" if close else "") + "|")
for c in conns:
    med = {}
    for p in order:
        rs = [r for r in rows if r[0] == p and int(r[1]) == c]
        if rs:
            med[p] = statistics.median(float(r[3]) for r in rs)
    for p in order:
        rs = [r for r in rows if r[0] == p and int(r[1]) == c]
        if not rs:
            continue
        rps = [float(r[3]) for r in rs]
        cpu = sum(float(r[6]) for r in rs) / max(1, sum(int(r[7]) for r in rs)) * 100000
        ratio = f"{med[p] / med[base_of(p)]:.2f}x" if med.get(base_of(p)) else "n/a"
        line = (f"| {c} | {p} | {med[p]:,.0f} | {min(rps):,.0f}..{max(rps):,.0f} "
                f"| {statistics.median(float(r[4]) for r in rs):.2f} "
                f"| {statistics.median(float(r[5]) for r in rs):.2f} | {cpu:.3f} | {ratio} "
                f"| {sum(int(r[8]) for r in rs)}")
        if nbytes:
            line += f" | {med[p] * nbytes / 1e6:,.0f}"
        if close:
            bc = sum(int(r[9]) for r in rs if len(r) > 9)
            line += f" | {bc * 1000 / max(1, sum(int(r[7]) for r in rs)):.2f}"
        print(line + " |")
EOF
}

# ------------------------------------------------------------------------------------------
# idle connections

open_idle() {   # port n log: start idle_conns.py, wait until its connections are open
    local port=$1 n=$2 log=$3 deadline pid
    taskset -c "$LOAD_CPU" python3 "$ROOT/bench/idle_conns.py" --port "$port" -n "$n" --hold 600 \
        >"$log" 2>&1 &
    pid=$!
    IDLE_PIDS+=("$pid")
    deadline=$((SECONDS + 180))
    until grep -q '^ready ' "$log"; do
        kill -0 "$pid" 2>/dev/null || die "idle_conns.py failed: $(cat "$log")"
        [ $SECONDS -lt $deadline ] || die "idle_conns.py did not finish opening connections"
        sleep 0.2
    done
    sleep "$SETTLE"
}

# Two equal batches: the first pays for every fixed cost that grows lazily with use (buffer
# pools, allocator arenas: the same for all three proxies), the second shows what one more idle
# connection costs. Both figures are reported.
run_idle() {   # proxy
    local name=$1 port=${PORT[$1]} before mid after half n1 n2
    curl -s -o /dev/null "http://127.0.0.1:$port/"
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

versions | tee "$OUT/env.txt" >&2
if [ "$OBS" -eq 1 ]; then
    OBS_SHM_DIR=$(mktemp -d /dev/shm/ringlb-bench.XXXXXX)
    printf 'proxy\tconns\trun\trequests\tlog_lines_total\tlog_dropped_total\n' >"$OUT/obs.tsv"
fi
start_backend
for p in "${PROXIES[@]}"; do
    start_proxy "$p"
done

if [ "$IDLE" -eq 1 ]; then
    printf '| proxy | idle connections | RSS before MiB | RSS after MiB | KiB / idle conn (all) | KiB / idle conn (second half) |\n' \
        >"$OUT/idle.md"
    printf '|---|---:|---:|---:|---:|---:|\n' >>"$OUT/idle.md"
    for p in "${PROXIES[@]}"; do
        echo "idle: $p, $IDLE_N connections" >&2
        run_idle "$p"
    done
    echo
    sed 's/^/    /' "$OUT/env.txt"
    echo
    cat "$OUT/idle.md"
    echo
    echo "raw results: ${OUT#"$ROOT"/}"
    exit 0
fi

printf 'proxy\tconns\trun\treq_s\tp50_ms\tp99_ms\tcpu_s\trequests\terrors\tbackend_conns\n' \
    >"$OUT/results.tsv"
for c in $CONNS; do
    for p in "${PROXIES[@]}"; do
        [ "$WARMUP" -gt 0 ] || break
        echo "warm-up: $p c=$c ${WARMUP}s" >&2
        run_bg /dev/null timeout $((WARMUP + 30)) taskset -c "$LOAD_CPU" wrk -t 2 -c "$c" \
            -d "${WARMUP}s" ${WRK_HEADER[@]+"${WRK_HEADER[@]}"} \
            "http://127.0.0.1:${PORT[$p]}$WRK_PATH"
    done
    for r in $(seq "$RUNS"); do
        for p in "${PROXIES[@]}"; do
            run_wrk "$p" "$c" "$r"
        done
    done
done
summarize >"$OUT/table.md"
echo
sed 's/^/    /' "$OUT/env.txt"
echo
cat "$OUT/table.md"
if [ "$OBS" -eq 1 ]; then
    # Lines dropped by the access log (ring full) over the whole run, per variant.
    awk -F'\t' 'NR > 1 { last[$1] = $5; drop[$1] = $6 }
        END { print "\n| proxy | access log lines (cumulative) | dropped lines |";
              print "|---|---:|---:|";
              n = split("ringlb-metrics ringlb-log-shm ringlb-log-disk", o, " ");
              for (i = 1; i <= n; i++) if (o[i] in last)
                  printf "| %s | %s | %s |\n", o[i], last[o[i]], drop[o[i]] }' \
        "$OUT/obs.tsv" >"$OUT/obs.md"
    cat "$OUT/obs.md"
fi
echo
echo "raw results: ${OUT#"$ROOT"/}"
