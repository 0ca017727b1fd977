// Route rules through RouteTable and Router (a service's `routes`, loaded from YAML): first match
// wins, a rule's own traffic split (exact shares, its own cursor), the service's traffic when no
// rule matches, tags before rules, rules that answer by themselves, and no allocation per request.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "routing/route_table.h"

namespace routing_test_support {
extern std::atomic<std::size_t> g_allocations;  // routing_test.cpp's counting operator new
}  // namespace routing_test_support

namespace revgate::routing {
namespace {

constexpr std::string_view kConfig = R"(
listeners: [{name: web, address: "127.0.0.1:0"}]
services:
  - name: shop
    revisions:
      - {name: shop-1, endpoints: ["127.0.0.1:9001"]}
      - {name: shop-2, endpoints: ["127.0.0.1:9002"]}
      - {name: shop-3, endpoints: ["127.0.0.1:9003"]}
    traffic:
      - {revisionName: shop-1, percent: 100}
      - {revisionName: shop-3, percent: 0, tag: preview}
    routes:
      - name: robots
        match: [{uri: {exact: /robots.txt}}]
        directResponse: {status: 200, body: {string: "User-agent: *\n"}}
      - name: canary
        match:
          - headers: {x-canary: {exact: "1"}}
          - uri: {prefix: /v2/}
        traffic:
          - {revisionName: shop-2, percent: 50}
          - {revisionName: shop-3, percent: 50}
      - name: legacy
        match: [{uri: {prefix: /old/}}]
        redirect: {uri: /new}
      - name: api
        match: [{uri: {regex: "/api/[a-z]+"}, method: {exact: POST}}]
        rewrite: {uri: /internal}
domainMappings: [{domain: "*", service: shop}]
)";

// A request to shop.example.com: target (a literal), header fields (lowercase), method.
struct FieldStore {
  ListedFields::List list;
};
class Request : private FieldStore, public ListedFields {
 public:
  explicit Request(std::string_view target, ListedFields::List fields = {},
                   std::string_view method = "GET")
      : FieldStore{std::move(fields)}, ListedFields(method, target, "shop.example.com", list) {}
};

class RouteRules : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = config::load_string(kConfig.substr(1), "rules.yaml");
    ASSERT_TRUE(config.has_value()) << config.error().front().to_string();
    router_.emplace(RouteTable::compile(*config));
  }
  Decision route(const Request& request, std::string_view tag = "") {
    RequestView view;
    view.host = "shop.example.com";
    view.tag_header = tag;
    view.fields = &request;
    return router_->route(view, 12345);
  }
  std::string rule_of(const Decision& d) { return d.rule ? d.rule->name : "-"; }
  std::optional<Router> router_;
};

TEST_F(RouteRules, NoRuleMatchedFollowsTheServiceTraffic) {
  const auto d = route(Request("/cart"));
  EXPECT_EQ(d.rule, nullptr);
  ASSERT_TRUE(d);
  EXPECT_EQ(d.revision->name, "shop-1");
}

TEST_F(RouteRules, TheFirstMatchingRuleWinsAndSaysWhichEntryMatched) {
  const auto by_header = route(Request("/v2/x", {{"x-canary", "1"}}));
  EXPECT_EQ(rule_of(by_header), "canary");
  EXPECT_EQ(by_header.matched, 0u) << "the header entry comes first";
  const auto by_uri = route(Request("/v2/x"));
  EXPECT_EQ(rule_of(by_uri), "canary");
  EXPECT_EQ(by_uri.matched, 1u);
  EXPECT_EQ(by_uri.rule->uri_prefixes.at(1), "/v2/");
  EXPECT_EQ(rule_of(route(Request("/robots.txt", {{"x-canary", "1"}}))), "robots")
      << "an earlier rule wins even when a later one matches too";
  EXPECT_EQ(rule_of(route(Request("/api/users", {}, "POST"))), "api");
  EXPECT_EQ(route(Request("/api/users", {}, "GET")).rule, nullptr) << "AND within an entry";
  EXPECT_EQ(route(Request("/api/users/1", {}, "POST")).rule, nullptr) << "regex: whole path";
}

