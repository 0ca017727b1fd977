// What loading a big config costs (the reload bar: parse, validate, compile and publish 10,000
// services in < 300 ms, so the loader's own share must stay well under 150 ms). The config is
// generated in memory: 10,000 services of 2 revisions (one 127.0.0.1 endpoint each), traffic
// 90/10 with a `canary` tag, and 10,000 domain mappings `www.svc-N.example.org`: 3.7 MB of
// block-style YAML. BM_load_string: config::load_string (libyaml's parse, the tree, validation);
// BM_compile: RouteTable::compile of the loaded config.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "config/config.h"
#include "routing/route_table.h"

namespace {

constexpr int kServices = 10'000;

std::string make_yaml() {
  std::string yaml = "listeners:\n  - name: http\n    address: 0.0.0.0:8080\nservices:\n";
  yaml.reserve(4 << 20);
  for (int i = 0; i < kServices; ++i) {
    const std::string name = "svc-" + std::to_string(i);
    const int port = 10'000 + (i * 2) % 50'000;
    yaml += "  - name: " + name + "\n    revisions:\n";
    yaml += "      - name: " + name +
            "-00001\n        endpoints: [\"127.0.0.1:" + std::to_string(port) + "\"]\n";
    yaml += "      - name: " + name +
            "-00002\n        endpoints: [\"127.0.0.1:" + std::to_string(port + 1) + "\"]\n";
    yaml += "    traffic:\n";
    yaml += "      - revisionName: " + name + "-00001\n        percent: 90\n";
    yaml += "      - revisionName: " + name + "-00002\n        percent: 10\n        tag: canary\n";
  }
  yaml += "domainMappings:\n";
  for (int i = 0; i < kServices; ++i) {
    const std::string name = "svc-" + std::to_string(i);
    yaml += "  - domain: www." + name + ".example.org\n    service: " + name + "\n";
  }
  return yaml;
}

const std::string& yaml() {
  static const std::string text = make_yaml();
  return text;
}

revgate::config::Config load() {
  auto config = revgate::config::load_string(yaml(), "<bench>");
  if (!config) {
    // A benchmark of a failing load would measure the wrong thing.
    std::fprintf(stderr, "%s\n", config.error().front().to_string().c_str());
    std::abort();
  }
  return std::move(*config);
}

void BM_load_string(benchmark::State& state) {
  load();  // fails loudly before timing if the generated config does not validate
  for (auto _ : state) benchmark::DoNotOptimize(revgate::config::load_string(yaml(), "<bench>"));
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(yaml().size()));
  state.counters["MB"] = double(yaml().size()) / 1e6;
}
BENCHMARK(BM_load_string)->Unit(benchmark::kMillisecond);

void BM_compile(benchmark::State& state) {
  const revgate::config::Config config = load();
  for (auto _ : state) benchmark::DoNotOptimize(revgate::routing::RouteTable::compile(config));
}
BENCHMARK(BM_compile)->Unit(benchmark::kMillisecond);

}  // namespace
