#!/usr/bin/env bash
# bench/websocket.sh: WebSockets through revgate and nginx to one `revgate echo` backend, in one
# run: memory per open idle tunnel, and echo round trips per second against the backend
# directly. Needs nginx and Debian's python3-websockets (scripts/setup.sh --bench).
#   bench/websocket.sh [--tunnels 1000] [--connections 10] [--clients 2] [--seconds 5]
#                      [--rounds 2] [--revgate PATH]
# Every process it starts is stopped, also on failure and Ctrl-C (bench/harness/processes.py).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Debian's interpreter, which sees python3-websockets; bench/ first on the path.
python=/usr/bin/python3
[[ -x $python ]] || python=python3
exec "$python" -c 'import sys; sys.dont_write_bytecode = True; sys.path.insert(0, sys.argv[1])
from harness.websocket_bench import main
sys.exit(main(sys.argv[2:]))' "$here" "$@"
