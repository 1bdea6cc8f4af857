#!/usr/bin/env bash
# bench/lib.sh — helpers shared by bench/run.sh and bench/tls.sh (sourced, not run).
# run_bg records its child in the caller's associative array PID (so cleanup can stop it).
# shellcheck disable=SC2154

in_range() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sum of utime+stime (clock ticks) and of VmRSS (KiB) over PID and its descendants, found
# through /proc/PID/task/TID/children. Bash builtins only (no fork): python3 alone took over
# a second per call on a loaded 2-core machine, twice per run.
proc_tree() {
    local todo=("$1") p line rest f kids k key val ticks=0 rss=0
    local -a st
    while [ ${#todo[@]} -gt 0 ]; do
        p=${todo[-1]}
        unset 'todo[-1]'
        { read -r line <"/proc/$p/stat"; } 2>/dev/null || continue
        rest=${line##*) }
        read -r -a st <<<"$rest"
        ticks=$((ticks + st[11] + st[12]))
        while read -r key val _; do
            [ "$key" = VmRSS: ] && { rss=$((rss + val)); break; }
        done 2>/dev/null <"/proc/$p/status"
        for f in /proc/"$p"/task/*/children; do
            kids=""
            { read -r kids <"$f"; } 2>/dev/null || true   # no newline at the end: read fails
            for k in $kids; do todo+=("$k"); done
        done
    done
    echo "$ticks $rss"
}

run_bg() {   # output command... : run in the background and wait, so that signals act at once
    local out=$1
    shift
    "$@" >"$out" 2>&1 &
    PID[load]=$!
    wait "${PID[load]}" || true
    unset 'PID[load]'
}

to_ms() {   # wrk latency (850.00us, 1.20ms, 2.00s, 1.00m) -> milliseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v) }
        else if (v ~ /m$/) { sub(/m$/, "", v); v = v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
        printf "%.3f", v }'
}
