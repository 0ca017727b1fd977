// Unit tests of traffic/rollout: the scenarios of Knative Serving's rollout_test.go that apply to
// one service (TestStep, TestAdjustPercentage, TestStepRevisions), then whole rollouts step by
// step in time, restarts, removed revisions, tags and the effective traffic they give.
#include "traffic/rollout.h"

#include <gtest/gtest.h>

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

// Readable failures: gtest finds these by argument-dependent lookup.
namespace revgate::config {
void PrintTo(const TrafficTarget& t, std::ostream* out) {
  *out << "{" << (t.revision_name.empty() ? "" : "revisionName: " + t.revision_name + ", ")
       << (t.latest_revision ? "latestRevision, " : "") << "percent: " << t.percent
       << (t.tag.empty() ? "" : ", tag: " + t.tag) << "}";
}
}  // namespace revgate::config

namespace revgate::traffic {
void PrintTo(const RevisionShare& s, std::ostream* out) { *out << s.revision << ": " << s.percent; }
void PrintTo(const Rollout& r, std::ostream* out) {
  *out << "{tag: '" << r.tag << "', percent: " << r.percent << ", revisions: [";
  for (const auto& s : r.revisions) *out << s.revision << ": " << s.percent << "; ";
  *out << "], start: " << r.start_ms << ", next: " << r.next_step_ms
       << ", duration: " << r.step_duration_ms << ", size: " << r.step_size << "}";
}

namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kNow = 1'700'000'000'000;  // some wall-clock instant, in ms

config::TrafficTarget latest(int percent, std::string tag = "") {
  config::TrafficTarget target;
  target.latest_revision = true;
  target.percent = percent;
  target.tag = std::move(tag);
  return target;
}

config::TrafficTarget revision(std::string name, int percent, std::string tag = "") {
  config::TrafficTarget target;
  target.revision_name = std::move(name);
  target.percent = percent;
  target.tag = std::move(tag);
  return target;
}

// A rollout's share in an effective traffic list.
config::TrafficTarget share(std::string name, int percent, std::string tag = "") {
  config::TrafficTarget target = revision(std::move(name), percent, std::move(tag));
  target.latest_revision = true;
  return target;
}

config::Service service(std::vector<std::string> revisions,
                        std::vector<config::TrafficTarget> traffic,
                        std::chrono::milliseconds duration = 300s) {
  config::Service s;
  s.name = "mick";
  for (auto& name : revisions) {
    config::Revision r;
    r.name = std::move(name);
    s.revisions.push_back(std::move(r));
  }
  s.traffic = std::move(traffic);
  s.rollout_duration = duration;
  return s;
}

Rollout rollout(std::string tag, int percent, std::vector<RevisionShare> shares,
                std::int64_t next_step_ms = 0, std::int64_t step_duration_ms = 0, int step_size = 0,
                std::int64_t start_ms = 0) {
  Rollout r;
  r.tag = std::move(tag);
  r.percent = percent;
  r.revisions = std::move(shares);
  r.start_ms = start_ms;
  r.next_step_ms = next_step_ms;
  r.step_duration_ms = step_duration_ms;
  r.step_size = step_size;
  return r;
}

int sum(const std::vector<config::TrafficTarget>& traffic) {
  int total = 0;
  for (const auto& target : traffic) total += target.percent;
  return total;
}

// ---- Knative's TestStep, one service ----

TEST(PlanRollouts, SimplestStepMovesStepSizeToTheNewest) {
  const auto desired = service({"satanic", "bleed"}, {latest(100)});
  const auto planned = plan_rollouts(
      desired, &desired,
      {rollout("", 100, {{"satanic", 95}, {"bleed", 5}}, kNow - 1, 5, 3, kNow - 16)}, kNow);
  // Knative reschedules from `now`; revgate from the step's due time, so that a late caller
  // does not stretch the rollout.
  EXPECT_EQ(planned, std::vector<Rollout>{rollout("", 100, {{"satanic", 92}, {"bleed", 8}},
                                                  kNow - 1 + 5, 5, 3, kNow - 16)});
  EXPECT_EQ(next_step_ms(planned), kNow + 4);
}

TEST(PlanRollouts, SeveralTagsStepEachWithItsOwnTiming) {
  // Knative's "multiple configs step": here two latestRevision keys of one service.
  const auto desired = service({"satanic", "sticky", "bleed"},
                               {latest(42), latest(52, "keith"), revision("satanic", 6)});
  const std::vector<Rollout> current{
      rollout("", 42, {{"satanic", 37}, {"bleed", 5}}, kNow - 1, 43, 3, kNow - 59),
      rollout("keith", 52, {{"sticky", 36}, {"bleed", 16}}, kNow - 2, 55, 4, kNow - 49)};
  const auto planned = plan_rollouts(desired, &desired, current, kNow);
  EXPECT_EQ(
      planned,
      (std::vector<Rollout>{
          rollout("", 42, {{"satanic", 34}, {"bleed", 8}}, kNow - 1 + 43, 43, 3, kNow - 59),
          rollout("keith", 52, {{"sticky", 32}, {"bleed", 20}}, kNow - 2 + 55, 55, 4, kNow - 49)}));
  EXPECT_EQ(next_step_ms(planned), kNow + 42);  // the earlier of the two
}

TEST(PlanRollouts, NotYetDueKeepsSharesAndTiming) {
  const auto desired = service({"satanic", "bleed"}, {latest(100)});
  const std::vector<Rollout> current{
      rollout("", 100, {{"satanic", 95}, {"bleed", 5}}, kNow + 1, 2020, 14, kNow - 2000)};
  EXPECT_EQ(plan_rollouts(desired, &desired, current, kNow), current);
}

TEST(PlanRollouts, NewRevisionStartsRolloutWithOnePercent) {
  // Knative's "simplest, roll": the previous state is the whole 100% on the old revision.
  const auto before = service({"goat"}, {latest(100)});
  const auto desired = service({"goat", "bleed"}, {latest(100)});
  const auto planned = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].tag, "");
  EXPECT_EQ(planned[0].percent, 100);
  EXPECT_EQ(planned[0].revisions, (std::vector<RevisionShare>{{"goat", 99}, {"bleed", 1}}));
  EXPECT_EQ(planned[0].start_ms, kNow);
}

