// gcloud's TrafficTargets.UpdateTraffic and UpdateTags (command_lib/run/traffic.py), in C++:
// normalize (tags to 0% targets, percents summed per key), check, scale the unnamed targets,
// round with the largest remainders, then apply the tag flags.
#include "cli/traffic_update.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <tuple>

#include <fmt/format.h>

namespace revgate::cli {

namespace {

// Ordered by first insertion, like the Python dicts the algorithm is written with.
template <typename Value>
class OrderedMap {
 public:
  Value* find(std::string_view key) {
    auto it = std::find_if(items_.begin(), items_.end(), [&](auto& kv) { return kv.first == key; });
    return it == items_.end() ? nullptr : &it->second;
  }
  const Value* find(std::string_view key) const { return const_cast<OrderedMap*>(this)->find(key); }
  Value& operator[](std::string_view key) {
    if (Value* v = find(key)) return *v;
    return items_.emplace_back(std::string(key), Value{}).second;
  }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  bool empty() const { return items_.empty(); }

 private:
  std::vector<std::pair<std::string, Value>> items_;
};

// Revisions by name, then LATEST (gcloud's SortKeyFromKey).
auto sort_key(std::string_view key) { return std::pair(key == kLatest ? 2 : 1, key); }

std::vector<std::pair<std::string, int>> new_percentages(const std::vector<TrafficEntry>& current,
                                                         const TrafficFlags& flags,
                                                         std::string_view service,
                                                         std::string& error) {
  OrderedMap<int> out;
  if (flags.to_latest) out[kLatest] = 100;
  for (const auto& [key, percent] : flags.to_revisions) out[key] = percent;
  for (const auto& [tag, percent] : flags.to_tags) {
    auto it = std::find_if(current.begin(), current.end(),
                           [&](const TrafficEntry& e) { return e.tag == tag; });
    if (it == current.end()) {
      error = fmt::format(
          "there is no revision tagged with [{}] in the traffic allocation for [{}]", tag, service);
      return {};
    }
    out[it->key] = percent;
  }
  return {out.begin(), out.end()};
}

}  // namespace

std::expected<std::vector<TrafficEntry>, std::string> update_traffic(
    std::vector<TrafficEntry> current, const TrafficFlags& flags, std::string_view service) {
  std::string error;
  const auto wanted = new_percentages(current, flags, service, error);
  if (!error.empty()) return std::unexpected(error);
  const auto wanted_percent = [&](std::string_view key) -> const int* {
    for (const auto& [k, p] : wanted) {
      if (k == key) return &p;
    }
    return nullptr;
  };

  // Normalized: every tag on a 0% target of its own, percents summed per key.
  OrderedMap<int> serving;
  std::vector<TrafficEntry> tagged;
  for (const auto& entry : current) {
    if (!entry.tag.empty()) tagged.push_back({entry.key, 0, entry.tag});
    if (entry.percent != 0) serving[entry.key] += entry.percent;
  }
  int total = 0;
  for (const auto& [key, percent] : serving) total += percent;
  if (total != 100) {
    return std::unexpected(
        fmt::format("current traffic allocation of {} is not 100 percent", total));
  }

  int specified = 0;
  for (const auto& [key, percent] : wanted) {
    if (percent < 0 || percent > 100) {
      return std::unexpected(
          fmt::format("new traffic for target {} is {}, not between 0 and 100", key, percent));
    }
    specified += percent;
  }
  OrderedMap<int> unassigned;  // serving now, not named
  for (const auto& [key, percent] : serving) {
    if (wanted_percent(key) == nullptr) unassigned[key] = percent;
  }
  if (specified > 100) return std::unexpected("over 100% of traffic is specified");
  if (unassigned.empty() && specified < 100) {
    return std::unexpected(
        "every target with traffic is updated but 100% of traffic has not been specified");
  }

  // What is left goes to the unnamed targets in proportion to what they had.
  std::vector<std::pair<std::string, double>> shares;
  for (const auto& [key, percent] : wanted) shares.emplace_back(key, percent);
  const int left = 100 - specified;
  if (left != 0) {
    int from = 0;
    for (const auto& [key, percent] : unassigned) from += percent;
    for (const auto& [key, percent] : unassigned) {
      shares.emplace_back(key, static_cast<double>(percent) * left / from);
    }
  }
  // Whole percents: rounded down, then a point back to the biggest losses (ties: the smaller
  // share, then the key), so that they sum to 100 again (gcloud's _IntPercentages).
  std::vector<int> rounded;
  double sum = 0;
  int rounded_sum = 0;
  for (const auto& [key, share] : shares) {
    rounded.push_back(static_cast<int>(share));
    sum += share;
    rounded_sum += rounded.back();
  }
  std::vector<std::size_t> order(shares.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const auto precedence = [&](std::size_t i) {
      const double share = shares[i].second;
      return std::tuple(1 - (share - static_cast<int>(share)), share, sort_key(shares[i].first));
    };
    return precedence(a) < precedence(b);
  });
  const int loss = static_cast<int>(std::lround(sum)) - rounded_sum;
  for (int i = 0; i < loss && i < static_cast<int>(order.size()); ++i) ++rounded[order[i]];

