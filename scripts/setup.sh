#!/usr/bin/env bash
# Installs what revgate needs to build, run and test, from Debian 12 packages only.
# Idempotent: installs only what is missing. Used by the README, .ci/run and the Dockerfile.
#   scripts/setup.sh          build + run dependencies
#   scripts/setup.sh --test   also the tools the tests use (prometheus for promtool, curl, ...)
#   scripts/setup.sh --bench  also the peers and load tools the benchmarks use (nginx, haproxy, wrk)
#   scripts/setup.sh --runtime only the shared libraries build/revgate needs (the Dockerfile's
#                             final stage)
set -euo pipefail

build_pkgs=(
  g++ cmake ninja-build pkg-config
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libyaml-dev libyaml-cpp-dev libssl-dev libcli11-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libnghttp2-dev libre2-dev
)
test_pkgs=(prometheus curl openssl python3 procps ca-certificates testssl.sh nginx haproxy wrk gnuplot-nox python3-yaml
  python3-websockets nghttp2-client python3-grpcio python3-h2)
bench_pkgs=(nginx haproxy wrk python3 procps openssl gnuplot-nox python3-yaml python3-websockets nghttp2-client
  linux-perf)
runtime_pkgs=(libboost-json1.81.0 libyaml-0-2 libyaml-cpp0.7 libfmt9 libssl3 libnghttp2-14 libre2-9 ca-certificates)

want=("${build_pkgs[@]}")
for arg in "$@"; do
  case "$arg" in
    --runtime) want=("${runtime_pkgs[@]}") ;;
    --test) want+=("${test_pkgs[@]}") ;;
    --bench) want+=("${bench_pkgs[@]}") ;;
    *) echo "usage: $0 [--test] [--bench] | --runtime" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#want[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) != 0 ]]; then sudo="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends keeps prometheus from pulling in its node exporter and friends.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx's package may start a system nginx where an init system runs; benchmarks start their own.
echo "setup: done"