TEST(PlanRollouts, StartWithPercentDownTakesFromTheOldestThenOnePercent) {
  // Knative's "roll with percentage change down".
  const auto desired = service({"goat", "aftermath", "bleed"}, {latest(33), revision("goat", 67)});
  const auto planned =
      plan_rollouts(desired, nullptr,
                    {rollout("", 42, {{"goat", 11}, {"aftermath", 31}}, kNow + 10, 10, 1)}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].percent, 33);
  EXPECT_EQ(planned[0].revisions,
            (std::vector<RevisionShare>{{"goat", 2}, {"aftermath", 30}, {"bleed", 1}}));
  EXPECT_EQ(planned[0].start_ms, kNow);
}

TEST(PlanRollouts, StartWithPercentUpGivesTheNewestOfThePreviousTheDifference) {
  // Knative's "roll with percentage change up".
  const auto desired = service({"goat", "aftermath", "bleed"}, {latest(75), revision("goat", 25)});
  const auto planned =
      plan_rollouts(desired, nullptr,
                    {rollout("", 25, {{"goat", 11}, {"aftermath", 14}}, kNow + 10, 10, 1)}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].percent, 75);
  EXPECT_EQ(planned[0].revisions,
            (std::vector<RevisionShare>{{"goat", 11}, {"aftermath", 63}, {"bleed", 1}}));
}

TEST(PlanRollouts, StartWhereTheTargetIsNotTheWholeService) {
  // Knative's "roll, where sum < 100%": 30% goes to a revision by name.
  const auto before = service({"exile"}, {latest(70), revision("exile", 30)});
  const auto desired = service({"exile", "bleed"}, {latest(70), revision("exile", 30)});
  const auto planned = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].percent, 70);
  EXPECT_EQ(planned[0].revisions, (std::vector<RevisionShare>{{"exile", 69}, {"bleed", 1}}));
}

