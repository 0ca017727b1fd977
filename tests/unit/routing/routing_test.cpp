// Unit tests of routing/: host normalization and precedence, tags, the smooth and random splits,
// endpoint round robin, reloads, and the no-allocation guarantee of the lookup path.
// Configs are built as structs (no YAML loader needed); entropy is passed as literals.
#include "routing/route_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <map>
#include <new>
#include <numeric>
#include <random>
#include <string>
#include <vector>

// ---------------------------------------------------------------------------------------------
// Counting global allocator: lets a test assert that the lookup path never allocates. Shared
// with routing_policy_test.cpp (same executable).
namespace routing_test_support {
std::atomic<std::size_t> g_allocations{0};
}  // namespace routing_test_support
using routing_test_support::g_allocations;

[[gnu::noinline]] void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t size) { return ::operator new(size); }
[[gnu::noinline]] void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
[[gnu::noinline]] void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return ::operator new(size, tag);
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace revgate::routing {
namespace {

// ---------------------------------------------------------------------------------------------
// Config builders

config::Endpoint endpoint(std::string_view hostport) {
  config::Endpoint e;
  const std::size_t colon = hostport.rfind(':');
  std::string_view host = hostport.substr(0, colon);
  if (host.starts_with('[')) host = host.substr(1, host.size() - 2);
  e.host = std::string(host);
  e.address = e.host;
  e.port = static_cast<std::uint16_t>(std::stoi(std::string(hostport.substr(colon + 1))));
  return e;
}

config::Revision rev(std::string name, std::vector<std::string> endpoints = {"127.0.0.1:9001"}) {
  config::Revision r;
  r.name = std::move(name);
  for (const auto& e : endpoints) r.endpoints.push_back(endpoint(e));
  return r;
}

config::TrafficTarget to(std::string revision, int percent, std::string tag = "") {
  config::TrafficTarget t;
  t.revision_name = std::move(revision);
  t.percent = percent;
  t.tag = std::move(tag);
  return t;
}

config::TrafficTarget latest(int percent, std::string tag = "") {
  config::TrafficTarget t;
  t.latest_revision = true;
  t.percent = percent;
  t.tag = std::move(tag);
  return t;
}

config::Service svc(std::string name, std::vector<config::Revision> revisions,
                    std::vector<config::TrafficTarget> traffic,
                    config::SplitPolicy policy = config::SplitPolicy::smooth,
                    std::string namespace_name = "default") {
  config::Service s;
  s.name = std::move(name);
  s.namespace_name = std::move(namespace_name);
  s.split_policy = policy;
  s.revisions = std::move(revisions);
  s.traffic = std::move(traffic);
  return s;
}

config::DomainMapping mapping(std::string domain, std::string service,
                              std::string namespace_name = "default") {
  config::DomainMapping m;
  m.domain = std::move(domain);
  m.service = std::move(service);
  m.namespace_name = std::move(namespace_name);
  return m;
}

config::Config cfg(std::vector<config::Service> services,
                   std::vector<config::DomainMapping> mappings = {},
                   std::string domain = "example.com") {
  config::Config c;
  c.source = "<test>";
  c.domain = std::move(domain);
  c.services = std::move(services);
  c.domain_mappings = std::move(mappings);
  return c;
}

// "r0", "r1", ... (built with +=: GCC 12 warns falsely on "literal" + std::string&&)
std::string rname(std::size_t i) {
  std::string name = "r";
  name += std::to_string(i);
  return name;
}

// A service whose revisions are named r0, r1, ... with the given percents, in order.
config::Service weighted(std::string name, const std::vector<int>& percents,
                         config::SplitPolicy policy = config::SplitPolicy::smooth) {
  std::vector<config::Revision> revisions;
  std::vector<config::TrafficTarget> traffic;
  for (std::size_t i = 0; i < percents.size(); ++i) {
    revisions.push_back(rev(rname(i)));
    traffic.push_back(to(rname(i), percents[i]));
  }
  return svc(std::move(name), std::move(revisions), std::move(traffic), policy);
}

// A request with the given host, path and Knative-Serving-Tag (the other fields left empty).
RequestView view(std::string_view host, std::string_view path = "/", std::string_view tag = {}) {
  RequestView request;
  request.host = host;
  request.path = path;
  request.tag_header = tag;
  return request;
}

std::string revision_of(Router& router, std::string_view host, std::uint64_t entropy = 0,
                        std::string_view tag = {}) {
  const Decision d = router.route(view(host, "/", tag), entropy);
  return d ? d.revision->name : std::string("<none>");
}

std::string service_of(const RouteTable& table, std::string_view host) {
  const auto m = table.find_host(host);
  return m.service ? m.service->name : std::string("<none>");
}

// ---------------------------------------------------------------------------------------------
// Names and normalization

TEST(MatchKind, Names) {
  EXPECT_EQ(to_string(MatchKind::exact_mapping), "exact-mapping");
  EXPECT_EQ(to_string(MatchKind::tag_host), "tag-host");
  EXPECT_EQ(to_string(MatchKind::service_host), "service-host");
  EXPECT_EQ(to_string(MatchKind::wildcard_mapping), "wildcard-mapping");
  EXPECT_EQ(to_string(MatchKind::catch_all), "catch-all");
  EXPECT_EQ(to_string(MatchKind::none), "none");
}

std::string normalized(std::string_view raw) {
  char out[256];
  std::size_t len = 0;
  if (!normalize_host(raw, out, len)) return "<invalid>";
  return std::string(out, len);
}

TEST(NormalizeHost, LowercasePortTrailingDot) {
  EXPECT_EQ(normalized("www.example.org"), "www.example.org");
  EXPECT_EQ(normalized("WWW.Example.ORG"), "www.example.org");
  EXPECT_EQ(normalized("www.example.org:8080"), "www.example.org");
  EXPECT_EQ(normalized("www.example.org."), "www.example.org");
  EXPECT_EQ(normalized("WWW.example.org.:443"), "www.example.org");
  EXPECT_EQ(normalized("www.example.org:"), "www.example.org");
  EXPECT_EQ(normalized("www.example.org.."), "www.example.org.");  // one dot only
  EXPECT_EQ(normalized("127.0.0.1:8080"), "127.0.0.1");
}

TEST(NormalizeHost, Ipv6Literal) {
  EXPECT_EQ(normalized("[::1]"), "[::1]");
  EXPECT_EQ(normalized("[::1]:8080"), "[::1]");
  EXPECT_EQ(normalized("[FE80::ABCD]:80"), "[fe80::abcd]");
  EXPECT_EQ(normalized("::1"), "::1");  // bare literal: no port to drop
  EXPECT_EQ(normalized("[::1"), "<invalid>");
  EXPECT_EQ(normalized("[::1]x"), "<invalid>");
  EXPECT_EQ(normalized("[::1]:80a"), "<invalid>");
}

TEST(NormalizeHost, RejectsEmptyAndTooLongAndLeavesOutputUntouched) {
  char out[256];
  out[0] = '#';
  std::size_t len = 7;
  EXPECT_FALSE(normalize_host("", out, len));
  EXPECT_FALSE(normalize_host(".", out, len));
  EXPECT_FALSE(normalize_host(":8080", out, len));
  EXPECT_FALSE(normalize_host("host:port", out, len));
  EXPECT_FALSE(normalize_host(std::string(254, 'a'), out, len));
  EXPECT_EQ(out[0], '#');
  EXPECT_EQ(len, 7u);
  EXPECT_TRUE(normalize_host(std::string(253, 'A') + ".:1", out, len));
  EXPECT_EQ(len, 253u);
  EXPECT_EQ(out[0], 'a');
}

// ---------------------------------------------------------------------------------------------
// Host precedence

// Overlapping hosts, so that each level must beat the next one:
//   canary-hello.default.example.com: exact mapping -> "mapped"; also hello's tag host
//   beta-hello.default.example.com:   hello's tag host; also service "beta-hello"'s service host
//   hello.default.example.com:        hello's service host; also under "*.default.example.com"
//   x.default.example.com:            "*.default.example.com" -> "deep" and "*.example.com"
//   x.example.com:                    "*.example.com" -> "shallow"; also "*"
//   anything else:                    "*" -> "fallback"
config::Config precedence_config() {
  return cfg(
      {
          svc("hello", {rev("hello-1"), rev("hello-2")},
              {to("hello-1", 100), to("hello-2", 0, "canary"), to("hello-2", 0, "beta")}),
          svc("beta-hello", {rev("bh-1")}, {to("bh-1", 100)}),
          svc("mapped", {rev("mapped-1")}, {to("mapped-1", 100)}),
          svc("deep", {rev("deep-1")}, {to("deep-1", 100)}),
          svc("shallow", {rev("shallow-1")}, {to("shallow-1", 100)}),
          svc("fallback", {rev("fallback-1")}, {to("fallback-1", 100)}),
      },
      {
          mapping("*.example.com", "shallow"),
          mapping("*.default.example.com", "deep"),
          mapping("canary-hello.default.example.com", "mapped"),
          mapping("*", "fallback"),
      });
}

TEST(HostPrecedence, ExactMappingBeatsTagHost) {
  auto table = RouteTable::compile(precedence_config());
  const auto m = table->find_host("canary-hello.default.example.com");
  EXPECT_EQ(m.match, MatchKind::exact_mapping);
  EXPECT_EQ(m.service->name, "mapped");
  EXPECT_EQ(m.target, nullptr);
}

TEST(HostPrecedence, TagHostBeatsServiceHost) {
  auto table = RouteTable::compile(precedence_config());
  const auto m = table->find_host("beta-hello.default.example.com");
  EXPECT_EQ(m.match, MatchKind::tag_host);
  EXPECT_EQ(m.service->name, "hello");
  ASSERT_NE(m.target, nullptr);
  EXPECT_EQ(m.target->tag, "beta");
  EXPECT_EQ(m.target->revision->name, "hello-2");
}

TEST(HostPrecedence, ServiceHostBeatsWildcard) {
  auto table = RouteTable::compile(precedence_config());
  const auto m = table->find_host("hello.default.example.com");
  EXPECT_EQ(m.match, MatchKind::service_host);
  EXPECT_EQ(m.service->name, "hello");
  EXPECT_EQ(m.service->host, "hello.default.example.com");
}

TEST(HostPrecedence, LongestWildcardSuffixWins) {
  auto table = RouteTable::compile(precedence_config());
  auto m = table->find_host("x.default.example.com");
  EXPECT_EQ(m.match, MatchKind::wildcard_mapping);
  EXPECT_EQ(m.service->name, "deep");
  m = table->find_host("a.b.c.default.example.com");  // any number of labels in front
  EXPECT_EQ(m.match, MatchKind::wildcard_mapping);
  EXPECT_EQ(m.service->name, "deep");
  m = table->find_host("default.example.com");  // "*.default..." needs a label in front
  EXPECT_EQ(m.match, MatchKind::wildcard_mapping);
  EXPECT_EQ(m.service->name, "shallow");
  EXPECT_EQ(service_of(*table, "x.y.example.com"), "shallow");
}

TEST(HostPrecedence, WildcardBeatsCatchAll) {
  auto table = RouteTable::compile(precedence_config());
  EXPECT_EQ(table->find_host("x.example.com").match, MatchKind::wildcard_mapping);
  // "*.example.com" does not match "example.com" itself.
  const auto m = table->find_host("example.com");
  EXPECT_EQ(m.match, MatchKind::catch_all);
  EXPECT_EQ(m.service->name, "fallback");
  EXPECT_EQ(table->find_host("example.com.evil.org").match, MatchKind::catch_all);
  EXPECT_EQ(table->find_host("xexample.com").match, MatchKind::catch_all);
}

TEST(HostPrecedence, CatchAllTakesAnyOtherHost) {
  auto table = RouteTable::compile(precedence_config());
  const auto m = table->find_host("127.0.0.1:8080");
  EXPECT_EQ(m.match, MatchKind::catch_all);
  EXPECT_EQ(m.service->name, "fallback");
  EXPECT_EQ(table->find_host("[::1]:8080").match, MatchKind::catch_all);
  EXPECT_EQ(table->find_host("").match, MatchKind::none);  // not a host at all
}

TEST(HostPrecedence, UnknownHostWithoutCatchAllIsNone) {
  auto table = RouteTable::compile(
      cfg({weighted("hello", {100})},
          {mapping("www.example.org", "hello"), mapping("*.apps.example.org", "hello")}));
  Router router(table);
  for (std::string_view host : {"nope.example.com", "example.org", "apps.example.org",
                                "hello.other.example.com", "127.0.0.1", "[::1]:80", ""}) {
    const Decision d = router.route(view(host, "/", {}), 0);
    EXPECT_EQ(d.match, MatchKind::none) << host;
    EXPECT_FALSE(d) << host;
    EXPECT_EQ(d.service, nullptr) << host;
  }
}

TEST(HostPrecedence, CaseUpperPortAndTrailingDot) {
  auto table = RouteTable::compile(precedence_config());
  for (std::string_view host : {"HELLO.Default.Example.COM", "hello.default.example.com:8080",
                                "hello.default.example.com.", "Hello.Default.Example.Com.:443"}) {
    const auto m = table->find_host(host);
    EXPECT_EQ(m.match, MatchKind::service_host) << host;
    EXPECT_EQ(m.service->name, "hello") << host;
  }
  EXPECT_EQ(table->find_host("CANARY-hello.default.example.com:80").match,
            MatchKind::exact_mapping);
  EXPECT_EQ(table->find_host("BETA-HELLO.default.example.com.").match, MatchKind::tag_host);
  EXPECT_EQ(service_of(*table, "A.B.Default.Example.Com:8443"), "deep");
}

TEST(HostPrecedence, Ipv6LiteralHost) {
  auto no_catch_all =
      RouteTable::compile(cfg({weighted("hello", {100})}, {mapping("*.3.4", "hello")}));
  EXPECT_EQ(no_catch_all->find_host("[::1]:8080").match, MatchKind::none);
  EXPECT_EQ(no_catch_all->find_host("[::ffff:1.2.3.4]").match, MatchKind::none);
  EXPECT_EQ(no_catch_all->find_host("1.2.3.4:80").match, MatchKind::wildcard_mapping);

  auto with_catch_all =
      RouteTable::compile(cfg({weighted("hello", {100})}, {mapping("*", "hello")}));
  Router router(with_catch_all);
  const Decision d = router.route(view("[2001:DB8::1]:8080", "/", {}), 0);
  EXPECT_EQ(d.match, MatchKind::catch_all);
  EXPECT_EQ(d.revision->name, "r0");
}

TEST(HostPrecedence, MappingsInOtherNamespacesAndDomain) {
  auto table = RouteTable::compile(cfg(
      {svc("api", {rev("api-a")}, {to("api-a", 100)}, config::SplitPolicy::smooth, "team-a"),
       svc("api", {rev("api-b")}, {to("api-b", 100, "v2")}, config::SplitPolicy::smooth, "team-b")},
      {mapping("api.example.org", "api", "team-b"), mapping("gone.example.org", "missing")},
      "Apps.Local."));
  EXPECT_EQ(table->find_host("api.team-a.apps.local").service->namespace_name, "team-a");
  EXPECT_EQ(table->find_host("api.team-b.apps.local").service->namespace_name, "team-b");
  EXPECT_EQ(table->find_host("v2-api.team-b.apps.local").match, MatchKind::tag_host);
  EXPECT_EQ(table->find_host("api.example.org").service->namespace_name, "team-b");
  EXPECT_EQ(table->find_host("gone.example.org").match, MatchKind::none);
  EXPECT_EQ(table->find_host("api.default.example.com").match, MatchKind::none);
}

// ---------------------------------------------------------------------------------------------
// Tags and latestRevision

config::Config tagged_config() {
  return cfg({svc("hello", {rev("hello-1"), rev("hello-2"), rev("hello-3")},
                  {to("hello-1", 100, "stable"), to("hello-2", 0, "canary"), latest(0, "latest")})},
             {mapping("www.example.org", "hello"), mapping("*.example.net", "hello"),
              mapping("*", "hello")});
}

TEST(Tags, TagHostGoesToItsRevision) {
  Router router(RouteTable::compile(tagged_config()));
  for (int i = 0; i < 20; ++i) {
    const Decision d = router.route(view("canary-hello.default.example.com", "/", {}), i);
    EXPECT_EQ(d.match, MatchKind::tag_host);
    EXPECT_EQ(d.revision->name, "hello-2");
    EXPECT_EQ(d.target->tag, "canary");
    EXPECT_EQ(d.target->percent, 0);
  }
  EXPECT_EQ(revision_of(router, "stable-hello.default.example.com"), "hello-1");
  EXPECT_EQ(revision_of(router, "latest-hello.default.example.com"), "hello-3");
}

TEST(Tags, HeaderSelectsTagOnAnyNonTagHost) {
  Router router(RouteTable::compile(tagged_config()));
  for (std::string_view host :
       {"hello.default.example.com", "www.example.org", "a.example.net", "127.0.0.1:8080"}) {
    const Decision d = router.route(view(host, "/", "canary"), 0);
    EXPECT_EQ(d.revision->name, "hello-2") << host;
    EXPECT_EQ(d.target->tag, "canary") << host;
    EXPECT_EQ(revision_of(router, host, 0, "latest"), "hello-3") << host;
    EXPECT_EQ(revision_of(router, host), "hello-1") << host;  // no header: the split
  }
}

TEST(Tags, UnknownTagHeaderIsIgnored) {
  Router router(RouteTable::compile(tagged_config()));
  const Decision d = router.route(view("hello.default.example.com", "/", "nope"), 0);
  EXPECT_EQ(d.match, MatchKind::service_host);
  EXPECT_EQ(d.revision->name, "hello-1");
  EXPECT_EQ(d.target->tag, "stable");
  EXPECT_EQ(revision_of(router, "hello.default.example.com", 0, "CANARY"), "hello-1");
}

TEST(Tags, HeaderOnTagHostIsIgnored) {
  Router router(RouteTable::compile(tagged_config()));
  const Decision d = router.route(view("canary-hello.default.example.com", "/", "latest"), 0);
  EXPECT_EQ(d.match, MatchKind::tag_host);
  EXPECT_EQ(d.revision->name, "hello-2");
}

TEST(Tags, LatestRevisionIsLastListed) {
  auto table =
      RouteTable::compile(cfg({svc("hello", {rev("h-1"), rev("h-2"), rev("h-3")}, {latest(100)}),
                               svc("other", {rev("o-1")}, {latest(100)})}));
  Router router(table);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(revision_of(router, "hello.default.example.com"), "h-3");
    EXPECT_EQ(revision_of(router, "other.default.example.com"), "o-1");
  }
  EXPECT_EQ(table->services()[0]->targets[0].revision->name, "h-3");
}

// ---------------------------------------------------------------------------------------------
// Smooth split

// Route `cycles` whole schedules through one Router and check that every cycle holds each
// revision exactly percent/gcd times.
void expect_exact_every_cycle(const std::vector<int>& percents, int cycles = 5) {
  SCOPED_TRACE(::testing::PrintToString(percents));
  auto table = RouteTable::compile(cfg({weighted("s", percents)}));
  const Service& service = *table->services()[0];
  int divisor = 0;
  for (int p : percents) divisor = std::gcd(divisor, p);
  std::size_t cycle = 0;
  for (int p : percents) cycle += static_cast<std::size_t>(p / divisor);
  ASSERT_EQ(service.schedule.size(), cycle);

  Router router(table);
  for (int c = 0; c < cycles; ++c) {
    std::map<std::string, int> counts;
    for (std::size_t i = 0; i < cycle; ++i) {
      ++counts[revision_of(router, "s.default.example.com")];
    }
    for (std::size_t r = 0; r < percents.size(); ++r) {
      const std::string name = rname(r);
      EXPECT_EQ(counts[name], percents[r] / divisor) << name << " in cycle " << c;
    }
  }
}

TEST(SmoothSplit, ExactOnRatioOverEveryFullCycle) {
  expect_exact_every_cycle({90, 10});
  expect_exact_every_cycle({33, 33, 34});
  expect_exact_every_cycle({1, 99});
  expect_exact_every_cycle({50, 50});
  expect_exact_every_cycle({20, 30, 50});
  expect_exact_every_cycle({25, 25, 25, 25});
  expect_exact_every_cycle({100});
  expect_exact_every_cycle({10, 0, 90});
}

TEST(SmoothSplit, CycleIsReducedByGcd) {
  auto table = RouteTable::compile(cfg({weighted("a", {90, 10}), weighted("b", {33, 33, 34}),
                                        weighted("c", {50, 50}), weighted("d", {0, 100})}));
  EXPECT_EQ(table->services()[0]->schedule.size(), 10u);
  EXPECT_EQ(table->services()[1]->schedule.size(), 100u);
  EXPECT_EQ(table->services()[2]->schedule.size(), 2u);
  EXPECT_EQ(table->services()[3]->schedule, std::vector<std::uint16_t>{1});
}

TEST(SmoothSplit, MatchesNginxSequenceFor5_1_1) {
  // nginx's documented example: weights 5, 1, 1 give a a b a c a a. Percents 50/10/10 reduce
  // to 5/1/1 (compile does not require the sum of 100 that validation enforces).
  config::Service s =
      svc("s", {rev("a"), rev("b"), rev("c")}, {to("a", 50), to("b", 10), to("c", 10)});
  auto table = RouteTable::compile(cfg({s}));
  EXPECT_EQ(table->services()[0]->schedule, (std::vector<std::uint16_t>{0, 0, 1, 0, 2, 0, 0}));
  Router router(table);
  std::string sequence;
  for (int i = 0; i < 21; ++i) sequence += revision_of(router, "s.default.example.com");
  EXPECT_EQ(sequence,
            "aabacaa"
            "aabacaa"
            "aabacaa");
}

TEST(SmoothSplit, InterleavesMinority) {
  Router router(RouteTable::compile(cfg({weighted("s", {90, 10}), weighted("t", {1, 99})})));
  std::string previous;
  int minority = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string r = revision_of(router, "s.default.example.com");
    if (r == "r1") {
      ++minority;
      EXPECT_NE(previous, "r1") << "10% revision picked twice in a row at " << i;
    }
    previous = r;
  }
  EXPECT_EQ(minority, 100);
  // 1/99: the 1% revision once per cycle of 100, never in a burst.
  std::vector<int> positions;
  for (int i = 0; i < 300; ++i) {
    if (revision_of(router, "t.default.example.com") == "r0") positions.push_back(i);
  }
  ASSERT_EQ(positions.size(), 3u);
  EXPECT_EQ(positions[1] - positions[0], 100);
  EXPECT_EQ(positions[2] - positions[1], 100);
}

