// `revgate traffic`'s arithmetic, as `gcloud run services update-traffic` does it: the new
// traffic list of a service from its current one and the flags. Pure functions, any thread; no
// JSON, no I/O (cli/traffic_command.cpp does those).
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace revgate::cli {

// gcloud's key of a target: a revision name, or LATEST for `latestRevision: true` (revision
// names are lowercase DNS labels, so the two never collide).
inline constexpr std::string_view kLatest = "LATEST";

struct TrafficEntry {
  std::string key;  // revision name or kLatest
  int percent = 0;
  std::string tag;  // empty when untagged
  friend bool operator==(const TrafficEntry&, const TrafficEntry&) = default;
};

struct TrafficFlags {
  // At most one of these three (the command refuses more): new percents by revision key, by
  // tag, or all to the latest revision.
  std::vector<std::pair<std::string, int>> to_revisions;
  std::vector<std::pair<std::string, int>> to_tags;
  bool to_latest = false;
  // Tags: --set-tags replaces every tag; --update-tags adds or moves; --remove-tags;
  // --clear-tags removes them all.
  std::vector<std::pair<std::string, std::string>> set_tags;  // tag -> revision key
  std::vector<std::pair<std::string, std::string>> update_tags;
  std::vector<std::string> remove_tags;
  bool clear_tags = false;
};

// The new traffic. Like gcloud: the named targets get their percents; the others that had
// traffic share what is left in proportion to what they had (rounded down, then the largest
// losses get a point back, so the total is exactly 100); targets set to 0 leave; every tag moves
// to a 0% target of its own. Errors are gcloud's: current traffic not 100%, over 100% specified,
// a percent outside 0..100, every target with traffic named but not 100% in total, a tag not in
// the traffic. `service` names the service in messages.
std::expected<std::vector<TrafficEntry>, std::string> update_traffic(
    std::vector<TrafficEntry> current, const TrafficFlags& flags, std::string_view service);

// "a=10,b=90" -> {{"a", 10}, {"b", 90}}; the error says what is wrong with which item.
std::expected<std::vector<std::pair<std::string, int>>, std::string> parse_percentages(
    std::string_view text);
// "tag=rev,t2=LATEST" -> {{"tag", "rev"}, {"t2", "LATEST"}}.
std::expected<std::vector<std::pair<std::string, std::string>>, std::string> parse_pairs(
    std::string_view text);

}  // namespace revgate::cli
