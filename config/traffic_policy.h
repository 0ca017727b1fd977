// The parser of `trafficPolicy` (Istio DestinationRule's trafficPolicy) on a service or a
// revision: `loadBalancer: {simple: ...}` or `loadBalancer: {consistentHash: {...}}`.
#pragma once

#include <optional>

#include "config/config.h"
#include "config/reader.h"

namespace revgate::config::detail {

// The `loadBalancer` in a `trafficPolicy` field, or nullopt (after its errors, or when it has
// none).
std::optional<LoadBalancerSettings> read_traffic_policy(Reader& reader, const Field& field);

// The flat `loadBalancer` key's value (ROUND_ROBIN, LEAST_REQUEST, RANDOM), or nullopt after
// reporting it (rule load-balancer, with a suggestion for a near miss such as round-robin).
std::optional<LoadBalancer> read_simple_load_balancer(Reader& reader, const Field& field);

}  // namespace revgate::config::detail