TEST(SmoothSplit, ZeroPercentNeverPicked) {
  Router router(RouteTable::compile(
      cfg({svc("s", {rev("zero"), rev("all")}, {to("zero", 0, "old"), to("all", 100)})})));
  for (int i = 0; i < 500; ++i) EXPECT_EQ(revision_of(router, "s.default.example.com"), "all");
  // ...but a 0% tagged target stays reachable by its tag host and by the header.
  EXPECT_EQ(revision_of(router, "old-s.default.example.com"), "zero");
  EXPECT_EQ(revision_of(router, "s.default.example.com", 0, "old"), "zero");
}

TEST(SmoothSplit, EntropyIsIgnored) {
  Router router(RouteTable::compile(cfg({weighted("s", {90, 10})})));
  std::string sequence;
  for (int i = 0; i < 10; ++i) {
    sequence += revision_of(router, "s.default.example.com", 9 + 10 * i) == "r1" ? "1" : "0";
  }
  EXPECT_EQ(sequence.find('1'), sequence.rfind('1'));  // once per cycle of 10
}

// ---------------------------------------------------------------------------------------------
// Random split

void expect_random_within_3_sigma(const std::vector<int>& percents) {
  SCOPED_TRACE(::testing::PrintToString(percents));
  Router router(RouteTable::compile(cfg({weighted("s", percents, config::SplitPolicy::random)})));
  std::mt19937_64 prng(20240501);
  constexpr int kPicks = 1'000'000;
  std::map<std::string, int> counts;
  for (int i = 0; i < kPicks; ++i) ++counts[revision_of(router, "s.default.example.com", prng())];
  for (std::size_t r = 0; r < percents.size(); ++r) {
    const double p = percents[r] / 100.0;
    const double expected = kPicks * p;
    const double sigma = std::sqrt(kPicks * p * (1 - p));
    const int got = counts[rname(r)];
    EXPECT_LE(std::abs(got - expected), 3 * sigma)
        << "r" << r << ": " << got << " picks, expected " << expected << " +- " << 3 * sigma;
  }
}