TEST_F(RouteRules, ARulesOwnTrafficIsSplitExactlyWithItsOwnCursor) {
  std::map<std::string, int> counts;
  for (int i = 0; i < 100; ++i) {
    const auto d = route(Request("/v2/x"));
    ASSERT_TRUE(d);
    ++counts[d.revision->name];
    // interleaved requests that no rule matches do not move the rule's schedule
    EXPECT_EQ(route(Request("/cart")).revision->name, "shop-1");
  }
  EXPECT_EQ(counts, (std::map<std::string, int>{{"shop-2", 50}, {"shop-3", 50}}));
}

TEST_F(RouteRules, ATagChoosesTheRevisionOverARulesTraffic) {
  const auto d = route(Request("/v2/x"), "preview");
  EXPECT_EQ(rule_of(d), "canary") << "the rule still matched (its rewrite and headers apply)";
  EXPECT_EQ(d.revision->name, "shop-3");
}

TEST_F(RouteRules, RulesThatAnswerThemselvesPickNoRevision) {
  const auto robots = route(Request("/robots.txt"));
  ASSERT_NE(robots.rule, nullptr);
  EXPECT_TRUE(robots.rule->answers_locally());
  EXPECT_EQ(robots.rule->direct_response->body, "User-agent: *\n");
  EXPECT_FALSE(robots) << "no revision, no endpoint";
  const auto legacy = route(Request("/old/page"));
  ASSERT_NE(legacy.rule, nullptr);
  EXPECT_EQ(legacy.rule->redirect->code, 301);
  EXPECT_EQ(legacy.revision, nullptr);
}

TEST_F(RouteRules, WithoutFieldsTheRulesAreNotConsulted) {
  RequestView view;
  view.host = "shop.example.com";
  const auto d = router_->route(view, 1);
  EXPECT_EQ(d.rule, nullptr);
  EXPECT_EQ(d.revision->name, "shop-1");
}

TEST_F(RouteRules, RoutingThroughRulesAllocatesNothing) {
  const Request canary("/v2/x", {{"x-canary", "1"}});
  const Request none("/cart?x=1", {{"accept", "*/*"}});
  const Request api("/api/users", {}, "POST");
  route(canary);  // warm: nothing lazily built on the request path
  const auto before = routing_test_support::g_allocations.load();
  for (int i = 0; i < 1000; ++i) {
    route(canary);
    route(none);
    route(api);
  }
  EXPECT_EQ(routing_test_support::g_allocations.load() - before, 0u);
}

StringMatcher m(StringMatcher::Kind kind, std::string_view pattern, bool ignore_case = false) {
  return *StringMatcher::compile(kind, pattern, ignore_case);
}

TEST(StringMatcherImplies, WhatCanBeToldWithoutRunningRegexes) {
  using K = StringMatcher::Kind;
  EXPECT_TRUE(m(K::prefix, "/v2/users").implies(m(K::prefix, "/v2/")));
  EXPECT_TRUE(m(K::exact, "/v2/x").implies(m(K::prefix, "/v2/")));
  EXPECT_FALSE(m(K::prefix, "/v2/").implies(m(K::prefix, "/v2/users")));
  EXPECT_TRUE(m(K::regex, "a.*").implies(m(K::regex, "a.*")));
  EXPECT_FALSE(m(K::regex, "ab").implies(m(K::regex, "a.*"))) << "unknown: not claimed";
  EXPECT_TRUE(m(K::exact, "x").implies(StringMatcher())) << "present takes anything";
  EXPECT_FALSE(m(K::prefix, "/A/", true).implies(m(K::prefix, "/a/"))) << "case rules differ";
}

