// Micro-benchmark of route rule matching (routing/route_match.h): a service with 20 rules
// (7 uri prefixes, 7 header values, 6 uri regexes, in that mix interleaved), first match wins.
// BM_rules_no_match walks all 20 (the worst case: the request falls through to the service's
// traffic); BM_rules_last_matches stops at the 20th. Per iteration = one request's matching.
// "allocs" counts operator new calls per iteration (must be 0: matching allocates nothing).
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "routing/route_match.h"

namespace {
std::atomic<std::size_t> allocations{0};
// Out of line, so that GCC does not pair a free() it can see with an operator new it inlined
// (-Wmismatched-new-delete's false positive for replacement operators).
[[gnu::noinline]] void* take(std::size_t size) { return std::malloc(size == 0 ? 1 : size); }
[[gnu::noinline]] void give_back(void* p) noexcept { std::free(p); }
}  // namespace

void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = take(size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { give_back(p); }
void operator delete(void* p, std::size_t) noexcept { give_back(p); }

namespace {

using revgate::routing::ListedFields;
using revgate::routing::MatchCondition;
using revgate::routing::MatchFields;
using revgate::routing::RequestMatch;
using revgate::routing::RuleMatch;
using revgate::routing::StringMatcher;
using Kind = StringMatcher::Kind;
using Field = MatchCondition::Field;

// A request with its fields, as the proxy's view of a parsed head would present it.
struct Request {
  Request(std::string_view target, ListedFields::List list)
      : fields(std::move(list)), view("GET", target, "shop.example.com", fields) {}
  ListedFields::List fields;
  ListedFields view;
};

std::vector<RuleMatch> twenty_rules() {
  std::vector<RuleMatch> rules;
  for (int i = 0; i < 20; ++i) {
    MatchCondition condition;
    switch (i % 3) {
      case 0:
        condition = {Field::uri, "", *StringMatcher::compile(Kind::prefix, "/api/v" + std::to_string(i) + "/")};
        break;
      case 1:
        condition = {Field::header, "x-tenant",
                     *StringMatcher::compile(Kind::exact, "tenant-" + std::to_string(i))};
        break;
      default:
        condition = {Field::uri, "",
                     *StringMatcher::compile(Kind::regex,
                                             "/users/[0-9]+/orders/" + std::to_string(i))};
        break;
    }
    RequestMatch match;
    match.conditions.push_back(std::move(condition));
    RuleMatch rule;
    rule.any_of.push_back(std::move(match));
    rules.push_back(std::move(rule));
  }
  return rules;
}

int first_match(const std::vector<RuleMatch>& rules, const MatchFields& request) {
  for (std::size_t i = 0; i < rules.size(); ++i) {
    if (rules[i].matches(request)) return int(i);
  }
  return -1;
}

void run(benchmark::State& state, const Request& request, int expected) {
  const auto rules = twenty_rules();
  if (first_match(rules, request.view) != expected) {
    state.SkipWithError("the request does not match the rule it should");
    return;
  }
  const std::size_t before = allocations.load();
  for (auto _ : state) benchmark::DoNotOptimize(first_match(rules, request.view));
  state.counters["allocs"] = benchmark::Counter(double(allocations.load() - before),
                                                benchmark::Counter::kAvgIterations);
}

void BM_rules_no_match(benchmark::State& state) {
  const Request request("/users/42/orders/7?page=2",
                        {{"x-tenant", "tenant-0"}, {"accept", "*/*"}, {"user-agent", "bench"}});
  run(state, request, -1);
}
BENCHMARK(BM_rules_no_match);

void BM_rules_last_matches(benchmark::State& state) {
  // rule 19 (19 % 3 == 1): header x-tenant exact tenant-19
  const Request request("/users/42/orders/7?page=2",
                        {{"x-tenant", "tenant-19"}, {"accept", "*/*"}, {"user-agent", "bench"}});
  run(state, request, 19);
}
BENCHMARK(BM_rules_last_matches);

}  // namespace
