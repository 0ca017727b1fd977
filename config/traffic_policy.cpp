#include "config/traffic_policy.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string_view>

#include <fmt/format.h>

#include "config/values.h"

namespace revgate::config::detail {
namespace {

using namespace std::string_view_literals;

constexpr std::array kTrafficPolicyKeys = {"loadBalancer"sv};
constexpr std::array kLoadBalancerKeys = {"simple"sv, "consistentHash"sv};
constexpr std::array kConsistentHashKeys = {"httpHeaderName"sv, "useSourceIp"sv,
                                            "httpQueryParameterName"sv};
constexpr Section kTrafficPolicy{"trafficPolicy", kTrafficPolicyKeys};
constexpr Section kLoadBalancer{"trafficPolicy loadBalancer", kLoadBalancerKeys};
constexpr Section kConsistentHash{"consistentHash", kConsistentHashKeys};

std::optional<ConsistentHash> read_consistent_hash(Reader& r, const Field& field) {
  auto fields = r.read_map(field.value, kConsistentHash);
  if (!fields) return std::nullopt;
  if (fields->entries.size() != 1) {
    r.add(field.value_pos, "consistent-hash",
          "consistentHash takes exactly one of httpHeaderName, useSourceIp or "
          "httpQueryParameterName");
    return std::nullopt;
  }
  const Field& only = fields->entries.front();
  ConsistentHash hash;
  if (only.name == "useSourceIp") {
    auto value = r.read_bool(only);
    if (!value) return std::nullopt;
    if (!*value) {
      r.add(only.value_pos, "consistent-hash",
            "useSourceIp: false hashes on nothing; leave consistentHash out instead");
      return std::nullopt;
    }
    hash.key = ConsistentHash::Key::source_ip;
    return hash;
  }
  auto name = r.read_string(only);
  if (!name) return std::nullopt;
  if (auto problem = token_problem(*name)) {
    r.add(only.value_pos, "consistent-hash",
          fmt::format("{} {} {}", only.name, quote(*name), *problem));
    return std::nullopt;
  }
  if (only.name == "httpHeaderName") {
    hash.key = ConsistentHash::Key::header;
    hash.name = lowercase(std::move(*name));
  } else {
    hash.key = ConsistentHash::Key::query_param;
    hash.name = std::move(*name);
  }
  return hash;
}

}  // namespace

std::optional<LoadBalancer> read_simple_load_balancer(Reader& r, const Field& field) {
  auto value = r.read_string(field);
  if (!value) return std::nullopt;
  if (*value == "ROUND_ROBIN") return LoadBalancer::round_robin;
  if (*value == "LEAST_REQUEST") return LoadBalancer::least_request;
  if (*value == "RANDOM") return LoadBalancer::random;
  std::string upper = *value;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) {
    return c == '-' ? '_' : static_cast<char>(std::toupper(c));
  });
  const bool known = upper == "ROUND_ROBIN" || upper == "LEAST_REQUEST" || upper == "RANDOM";
  r.add(field.value_pos, "load-balancer",
        fmt::format("{} must be ROUND_ROBIN, LEAST_REQUEST or RANDOM, got {}{}", field.name,
                    quote(*value),
                    known ? fmt::format(" (did you mean '{}'?)", upper) : std::string()));
  return std::nullopt;
}

std::optional<LoadBalancerSettings> read_traffic_policy(Reader& r, const Field& field) {
  auto policy = r.read_map(field.value, kTrafficPolicy);
  if (!policy) return std::nullopt;
  const Field* lb = policy->find("loadBalancer");
  if (lb == nullptr) return std::nullopt;
  auto fields = r.read_map(lb->value, kLoadBalancer);
  if (!fields) return std::nullopt;
  LoadBalancerSettings settings;
  settings.pos = lb->value_pos;
  const Field* simple = fields->find("simple");
  const Field* hash = fields->find("consistentHash");
  if (simple != nullptr && hash != nullptr) {
    r.add(hash->key_pos, "load-balancer",
          "loadBalancer takes simple or consistentHash, not both (Istio's oneof)");
    return std::nullopt;
  }
  if (simple == nullptr && hash == nullptr) {
    r.add(lb->value_pos, "load-balancer", "loadBalancer needs simple or consistentHash");
    return std::nullopt;
  }
  if (simple != nullptr) {
    auto value = read_simple_load_balancer(r, *simple);
    if (!value) return std::nullopt;
    settings.simple = *value;
  } else {
    settings.consistent_hash = read_consistent_hash(r, *hash);
    if (!settings.consistent_hash) return std::nullopt;
  }
  return settings;
}

}  // namespace revgate::config::detail