TEST(PlanRollouts, NewRevisionMidRolloutRestartsFromTheCurrentShares) {
  // Knative's "roll with two existing revisions, no deletes": the newest gives up the 1%.
  const auto desired = service({"goat", "beggars", "sticky"}, {latest(100)});
  const auto planned = plan_rollouts(
      desired, nullptr,
      {rollout("", 100, {{"goat", 95}, {"beggars", 5}}, kNow + 500, 3020, 1, kNow - 1000)}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].revisions,
            (std::vector<RevisionShare>{{"goat", 95}, {"beggars", 4}, {"sticky", 1}}));
  // New timing: from now, for the whole duration again.
  EXPECT_EQ(planned[0].start_ms, kNow);
  EXPECT_EQ(planned[0].step_size, 1);
  EXPECT_EQ(planned[0].step_duration_ms, 299'000 / 99);
  EXPECT_EQ(planned[0].next_step_ms, kNow + 299'000 / 99);
}

TEST(PlanRollouts, TwoFastRollsDropTheRevisionLeftAtZero) {
  // Knative's "roll with delete (two fast successive rolls)".
  const auto desired = service({"goat", "bridges", "buttons"}, {latest(100)});
  const auto planned = plan_rollouts(
      desired, nullptr, {rollout("", 100, {{"goat", 99}, {"bridges", 1}}, kNow + 5, 5, 1)}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].revisions, (std::vector<RevisionShare>{{"goat", 99}, {"buttons", 1}}));
}

TEST(PlanRollouts, OnePercentTargetNeverRollsOut) {
  // Knative's "roll with delete (minimal config target)" and the 1% side of "a/b config, roll
  // both": a 1% latestRevision target has nothing to step; the new revision has it at once,
  // while the 99% one rolls.
  const auto before = service({"satisfaction"}, {latest(99), latest(1, "ab")});
  const auto desired = service({"satisfaction", "blue"}, {latest(99), latest(1, "ab")});
  const auto planned = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].tag, "");
  EXPECT_EQ(planned[0].revisions, (std::vector<RevisionShare>{{"satisfaction", 98}, {"blue", 1}}));
  EXPECT_EQ(effective_traffic(desired, planned),
            (std::vector<config::TrafficTarget>{share("satisfaction", 98), share("blue", 1),
                                                latest(1, "ab")}));

  // A rollout whose target drops to 1% ends: all of it on the newest at once.
  const auto one = service({"satisfaction", "blue"}, {latest(1), revision("satisfaction", 99)});
  EXPECT_TRUE(plan_rollouts(one, &desired, planned, kNow).empty());
}

TEST(PlanRollouts, ZeroPercentEndsTheRollout) {
  // Knative's "when new revision becomes 0%" and adjustPercentage's "go to 0%".
  const auto desired = service({"satanic", "aftermath"}, {latest(0), revision("satanic", 100)});
  EXPECT_TRUE(plan_rollouts(desired, nullptr,
                            {rollout("", 75, {{"satanic", 10}, {"aftermath", 65}}, kNow + 9, 9, 5)},
                            kNow)
                  .empty());
}

TEST(PlanRollouts, NewTagHasNoPreviousStateAndTakesTheLatestAtOnce) {
  // Knative's "new tag, no roll": a key the previous config did not have gets its percent on
  // the new revision at once; the untagged key, which had traffic, rolls.
  const auto before = service({"black"}, {latest(100)});
  const auto desired = service({"black", "blue"}, {latest(50), latest(50, "jagger")});
  const auto planned = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].tag, "");
  EXPECT_EQ(planned[0].revisions, (std::vector<RevisionShare>{{"black", 49}, {"blue", 1}}));
}

TEST(PlanRollouts, SameRevisionAndNoRolloutIsNothingToDo) {
  // Knative's "simplest, same" and "new tag, no roll" without a new revision.
  const auto before = service({"bleed"}, {latest(100)});
  const auto desired = service({"bleed"}, {latest(50), latest(50, "jagger")});
  EXPECT_TRUE(plan_rollouts(desired, &before, {}, kNow).empty());
}

TEST(PlanRollouts, NewServiceOrUnknownPreviousDoesNotRoll) {
  const auto desired = service({"goat", "bleed"}, {latest(100)});
  EXPECT_TRUE(plan_rollouts(desired, nullptr, {}, kNow).empty());
}

TEST(PlanRollouts, UntaggedLatestTargetsAreOneKeyWithTheirPercentsSummed) {
  const auto before = service({"goat"}, {latest(60), latest(40)});
  const auto desired = service({"goat", "bleed"}, {latest(60), latest(40)});
  const auto planned = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].percent, 100);
  EXPECT_EQ(planned[0].revisions, (std::vector<RevisionShare>{{"goat", 99}, {"bleed", 1}}));
  // Expanded where the first of them stood; the second is folded into it.
  EXPECT_EQ(effective_traffic(desired, planned),
            (std::vector<config::TrafficTarget>{share("goat", 99), share("bleed", 1)}));
}