  std::vector<TrafficEntry> result;
  for (std::size_t i = 0; i < shares.size(); ++i) {
    const int* asked = wanted_percent(shares[i].first);
    if (asked != nullptr && *asked == 0) continue;  // set to 0: the target leaves
    result.push_back({shares[i].first, rounded[i], {}});
  }
  std::sort(result.begin(), result.end(), [](const TrafficEntry& a, const TrafficEntry& b) {
    return sort_key(a.key) < sort_key(b.key);
  });
  result.insert(result.end(), tagged.begin(), tagged.end());

  // Tags (gcloud's UpdateTags): --set-tags replaces them all, each new tag on a 0% target.
  const auto& to_update = !flags.set_tags.empty() ? flags.set_tags : flags.update_tags;
  const bool clear_others = flags.clear_tags || !flags.set_tags.empty();
  if (result.empty()) result.push_back({std::string(kLatest), 100, {}});
  std::vector<TrafficEntry> tagged_result;
  for (auto& entry : result) {
    const bool updated = std::any_of(to_update.begin(), to_update.end(),
                                     [&](const auto& kv) { return kv.first == entry.tag; });
    const bool removed = std::find(flags.remove_tags.begin(), flags.remove_tags.end(), entry.tag) !=
                         flags.remove_tags.end();
    if (clear_others || updated || removed) entry.tag.clear();
    if (entry.percent != 0 || !entry.tag.empty()) tagged_result.push_back(std::move(entry));
  }
  auto new_tags = to_update;
  std::sort(new_tags.begin(), new_tags.end());
  for (const auto& [tag, key] : new_tags) tagged_result.push_back({key, 0, tag});
  return tagged_result;
}

std::expected<std::vector<std::pair<std::string, int>>, std::string> parse_percentages(
    std::string_view text) {
  auto pairs = parse_pairs(text);
  if (!pairs) return std::unexpected(pairs.error());
  std::vector<std::pair<std::string, int>> out;
  for (const auto& [key, value] : *pairs) {
    int percent = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), percent);
    if (ec != std::errc{} || end != value.data() + value.size()) {
      return std::unexpected(
          fmt::format("'{}={}': the percent must be an integer from 0 to 100", key, value));
    }
    out.emplace_back(key, percent);
  }
  return out;
}

std::expected<std::vector<std::pair<std::string, std::string>>, std::string> parse_pairs(
    std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  if (text.empty()) return std::unexpected("expected KEY=VALUE[,KEY=VALUE...], got nothing");
  while (true) {
    const auto comma = text.find(',');
    const auto item = text.substr(0, comma);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size()) {
      return std::unexpected(fmt::format("'{}' is not KEY=VALUE", item));
    }
    out.emplace_back(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace revgate::cli
