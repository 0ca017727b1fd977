// The admin API (README "Admin API"): GET /config and the Knative Serving resources under
// /apis/serving.knative.dev, answered as Kubernetes-style JSON from a Snapshot. Pure
// functions, no I/O and no state: any thread may call them.
#pragma once

#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "api/snapshot.h"

namespace revgate::api {

struct Response {
  unsigned status = 200;    // 200, or 400/404/405 with a Kubernetes Status body
  boost::json::value body;  // always a JSON object
};

// True for the paths answered here: "/config", "/apis" and everything under "/apis/".
// Other admin paths (/healthz, /metrics, ...) are not the API's.
bool is_api_path(std::string_view path);

// Answers one request. `method` as sent ("GET"); `target` the request target (path and an
// optional query: `labelSelector=k=v,k!=v,k,!k` filters lists). GET and HEAD only.
Response handle(const Snapshot& snapshot, std::string_view method, std::string_view target);

// Indented JSON text (2 spaces, keys in object order) ending with a newline.
std::string to_pretty_json(const boost::json::value& value);

}  // namespace revgate::api
