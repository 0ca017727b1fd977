// What a /metrics scrape costs with 1,000 services of 3 revisions (issue 4's bar: < 50 ms):
// merging the workers' shards, and rendering into a fresh string against a reused one (the
// admin listener hands the last scrape's memory back for the next).
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "metrics/metrics.h"

namespace {

using namespace revgate::metrics;

struct Fixture {
  std::vector<Destination> catalog;
  WorkerShard shard_a, shard_b;
  ProcessView process;
  Fixture() {
    DestinationCatalog interner;
    for (int s = 0; s < 1000; ++s) {
      for (int r = 0; r < 3; ++r) {
        const auto name = "svc-" + std::to_string(s);
        const auto id = interner.intern({name + ".default.example.com", name, "default",
                                         name + "-0000" + std::to_string(r)});
        for (std::uint16_t code : {200, 404, 503}) {
          RequestSample sample{id, code, code == 503 ? kUpstreamConnectFailure : kNoFlags,
                               1.5, 100, 2000};
          shard_a.record(sample);
          shard_b.record(sample);
        }
        for (WorkerShard* shard : {&shard_a, &shard_b}) {  // every revision has connections
          auto& upstream = shard->upstream(id);
          upstream.opened = 4;
          upstream.idle = 2;
          upstream.active = 1;
          upstream.connect_failures = 1;
        }
        process.traffic.push_back({name, "default", name + "-0000" + std::to_string(r), "",
                                   r == 0 ? 100 : 0});
      }
    }
    catalog = interner.snapshot();
    process.listener_names = {"http"};
    process.process = read_process_stats();
  }
};

const Fixture& fixture() {
  static const Fixture instance;
  return instance;
}

void BM_merge_two_shards(benchmark::State& state) {
  const auto& f = fixture();
  for (auto _ : state) {
    WorkerShard merged;
    merged.merge(f.shard_a);
    merged.merge(f.shard_b);
    benchmark::DoNotOptimize(merged);
  }
}
BENCHMARK(BM_merge_two_shards)->Unit(benchmark::kMillisecond);

void BM_render_fresh_string(benchmark::State& state) {
  const auto& f = fixture();
  for (auto _ : state) {
    auto text = render_prometheus(f.shard_a, f.catalog, f.process);
    benchmark::DoNotOptimize(text);
    state.counters["MiB"] = static_cast<double>(text.size()) / (1 << 20);
  }
}
BENCHMARK(BM_render_fresh_string)->Unit(benchmark::kMillisecond);

void BM_render_reused_string(benchmark::State& state) {
  const auto& f = fixture();
  std::string text;
  render_prometheus_to(text, f.shard_a, f.catalog, f.process);  // the previous scrape's memory
  for (auto _ : state) {
    render_prometheus_to(text, f.shard_a, f.catalog, f.process);
    benchmark::DoNotOptimize(text);
  }
}
BENCHMARK(BM_render_reused_string)->Unit(benchmark::kMillisecond);

}  // namespace
