// The effective config (defaults filled in) as JSON with the YAML key names, for GET /config.
// Feeding the output back to the loader gives the same config. Pure functions: any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <boost/json/object.hpp>

#include "config/config.h"

namespace revgate::api {

boost::json::object config_to_json(const config::Config& config);

// "127.0.0.1:9001", "[::1]:9001", "https://backend:8443": an endpoint as the loader reads it.
std::string endpoint_text(const config::Endpoint& endpoint);
// "0.0.0.0:8080", "[::]:8080".
std::string address_text(const std::string& host, std::uint16_t port);
// The largest unit that divides it: "1h", "5m", "30s", "1500ms".
std::string duration_text(std::chrono::milliseconds duration);

}  // namespace revgate::api