TEST(PlanRollouts, ZeroDurationEndsEveryRolloutAtOnce) {
  const auto desired = service({"goat", "bleed"}, {latest(100)}, 0ms);
  EXPECT_TRUE(plan_rollouts(desired, nullptr,
                            {rollout("", 100, {{"goat", 60}, {"bleed", 40}}, kNow + 5, 5, 1)}, kNow)
                  .empty());
  const auto before = service({"goat"}, {latest(100)}, 0ms);
  EXPECT_TRUE(plan_rollouts(desired, &before, {}, kNow).empty());
}

// ---- Knative's TestAdjustPercentage, through a change of the target's percent ----

struct AdjustCase {
  const char* name;
  int from;
  std::vector<RevisionShare> shares;
  int goal;
  std::vector<RevisionShare> want;  // empty: the rollout is over
};

class AdjustPercentage : public ::testing::TestWithParam<AdjustCase> {};

TEST_P(AdjustPercentage, FollowsTheTargetsNewPercent) {
  const AdjustCase& c = GetParam();
  std::vector<std::string> names;
  for (const auto& s : c.shares) names.push_back(s.revision);
  const auto desired =
      service(names, {latest(c.goal), revision(names.front(), 100 - c.goal, "rest")});
  const auto planned =
      plan_rollouts(desired, nullptr, {rollout("", c.from, c.shares, kNow + 1, 10, 5)}, kNow);
  if (c.want.empty()) {
    EXPECT_TRUE(planned.empty());
  } else {
    ASSERT_EQ(planned.size(), 1u);
    EXPECT_EQ(planned[0].percent, c.goal);
    EXPECT_EQ(planned[0].revisions, c.want);
    EXPECT_EQ(planned[0].next_step_ms, kNow + 1);  // timing kept
  }
}

