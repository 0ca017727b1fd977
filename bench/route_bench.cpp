// Micro-benchmarks of routing/: Router::route (normalize, host lookup, split, endpoint pick) on a
// table of 10,000 services (2 revisions each, 90/10, tagged canary) and 10,000 domain mappings
// (5,000 exact, 5,000 wildcard). Each case runs twice: /1 routes one hot host over and over,
// /4096 cycles through 4,096 distinct hosts of its kind spread over the table (cache misses).
// Time per iteration = ns per request. No catch-all mapping, so "unknown" is a real miss.
// BM_route_service_host_<policy> run the same lookup with the other split policies and endpoint
// balancers; BM_pick_* leave the host lookup out (Router::route after find_host, one service of
// 2 revisions x 8 endpoints) to show what each policy itself costs per pick.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "routing/route_table.h"

namespace {

using revgate::config::HashOn;
using revgate::config::LoadBalancer;
using revgate::config::SplitPolicy;
using revgate::routing::Decision;
using revgate::routing::RequestView;
using revgate::routing::Router;
using revgate::routing::RouteTable;

constexpr int kServices = 10'000;
constexpr int kExactMappings = 5'000;
constexpr int kWildcardMappings = 5'000;
constexpr std::size_t kHosts = 4096;  // power of two: the index is masked

// The split and balancing of every service of a benchmark table.
struct Policy {
  SplitPolicy split = SplitPolicy::smooth;
  std::optional<HashOn> hash_on;
  LoadBalancer balancer = LoadBalancer::round_robin;
};

Policy hash_on(HashOn::Kind kind) {
  HashOn h;
  h.kind = kind;
  h.header = "x-user";
  h.cookie_name = "rg-session";
  h.cookie_ttl = std::chrono::seconds(3600);
  return Policy{SplitPolicy::hash, h, LoadBalancer::round_robin};
}

revgate::config::Config make_config(const Policy& policy) {
  revgate::config::Config config;
  config.source = "<bench>";
  config.domain = "example.com";
  for (int i = 0; i < kServices; ++i) {
    revgate::config::Service s;
    s.name = "svc" + std::to_string(i);
    s.namespace_name = "ns" + std::to_string(i % 10);
    s.split_policy = policy.split;
    s.hash_on = policy.hash_on;
    s.load_balancer = policy.balancer;
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

enum class TableKind { smooth, random, hash_header, hash_cookie, least_request, random_lb, count };

Policy policy_of(TableKind kind) {
  switch (kind) {
    case TableKind::random:
      return Policy{SplitPolicy::random, std::nullopt, LoadBalancer::round_robin};
    case TableKind::hash_header:
      return hash_on(HashOn::Kind::header);
    case TableKind::hash_cookie:
      return hash_on(HashOn::Kind::cookie);
    case TableKind::least_request:
      return Policy{SplitPolicy::smooth, std::nullopt, LoadBalancer::least_request};
    case TableKind::random_lb:
      return Policy{SplitPolicy::smooth, std::nullopt, LoadBalancer::random};
    default:
      return Policy{};
  }
}

// Built on first use, so a filtered run holds only the table it measures.
std::shared_ptr<const RouteTable> table(TableKind kind) {
  static std::shared_ptr<const RouteTable> tables[static_cast<int>(TableKind::count)];
  auto& t = tables[static_cast<int>(kind)];
  if (!t) t = RouteTable::compile(make_config(policy_of(kind)));
  return t;
}

// 4,096 distinct sticky keys ("user-N"), and Cookie headers carrying them among other cookies.
std::vector<std::string> make_keys(bool as_cookie) {
  std::vector<std::string> keys;
  for (std::size_t k = 0; k < kHosts; ++k) {
    const std::string key = "user-" + std::to_string(k * 2654435761u % 1000003);
    keys.push_back(as_cookie ? "theme=dark; rg-session=" + key + "; lang=en" : key);
  }
  return keys;
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

void route_bench(benchmark::State& state, HostKind kind, TableKind table_kind) {
  Router router(table(table_kind));
  const std::vector<std::string> hosts = make_hosts(kind);
  const std::vector<std::string> keys = make_keys(table_kind == TableKind::hash_cookie);
  // Arg: how many distinct hosts to cycle through (1 = one hot host; 4096 = cold-ish table).
  const std::size_t distinct = static_cast<std::size_t>(state.range(0));
  std::vector<RequestView> requests;
  for (std::size_t k = 0; k < kHosts; ++k) {
    RequestView request;
    request.host = hosts[k % distinct];
    request.path = "/";
    if (table_kind == TableKind::hash_header) request.hash_header = keys[k];
    if (table_kind == TableKind::hash_cookie) request.cookie_header = keys[k];
    requests.push_back(request);
  }
  const bool count_requests = table_kind == TableKind::least_request;
  std::uint64_t i = 0;
  std::int64_t routed = 0;
  for (auto _ : state) {
    const Decision d = router.route(requests[i & (kHosts - 1)], i * 0x9E3779B97F4A7C15ull);
    benchmark::DoNotOptimize(d);
    if (count_requests && d.endpoint != nullptr) {  // what the proxy does around the request
      router.request_started(*d.endpoint);
      router.request_finished(*d.endpoint);
    }
    routed += d ? 1 : 0;
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["routed"] =
      benchmark::Counter(static_cast<double>(routed) / static_cast<double>(state.iterations()));
}

void BM_route_exact_mapping(benchmark::State& s) {
  route_bench(s, HostKind::exact, TableKind::smooth);
}
void BM_route_service_host(benchmark::State& s) {
  route_bench(s, HostKind::service, TableKind::smooth);
}
void BM_route_service_host_random(benchmark::State& s) {
  route_bench(s, HostKind::service, TableKind::random);
}
void BM_route_service_host_hash_header(benchmark::State& s) {
  route_bench(s, HostKind::service, TableKind::hash_header);
}
void BM_route_service_host_hash_cookie(benchmark::State& s) {
  route_bench(s, HostKind::service, TableKind::hash_cookie);
}
void BM_route_service_host_least_request(benchmark::State& s) {
  route_bench(s, HostKind::service, TableKind::least_request);
}
void BM_route_service_host_random_lb(benchmark::State& s) {
  route_bench(s, HostKind::service, TableKind::random_lb);
}
void BM_route_tag_host(benchmark::State& s) { route_bench(s, HostKind::tag, TableKind::smooth); }
void BM_route_wildcard_port_upper(benchmark::State& s) {
  route_bench(s, HostKind::wildcard, TableKind::smooth);
}
void BM_route_unknown_host(benchmark::State& s) {
  route_bench(s, HostKind::unknown, TableKind::smooth);
}

BENCHMARK(BM_route_exact_mapping)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_service_host)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_service_host_random)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_service_host_hash_header)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_service_host_hash_cookie)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_service_host_least_request)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_service_host_random_lb)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_tag_host)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_wildcard_port_upper)->Arg(1)->Arg(4096);
BENCHMARK(BM_route_unknown_host)->Arg(1)->Arg(4096);

