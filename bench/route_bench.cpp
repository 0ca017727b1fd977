// Micro-benchmarks of routing/: Router::route (normalize, host lookup, split, endpoint pick) on a
// table of 10,000 services (2 revisions each, 90/10, tagged canary) and 10,000 domain mappings
// (5,000 exact, 5,000 wildcard). Each case runs twice: /1 routes one hot host over and over,
// /4096 cycles through 4,096 distinct hosts of its kind spread over the table (cache misses).
// Time per iteration = ns per request. No catch-all mapping, so "unknown" is a real miss.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "routing/route_table.h"

namespace {

using revgate::config::SplitPolicy;
using revgate::routing::Decision;
using revgate::routing::RequestView;
using revgate::routing::Router;
using revgate::routing::RouteTable;

constexpr int kServices = 10'000;
constexpr int kExactMappings = 5'000;
constexpr int kWildcardMappings = 5'000;
constexpr std::size_t kHosts = 4096;  // power of two: the index is masked

revgate::config::Config make_config(SplitPolicy policy) {
  revgate::config::Config config;
  config.source = "<bench>";
  config.domain = "example.com";
  for (int i = 0; i < kServices; ++i) {
    revgate::config::Service s;
    s.name = "svc" + std::to_string(i);
    s.namespace_name = "ns" + std::to_string(i % 10);
    s.split_policy = policy;
    for (int r = 1; r <= 2; ++r) {
      revgate::config::Revision rev;
      rev.name = s.name + "-0000" + std::to_string(r);
      for (int e = 0; e < 2; ++e) {
        revgate::config::Endpoint ep;
        ep.host = "127.0.0.1";
        ep.address = "127.0.0.1";
        ep.port = static_cast<std::uint16_t>(10000 + (i * 4 + r * 2 + e) % 50000);
        rev.endpoints.push_back(ep);
      }
      s.revisions.push_back(std::move(rev));
    }
    revgate::config::TrafficTarget stable;
    stable.revision_name = s.revisions[0].name;
    stable.percent = 90;
    revgate::config::TrafficTarget canary;
    canary.revision_name = s.revisions[1].name;
    canary.percent = 10;
    canary.tag = "canary";
    s.traffic = {stable, canary};
    config.services.push_back(std::move(s));
  }
  for (int i = 0; i < kExactMappings; ++i) {
    revgate::config::DomainMapping m;
    m.domain = "www" + std::to_string(i) + ".customer" + std::to_string(i % 100) + ".org";
    m.service = "svc" + std::to_string(i);
    m.namespace_name = "ns" + std::to_string(i % 10);
    config.domain_mappings.push_back(std::move(m));
  }
  for (int i = 0; i < kWildcardMappings; ++i) {
    const int svc = kExactMappings + i;
    revgate::config::DomainMapping m;
    // Suffixes of two to four labels, so lookups probe more than one length.
    m.domain = i % 3 == 0   ? "*.tenant" + std::to_string(i) + ".example.net"
               : i % 3 == 1 ? "*.tenant" + std::to_string(i) + ".eu.example.net"
                            : "*.tenant" + std::to_string(i) + ".apps.eu.example.net";
    m.service = "svc" + std::to_string(svc);
    m.namespace_name = "ns" + std::to_string(svc % 10);
    config.domain_mappings.push_back(std::move(m));
  }
  return config;
}

// Built on first use, so a filtered run holds only the table it measures.
std::shared_ptr<const RouteTable> table(SplitPolicy policy) {
  if (policy == SplitPolicy::smooth) {
    static const auto smooth = RouteTable::compile(make_config(SplitPolicy::smooth));
    return smooth;
  }
  static const auto random = RouteTable::compile(make_config(SplitPolicy::random));
  return random;
}

enum class HostKind { exact, service, tag, wildcard, unknown };

std::vector<std::string> make_hosts(HostKind kind) {
  std::vector<std::string> hosts;
  for (std::size_t k = 0; k < kHosts; ++k) {
    const int i = static_cast<int>((k * 7919) % kExactMappings);  // spread over the table
    const std::string svc = "svc" + std::to_string(i);
    const std::string ns = "ns" + std::to_string(i % 10);
    switch (kind) {
      case HostKind::exact:
        hosts.push_back("www" + std::to_string(i) + ".customer" + std::to_string(i % 100) + ".org");
        break;
      case HostKind::service:
        hosts.push_back(svc + "." + ns + ".example.com");
        break;
      case HostKind::tag:
        hosts.push_back("canary-" + svc + "." + ns + ".example.com");
        break;
      case HostKind::wildcard:  // with a port and upper case, two labels in front
        hosts.push_back(i % 3 == 0 ? "API.V2.Tenant" + std::to_string(i) + ".Example.NET:8443"
                        : i % 3 == 1
                            ? "API.V2.Tenant" + std::to_string(i) + ".EU.Example.NET:8443"
                            : "API.V2.Tenant" + std::to_string(i) + ".Apps.EU.Example.NET:8443");
        break;
      case HostKind::unknown:
        hosts.push_back("nope" + std::to_string(i) + ".unknown.example.io");
        break;
    }
  }
  return hosts;
}

void route_bench(benchmark::State& state, HostKind kind, SplitPolicy policy) {
  Router router(table(policy));
  const std::vector<std::string> hosts = make_hosts(kind);
  // Arg: how many distinct hosts to cycle through (1 = one hot host; 4096 = cold-ish table).
  const std::size_t distinct = static_cast<std::size_t>(state.range(0));
  std::vector<RequestView> requests;
  for (std::size_t k = 0; k < kHosts; ++k)
    requests.push_back(RequestView{hosts[k % distinct], "/", {}});
  std::uint64_t i = 0;
  std::int64_t routed = 0;
  for (auto _ : state) {
    const Decision d = router.route(requests[i & (kHosts - 1)], i * 0x9E3779B97F4A7C15ull);
    benchmark::DoNotOptimize(d);
    routed += d ? 1 : 0;
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["routed"] =
      benchmark::Counter(static_cast<double>(routed) / static_cast<double>(state.iterations()));
}

void BM_route_exact_mapping(benchmark::State& s) {
  route_bench(s, HostKind::exact, SplitPolicy::smooth);
}
void BM_route_service_host(benchmark::State& s) {
  route_bench(s, HostKind::service, SplitPolicy::smooth);
}
void BM_route_service_host_random(benchmark::State& s) {
  route_bench(s, HostKind::service, SplitPolicy::random);
}
void BM_route_tag_host(benchmark::State& s) { route_bench(s, HostKind::tag, SplitPolicy::smooth); }
void BM_route_wildcard_port_upper(benchmark::State& s) {
  route_bench(s, HostKind::wildcard, SplitPolicy::smooth);
}
void BM_route_unknown_host(benchmark::State& s) {
  route_bench(s, HostKind::unknown, SplitPolicy::smooth);
}

BENCHMARK(BM_route_exact_mapping)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_service_host)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_service_host_random)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_tag_host)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_wildcard_port_upper)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_unknown_host)->Arg(1)->Arg(4096);

void BM_normalize_host(benchmark::State& state) {
  const std::string raw = "API.V2.Tenant42.Apps.EU.Example.NET:8443";
  char out[256];
  std::size_t len = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(revgate::routing::normalize_host(raw, out, len));
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_normalize_host);

void BM_compile_table(benchmark::State& state) {
  const auto config = make_config(SplitPolicy::smooth);
  for (auto _ : state) benchmark::DoNotOptimize(RouteTable::compile(config));
}
BENCHMARK(BM_compile_table)->Unit(benchmark::kMillisecond);

}  // namespace