TEST(RandomSplit, WithinThreeSigmaOverAMillionPicks) {
  expect_random_within_3_sigma({90, 10});
  expect_random_within_3_sigma({33, 33, 34});
}

TEST(RandomSplit, EntropySweepGivesExactShares) {
  for (const std::vector<int>& percents :
       std::vector<std::vector<int>>{{90, 10}, {33, 33, 34}, {1, 99}, {0, 100}, {100, 0}}) {
    SCOPED_TRACE(::testing::PrintToString(percents));
    Router router(RouteTable::compile(cfg({weighted("s", percents, config::SplitPolicy::random)})));
    std::map<std::string, int> counts;
    for (std::uint64_t e = 0; e < 100; ++e)
      ++counts[revision_of(router, "s.default.example.com", e)];
    for (std::size_t r = 0; r < percents.size(); ++r) {
      EXPECT_EQ(counts[rname(r)], percents[r]) << "r" << r;
    }
  }
}

TEST(RandomSplit, CumulativeRangesInOrder) {
  Router router(RouteTable::compile(cfg({weighted("s", {90, 10}, config::SplitPolicy::random)})));
  EXPECT_EQ(revision_of(router, "s.default.example.com", 0), "r0");
  EXPECT_EQ(revision_of(router, "s.default.example.com", 89), "r0");
  EXPECT_EQ(revision_of(router, "s.default.example.com", 90), "r1");
  EXPECT_EQ(revision_of(router, "s.default.example.com", 99), "r1");
  EXPECT_EQ(revision_of(router, "s.default.example.com", 100), "r0");
  EXPECT_EQ(revision_of(router, "s.default.example.com", ~std::uint64_t{0}), "r0");  // %100 = 15
}

