#!/usr/bin/env bash
# demo.sh — install what is missing, build, create demo certificates if missing, start two
# demo backends and `ringlb -c conf/demo.yaml` in the foreground. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh >/dev/null

# Self-signed demo certificates (for HTTPS listeners; never committed).
mkdir -p conf/certs
if [[ ! -f conf/certs/demo.pem || ! -f conf/certs/demo.key ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
        -subj "/CN=demo.ringlb.local" \
        -addext "subjectAltName=DNS:demo.ringlb.local,DNS:*.demo.ringlb.local,IP:127.0.0.1" \
        -keyout conf/certs/demo.key -out conf/certs/demo.pem 2>/dev/null
    echo "demo.sh: created conf/certs/demo.pem (self-signed)"
fi

pids=()
cleanup() {
    trap - INT TERM EXIT
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

for port in 9001 9002; do
    build/rlb-backend --listen "127.0.0.1:$port" --name "demo-$port" >/dev/null &
    pids+=($!)
done

cat <<'MSG'

ringlb demo — try, in another terminal:
  curl http://127.0.0.1:8080/              round robin over the backends on :9001 and :9002
  curl http://127.0.0.1:8080/static/x      fixed response from a listener rule
  curl -i http://127.0.0.1:8080/headers    what the target receives (X-Forwarded-*, trace id)
  curl http://127.0.0.1:9901/api/v1/target-groups    targets, states, health (admin API)
  curl http://127.0.0.1:9901/metrics       Prometheus metrics
  build/ringlb route -c conf/demo.yaml --path /static/x    explain a routing decision
  kill -HUP <ringlb pid>                   reload conf/demo.yaml
Ctrl-C stops everything.

MSG
build/ringlb -c conf/demo.yaml &
pids+=($!)
wait "${pids[-1]}"
