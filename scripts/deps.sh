#!/usr/bin/env bash
# deps.sh — install what building and testing ringlb needs, from Debian 12 packages.
# Idempotent and quiet when everything is there. Used by scripts/test.sh and scripts/demo.sh.
#   scripts/deps.sh            build + test dependencies
#   scripts/deps.sh --bench    also HAProxy, nginx, valgrind and gnuplot (bench/suite.sh)
set -euo pipefail

pkgs=(gcc make cmake pkg-config liburing-dev libssl-dev libjemalloc-dev libfyaml-dev
      node-llhttp python3 curl wrk openssl ca-certificates procps)
# Packaging and ops-file tests (test_packaging.py, test_ops_files.py): the man page linted
# with groff, the unit with systemd-analyze, the logrotate file with logrotate -d, the
# alert rules with promtool (shipped by Debian's prometheus package); util-linux for unshare.
pkgs+=(groff-base systemd logrotate prometheus util-linux adduser)
# The fleet tests (test_cluster.py) start a real etcd v3 on loopback.
pkgs+=(etcd-server)
# The dashboard's browser test (tests/browser): Debian's chromium driven by playwright-core,
# which the test installs itself with npm. Node.js and npm only when their commands are
# missing: a Node.js installed from elsewhere bundles npm and conflicts with Debian's npm.
pkgs+=(chromium)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
if [[ "${1:-}" == "--bench" ]]; then
    pkgs+=(haproxy nginx-light valgrind gnuplot-nox)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
