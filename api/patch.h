// PATCH of a Knative Service's traffic, as `kubectl patch ksvc NAME --type=merge -p
// '{"spec":{"traffic":[...]}}'` sends it: the JSON merge patch (RFC 7386) is applied to the
// Service as GET shows it, only spec.traffic may differ afterwards, and the new traffic is
// checked by the config file's rules (config/traffic.h). Pure functions: any thread.
#pragma once

#include <cstddef>
#include <expected>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "api/api.h"
#include "api/snapshot.h"
#include "config/config.h"

namespace revgate::api {

inline constexpr std::string_view kMergePatchType = "application/merge-patch+json";

// A PATCH that may be applied: which service, and its new spec.traffic as sent (an empty list
// is Knative's default route, all to the latest revision).
struct TrafficPatch {
  std::size_t service_index = 0;  // position in snapshot.config->services
  std::vector<config::TrafficTarget> traffic;
};

// `target` is the request target, `content_type` its Content-Type. The refusal is the answer to
// send: 400 (body not JSON, no namespace), 404 (no such path or service), 405 (not a service),
// 415 (not a merge patch), 422 (a field other than spec.traffic changed, or the traffic breaks
// a rule; a Kubernetes Status with reason Invalid and one cause per problem).
std::expected<TrafficPatch, Response> plan_traffic_patch(const Snapshot& snapshot,
                                                         std::string_view target,
                                                         std::string_view content_type,
                                                         std::string_view body);

// RFC 7386: `patch` merged into `target` (null removes a member; a non-object replaces whole).
boost::json::value merge_patch(boost::json::value target, const boost::json::value& patch);

}  // namespace revgate::api
