// Builders of the Knative Serving objects (Service, Route, Configuration, Revision,
// DomainMapping, their lists) and of the Kubernetes Status, as JSON, from a Snapshot.
// Pure functions over immutable data: any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "api/snapshot.h"

namespace revgate::api {

inline constexpr std::string_view kServingGroup = "serving.knative.dev";
inline constexpr std::string_view kServingV1 = "serving.knative.dev/v1";
inline constexpr std::string_view kServingV1beta1 = "serving.knative.dev/v1beta1";

// Annotation holding a revision's endpoints ("host:port" as configured, comma-separated): a
// Revision's containers cannot be known, its endpoints stand in for them.
inline constexpr std::string_view kEndpointsAnnotation = "revgate.dev/endpoints";
// How a Service/Route splits and balances: its `splitPolicy` and `loadBalancer` config keys.
inline constexpr std::string_view kSplitPolicyAnnotation = "revgate.dev/splitPolicy";
inline constexpr std::string_view kLoadBalancerAnnotation = "revgate.dev/loadBalancer";

// A config service next to its compiled form (same position in both).
struct ServiceView {
  const config::Service* config = nullptr;
  const routing::Service* routed = nullptr;
  std::string_view rollout;  // Snapshot::rollouts' entry: empty unless a rollout is in progress
};

// What every builder needs, derived once per request from a Snapshot.
class Context {
 public:
  explicit Context(const Snapshot& snapshot);

  const config::Config& config() const { return *snapshot_.config; }
  std::uint64_t generation() const { return snapshot_.generation; }
  const std::string& timestamp() const { return timestamp_; }  // loaded_at, RFC 3339
  std::string_view scheme() const { return snapshot_.https ? "https" : "http"; }
  const std::vector<ServiceView>& services() const { return services_; }

 private:
  const Snapshot& snapshot_;
  std::shared_ptr<const routing::RouteTable> table_;
  std::vector<ServiceView> services_;
  std::string timestamp_;
};

boost::json::object service_object(const Context& context, const ServiceView& service);
boost::json::object route_object(const Context& context, const ServiceView& service);
boost::json::object configuration_object(const Context& context, const ServiceView& service);
// `index`: the revision's position in its service (0 = oldest).
boost::json::object revision_object(const Context& context, const ServiceView& service,
                                    std::size_t index);
boost::json::object domain_mapping_object(const Context& context,
                                          const config::DomainMapping& mapping);

// {"apiVersion", "kind", "metadata": {"resourceVersion"}, "items"}.
boost::json::object list_object(const Context& context, std::string_view api_version,
                                std::string_view kind, boost::json::array items);

// A Kubernetes Status (apiVersion v1) with status "Failure".
boost::json::object status_object(unsigned code, std::string_view reason, std::string_view message,
                                  boost::json::object details = {});

// "2026-11-29T03:04:05Z" (UTC, whole seconds).
std::string format_rfc3339(std::chrono::system_clock::time_point time);

}  // namespace revgate::api
