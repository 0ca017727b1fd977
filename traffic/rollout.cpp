// Knative's rollout.go in revgate's terms: one "configuration" per service (its revisions), so a
// rollout is keyed by tag alone. Function names follow Knative's where they do the same thing.
#include "traffic/rollout.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "config/traffic.h"

namespace revgate::traffic {

namespace {

// Knative's minStepSec: how long moving the first 1% took. revgate moves it at once, so the
// shortest step Knative would observe, 1 s.
constexpr std::int64_t kMinStepMs = 1000;

// A latestRevision target's key and its percent (untagged ones summed).
struct LatestKey {
  std::string tag;
  int percent = 0;
};

bool is_latest_target(const config::TrafficTarget& target) {
  // A target with a revision_name is a revision target, or already a pinned rollout share.
  return target.latest_revision && target.revision_name.empty();
}

std::vector<LatestKey> latest_keys(const std::vector<config::TrafficTarget>& traffic) {
  std::vector<LatestKey> keys;
  for (const config::TrafficTarget& target : traffic) {
    if (!is_latest_target(target)) continue;
    auto it = std::ranges::find(keys, target.tag, &LatestKey::tag);
    if (it == keys.end()) {
      keys.push_back({target.tag, target.percent});
    } else {
      it->percent += target.percent;
    }
  }
  return keys;
}

const LatestKey* find_key(const std::vector<LatestKey>& keys, std::string_view tag) {
  auto it = std::ranges::find(keys, tag, &LatestKey::tag);
  return it == keys.end() ? nullptr : &*it;
}

const Rollout* find_rollout(const std::vector<Rollout>& rollouts, std::string_view tag) {
  auto it = std::ranges::find(rollouts, tag, &Rollout::tag);
  return it == rollouts.end() ? nullptr : &*it;
}

bool has_revision(const config::Service& service, std::string_view name) {
  return std::ranges::find(service.revisions, name, &config::Revision::name) !=
         service.revisions.end();
}

int sum_of(const std::vector<RevisionShare>& shares) {
  int sum = 0;
  for (const RevisionShare& share : shares) sum += share.percent;
  return sum;
}

void clear_timing(Rollout& rollout) {
  rollout.start_ms = rollout.next_step_ms = rollout.step_duration_ms = 0;
  rollout.step_size = 0;
}

// Shares of revisions the service no longer has go to its newest remaining one.
void drop_missing_revisions(Rollout& rollout, const config::Service& service) {
  int freed = 0;
  std::erase_if(rollout.revisions, [&](const RevisionShare& share) {
    if (has_revision(service, share.revision)) return false;
    freed += share.percent;
    return true;
  });
  if (!rollout.revisions.empty()) rollout.revisions.back().percent += freed;
}

// Knative's adjustPercentage: the target's percent changed while the shares were kept.
void adjust_percentage(int goal, Rollout& rollout) {
  const int diff = goal - rollout.percent;
  if (goal == 0) {
    rollout.revisions.clear();  // no traffic, no rollout
  } else if (diff > 0) {
    rollout.revisions.back().percent += diff;
  } else if (diff < 0) {
    int take = -diff;
    std::size_t i = 0;
    for (; take > 0 && i < rollout.revisions.size(); ++i) {
      if (rollout.revisions[i].percent > take) {
        rollout.revisions[i].percent -= take;
        break;
      }
      take -= rollout.revisions[i].percent;
    }
    rollout.revisions.erase(rollout.revisions.begin(),
                            rollout.revisions.begin() + static_cast<std::ptrdiff_t>(i));
  }
  rollout.percent = goal;
}

// Knative's computeProperties, in milliseconds, right after the first 1% moved at `now_ms`.
// Pre: percent >= 2.
void compute_properties(Rollout& rollout, std::chrono::milliseconds duration, std::int64_t now_ms) {
  // The first 1% used one minimum step of the duration; a duration shorter than that still
  // leaves one step of 1 s.
  const double duration_ms =
      std::max<double>(kMinStepMs, static_cast<double>(duration.count() - kMinStepMs));
  double steps = std::max(1.0, duration_ms / kMinStepMs);
  // At most one step per remaining percent: the smallest step is 1%.
  const double remaining = rollout.percent - 1;
  steps = std::min(steps, remaining);
  // Rounded, not truncated: 1.9 -> 1 would nearly double the rollout's time.
  rollout.step_size = static_cast<int>(std::round(remaining / steps));
  rollout.step_duration_ms = static_cast<std::int64_t>(duration_ms / steps);
  rollout.start_ms = now_ms;
  rollout.next_step_ms = now_ms + rollout.step_duration_ms;
}

// Knative's stepConfig for a new newest revision: 1% from the newest revision that has traffic
// (the newest is drained first) goes to `latest`.
void start_rollout(Rollout& rollout, const std::string& latest, std::chrono::milliseconds duration,
                   std::int64_t now_ms) {
  // A revision that is the latest again (revisions reordered) keeps what it had.
  int carried = 0;
  std::erase_if(rollout.revisions, [&](const RevisionShare& share) {
    if (share.revision != latest) return false;
    carried += share.percent;
    return true;
  });
  for (auto it = rollout.revisions.rbegin(); it != rollout.revisions.rend(); ++it) {
    if (it->percent > 0) {
      --it->percent;
      break;
    }
  }
  std::erase_if(rollout.revisions, [](const RevisionShare& share) { return share.percent == 0; });
  rollout.revisions.push_back({latest, 1 + carried});
  clear_timing(rollout);
  if (rollout.in_progress()) compute_properties(rollout, duration, now_ms);
}

// Knative's stepRevisions at `now_ms`: step_size moves from the older revisions, the newest
// older one first, to the newest; those left at 0 drop out. Pre: in progress and due.
void step_revisions(Rollout& rollout, std::int64_t now_ms) {
  auto& revisions = rollout.revisions;
  // A hand-edited 0 would never finish; the state file refuses it, this keeps the loop finite.
  const int step = std::max(1, rollout.step_size);
  std::size_t write = revisions.size() - 1;
  int remaining = step;
  for (std::size_t read = revisions.size() - 1; remaining > 0 && read-- > 0;) {
    if (revisions[read].percent > remaining) {
      revisions[read].percent -= remaining;
      break;
    }
    remaining -= revisions[read].percent;
    --write;
  }
  RevisionShare newest = std::move(revisions.back());
  // When the target shrank below the step, what the older ones had is less than the step.
  newest.percent = std::min(newest.percent + step, rollout.percent);
  revisions[write] = std::move(newest);
  revisions.resize(write + 1);
  if (rollout.in_progress()) {
    rollout.next_step_ms = now_ms + std::max<std::int64_t>(1, rollout.step_duration_ms);
  } else {
    clear_timing(rollout);  // the last step: done
  }
}

// Every step due by `now_ms`, each at its due time. True if a share moved.
bool step_due(Rollout& rollout, std::int64_t now_ms) {
  bool moved = false;
  while (rollout.in_progress() && rollout.next_step_ms <= now_ms) {
    step_revisions(rollout, rollout.next_step_ms);
    moved = true;
  }
  return moved;
}

const ServiceRollouts* find_service(const std::vector<ServiceRollouts>& all,
                                    const config::Service& service) {
  auto it = std::ranges::find_if(all, [&](const ServiceRollouts& s) {
    return s.namespace_name == service.namespace_name && s.service == service.name;
  });
  return it == all.end() ? nullptr : &*it;
}

}  // namespace

std::vector<Rollout> plan_rollouts(const config::Service& desired, const config::Service* previous,
                                   const std::vector<Rollout>& current, std::int64_t now_ms) {
  std::vector<Rollout> planned;
  if (desired.rollout_duration.count() <= 0 || desired.revisions.empty()) return planned;
  const std::string& latest = desired.revisions.back().name;
  std::vector<LatestKey> previous_keys;
  if (previous != nullptr && !previous->revisions.empty()) {
    previous_keys = latest_keys(config::expand_default_traffic(previous->traffic));
  }

  for (const LatestKey& key : latest_keys(config::expand_default_traffic(desired.traffic))) {
    // 1%: nothing to step, the new revision has it at once; 0%: nothing to roll (Knative).
    if (key.percent <= 1) continue;
    Rollout rollout;
    if (const Rollout* in_force = find_rollout(current, key.tag);
        in_force != nullptr && !in_force->revisions.empty()) {
      rollout = *in_force;
    } else if (const LatestKey* before = find_key(previous_keys, key.tag);
               before != nullptr && before->percent > 0) {
      rollout.revisions.push_back({previous->revisions.back().name, before->percent});
    } else {
      continue;  // a key without a previous state (new service or tag) gets its percent at once
    }
    rollout.tag = key.tag;
    drop_missing_revisions(rollout, desired);
    if (rollout.revisions.empty()) continue;
    rollout.percent = sum_of(rollout.revisions);
    adjust_percentage(key.percent, rollout);
    if (rollout.revisions.empty()) continue;

    if (rollout.revisions.back().revision == latest) {
      if (!rollout.in_progress()) continue;
      step_due(rollout, now_ms);
    } else {
      start_rollout(rollout, latest, desired.rollout_duration, now_ms);
    }
    if (rollout.in_progress()) planned.push_back(std::move(rollout));
  }
  std::ranges::sort(planned, {}, &Rollout::tag);
  return planned;
}

bool step_rollouts(std::vector<Rollout>& rollouts, std::int64_t now_ms) {
  bool moved = false;
  for (Rollout& rollout : rollouts) moved = step_due(rollout, now_ms) || moved;
  std::erase_if(rollouts, [](const Rollout& rollout) { return !rollout.in_progress(); });
  return moved;
}

std::optional<std::int64_t> next_step_ms(const std::vector<Rollout>& rollouts) {
  std::optional<std::int64_t> next;
  for (const Rollout& rollout : rollouts) {
    if (rollout.in_progress() && (!next || rollout.next_step_ms < *next)) {
      next = rollout.next_step_ms;
    }
  }
  return next;
}

std::vector<config::TrafficTarget> effective_traffic(const config::Service& desired,
                                                     const std::vector<Rollout>& rollouts) {
  std::vector<config::TrafficTarget> traffic = config::expand_default_traffic(desired.traffic);
  if (rollouts.empty() || desired.revisions.empty()) return traffic;
  const std::string& latest = desired.revisions.back().name;
  const std::vector<LatestKey> keys = latest_keys(traffic);

  std::vector<config::TrafficTarget> effective;
  std::vector<std::string> expanded;  // keys already written (the untagged may have several)
  for (config::TrafficTarget& target : traffic) {
    const Rollout* rollout =
        is_latest_target(target) ? find_rollout(rollouts, target.tag) : nullptr;
    const LatestKey* key = rollout != nullptr ? find_key(keys, target.tag) : nullptr;
    if (rollout == nullptr || !rollout->in_progress() || key == nullptr ||
        key->percent != rollout->percent || rollout->revisions.back().revision != latest) {
      effective.push_back(std::move(target));
      continue;
    }
    if (std::ranges::find(expanded, target.tag) != expanded.end()) continue;
    expanded.push_back(target.tag);
    for (const RevisionShare& share : rollout->revisions) {
      config::TrafficTarget pinned;
      pinned.revision_name = share.revision;
      pinned.latest_revision = true;
      pinned.percent = share.percent;
      if (&share == &rollout->revisions.back()) pinned.tag = target.tag;
      pinned.pos = target.pos;
      effective.push_back(std::move(pinned));
    }
  }
  return effective;
}

std::vector<ServiceRollouts> plan_rollouts(const config::Config& desired,
                                           const config::Config* previous,
                                           const std::vector<ServiceRollouts>& current,
                                           std::int64_t now_ms) {
  static const std::vector<Rollout> kNone;
  std::vector<ServiceRollouts> planned;
  // The previous config by (namespace, name), made only when a service can roll: a reload of
  // 10,000 services must stay linear.
  std::unordered_map<std::string, const config::Service*> previous_by_name;
  const auto key_of = [](const config::Service& s) { return s.namespace_name + '/' + s.name; };
  for (const config::Service& service : desired.services) {
    if (service.rollout_duration.count() <= 0) continue;  // no rollout is ever in force
    if (previous != nullptr && previous_by_name.empty()) {
      previous_by_name.reserve(previous->services.size());
      for (const auto& s : previous->services) previous_by_name.emplace(key_of(s), &s);
    }
    const auto before = previous_by_name.find(key_of(service));
    const ServiceRollouts* in_force = find_service(current, service);
    std::vector<Rollout> rollouts =
        plan_rollouts(service, before != previous_by_name.end() ? before->second : nullptr,
                      in_force != nullptr ? in_force->rollouts : kNone, now_ms);
    if (!rollouts.empty()) {
      planned.push_back({service.namespace_name, service.name, std::move(rollouts)});
    }
  }
  std::ranges::sort(planned, [](const ServiceRollouts& a, const ServiceRollouts& b) {
    return std::tie(a.namespace_name, a.service) < std::tie(b.namespace_name, b.service);
  });
  return planned;
}

bool step_rollouts(std::vector<ServiceRollouts>& rollouts, std::int64_t now_ms) {
  bool moved = false;
  for (ServiceRollouts& service : rollouts) {
    moved = step_rollouts(service.rollouts, now_ms) || moved;
  }
  std::erase_if(rollouts, [](const ServiceRollouts& service) { return service.rollouts.empty(); });
  return moved;
}

std::optional<std::int64_t> next_step_ms(const std::vector<ServiceRollouts>& rollouts) {
  std::optional<std::int64_t> next;
  for (const ServiceRollouts& service : rollouts) {
    if (auto at = next_step_ms(service.rollouts); at && (!next || *at < *next)) next = at;
  }
  return next;
}

config::Config effective_config(config::Config desired,
                                const std::vector<ServiceRollouts>& rollouts) {
  for (config::Service& service : desired.services) {
    if (const ServiceRollouts* in_force = find_service(rollouts, service)) {
      service.traffic = effective_traffic(service, in_force->rollouts);
    }
  }
  return desired;
}

}  // namespace revgate::traffic
