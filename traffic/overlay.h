// Overlays: a service's traffic set at run time (the admin API's PATCH of spec.traffic, like
// `gcloud run services update-traffic`), laid over each freshly loaded config file, and dropped
// when the file changed there or no longer fits them. Pure functions: any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace revgate::traffic {

struct Overlay {
  std::string namespace_name = "default";
  std::string service;
  std::vector<config::TrafficTarget> traffic;  // empty = Knative's default route (latest 100%)
  // The config file's traffic for the service when the overlay was made: when the file's
  // traffic there no longer equals it, the file was edited and its newer intent wins.
  std::vector<config::TrafficTarget> base;
  std::int64_t updated_ms = 0;  // wall clock, milliseconds since the epoch
  friend bool operator==(const Overlay&, const Overlay&) = default;
};

// The overlay that sets `traffic` on `file_service`, which must be the service as the config
// FILE has it (not the running one with an earlier overlay in place), so that `base` is right.
Overlay make_overlay(const config::Service& file_service,
                     std::vector<config::TrafficTarget> traffic, std::int64_t now_ms);

// Puts `overlay` in place of its service's earlier one, or adds it; `overlays` stays sorted by
// namespace, then service name.
void set_overlay(std::vector<Overlay>& overlays, Overlay overlay);

struct AppliedOverlays {
  config::Config config;             // the file's config, the kept overlays' traffic in place
  std::vector<Overlay> kept;         // still in force, sorted: what the state file should hold
  std::vector<std::string> dropped;  // one line per dropped overlay, naming service and reason
};

// Lays `overlays` over `file_config` (just loaded and valid). An overlay is dropped when its
// service is gone, when the file's traffic for it differs from `base`, or when
// config::check_traffic finds a problem with it against the file's revisions (the reason lists
// each problem's message and rule); a second overlay for one service is dropped too.
AppliedOverlays apply_overlays(config::Config file_config, std::vector<Overlay> overlays);

}  // namespace revgate::traffic
