// What the admin API answers from: the config in force, its compiled route table, its
// generation and load time. Plain immutable data; built by the proxy on its main (admin)
// thread, read by the pure functions of api/ on whichever thread calls them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "routing/route_table.h"

namespace revgate::api {

struct Snapshot {
  std::shared_ptr<const config::Config> config;
  // Compiled from `config`; when null, api/ compiles one itself (tests, tools).
  std::shared_ptr<const routing::RouteTable> table;
  std::uint64_t generation = 1;  // 1 for the first load, +1 per successful reload
  std::chrono::system_clock::time_point loaded_at{};  // when `generation` came into force
  bool https = false;                                 // a TLS listener is bound: URLs are https://
  // By position in config->services: why its traffic is still moving (a gradual rollout in
  // progress, e.g. "hello-00002 has 34% of 100%"), or empty when it is where spec says.
  std::vector<std::string> rollouts;
};

}  // namespace revgate::api
