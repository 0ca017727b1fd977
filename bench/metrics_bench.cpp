// What a /metrics scrape costs with 1,000 services of 3 revisions (issue 4's bar: < 50 ms): the
// copy each worker makes of its shard (on the worker's thread), merging the copies, and
// rendering into one string against streaming it through one 256 KiB piece as the admin
// listener does.
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "metrics/metrics.h"
#include "metrics/prometheus_text.h"

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

void BM_render_streamed(benchmark::State& state) {
  const auto& f = fixture();
  std::string piece;
  for (auto _ : state) {
    PrometheusText text(f.shard_a, f.catalog, f.process);
    std::size_t bytes = 0;
    for (bool more = true; more;) {
      piece.clear();
      more = text.write_next(piece, 256 * 1024);
      bytes += piece.size();
      benchmark::DoNotOptimize(piece.data());
    }
    state.counters["MiB"] = static_cast<double>(bytes) / (1 << 20);
  }
}
BENCHMARK(BM_render_streamed)->Unit(benchmark::kMillisecond);

// What the worker's event loop spends per scrape: the copy it hands over.
void BM_worker_shard_copy(benchmark::State& state) {
  const auto& f = fixture();
  for (auto _ : state) {
    auto copy = f.shard_a.counts();
    benchmark::DoNotOptimize(copy);
  }
}
BENCHMARK(BM_worker_shard_copy)->Unit(benchmark::kMicrosecond);

// The whole shard, lookup index included (what the worker copied before counts()).
void BM_worker_shard_full_copy(benchmark::State& state) {
  const auto& f = fixture();
  for (auto _ : state) {
    WorkerShard copy = f.shard_a;
    benchmark::DoNotOptimize(copy);
  }
}
BENCHMARK(BM_worker_shard_full_copy)->Unit(benchmark::kMicrosecond);

}  // namespace
