#!/usr/bin/env bash
# Quick start, command two: install what is missing (with the test tools), build, run every test
# (unit, integration through real loopback sockets, promtool on a real scrape).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
