// Unit tests of the routing policy keys of a service: splitPolicy (smooth | random | hash),
// hashOn (header | cookie | sourceIp) and loadBalancer (ROUND_ROBIN | LEAST_REQUEST | RANDOM):
// what loads, and each validation rule with its exact line:column.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.h"

namespace revgate::config {
namespace {

using namespace std::chrono_literals;

// The first line after `R"(` is line 1, as in an editor.
LoadResult load(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return load_string(yaml, "test.yaml");
}

std::string all_errors(const LoadResult& result) {
  if (result) return " (none)";
  std::string text;
  for (const ConfigError& error : result.error()) text += "\n  " + error.to_string();
  return text;
}

// Passes when loading `yaml` fails with exactly one error, breaking `rule` at line:column.
testing::AssertionResult only_error(std::string_view rule, int line, int column,
                                    std::string_view yaml) {
  const LoadResult result = load(yaml);
  if (!result && result.error().size() == 1) {
    const ConfigError& e = result.error()[0];
    if (e.rule == rule && e.line == line && e.column == column && e.file == "test.yaml") {
      return testing::AssertionSuccess();
    }
  }
  return testing::AssertionFailure() << "expected only test.yaml:" << line << ":" << column << " ["
                                     << rule << "], got:" << all_errors(result);
}

// The one error's message, or a description of what came instead.
std::string message_of(std::string_view yaml) {
  const LoadResult result = load(yaml);
  if (result || result.error().size() != 1) return "not one error:" + all_errors(result);
  return result.error()[0].message;
}

Service must_load_service(std::string_view yaml) {
  const LoadResult result = load(yaml);
  EXPECT_TRUE(result.has_value()) << "errors:" << all_errors(result);
  if (!result || result->services.empty()) return Service{};
  return result->services[0];
}

// A service template: `@` stands for the policy lines (indented four spaces, from line 4).
std::string service(std::string_view policy_lines) {
  std::string yaml = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
@    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
)";
  yaml.replace(yaml.find('@'), 1, policy_lines);
  return yaml;
}

// ---------------------------------------------------------------------------------------------
// What loads

TEST(RoutingPolicyConfig, DefaultsAreSmoothAndRoundRobin) {
  const Service s = must_load_service(service(""));
  EXPECT_EQ(s.split_policy, SplitPolicy::smooth);
  EXPECT_FALSE(s.hash_on.has_value());
  EXPECT_EQ(s.load_balancer, LoadBalancer::round_robin);
}

TEST(RoutingPolicyConfig, HashOnHeaderIsLowercased) {
  const Service s =
      must_load_service(service("    splitPolicy: hash\n"
                                "    hashOn:\n"
                                "      header: X-User\n"));
  EXPECT_EQ(s.split_policy, SplitPolicy::hash);
  ASSERT_TRUE(s.hash_on.has_value());
  EXPECT_EQ(s.hash_on->kind, HashOn::Kind::header);
  EXPECT_EQ(s.hash_on->header, "x-user");
  EXPECT_EQ(s.hash_on->pos.line, 6);
  EXPECT_EQ(s.hash_on->pos.column, 7);
}

TEST(RoutingPolicyConfig, HashOnCookieWithTtl) {
  const Service s =
      must_load_service(service("    splitPolicy: hash\n"
                                "    hashOn: {cookie: {name: rg-session, ttl: 1h}}\n"));
  ASSERT_TRUE(s.hash_on.has_value());
  EXPECT_EQ(s.hash_on->kind, HashOn::Kind::cookie);
  EXPECT_EQ(s.hash_on->cookie_name, "rg-session");  // case kept: cookie names are case-sensitive
  EXPECT_EQ(s.hash_on->cookie_ttl, 3600s);
}

TEST(RoutingPolicyConfig, HashOnCookieWithoutTtlIsASessionCookie) {
  const Service s =
      must_load_service(service("    splitPolicy: hash\n"
                                "    hashOn: {cookie: {name: Sticky_1}}\n"));
  ASSERT_TRUE(s.hash_on.has_value());
  EXPECT_EQ(s.hash_on->cookie_name, "Sticky_1");
  EXPECT_EQ(s.hash_on->cookie_ttl, 0s);
}

TEST(RoutingPolicyConfig, HashOnSourceIp) {
  const Service s =
      must_load_service(service("    splitPolicy: hash\n"
                                "    hashOn: {sourceIp: true}\n"));
  ASSERT_TRUE(s.hash_on.has_value());
  EXPECT_EQ(s.hash_on->kind, HashOn::Kind::source_ip);
}

TEST(RoutingPolicyConfig, AnEmptyKindBesideTheChosenOneIsIgnored) {
  const Service s =
      must_load_service(service("    splitPolicy: hash\n"
                                "    hashOn: {header: x-user, cookie: ~, sourceIp: false}\n"));
  ASSERT_TRUE(s.hash_on.has_value());
  EXPECT_EQ(s.hash_on->kind, HashOn::Kind::header);
}

TEST(RoutingPolicyConfig, LoadBalancerValues) {
  const std::pair<const char*, LoadBalancer> cases[] = {
      {"ROUND_ROBIN", LoadBalancer::round_robin},
      {"LEAST_REQUEST", LoadBalancer::least_request},
      {"RANDOM", LoadBalancer::random},
  };
  for (const auto& [text, expected] : cases) {
    const Service s = must_load_service(service(std::string("    loadBalancer: ") + text + "\n"));
    EXPECT_EQ(s.load_balancer, expected) << text;
    EXPECT_EQ(to_string(expected), text);
  }
}

TEST(RoutingPolicyConfig, LoadBalancerGoesWithEverySplitPolicy) {
  const Service s =
      must_load_service(service("    splitPolicy: random\n"
                                "    loadBalancer: LEAST_REQUEST\n"));
  EXPECT_EQ(s.split_policy, SplitPolicy::random);
  EXPECT_EQ(s.load_balancer, LoadBalancer::least_request);
}

TEST(RoutingPolicyConfig, SplitPolicyNames) {
  EXPECT_EQ(to_string(SplitPolicy::smooth), "smooth");
  EXPECT_EQ(to_string(SplitPolicy::random), "random");
  EXPECT_EQ(to_string(SplitPolicy::hash), "hash");
}

// ---------------------------------------------------------------------------------------------
// Rules

TEST(RoutingPolicyRules, SplitPolicyNamesHash) {
  const std::string yaml = service("    splitPolicy: sticky\n");
  EXPECT_TRUE(only_error("split-policy", 4, 18, yaml));
  EXPECT_EQ(message_of(yaml), "splitPolicy must be smooth, random or hash, got 'sticky'");
}

TEST(RoutingPolicyRules, HashOnRequired) {
  const std::string yaml = service("    splitPolicy: hash\n");
  EXPECT_TRUE(only_error("hash-on-required", 4, 18, yaml));
  EXPECT_EQ(message_of(yaml),
            "service 'hello' has splitPolicy: hash and needs hashOn: {header: NAME}, {cookie: "
            "{name: NAME, ttl: 3600s}} or {sourceIp: true}");
  // Present but empty: pointed at the key.
  EXPECT_TRUE(only_error("hash-on-required", 5, 5,
                         service("    splitPolicy: hash\n"
                                 "    hashOn:\n")));
}

TEST(RoutingPolicyRules, HashOnUnusedWithOtherPolicies) {
  EXPECT_TRUE(only_error("hash-on-unused", 4, 5, service("    hashOn: {header: x-user}\n")));
  const std::string yaml = service(
      "    splitPolicy: random\n"
      "    hashOn: {header: x-user}\n");
  EXPECT_TRUE(only_error("hash-on-unused", 5, 5, yaml));
  EXPECT_EQ(
      message_of(yaml),
      "service 'hello' has hashOn but splitPolicy random; hashOn goes with splitPolicy: hash");
}

TEST(RoutingPolicyRules, HashOnWithABadSplitPolicyIsNotAlsoUnused) {
  EXPECT_TRUE(only_error("split-policy", 4, 18,
                         service("    splitPolicy: hashed\n"
                                 "    hashOn: {header: x-user}\n")));
}

TEST(RoutingPolicyRules, HashOnKindExactlyOne) {
  const std::string two = service(
      "    splitPolicy: hash\n"
      "    hashOn:\n"
      "      header: x-user\n"
      "      sourceIp: true\n");
  EXPECT_TRUE(only_error("hash-on-kind", 7, 7, two));
  EXPECT_EQ(message_of(two),
            "hashOn has one of header, cookie or sourceIp: true, not both 'header' and 'sourceIp'");
  const std::string none = service(
      "    splitPolicy: hash\n"
      "    hashOn: {sourceIp: false}\n");
  EXPECT_TRUE(only_error("hash-on-kind", 5, 13, none));
  EXPECT_EQ(message_of(none),
            "hashOn needs one of header: NAME, cookie: {name: NAME} or sourceIp: true");
  EXPECT_TRUE(only_error("hash-on-kind", 5, 13,
                         service("    splitPolicy: hash\n"
                                 "    hashOn: {}\n")));
}

TEST(RoutingPolicyRules, HashOnUnknownKeyIsTheOnlyError) {
  const std::string yaml = service(
      "    splitPolicy: hash\n"
      "    hashOn: {headr: x-user}\n");
  EXPECT_TRUE(only_error("unknown-key", 5, 14, yaml));
  EXPECT_NE(message_of(yaml).find("did you mean 'header'?"), std::string::npos) << message_of(yaml);
}

TEST(RoutingPolicyRules, HashOnMustBeAMap) {
  EXPECT_TRUE(only_error("type", 5, 13,
                         service("    splitPolicy: hash\n"
                                 "    hashOn: x-user\n")));
}

TEST(RoutingPolicyRules, HashHeaderName) {
  for (const char* bad : {"\"X User\"", "\"x:user\"", "\"\"", "\"x-üser\""}) {
    const std::string yaml = service(std::string("    splitPolicy: hash\n"
                                                 "    hashOn: {header: ") +
                                     bad + "}\n");
    EXPECT_TRUE(only_error("hash-header", 5, 22, yaml)) << bad;
  }
  EXPECT_EQ(message_of(service("    splitPolicy: hash\n"
                               "    hashOn: {header: \"X User\"}\n")),
            "hashOn header 'X User' is not an HTTP header name: it contains ' '");
  EXPECT_TRUE(only_error("type", 5, 22,
                         service("    splitPolicy: hash\n"
                                 "    hashOn: {header: [a]}\n")));
}

TEST(RoutingPolicyRules, CookieName) {
  for (const char* bad : {"\"a;b\"", "\"a=b\"", "\"a b\"", "\"\""}) {
    const std::string yaml = service(std::string("    splitPolicy: hash\n"
                                                 "    hashOn: {cookie: {name: ") +
                                     bad + "}}\n");
    EXPECT_TRUE(only_error("cookie-name", 5, 29, yaml)) << bad;
  }
  const std::string long_name = service(
      "    splitPolicy: hash\n"
      "    hashOn: {cookie: {name: " +
      std::string(65, 'c') + "}}\n");
  EXPECT_TRUE(only_error("cookie-name", 5, 29, long_name));
  EXPECT_NE(message_of(long_name).find("at most 64"), std::string::npos);
  EXPECT_TRUE(load(service("    splitPolicy: hash\n"
                           "    hashOn: {cookie: {name: " +
                           std::string(64, 'c') + "}}\n"))
                  .has_value());
}

TEST(RoutingPolicyRules, CookieNeedsAName) {
  EXPECT_TRUE(only_error("required", 5, 22,
                         service("    splitPolicy: hash\n"
                                 "    hashOn: {cookie: {ttl: 10s}}\n")));
}

TEST(RoutingPolicyRules, CookieMustBeAMap) {
  EXPECT_TRUE(only_error("type", 5, 22,
                         service("    splitPolicy: hash\n"
                                 "    hashOn: {cookie: rg-session}\n")));
}

TEST(RoutingPolicyRules, CookieUnknownKey) {
  EXPECT_TRUE(only_error("unknown-key", 5, 32,
                         service("    splitPolicy: hash\n"
                                 "    hashOn: {cookie: {name: s, maxAge: 10s}}\n")));
}

TEST(RoutingPolicyRules, CookieTtl) {
  const std::string fraction = service(
      "    splitPolicy: hash\n"
      "    hashOn:\n"
      "      cookie:\n"
      "        name: s\n"
      "        ttl: 1500ms\n");
  EXPECT_TRUE(only_error("cookie-ttl", 8, 14, fraction));
  EXPECT_NE(message_of(fraction).find("whole number of seconds"), std::string::npos);
  // Durations are positive; a session cookie is written without ttl.
  EXPECT_TRUE(only_error("duration", 5, 37,
                         service("    splitPolicy: hash\n"
                                 "    hashOn: {cookie: {name: s, ttl: 0s}}\n")));
  EXPECT_TRUE(only_error("duration", 8, 14,
                         service("    splitPolicy: hash\n"
                                 "    hashOn:\n"
                                 "      cookie:\n"
                                 "        name: s\n"
                                 "        ttl: soon\n")));
}

TEST(RoutingPolicyRules, SourceIpIsABoolean) {
  EXPECT_TRUE(only_error("type", 5, 24,
                         service("    splitPolicy: hash\n"
                                 "    hashOn: {sourceIp: yes}\n")));
}

TEST(RoutingPolicyRules, LoadBalancer) {
  const std::string lower = service("    loadBalancer: least_request\n");
  EXPECT_TRUE(only_error("load-balancer", 4, 19, lower));
  EXPECT_EQ(message_of(lower),
            "loadBalancer must be ROUND_ROBIN, LEAST_REQUEST or RANDOM, got 'least_request' (did "
            "you mean 'LEAST_REQUEST'?)");
  EXPECT_TRUE(only_error("load-balancer", 4, 19, service("    loadBalancer: round-robin\n")));
  const std::string other = service("    loadBalancer: LEAST_CONN\n");
  EXPECT_TRUE(only_error("load-balancer", 4, 19, other));
  EXPECT_EQ(message_of(other),
            "loadBalancer must be ROUND_ROBIN, LEAST_REQUEST or RANDOM, got 'LEAST_CONN'");
  EXPECT_TRUE(only_error("type", 4, 19, service("    loadBalancer: [RANDOM]\n")));
}

TEST(RoutingPolicyRules, EveryErrorInOnePass) {
  const LoadResult result =
      load(service("    splitPolicy: hash\n"
                   "    hashOn: {cookie: {name: \"a b\", ttl: 2500ms}}\n"
                   "    loadBalancer: FASTEST\n"));
  ASSERT_FALSE(result.has_value());
  std::vector<std::string> rules;
  for (const ConfigError& e : result.error()) rules.push_back(e.rule);
  EXPECT_EQ(rules, (std::vector<std::string>{"cookie-name", "cookie-ttl", "load-balancer"}))
      << all_errors(result);
}

}  // namespace
}  // namespace revgate::config