INSTANTIATE_TEST_SUITE_P(
    Knative, AdjustPercentage,
    ::testing::Values(
        AdjustCase{"noop_100", 100, {{"a", 71}, {"b", 29}}, 100, {{"a", 71}, {"b", 29}}},
        AdjustCase{"noop_42", 42, {{"a", 21}, {"b", 21}}, 42, {{"a", 21}, {"b", 21}}},
        AdjustCase{"raise_42_to_75", 42, {{"a", 21}, {"b", 21}}, 75, {{"a", 21}, {"b", 54}}},
        AdjustCase{"lower_75_to_42_lose_1", 75, {{"a", 21}, {"b", 54}}, 42, {}},
        AdjustCase{"lower_lose_1_update_2_keep_3",
                   75,
                   {{"a", 21}, {"b", 22}, {"c", 32}},
                   42,
                   {{"b", 10}, {"c", 32}}},
        AdjustCase{"lower_lose_2_update_3", 75, {{"a", 10}, {"b", 5}, {"c", 60}}, 42, {}},
        AdjustCase{"go_to_zero", 75, {{"a", 10}, {"b", 5}, {"c", 60}}, 0, {}}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- Knative's TestStepRevisions ----

TEST(StepRollouts, TooSoonMovesNothing) {
  std::vector<Rollout> rollouts{rollout("", 75, {{"a", 10}, {"b", 5}, {"c", 60}}, 1984, 10, 10)};
  const auto before = rollouts;
  EXPECT_FALSE(step_rollouts(rollouts, 1982));
  EXPECT_EQ(rollouts, before);
}

TEST(StepRollouts, StepAtTheExactTime) {
  std::vector<Rollout> rollouts{rollout("", 90, {{"a", 30}, {"b", 60}}, 1984, 55, 10)};
  EXPECT_TRUE(step_rollouts(rollouts, 1984));
  EXPECT_EQ(rollouts,
            std::vector<Rollout>{rollout("", 90, {{"a", 20}, {"b", 70}}, 1984 + 55, 55, 10)});
}

TEST(StepRollouts, OlderRevisionsDrainNewestFirstAndDropOutAtZero) {
  std::vector<Rollout> rollouts{
      rollout("", 90, {{"a", 22}, {"b", 5}, {"c", 3}, {"d", 60}}, 1984, 55, 10)};
  EXPECT_TRUE(step_rollouts(rollouts, 1988));
  EXPECT_EQ(rollouts,
            std::vector<Rollout>{rollout("", 90, {{"a", 20}, {"d", 70}}, 1984 + 55, 55, 10)});
}

TEST(StepRollouts, StepLargerThanWhatIsLeftFinishesTheRollout) {
  // Knative's "over target now" and "the very last step": the target shrank below the step.
  for (int step : {10, 8}) {
    std::vector<Rollout> rollouts{
        rollout("", 15, {{"a", 5}, {"b", 1}, {"c", 1}, {"d", 8}}, 1984, 77, step, 1977)};
    EXPECT_TRUE(step_rollouts(rollouts, 2006));
    EXPECT_TRUE(rollouts.empty()) << "done with step " << step;  // d has all 15: over
    const auto desired = service({"a", "b", "c", "d"}, {latest(15), revision("a", 85)});
    EXPECT_EQ(effective_traffic(desired, rollouts), desired.traffic);
  }
}

TEST(StepRollouts, ALateCallerCatchesUpEveryStepAtItsDueTime) {
  std::vector<Rollout> rollouts{rollout("", 100, {{"a", 90}, {"b", 10}}, 1000, 100, 10)};
  EXPECT_TRUE(step_rollouts(rollouts, 1250));  // due at 1000, 1100 and 1200
  EXPECT_EQ(rollouts,
            std::vector<Rollout>{rollout("", 100, {{"a", 60}, {"b", 40}}, 1300, 100, 10)});
  EXPECT_EQ(next_step_ms(rollouts), 1300);
  EXPECT_TRUE(step_rollouts(rollouts, 1'000'000));  // long after the end: finished
  EXPECT_TRUE(rollouts.empty());
  EXPECT_EQ(next_step_ms(rollouts), std::nullopt);
}

// ---- whole rollouts in time ----

TEST(Rollout, FullRolloutOf300SecondsMovesOnePercentEvery299Over99Seconds) {
  const auto before = service({"v1"}, {latest(100)});
  const auto desired = service({"v1", "v2"}, {latest(100)}, 300s);
  auto rollouts = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(rollouts.size(), 1u);
  EXPECT_EQ(rollouts[0].revisions, (std::vector<RevisionShare>{{"v1", 99}, {"v2", 1}}));
  EXPECT_EQ(rollouts[0].step_size, 1);
  constexpr std::int64_t kStep = 299'000 / 99;  // 3020 ms: (300 s - the first 1 s) / 99 steps
  EXPECT_EQ(rollouts[0].step_duration_ms, kStep);

  for (int step = 1; step <= 99; ++step) {
    const std::int64_t due = kNow + step * kStep;
    ASSERT_EQ(next_step_ms(rollouts), due) << "step " << step;
    EXPECT_FALSE(step_rollouts(rollouts, due - 1)) << "early at step " << step;
    EXPECT_TRUE(step_rollouts(rollouts, due));
    if (step < 99) {
      ASSERT_EQ(rollouts.size(), 1u);
      EXPECT_EQ(rollouts[0].revisions,
                (std::vector<RevisionShare>{{"v1", 99 - step}, {"v2", 1 + step}}));
    }
  }
  EXPECT_TRUE(rollouts.empty());  // v2 has all of it after 299 s (less rounding of 99 ms)
  EXPECT_EQ(effective_traffic(desired, rollouts), desired.traffic);
}

TEST(Rollout, FourSecondRolloutGoesOneThirtyFourSixtySevenHundred) {
  const auto before = service({"v1"}, {latest(100)});
  const auto desired = service({"v1", "v2"}, {latest(100)}, 4s);
  auto rollouts = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(rollouts.size(), 1u);
  // 3 s after the first 1%: three steps of round(99 / 3) = 33 every second.
  EXPECT_EQ(rollouts[0].step_size, 33);
  EXPECT_EQ(rollouts[0].step_duration_ms, 1000);
  const auto newest = [&] { return rollouts.empty() ? 100 : rollouts[0].revisions.back().percent; };
  EXPECT_EQ(newest(), 1);
  step_rollouts(rollouts, kNow + 1000);
  EXPECT_EQ(newest(), 34);
  step_rollouts(rollouts, kNow + 1999);
  EXPECT_EQ(newest(), 34);
  step_rollouts(rollouts, kNow + 2000);
  EXPECT_EQ(newest(), 67);
  step_rollouts(rollouts, kNow + 3000);
  EXPECT_TRUE(rollouts.empty());
}

TEST(Rollout, DurationShorterThanOneStepIsOneStep) {
  const auto before = service({"v1"}, {latest(100)});
  const auto desired = service({"v1", "v2"}, {latest(100)}, 500ms);
  const auto rollouts = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(rollouts.size(), 1u);
  EXPECT_EQ(rollouts[0].step_size, 99);
  EXPECT_EQ(rollouts[0].next_step_ms, kNow + 1000);
}

TEST(Rollout, ContinuesAcrossARestartFromItsSavedState) {
  // At start there is no previous config: the saved rollout is the previous state.
  const auto desired = service({"v1", "v2"}, {latest(100)}, 4s);
  const std::vector<Rollout> saved{rollout("", 100, {{"v1", 66}, {"v2", 34}}, kNow, 1000, 33)};
  EXPECT_EQ(plan_rollouts(desired, nullptr, saved, kNow - 1), saved);
  const auto planned = plan_rollouts(desired, nullptr, saved, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].revisions, (std::vector<RevisionShare>{{"v1", 33}, {"v2", 67}}));
}

// ---- revisions removed from the config ----

TEST(Rollout, RemovedRevisionGivesItsShareToTheNewest) {
  const auto desired = service({"a", "c"}, {latest(100)});
  const auto planned =
      plan_rollouts(desired, nullptr,
                    {rollout("", 100, {{"a", 60}, {"b", 30}, {"c", 10}}, kNow + 7, 7, 1)}, kNow);
  EXPECT_EQ(planned,
            std::vector<Rollout>{rollout("", 100, {{"a", 60}, {"c", 40}}, kNow + 7, 7, 1)});
}

TEST(Rollout, RemovedOlderRevisionsCanEndTheRollout) {
  const auto desired = service({"c"}, {latest(100)});
  EXPECT_TRUE(plan_rollouts(desired, nullptr,
                            {rollout("", 100, {{"a", 60}, {"b", 30}, {"c", 10}}, kNow + 7, 7, 1)},
                            kNow)
                  .empty());
}

TEST(Rollout, RemovedNewestWithANewRevisionRestartsFromWhatIsLeft) {
  // b (the newest) is gone: its share goes to a, and d starts from a's 100%.
  const auto desired = service({"a", "d"}, {latest(100)});
  const auto planned = plan_rollouts(
      desired, nullptr, {rollout("", 100, {{"a", 60}, {"b", 40}}, kNow + 7, 7, 1)}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].revisions, (std::vector<RevisionShare>{{"a", 99}, {"d", 1}}));
}

