#!/usr/bin/env bash
# Configures (once) and builds into build/ (SPEC section 2: build/revgate).
#   scripts/build.sh            everything: revgate, tests, benchmarks
#   scripts/build.sh revgate    only the named targets
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f build/build.ninja ]] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
targets=()
for target in "$@"; do targets+=(--target "$target"); done
cmake --build build -j"$(nproc)" "${targets[@]}"