// ---- one policy's pick alone: route() after find_host, one service, 2 revisions x 8 endpoints

enum class Pick {
  smooth,
  random,
  hash_header,
  hash_cookie,
  hash_new_cookie,
  random_lb,
  least_request
};

void pick_bench(benchmark::State& state, Pick pick) {
  Policy policy;
  switch (pick) {
    case Pick::random:
      policy.split = SplitPolicy::random;
      break;
    case Pick::hash_header:
      policy = hash_on(HashOn::Kind::header);
      break;
    case Pick::hash_cookie:
    case Pick::hash_new_cookie:
      policy = hash_on(HashOn::Kind::cookie);
      break;
    case Pick::random_lb:
      policy.balancer = LoadBalancer::random;
      break;
    case Pick::least_request:
      policy.balancer = LoadBalancer::least_request;
      break;
    default:
      break;
  }
  revgate::config::Config config;
  revgate::config::Service s;
  s.name = "svc";
  s.split_policy = policy.split;
  s.hash_on = policy.hash_on;
  s.load_balancer = policy.balancer;
  for (int r = 0; r < 2; ++r) {
    revgate::config::Revision rev;
    rev.name = "svc-" + std::to_string(r);
    for (int e = 0; e < 8; ++e) {
      revgate::config::Endpoint ep;
      ep.host = ep.address = "127.0.0.1";
      ep.port = static_cast<std::uint16_t>(9000 + r * 8 + e);
      rev.endpoints.push_back(ep);
    }
    s.revisions.push_back(rev);
    revgate::config::TrafficTarget t;
    t.revision_name = rev.name;
    t.percent = r == 0 ? 90 : 10;
    s.traffic.push_back(t);
  }
  config.services.push_back(s);
  Router router(RouteTable::compile(config));
  const auto match = router.table()->find_host("svc.default.example.com");
  const std::vector<std::string> keys = make_keys(pick == Pick::hash_cookie);
  std::vector<RequestView> requests(kHosts);
  for (std::size_t k = 0; k < kHosts; ++k) {
    if (pick == Pick::hash_header) requests[k].hash_header = keys[k];
    if (pick == Pick::hash_cookie) requests[k].cookie_header = keys[k];
  }
  std::uint64_t i = 0;
  for (auto _ : state) {
    const Decision d = router.route(match, requests[i & (kHosts - 1)], i * 0x9E3779B97F4A7C15ull);
    benchmark::DoNotOptimize(d);
    if (pick == Pick::least_request) {  // the bookkeeping the proxy does around each request
      router.request_started(*d.endpoint);
      router.request_finished(*d.endpoint);
    }
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}

// smooth split + ROUND_ROBIN endpoints: the defaults.
void BM_pick_smooth(benchmark::State& s) { pick_bench(s, Pick::smooth); }
void BM_pick_random(benchmark::State& s) { pick_bench(s, Pick::random); }
void BM_pick_hash_header(benchmark::State& s) { pick_bench(s, Pick::hash_header); }
void BM_pick_hash_cookie(benchmark::State& s) { pick_bench(s, Pick::hash_cookie); }
void BM_pick_hash_new_cookie(benchmark::State& s) { pick_bench(s, Pick::hash_new_cookie); }
void BM_pick_endpoint_random(benchmark::State& s) { pick_bench(s, Pick::random_lb); }
void BM_pick_endpoint_least_request(benchmark::State& s) { pick_bench(s, Pick::least_request); }
BENCHMARK(BM_pick_smooth);
BENCHMARK(BM_pick_random);
BENCHMARK(BM_pick_hash_header);
BENCHMARK(BM_pick_hash_cookie);
BENCHMARK(BM_pick_hash_new_cookie);
BENCHMARK(BM_pick_endpoint_random);
BENCHMARK(BM_pick_endpoint_least_request);

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
  const auto config = make_config(Policy{});
  for (auto _ : state) benchmark::DoNotOptimize(RouteTable::compile(config));
}
BENCHMARK(BM_compile_table)->Unit(benchmark::kMillisecond);

}  // namespace
