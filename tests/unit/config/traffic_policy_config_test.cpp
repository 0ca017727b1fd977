// Unit tests of `trafficPolicy.loadBalancer` (Istio DestinationRule) on a service or a revision:
// simple, consistentHash by header, source IP or query parameter, the override, the errors.
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "config/config.h"
#include "config_test_util.h"

namespace revgate::config {
namespace {

using namespace test_util;

constexpr std::string_view kPolicy = R"(
listeners: [{name: web, address: "127.0.0.1:0"}]
services:
  - name: hello
    @
    revisions:
      - {name: hello-1, endpoints: ["127.0.0.1:9001"]}
)";

TEST(TrafficPolicy, ConsistentHashKeysAndTheSimpleForm) {
  auto config = must_load(fill(kPolicy, "trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: X-User}}}"));
  ASSERT_TRUE(config.services.at(0).consistent_hash);
  EXPECT_EQ(config.services[0].consistent_hash->key, ConsistentHash::Key::header);
  EXPECT_EQ(config.services[0].consistent_hash->name, "x-user");
  config = must_load(fill(kPolicy, "trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}"));
  EXPECT_EQ(config.services.at(0).consistent_hash->key, ConsistentHash::Key::source_ip);
  config = must_load(fill(kPolicy, "trafficPolicy: {loadBalancer: {consistentHash: {httpQueryParameterName: u}}}"));
  EXPECT_EQ(config.services.at(0).consistent_hash->key, ConsistentHash::Key::query_param);
  config = must_load(fill(kPolicy, "trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}"));
  EXPECT_EQ(config.services.at(0).load_balancer, LoadBalancer::least_request);
  EXPECT_FALSE(config.services[0].consistent_hash);
}

TEST(TrafficPolicy, ARevisionOverridesItsService) {
  const auto config = must_load(R"(
listeners: [{name: web, address: "127.0.0.1:0"}]
services:
  - name: hello
    loadBalancer: RANDOM
    revisions:
      - {name: hello-1, endpoints: ["127.0.0.1:9001"], trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}}
      - {name: hello-2, endpoints: ["127.0.0.1:9002"]}
)");
  const auto& revisions = config.services.at(0).revisions;
  ASSERT_TRUE(revisions.at(0).load_balancer);
  EXPECT_EQ(revisions[0].load_balancer->consistent_hash->key, ConsistentHash::Key::source_ip);
  EXPECT_FALSE(revisions.at(1).load_balancer) << "the service's RANDOM";
}

TEST(TrafficPolicy, Errors) {
  EXPECT_NE(only_error(fill(kPolicy, "trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}"))
                .find("loadBalancer takes simple or consistentHash, not both (Istio's oneof) [load-balancer]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kPolicy, "trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: a, useSourceIp: true}}}"))
                .find("consistentHash takes exactly one of httpHeaderName, useSourceIp or "
                      "httpQueryParameterName [consistent-hash]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kPolicy, "trafficPolicy: {loadBalancer: {simple: round-robin}}"))
                .find("simple must be ROUND_ROBIN, LEAST_REQUEST or RANDOM, got 'round-robin' "
                      "(did you mean 'ROUND_ROBIN'?) [load-balancer]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kPolicy, "loadBalancer: RANDOM\n    trafficPolicy: {loadBalancer: {simple: RANDOM}}"))
                .find("has both loadBalancer and trafficPolicy"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kPolicy, "trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: \"a b\"}}}"))
                .find("httpHeaderName 'a b' contains ' ' [consistent-hash]"),
            std::string::npos);
}

}  // namespace
}  // namespace revgate::config
