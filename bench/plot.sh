#!/usr/bin/env bash
# bench/plot.sh — SVG charts of one bench/suite.sh run: ringlb vs HAProxy vs nginx per line.
#
#   bench/plot.sh [--publish] OUTDIR
#
# OUTDIR is a suite output directory (bench/out/suite-<timestamp>/). The script runs
# bench/report.py OUTDIR (which rewrites OUTDIR/results.md and the chart data OUTDIR/plot/*.dat),
# then gnuplot draws, into OUTDIR/charts/:
#   throughput.svg  req/s per line (median, min..max bars; handshakes/s for the TLS handshake
#                   lines, MB/s for large responses), one panel per line
#   cpu.svg         proxy CPU seconds per 100k requests per line (per GB for large responses):
#                   lower is better
#   idle.svg        KiB per idle keep-alive connection, plaintext and TLS (lower is better)
#   bytes.svg       large responses: MB/s and proxy CPU s per GB
#   scaling.svg     CPU per request with 1,000 targets / 2 targets (each proxy) and with
#                   10,000 rules / 1 rule (ringlb): 1.0 = no cost
# Charts whose data the run does not have are skipped. --publish also copies them to
# bench/charts/ (committed; RESULTS.md and the README show them). Needs gnuplot (Debian
# gnuplot-nox, installed with apt-get when missing; scripts/deps.sh --bench installs it too).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PUBLISH=0
OUT=""
while [ $# -gt 0 ]; do
    case $1 in
        --publish) PUBLISH=1; shift ;;
        -h|--help) sed -n '3,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "plot.sh: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$OUT" ] || { echo "plot.sh: one OUTDIR only" >&2; exit 2; }; OUT=$1; shift ;;
    esac
done
[ -n "$OUT" ] || { echo "usage: bench/plot.sh [--publish] OUTDIR" >&2; exit 2; }
[ -d "$OUT" ] || { echo "plot.sh: $OUT is not a directory" >&2; exit 1; }
OUT=$(cd "$OUT" && pwd)

if ! command -v gnuplot >/dev/null; then
    echo "plot.sh: installing gnuplot-nox" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        gnuplot-nox >/dev/null
fi

python3 "$ROOT/bench/report.py" "$OUT" >/dev/null
mkdir -p "$OUT/charts"
rm -f "$OUT/charts/"*.svg

# chart file ylabel columns width height log-scale?
draw() {
    local chart=$1 ylabel=$2 cols=$3 width=$4 height=$5 refline=${6:-}
    local dat=$OUT/plot/$chart.dat titles=$OUT/plot/$chart.titles
    [ -s "$dat" ] || return 0
    local n
    n=$(wc -l <"$titles")
    gnuplot <<EOF
set terminal svg size $width,$height dynamic enhanced font "Helvetica,12" background rgb "white"
set output "$OUT/charts/$chart.svg"
set datafile commentschars "#"
set style fill solid 0.85 border rgb "#333333"
set boxwidth 0.6
set grid ytics lc rgb "#dddddd"
set border 3
set xtics nomirror scale 0
set ytics nomirror
set yrange [0:*]
set xrange [-0.6:2.6]
set offsets 0, 0, graph 0.12, 0
unset key
n = $n
cols = $cols
rows = int((n + cols - 1) / cols)
set multiplot layout rows, cols margins 0.07, 0.98, 45.0 / $height, 1 - 75.0 / $height \
    spacing 0.07, 90.0 / $height title "$ylabel" font "Helvetica,15"
do for [i = 0:n - 1] {
    set title system(sprintf("sed -n %dp '%s'", i + 1, "$titles")) font "Helvetica,13"
    $( [ -z "$refline" ] || echo "ref = word(\"$refline\", i + 1) + 0" )
    plot "$dat" index i using 2:3:6:xtic(1) with boxes lc rgb variable, \
         "" index i using 2:(\$4 < \$5 ? \$3 : 1/0):4:5 with yerrorbars lc rgb "#222222" ps 0 lw 1, \
         "" index i using 2:5:(\$3 >= 100 ? sprintf("%.0f", \$3) : \$3 >= 10 ? sprintf("%.1f", \$3) : sprintf("%.2f", \$3)) \
            with labels offset 0, 0.8 font "Helvetica,11"$( [ -z "$refline" ] || echo ", \\
         (ref > 0 ? ref : 1/0) with lines dt 2 lw 1.5 lc rgb \"#cc0000\"" )
}
unset multiplot
EOF
    echo "$OUT/charts/$chart.svg"
}

V="ringlb vs HAProxy 2.6 vs nginx 1.22"
draw throughput "$V: req/s per line (median, min..max; higher is better)" 4 1400 760
draw cpu "$V: proxy CPU s per 100k requests (lower is better)" 4 1400 760
draw idle "$V: memory per idle connection (lower is better; dashed: target)" 2 1000 440 "0.5 8"
draw bytes "$V: large responses" 2 1000 440
draw scaling "Cost of scale: CPU per request vs the small case (dashed: +10 %)" 2 1000 440 "1.1 1.1"

if [ "$PUBLISH" -eq 1 ]; then
    mkdir -p "$ROOT/bench/charts"
    cp "$OUT/charts/"*.svg "$ROOT/bench/charts/"
    echo "published to bench/charts/: $(cd "$OUT/charts" && echo *.svg)"
fi