TEST(RandomSplit, ZeroPercentTaggedTargetReachableOnlyByTag) {
  Router router(RouteTable::compile(
      cfg({svc("s", {rev("zero"), rev("all")}, {to("zero", 0, "old"), to("all", 100)},
               config::SplitPolicy::random)})));
  for (std::uint64_t e = 0; e < 1000; ++e) {
    EXPECT_EQ(revision_of(router, "s.default.example.com", e), "all");
  }
  EXPECT_EQ(revision_of(router, "old-s.default.example.com", 0), "zero");
  EXPECT_EQ(revision_of(router, "s.default.example.com", 0, "old"), "zero");
}

// ---------------------------------------------------------------------------------------------
// Endpoints, per-request state, reload

TEST(Endpoints, RoundRobinPerRevision) {
  auto table =
      RouteTable::compile(cfg({svc("s",
                                   {rev("a", {"127.0.0.1:9001", "127.0.0.1:9002", "[::1]:9003"}),
                                    rev("b", {"10.0.0.1:80", "10.0.0.2:80"})},
                                   {to("a", 50, "ta"), to("b", 50, "tb")})}));
  Router router(table);
  std::vector<std::string> a;
  std::vector<std::string> b;
  for (int i = 0; i < 6; ++i) {
    a.push_back(router.route(view("ta-s.default.example.com", "/", {}), 0).endpoint->authority);
    b.push_back(router.route(view("tb-s.default.example.com", "/", {}), 0).endpoint->authority);
  }
  EXPECT_EQ(a, (std::vector<std::string>{"127.0.0.1:9001", "127.0.0.1:9002", "[::1]:9003",
                                         "127.0.0.1:9001", "127.0.0.1:9002", "[::1]:9003"}));
  EXPECT_EQ(b, (std::vector<std::string>{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80", "10.0.0.2:80",
                                         "10.0.0.1:80", "10.0.0.2:80"}));
  const Endpoint& v6 = table->revisions()[0]->endpoints[2];
  EXPECT_EQ(v6.address, "::1");
  EXPECT_EQ(v6.port, 9003);
}

