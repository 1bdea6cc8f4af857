#!/usr/bin/env bash
# bench/lib.sh — helpers shared by bench/run.sh and bench/tls.sh (sourced, not run).
# run_bg records its child in the caller's associative array PID (so cleanup can stop it).
# shellcheck disable=SC2154

in_range() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sum of utime+stime (clock ticks) and of VmRSS (KiB) over PID and its descendants.
proc_tree() {
    python3 - "$1" <<'EOF'
import os, sys
root = int(sys.argv[1])
parent, stat = {}, {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open(f"/proc/{d}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    parent[int(d)] = int(rest[1])
    stat[int(d)] = int(rest[11]) + int(rest[12])
tree, todo = set(), [root]
while todo:
    p = todo.pop()
    if p in tree or p not in stat:
        continue
    tree.add(p)
    todo += [c for c, pp in parent.items() if pp == p]
ticks = sum(stat[p] for p in tree)
rss = 0
for p in tree:
    try:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
    except OSError:
        pass
print(ticks, rss)
EOF
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
