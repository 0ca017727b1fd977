// Knative's traffic rules (traffic.h), worded once for every reader of a traffic list.
#include "config/traffic.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "config/values.h"

namespace revgate::config {
namespace {

// Lists up to this long are searched by a scan (services have two or three revisions and
// targets); longer ones by an index, so that a huge service stays linear-logarithmic.
constexpr std::size_t kScanLimit = 16;

class RevisionNames {
 public:
  explicit RevisionNames(const std::vector<Revision>& revisions) : revisions_(revisions) {
    if (revisions.size() <= kScanLimit) return;
    sorted_.reserve(revisions.size());
    for (const Revision& revision : revisions) sorted_.push_back(revision.name);
    std::sort(sorted_.begin(), sorted_.end());
  }
  bool contains(std::string_view name) const {
    if (sorted_.empty()) {
      return std::any_of(revisions_.begin(), revisions_.end(),
                         [&](const Revision& revision) { return revision.name == name; });
    }
    return std::binary_search(sorted_.begin(), sorted_.end(), name);
  }

 private:
  const std::vector<Revision>& revisions_;
  std::vector<std::string_view> sorted_;
};

std::string known_revisions(const Service& service) {
  if (service.revisions.empty()) return "none";
  std::vector<std::string_view> names;
  names.reserve(service.revisions.size());
  for (const Revision& revision : service.revisions) names.push_back(revision.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

// Where a valid tag was first used, by target index.
class TagIndex {
 public:
  explicit TagIndex(std::span<const TrafficTarget> traffic) : traffic_(traffic) {
    if (traffic.size() > kScanLimit) first_.reserve(traffic.size());
  }
  // The index of the first earlier target with `tag`, or `index` itself (now recorded).
  std::size_t first_use(std::string_view tag, std::size_t index) {
    if (traffic_.size() <= kScanLimit) {
      for (std::size_t k = 0; k < valid_count_; ++k) {
        if (traffic_[valid_[k]].tag == tag) return valid_[k];
      }
      valid_[valid_count_++] = index;
      return index;
    }
    return first_.emplace(tag, index).first->second;
  }

 private:
  std::span<const TrafficTarget> traffic_;
  // The scan's list, without an allocation: the targets with a valid tag, in order.
  std::array<std::size_t, kScanLimit> valid_{};
  std::size_t valid_count_ = 0;
  std::unordered_map<std::string_view, std::size_t> first_;
};

}  // namespace

std::string_view to_string(TrafficField field) {
  switch (field) {
    case TrafficField::list:
      return "list";
    case TrafficField::target:
      return "target";
    case TrafficField::revision_name:
      return "revisionName";
    case TrafficField::latest_revision:
      return "latestRevision";
    case TrafficField::percent:
      return "percent";
    case TrafficField::tag:
      return "tag";
  }
  return "list";
}

std::string percent_problem_message(std::string_view shown) {
  return fmt::format("percent must be an integer from 0 to 100, got {}", shown);
}

std::vector<TrafficProblem> check_traffic(const Service& service,
                                          std::span<const TrafficTarget> traffic) {
  std::vector<TrafficProblem> problems;
  auto report = [&](std::size_t index, TrafficField field, std::string_view rule,
                    std::string message) {
    problems.push_back(TrafficProblem{
        .index = index, .field = field, .rule = std::string(rule), .message = std::move(message)});
  };
  const RevisionNames revisions(service.revisions);
  TagIndex tags(traffic);
  bool percents_in_range = true;
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < traffic.size(); ++i) {
    const TrafficTarget& target = traffic[i];
    const bool named = !target.revision_name.empty();
    if (named && target.latest_revision) {
      report(i, TrafficField::latest_revision, "target-kind",
             "a traffic target has revisionName or latestRevision: true, not both");
    } else if (!named && !target.latest_revision) {
      report(i, TrafficField::target, "target-kind",
             "a traffic target needs revisionName or latestRevision: true");
    }
    if (named && !revisions.contains(target.revision_name)) {
      report(i, TrafficField::revision_name, "revision-exists",
             fmt::format("revisionName {} is not a revision of service {} (its revisions: {})",
                         detail::quote(target.revision_name), detail::quote(service.name),
                         known_revisions(service)));
    }
    if (target.percent < 0 || target.percent > 100) {
      percents_in_range = false;
      report(i, TrafficField::percent, "percent-range",
             percent_problem_message(detail::quote(std::to_string(target.percent))));
    } else {
      sum += target.percent;
    }
    if (target.tag.empty()) continue;  // untagged
    if (auto problem = detail::dns1035_label_problem(target.tag)) {
      report(i, TrafficField::tag, "tag-name",
             fmt::format("tag {} is not a DNS-1035 label: it {}", detail::quote(target.tag),
                         *problem));
    } else if (std::size_t first = tags.first_use(target.tag, i); first != i) {
      // A list read from YAML knows its lines; one from JSON names the earlier target.
      const SourcePos& where = traffic[first].pos;
      std::string earlier = where.line > 0 ? fmt::format("at line {}", where.line)
                                           : fmt::format("by traffic[{}]", first);
      report(i, TrafficField::tag, "tag-unique",
             fmt::format("tag {} is already used {} in service {}", detail::quote(target.tag),
                         earlier, detail::quote(service.name)));
    }
  }
  // A sum with a percent out of range in it says nothing new.
  if (!traffic.empty() && percents_in_range && sum != 100) {
    report(0, TrafficField::list, "percent-sum",
           fmt::format("the traffic percents of service {} sum to {}; they must sum to 100",
                       detail::quote(service.name), sum));
  }
  return problems;
}

std::vector<TrafficTarget> expand_default_traffic(std::vector<TrafficTarget> traffic) {
  if (!traffic.empty()) return traffic;
  TrafficTarget latest;  // Knative's default route: everything to the latest revision
  latest.latest_revision = true;
  latest.percent = 100;
  return {latest};
}

}  // namespace revgate::config