TEST(Endpoints, RoundRobinThroughTheSplit) {
  Router router(RouteTable::compile(
      cfg({svc("s", {rev("a", {"127.0.0.1:1", "127.0.0.1:2"}), rev("b", {"127.0.0.1:3"})},
               {to("a", 50), to("b", 50)})})));
  std::vector<std::string> seen;
  for (int i = 0; i < 6; ++i) {
    seen.push_back(router.route(view("s.default.example.com", "/", {}), 0).endpoint->authority);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:2",
                                            "127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:3"}));
}

TEST(Router, EachCallAdvances) {
  // A keep-alive connection's requests each go through route(): the split is per request.
  Router router(RouteTable::compile(cfg({weighted("s", {50, 50})})));
  std::string sequence;
  for (int i = 0; i < 6; ++i) sequence += revision_of(router, "s.default.example.com");
  EXPECT_EQ(sequence, "r0r1r0r1r0r1");
}

TEST(Router, CursorsArePerServiceAndPerRouter) {
  auto table = RouteTable::compile(cfg({weighted("s", {50, 50}), weighted("t", {50, 50})}));
  Router one(table);
  Router two(table);
  EXPECT_EQ(revision_of(one, "s.default.example.com"), "r0");
  EXPECT_EQ(revision_of(one, "s.default.example.com"), "r1");
  EXPECT_EQ(revision_of(one, "t.default.example.com"), "r0");  // own cursor
  EXPECT_EQ(revision_of(two, "s.default.example.com"), "r0");  // own worker state
}

