#!/usr/bin/env bash
# bench/reload_scale.sh: revgate with a generated 10,000-service config: time to `ready`, 20
# POST /reload of alternating configs without load (latency to the 200, RSS before/peak/after),
# then the bench/scenarios/reload-10k.yaml run (req/s and p99 during reloads and during
# /metrics and ServiceList scrapes against steady windows of the same wrk run).
#   bench/reload_scale.sh [--services 10000] [--reloads 20] [--pause 500ms] [--duration 37s]
#                         [--no-load] [--out DIR] [--revgate PATH] [--quiet]
# Every process it starts is stopped by pid, also on failure and Ctrl-C. See README
# "Benchmark harness" and bench/harness/reload_scale.py.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# bench/ first on the path (not the working directory: another harness.py may sit there)
exec python3 -c 'import sys; sys.dont_write_bytecode = True; sys.path.insert(0, sys.argv[1])
from harness.reload_scale import main
sys.exit(main(sys.argv[2:]))' "$here" "$@"
