// Knative's gradual rollout (serving.knative.dev/rollout-duration, Knative Serving's
// pkg/reconciler/route/traffic/rollout.go): the state of each latestRevision target whose share
// moves to a new revision in steps, and the effective traffic it gives. Pure functions on plain
// values, no clock of their own: any thread, one caller at a time per object.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"

namespace revgate::traffic {

// One revision's part of a rollout's percent (a share of the whole service's traffic, not of
// the target).
struct RevisionShare {
  std::string revision;
  int percent = 0;
  friend bool operator==(const RevisionShare&, const RevisionShare&) = default;
};

// The rollout of one latestRevision target of a service, keyed by the target's tag ("" for the
// untagged ones, which Knative merges into one with their percents summed). Times are wall-clock
// milliseconds since the epoch, so that the state file can keep them across a restart.
struct Rollout {
  std::string tag;
  int percent = 0;                       // the target's percent; the shares sum to it
  std::vector<RevisionShare> revisions;  // oldest first; the last is the newest
  std::int64_t start_ms = 0;             // when the newest revision got its first 1%
  std::int64_t next_step_ms = 0;         // when step_rollouts() moves the next step_size
  std::int64_t step_duration_ms = 0;
  int step_size = 0;  // percent moved to the newest revision per step
  bool in_progress() const { return revisions.size() > 1; }
  friend bool operator==(const Rollout&, const Rollout&) = default;
};

// The rollouts in progress of one service.
struct ServiceRollouts {
  std::string namespace_name;
  std::string service;
  std::vector<Rollout> rollouts;  // in progress only, sorted by tag
  friend bool operator==(const ServiceRollouts&, const ServiceRollouts&) = default;
};

// The rollouts in force for `desired` (the service as now wanted: config file plus overlay, not
// its effective traffic) after a change, Knative's Rollout.Step. For each latestRevision key the
// previous state is its rollout in `current` if there is one, else, when `previous` (the
// service as desired before the change; nullptr if new or unknown, as at start) had that key
// with traffic, its whole percent on `previous`'s newest revision; else there is none.
// - Revisions that `desired` no longer has leave the state; their share goes to its newest
//   remaining revision. None left: no rollout.
// - The state's percent follows the key's new one (adjustPercentage): more goes to the newest
//   revision, less is taken from the oldest first; a key at 0% or 1% does not roll (Knative).
// - `desired`'s newest revision differs from the state's newest: a rollout starts (or restarts
//   from the current shares): 1% from the newest revision that has traffic goes to it, and the
//   step timing is computed at once (Knative's computeProperties with minStepSec = 1, since
//   revgate applies that first 1% immediately).
// - The same newest revision: the rollout goes on with its timing, steps due at `now_ms` applied.
// - `rollout_duration` of 0: no rollout, everything at once.
// Returns the rollouts still in progress, sorted by tag.
std::vector<Rollout> plan_rollouts(const config::Service& desired, const config::Service* previous,
                                   const std::vector<Rollout>& current, std::int64_t now_ms);

// Applies every step due at `now_ms` (Knative's stepRevisions), several when the caller is late:
// each at its own due time, so that the schedule does not slip. Finished rollouts are removed.
// True if any share moved.
bool step_rollouts(std::vector<Rollout>& rollouts, std::int64_t now_ms);

// The earliest next step of the rollouts in progress; nullopt when there is none.
std::optional<std::int64_t> next_step_ms(const std::vector<Rollout>& rollouts);

// `desired`'s traffic with each latestRevision target in rollout replaced by one target per
// revision share, oldest first, in its place: revision_name and latest_revision both set, the
// share as percent, and the tag only on the newest revision's share (a tag follows the latest
// revision at once; only the untagged percent moves gradually). Untagged latestRevision targets
// merged into one rollout are expanded at the first of them. A rollout that does not match
// `desired` (another percent or newest revision: not planned against it) is not applied.
std::vector<config::TrafficTarget> effective_traffic(const config::Service& desired,
                                                     const std::vector<Rollout>& rollouts);

// The same over every service of a config, keyed by (namespace, name); services that are gone
// lose their rollouts. The result is sorted by namespace, then name, and holds only services
// with a rollout in progress.
std::vector<ServiceRollouts> plan_rollouts(const config::Config& desired,
                                           const config::Config* previous,
                                           const std::vector<ServiceRollouts>& current,
                                           std::int64_t now_ms);
bool step_rollouts(std::vector<ServiceRollouts>& rollouts, std::int64_t now_ms);
std::optional<std::int64_t> next_step_ms(const std::vector<ServiceRollouts>& rollouts);
config::Config effective_config(config::Config desired,
                                const std::vector<ServiceRollouts>& rollouts);

}  // namespace revgate::traffic
