// Overlays over a loaded config: the three-way rule of `kubectl apply` (an edit of the file wins
// over a runtime change made on top of the file's earlier content), then the traffic rules again.
#include "traffic/overlay.h"

#include <algorithm>
#include <tuple>

#include <fmt/format.h>

#include "config/traffic.h"

namespace revgate::traffic {

namespace {

bool before(const Overlay& a, const Overlay& b) {
  return std::tie(a.namespace_name, a.service) < std::tie(b.namespace_name, b.service);
}

bool same_service(const Overlay& a, const Overlay& b) {
  return a.namespace_name == b.namespace_name && a.service == b.service;
}

std::string problem_text(const config::TrafficProblem& problem) {
  if (problem.field == config::TrafficField::list) {
    return fmt::format("traffic: {} [{}]", problem.message, problem.rule);
  }
  if (problem.field == config::TrafficField::target) {
    return fmt::format("traffic[{}]: {} [{}]", problem.index, problem.message, problem.rule);
  }
  return fmt::format("traffic[{}].{}: {} [{}]", problem.index, config::to_string(problem.field),
                     problem.message, problem.rule);
}

}  // namespace

Overlay make_overlay(const config::Service& file_service,
                     std::vector<config::TrafficTarget> traffic, std::int64_t now_ms) {
  Overlay overlay;
  overlay.namespace_name = file_service.namespace_name;
  overlay.service = file_service.name;
  overlay.traffic = std::move(traffic);
  overlay.base = file_service.traffic;
  overlay.updated_ms = now_ms;
  return overlay;
}

void set_overlay(std::vector<Overlay>& overlays, Overlay overlay) {
  auto it = std::ranges::lower_bound(overlays, overlay, before);
  if (it != overlays.end() && same_service(*it, overlay)) {
    *it = std::move(overlay);
  } else {
    overlays.insert(it, std::move(overlay));
  }
}

AppliedOverlays apply_overlays(config::Config file_config, std::vector<Overlay> overlays) {
  AppliedOverlays result;
  // Stable, so that of two overlays for one service the first listed is the one kept.
  std::ranges::stable_sort(overlays, before);
  for (Overlay& overlay : overlays) {
    const std::string who = fmt::format("traffic set at run time for service {}/{} dropped",
                                        overlay.namespace_name, overlay.service);
    if (!result.kept.empty() && same_service(result.kept.back(), overlay)) {
      result.dropped.push_back(who + ": a second overlay for the same service");
      continue;
    }
    auto service = std::ranges::find_if(file_config.services, [&](const config::Service& s) {
      return s.namespace_name == overlay.namespace_name && s.name == overlay.service;
    });
    if (service == file_config.services.end()) {
      result.dropped.push_back(who + ": the service is no longer in the config file");
      continue;
    }
    if (service->traffic != overlay.base) {
      result.dropped.push_back(
          who + ": the config file's traffic for it changed since, and the file's wins");
      continue;
    }
    const auto problems = config::check_traffic(*service, overlay.traffic);
    if (!problems.empty()) {
      std::vector<std::string> texts;
      for (const auto& problem : problems) texts.push_back(problem_text(problem));
      result.dropped.push_back(fmt::format("{}: it breaks the rules against the config file: {}",
                                           who, fmt::join(texts, "; ")));
      continue;
    }
    // Config's promise: a loaded service's traffic is never empty.
    service->traffic = config::expand_default_traffic(overlay.traffic);
    result.kept.push_back(std::move(overlay));
  }
  result.config = std::move(file_config);
  return result;
}

}  // namespace revgate::traffic
