#!/usr/bin/env bash
# bench/h2.sh: HTTP/2 through revgate, nginx and HAProxy (1 worker each) to the same 90/10 split
# of two `revgate echo` HTTP/1.1 backends, in one run: h2load with 10 connections x 10 streams
# (h2c prior knowledge; --tls: h2 over TLS with ALPN), upstream keep-alive for all three;
# requests/s, p50/p99, proxy CPU seconds and requests per proxy CPU-second, every response 2xx
# and the split the backends saw checked. Needs nginx, haproxy and Debian's nghttp2-client
# (scripts/setup.sh --bench).
#   bench/h2.sh [-c 10] [-m 10] [--threads 1] [--seconds 10] [--warmup 1] [--rounds 2]
#               [--upstream-idle C*M] [--tls] [--proxies revgate,nginx,haproxy]
#               [--revgate PATH] [--keep]
# Every process it starts is stopped, also on failure and Ctrl-C (bench/harness/processes.py).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Debian's interpreter; bench/ first on the path.
python=/usr/bin/python3
[[ -x $python ]] || python=python3
exec "$python" -c 'import sys; sys.dont_write_bytecode = True; sys.path.insert(0, sys.argv[1])
from harness.h2_bench import main
sys.exit(main(sys.argv[2:]))' "$here" "$@"
