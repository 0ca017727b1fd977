#!/usr/bin/env bash
# Heap allocations per proxied request in steady state (issue 5's bar: at most 4): revgate with
# an LD_PRELOAD counter (bench/alloc_counter.c) in front of one `revgate echo`, wrk keep-alive
# load; the count is read (SIGUSR1) after a warm-up and after the measured run.
#   bench/allocs.sh [DURATION=10s] [CONNECTIONS=50]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${REVGATE_BIN:-$root/build/revgate}
duration=${DURATION:-10s}
conns=${CONNECTIONS:-50}
work=$(mktemp -d /tmp/revgate-allocs.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
cc -O2 -shared -fPIC -o "$work/alloc_counter.so" "$root/bench/alloc_counter.c"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
be=$(free_port); px=$(free_port)
"$bin" echo --name rev-a --listen "127.0.0.1:$be" 2>"$work/echo.log" & pids+=($!)
cat >"$work/revgate.yaml" <<YAML
workers: 1
listeners: [{name: http, address: "127.0.0.1:$px"}]
admin: {address: "127.0.0.1:0"}
services: [{name: bench, revisions: [{name: rev-a, endpoints: ["127.0.0.1:$be"]}]}]
domainMappings: [{domain: "*", service: bench}]
YAML
LD_PRELOAD="$work/alloc_counter.so" "$bin" run -c "$work/revgate.yaml" 2>"$work/revgate.log" & rg=$!; pids+=($rg)
for _ in $(seq 100); do grep -q "ready:" "$work/revgate.log" && break; sleep 0.1; done
count() { local before; before=$(grep -c '^mallocs' "$work/revgate.log" || true); kill -USR1 "$rg"
  for _ in $(seq 50); do (( $(grep -c '^mallocs' "$work/revgate.log") > before )) && break; sleep 0.05; done
  grep '^mallocs' "$work/revgate.log" | tail -1 | awk '{print $2}'; }
wrk -t1 -c"$conns" -d2s "http://127.0.0.1:$px/" >/dev/null  # warm-up: pools fill
a=$(count)
out=$(wrk -t1 -c"$conns" -d"$duration" "http://127.0.0.1:$px/")
b=$(count)
requests=$(awk '/requests in/{print $1}' <<<"$out")
python3 - "$a" "$b" "$requests" <<'PY'
import sys
a, b, n = map(int, sys.argv[1:])
print(f"{b - a} heap allocations over {n} keep-alive requests: {(b - a) / n:.4f} per request")
PY
