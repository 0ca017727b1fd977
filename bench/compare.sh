#!/usr/bin/env bash
# wrk through revgate, nginx and HAProxy with the same 90/10 split, alternated over rounds in one
# run (the peers' scripts in ../shared/bench), then a table of requests/s and p99 with ratios.
#   bench/compare.sh                       # 1 worker each, wrk -t1 -c50 -d10s, 3 rounds
#   ROUNDS=5 DURATION=20s bench/compare.sh
#   SUITES="plain tls" PLAIN_MODES="ka close" bench/compare.sh   # + HTTPS keep-alive and a new
#                                                   # (resumed) TLS connection per request
# Needs build/revgate and `scripts/setup.sh --bench` (nginx, haproxy, wrk).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${REVGATE_SHARED:-$root/../shared}
cd "$root"
[[ -x build/revgate ]] || { echo "build/revgate missing: run scripts/build.sh" >&2; exit 2; }
export OUT_DIR=${OUT_DIR:-/tmp/revgate-compare-$(date +%Y%m%d-%H%M%S)}
EXTRA_PROXY_NAME=revgate \
EXTRA_PROXY_CMD="$shared/bench/revgate-target.sh" \
EXTRA_PROXY_TLS_CMD="$shared/bench/revgate-target.sh" \
WORKERS=${WORKERS:-1} SUITES=${SUITES:-plain} TARGETS=${TARGETS:-"direct nginx haproxy"} \
  "$shared/bench/anchors.sh" >/dev/null
python3 - "$OUT_DIR/wrk.csv" <<'PY'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    # revgate has no switch to turn session resumption off, so anchors' "close-full" (full
    # handshake per request) would compare its resumed handshakes with the peers' full ones.
    if r['mode'] == 'close-full' and r['target'] == 'revgate':
        continue
    by.setdefault((r['suite'], r['mode'], r['target']), []).append(r)
for suite, mode in sorted({(s, m) for s, m, _ in by}):
    med = {t: (st.median(float(r['rps']) for r in g), st.median(float(r['p99_ms']) for r in g), len(g))
           for (s, m, t), g in by.items() if (s, m) == (suite, mode)}
    print(f"\n{suite} {mode}: median over rounds (wrk -t1 -c50, 1 worker per proxy)\n")
    print("| target | rounds | req/s | p99 ms | revgate req/s ratio | revgate p99 ratio |")
    print("|---|---|---|---|---|---|")
    rg = med.get('revgate')
    for t, (rps, p99, n) in sorted(med.items(), key=lambda kv: -kv[1][0]):
        ratio = f"{rg[0]/rps:.2f}" if rg and t != 'revgate' else "-"
        pr = f"{rg[1]/p99:.2f}" if rg and t != 'revgate' and p99 else "-"
        print(f"| {t} | {n} | {rps:.0f} | {p99:.2f} | {ratio} | {pr} |")
PY
echo "raw results: $OUT_DIR (summary.md has CPU, memory and the split the backends saw)"