TEST(Router, ResetAppliesNewSplitToNextRequest) {
  auto old_table =
      RouteTable::compile(cfg({svc("s", {rev("a"), rev("b")}, {to("a", 100), to("b", 0)})}), 1);
  Router router(old_table);
  const Decision before = router.route(view("s.default.example.com", "/", {}), 0);
  EXPECT_EQ(before.revision->name, "a");
  EXPECT_EQ(router.table()->generation(), 1u);

  auto new_table =
      RouteTable::compile(cfg({svc("s", {rev("a"), rev("b")}, {to("a", 0), to("b", 100)})}), 2);
  router.reset(new_table);
  EXPECT_EQ(router.table()->generation(), 2u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(revision_of(router, "s.default.example.com"), "b");

  // The request that started on the old table keeps valid pointers while it holds the table.
  EXPECT_EQ(before.revision->name, "a");
  EXPECT_EQ(before.service->name, "s");
  EXPECT_EQ(before.target->percent, 100);
  EXPECT_EQ(before.endpoint->authority, "127.0.0.1:9001");

  // The new table may have fewer services: cursors are resized.
  router.reset(RouteTable::compile(cfg({})));
  EXPECT_EQ(revision_of(router, "s.default.example.com"), "<none>");
  router.reset(nullptr);
  EXPECT_EQ(revision_of(router, "s.default.example.com"), "<none>");
}

TEST(Router, DecisionCarriesEverything) {
  Router router(RouteTable::compile(tagged_config()));
  const Decision d = router.route(view("www.example.org:80", "/x", {}), 0);
  ASSERT_TRUE(d);
  EXPECT_EQ(d.match, MatchKind::exact_mapping);
  EXPECT_EQ(d.service->name, "hello");
  EXPECT_EQ(d.service->namespace_name, "default");
  EXPECT_EQ(d.target->tag, "stable");
  EXPECT_EQ(d.revision->name, "hello-1");
  EXPECT_EQ(d.endpoint->address, "127.0.0.1");
  EXPECT_EQ(d.endpoint->port, 9001);
}

// ---------------------------------------------------------------------------------------------
// host_routes

TEST(HostRoutes, ListsEveryHostOnceWithTheWinner) {
  auto table = RouteTable::compile(precedence_config());
  const auto routes = table->host_routes();
  std::vector<std::string> lines;
  for (const HostRoute& r : routes) {
    std::string line = std::string(to_string(r.match)) + " " + r.host + " -> " + r.service->name;
    if (r.target) line += " @" + r.target->tag + "=" + r.target->revision->name;
    lines.push_back(line);
  }
  EXPECT_EQ(lines, (std::vector<std::string>{
                       "exact-mapping canary-hello.default.example.com -> mapped",
                       "tag-host beta-hello.default.example.com -> hello @beta=hello-2",
                       "service-host deep.default.example.com -> deep",
                       "service-host fallback.default.example.com -> fallback",
                       "service-host hello.default.example.com -> hello",
                       "service-host mapped.default.example.com -> mapped",
                       "service-host shallow.default.example.com -> shallow",
                       "wildcard-mapping *.default.example.com -> deep",
                       "wildcard-mapping *.example.com -> shallow",
                       "catch-all * -> fallback",
                   }));
}

TEST(HostRoutes, EveryListedHostResolvesToItsRouteAtScale) {
  // Thousands of hosts: exercises the host index's probing and collisions.
  std::vector<config::Service> services;
  std::vector<config::DomainMapping> mappings;
  for (int i = 0; i < 3000; ++i) {
    const std::string n = "s" + std::to_string(i);
    services.push_back(svc(n, {rev(n + "-a"), rev(n + "-b")},
                           {to(n + "-a", 90), to(n + "-b", 10, "canary")},
                           config::SplitPolicy::smooth, "ns" + std::to_string(i % 7)));
    const std::string ns = "ns" + std::to_string(i % 7);
    mappings.push_back(mapping("www." + n + ".example.org", n, ns));
    mappings.push_back(mapping("*." + n + ".example.net", n, ns));
  }
  auto table = RouteTable::compile(cfg(std::move(services), std::move(mappings)));
  const auto routes = table->host_routes();
  ASSERT_EQ(routes.size(), 3000u * 4);
  for (const HostRoute& r : routes) {
    const std::string probe =
        r.match == MatchKind::wildcard_mapping ? "x.y" + r.host.substr(1) : r.host;
    const auto m = table->find_host(probe);
    EXPECT_EQ(m.match, r.match) << probe;
    EXPECT_EQ(m.service, r.service) << probe;
    EXPECT_EQ(m.target, r.target) << probe;
  }
  EXPECT_EQ(table->find_host("s1.example.net").match, MatchKind::none);
  EXPECT_EQ(table->find_host("www.s1.example.org.uk").match, MatchKind::none);
  EXPECT_EQ(table->find_host("canary-s1.ns1.example.com").service->name, "s1");
  EXPECT_EQ(table->find_host("canary-s1.ns2.example.com").match, MatchKind::none);
}

// ---------------------------------------------------------------------------------------------
// No allocation on the lookup path

TEST(Allocation, CounterSeesAllocations) {
  volatile std::size_t n = 100;
  const std::size_t before = g_allocations.load();
  std::string s(n, 'x');
  asm volatile("" : : "r"(s.data()) : "memory");
  EXPECT_GT(g_allocations.load(), before);
}

TEST(Allocation, RouteDoesNotAllocate) {
  std::vector<config::Service> services;
  std::vector<config::DomainMapping> mappings;
  for (int i = 0; i < 50; ++i) {
    const std::string n = "svc" + std::to_string(i);
    services.push_back(svc(n, {rev(n + "-1", {"127.0.0.1:1", "127.0.0.1:2"}), rev(n + "-2")},
                           {to(n + "-1", 90), to(n + "-2", 10, "canary")},
                           i % 2 ? config::SplitPolicy::random : config::SplitPolicy::smooth));
    mappings.push_back(mapping("www" + std::to_string(i) + ".example.org", n));
    mappings.push_back(mapping("*.w" + std::to_string(i) + ".example.net", n));
  }
  auto table = RouteTable::compile(cfg(std::move(services), std::move(mappings)));
  Router router(table);
  const std::vector<RequestView> requests = {
      view("www7.example.org", "/", {}),
      view("SVC3.default.example.com:8080", "/", {}),
      view("canary-svc4.default.example.com.", "/", {}),
      view("a.B.w9.example.net:443", "/", {}),
      view("svc5.default.example.com", "/", "canary"),
      view("svc5.default.example.com", "/", "unknown"),
      view("nowhere.example.com", "/", {}),
      view("[::1]:8080", "/", {}),
      view(std::string_view(), "/", {}),
  };
  int routed = 0;
  const std::size_t before = g_allocations.load();
  for (int i = 0; i < 1000; ++i) {
    const Decision d = router.route(requests[i % requests.size()], static_cast<std::uint64_t>(i));
    routed += d ? 1 : 0;
  }
  const std::size_t after = g_allocations.load();
  EXPECT_EQ(after - before, 0u) << "allocations across 1,000 route() calls";
  EXPECT_GT(routed, 600);
}

}  // namespace
}  // namespace revgate::routing
