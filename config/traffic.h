// Knative's rules for a service's traffic list (SPEC.md section 3), shared by every reader of
// traffic: the YAML loader, the admin API's PATCH (JSON) and the runtime overlay that is
// checked again against each new config file. Pure functions, any thread.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace revgate::config {

// Which part of a traffic list a problem is about, so that each reader can say where it is:
// the YAML loader as line:column, the admin API as a field path ("spec.traffic[1].percent").
enum class TrafficField {
  list,             // the list as a whole (percent-sum)
  target,           // one target as a whole (target-kind: neither revisionName nor latestRevision)
  revision_name,    // its revisionName value
  latest_revision,  // its latestRevision key
  percent,          // its percent value
  tag,              // its tag value
};
std::string_view to_string(TrafficField field);  // "list", "target", "revisionName", ...

struct TrafficProblem {
  std::size_t index = 0;  // the target's position in the list; unused for TrafficField::list
  TrafficField field = TrafficField::list;
  std::string rule;     // "target-kind", "revision-exists", "percent-range", "percent-sum", ...
  std::string message;  // worded exactly as the YAML loader words it
};

// Every rule of `traffic` against `service`'s revisions (its own traffic is ignored), in list
// order: target-kind, revision-exists, percent-range (percent outside 0..100), tag-name,
// tag-unique, and percent-sum (last, when every percent was in range). An empty list is
// valid (Knative's default route, which expand_default_traffic() spells out).
std::vector<TrafficProblem> check_traffic(const Service& service,
                                          std::span<const TrafficTarget> traffic);

// "percent must be an integer from 0 to 100, got <shown>", `shown` as the reader shows the value
// ("'120'", "the string '50'", "a list"): check_traffic's percent-range wording, for readers that
// meet a percent they cannot hand to it (not an integer: `type`; a number such as 99.5 or one
// past int's range: percent-range), so that one rule keeps one wording.
std::string percent_problem_message(std::string_view shown);

// [] -> [{latestRevision: true, percent: 100}]; any other list unchanged.
std::vector<TrafficTarget> expand_default_traffic(std::vector<TrafficTarget> traffic);

}  // namespace revgate::config
