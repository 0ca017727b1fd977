#!/usr/bin/env bash
# Quick start, command one: install what is missing, build, run the demo (90/10 split + canary).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh revgate
exec build/revgate demo "$@"