TEST(ShadowedRules, AnEarlierRuleThatTakesEveryRequestOfALaterOne) {
  auto config = config::load_string(R"(listeners: [{name: web, address: "127.0.0.1:0"}]
services:
  - name: shop
    revisions: [{name: shop-1, endpoints: ["127.0.0.1:9001"]}]
    routes:
      - {name: v2, match: [{uri: {prefix: /v2/}}], rewrite: {uri: /}}
      - {name: users, match: [{uri: {prefix: /v2/users}, method: {exact: GET}}], rewrite: {uri: /u}}
      - {name: either, match: [{uri: {prefix: /v3/}}, {uri: {exact: /v2/x}}], rewrite: {uri: /e}}
      - {name: reachable, match: [{uri: {prefix: /v3/}}, {uri: {prefix: /v4/}}], rewrite: {uri: /r}}
      - {name: all, rewrite: {uri: /all}}
      - {name: after-all, match: [{uri: {prefix: /v5/}}], rewrite: {uri: /x}}
)",
                                    "shadow.yaml");
  ASSERT_TRUE(config.has_value()) << config.error().front().to_string();
  const auto table = RouteTable::compile(*config);
  std::vector<std::pair<std::string, std::string>> found;
  for (const auto& [rule, by] : shadowed_rules(*table->services().at(0))) {
    found.emplace_back(rule->name, by->name);
  }
  EXPECT_EQ(found, (std::vector<std::pair<std::string, std::string>>{
                       {"users", "v2"}, {"after-all", "all"}}))
      << "'either' is reachable through /v3/ (its /v2/x entry alone is shadowed), 'reachable' "
         "through /v4/";
}

}  // namespace
}  // namespace revgate::routing

namespace revgate::routing {
namespace {

// trafficPolicy.loadBalancer.consistentHash: a ring of each revision's endpoints.
std::shared_ptr<const RouteTable> ring_table(int endpoints, std::string_view revision_policy = "") {
  std::string list;
  for (int i = 0; i < endpoints; ++i) {
    list += (i ? ", " : "") + std::string("\"10.0.0.") + std::to_string(i + 1) + ":80\"";
  }
  auto config = config::load_string(
      "listeners: [{name: web, address: \"127.0.0.1:0\"}]\n"
      "services:\n"
      "  - name: shop\n"
      "    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: X-User}}}\n"
      "    revisions:\n"
      "      - {name: shop-1, endpoints: [" + list + "]" + std::string(revision_policy) + "}\n"
      "domainMappings: [{domain: \"*\", service: shop}]\n",
      "ring.yaml");
  EXPECT_TRUE(config.has_value()) << config.error().front().to_string();
  return RouteTable::compile(*config);
}

std::string endpoint_for(Router& router, const std::string& user) {
  const Request request("/", {{"x-user", user}});
  RequestView view;
  view.host = "shop.example.com";
  view.fields = &request;
  return router.route(view, 7).endpoint->authority;
}

TEST(ConsistentHash, AKeyKeepsItsEndpointAndKeysSpreadEvenly) {
  Router router(ring_table(4));
  std::map<std::string, int> counts;
  for (int user = 0; user < 10000; ++user) {
    const std::string key = "user-" + std::to_string(user);
    const std::string first = endpoint_for(router, key);
    ASSERT_EQ(endpoint_for(router, key), first);
    ++counts[first];
  }
  ASSERT_EQ(counts.size(), 4u);
  for (const auto& [endpoint, n] : counts) {
    EXPECT_NEAR(n, 2500, 500) << endpoint << ": 160 ring points per endpoint spread the keys";
  }
}

TEST(ConsistentHash, AnAddedEndpointTakesAboutOneNthAllFromTheOthers) {
  Router four(ring_table(4));
  Router five(ring_table(5));
  int moved = 0;
  for (int user = 0; user < 10000; ++user) {
    const std::string key = "user-" + std::to_string(user);
    const std::string before = endpoint_for(four, key);
    const std::string after = endpoint_for(five, key);
    if (before != after) {
      ++moved;
      EXPECT_EQ(after, "10.0.0.5:80") << "a key moves only to the new endpoint";
    }
  }
  EXPECT_NEAR(moved, 2000, 400) << "about 1/5 of the keys move";
}

TEST(ConsistentHash, WithoutTheKeyRoundRobinAndARevisionMayOverride) {
  Router router(ring_table(3));
  RequestView view;
  view.host = "shop.example.com";
  const Request none("/");
  view.fields = &none;
  std::map<std::string, int> counts;
  for (int i = 0; i < 30; ++i) ++counts[router.route(view, i).endpoint->authority];
  EXPECT_EQ(counts.size(), 3u);
  for (const auto& [endpoint, n] : counts) EXPECT_EQ(n, 10) << endpoint;

  Router overridden(ring_table(3, ", trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}"));
  std::map<std::string, int> same_user;
  for (int i = 0; i < 30; ++i) ++same_user[endpoint_for(overridden, "ann")];
  EXPECT_EQ(same_user.size(), 3u) << "the revision's own policy: round robin, key or not";
}

}  // namespace
}  // namespace revgate::routing