TEST(Rollout, NoPreviousRevisionLeftMeansNoRollout) {
  // The file replaced every revision: the new one gets the whole share at once.
  const auto before = service({"a"}, {latest(100)});
  const auto desired = service({"b"}, {latest(100)});
  EXPECT_TRUE(plan_rollouts(desired, &before, {}, kNow).empty());
  EXPECT_TRUE(plan_rollouts(desired, nullptr,
                            {rollout("", 100, {{"x", 50}, {"a", 50}}, kNow + 7, 7, 1)}, kNow)
                  .empty());
}

TEST(Rollout, ARevisionThatIsTheLatestAgainKeepsItsShare) {
  // The revisions were reordered so that an older one is the latest: it is not listed twice.
  const auto desired = service({"b", "a"}, {latest(100)});
  const auto planned = plan_rollouts(
      desired, nullptr, {rollout("", 100, {{"a", 60}, {"b", 40}}, kNow + 7, 7, 1)}, kNow);
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_EQ(planned[0].revisions, (std::vector<RevisionShare>{{"b", 39}, {"a", 61}}));
}

// ---- effective traffic ----

TEST(EffectiveTraffic, DuringRolloutSharesTakeThePlaceOfTheTargetWithTheTagOnTheNewest) {
  const auto before = service({"v1"}, {revision("v1", 10, "stable"), latest(90, "current")});
  const auto desired =
      service({"v1", "v2"}, {revision("v1", 10, "stable"), latest(90, "current")}, 4s);
  auto rollouts = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(rollouts.size(), 1u);
  EXPECT_EQ(rollouts[0].tag, "current");

  auto traffic = effective_traffic(desired, rollouts);
  EXPECT_EQ(traffic,
            (std::vector<config::TrafficTarget>{revision("v1", 10, "stable"), share("v1", 89),
                                                share("v2", 1, "current")}));
  EXPECT_EQ(sum(traffic), 100);

  EXPECT_EQ(rollouts[0].step_size, 30);  // round((90 - 1) / 3 steps)
  step_rollouts(rollouts, kNow + 1000);
  traffic = effective_traffic(desired, rollouts);
  EXPECT_EQ(traffic,
            (std::vector<config::TrafficTarget>{revision("v1", 10, "stable"), share("v1", 59),
                                                share("v2", 31, "current")}));
  EXPECT_EQ(sum(traffic), 100);

  step_rollouts(rollouts, kNow + 10'000);
  EXPECT_TRUE(rollouts.empty());
  EXPECT_EQ(effective_traffic(desired, rollouts), desired.traffic);  // after: as desired
}

TEST(EffectiveTraffic, ThreeRevisionsOldestFirstAndOtherTargetsUnchanged) {
  const auto desired = service({"a", "b", "c"}, {revision("a", 20, "pin"), latest(80)});
  const std::vector<Rollout> rollouts{
      rollout("", 80, {{"a", 50}, {"b", 20}, {"c", 10}}, kNow + 5, 5, 1)};
  const auto traffic = effective_traffic(desired, rollouts);
  EXPECT_EQ(traffic, (std::vector<config::TrafficTarget>{revision("a", 20, "pin"), share("a", 50),
                                                         share("b", 20), share("c", 10)}));
  EXPECT_EQ(sum(traffic), 100);
}

TEST(EffectiveTraffic, ARolloutThatDoesNotMatchTheDesiredServiceIsNotApplied) {
  const std::vector<Rollout> rollouts{rollout("", 100, {{"a", 50}, {"b", 50}}, kNow + 5, 5, 1)};
  // Another percent (not planned against this traffic), or another newest revision.
  const auto other_percent = service({"a", "b"}, {latest(90), revision("a", 10)});
  EXPECT_EQ(effective_traffic(other_percent, rollouts), other_percent.traffic);
  const auto other_latest = service({"a", "b", "c"}, {latest(100)});
  EXPECT_EQ(effective_traffic(other_latest, rollouts), other_latest.traffic);
}

TEST(EffectiveTraffic, EmptyDesiredTrafficIsTheDefaultRoute) {
  const auto desired = service({"a", "b"}, {});
  const std::vector<Rollout> rollouts{rollout("", 100, {{"a", 70}, {"b", 30}}, kNow + 5, 5, 1)};
  EXPECT_EQ(effective_traffic(desired, rollouts),
            (std::vector<config::TrafficTarget>{share("a", 70), share("b", 30)}));
}

// ---- over a whole config ----

TEST(ConfigRollouts, PlanStepAndEffectiveConfigPerService) {
  config::Config before;
  before.services = {service({"v1"}, {latest(100)}, 4s), service({"v1"}, {latest(100)}, 4s)};
  before.services[1].name = "keith";
  before.services[1].namespace_name = "a-first";
  config::Config desired = before;
  for (auto& s : desired.services) {
    s.revisions.emplace_back();
    s.revisions.back().name = "v2";
  }

  auto rollouts = plan_rollouts(desired, &before, {}, kNow);
  ASSERT_EQ(rollouts.size(), 2u);
  EXPECT_EQ(rollouts[0].namespace_name, "a-first");  // sorted by namespace, then name
  EXPECT_EQ(rollouts[1].service, "mick");
  EXPECT_EQ(next_step_ms(rollouts), kNow + 1000);

  const config::Config effective = effective_config(desired, rollouts);
  for (const auto& s : effective.services) {
    EXPECT_EQ(s.traffic, (std::vector<config::TrafficTarget>{share("v1", 99), share("v2", 1)}));
  }

  // A service that is gone loses its rollout; the other goes on.
  config::Config fewer = desired;
  fewer.services.pop_back();
  auto kept = plan_rollouts(fewer, &desired, rollouts, kNow);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].service, "mick");

  EXPECT_TRUE(step_rollouts(rollouts, kNow + 3000));
  EXPECT_TRUE(rollouts.empty());
  EXPECT_EQ(next_step_ms(rollouts), std::nullopt);
  EXPECT_EQ(effective_config(desired, rollouts).services[0].traffic, desired.services[0].traffic);
}

}  // namespace
}  // namespace revgate::traffic
