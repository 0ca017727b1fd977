#!/usr/bin/env bash
# Configures (once) and builds revgate into build/ (SPEC section 2: build/revgate).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f build/build.ninja ]] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
