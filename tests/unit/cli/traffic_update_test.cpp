// Unit tests of cli/traffic_update: gcloud run services update-traffic's arithmetic, case by
// case (scaling of unnamed targets, largest-remainder rounding, tags, LATEST) and its errors.
#include "cli/traffic_update.h"

#include <gtest/gtest.h>

namespace revgate::cli {
namespace {

using Traffic = std::vector<TrafficEntry>;

Traffic update(Traffic current, TrafficFlags flags) {
  auto result = update_traffic(std::move(current), flags, "hello");
  EXPECT_TRUE(result.has_value()) << result.error();
  return result.value_or(Traffic{});
}

std::string error_of(Traffic current, TrafficFlags flags) {
  auto result = update_traffic(std::move(current), flags, "hello");
  EXPECT_FALSE(result.has_value());
  return result ? std::string() : result.error();
}

TrafficFlags to(std::vector<std::pair<std::string, int>> percents) {
  TrafficFlags flags;
  flags.to_revisions = std::move(percents);
  return flags;
}

TEST(UpdateTraffic, ANamedRevisionTakesItsShareAndTheTagMovesToAZeroTarget) {
  EXPECT_EQ(update({{"a", 90, ""}, {"b", 10, "canary"}}, to({{"b", 50}})),
            (Traffic{{"a", 50, ""}, {"b", 50, ""}, {"b", 0, "canary"}}));
}

TEST(UpdateTraffic, UnnamedTargetsShareWhatIsLeftInProportion) {
  EXPECT_EQ(update({{"a", 50, ""}, {"b", 30, ""}, {"c", 20, ""}}, to({{"a", 80}})),
            (Traffic{{"a", 80, ""}, {"b", 12, ""}, {"c", 8, ""}}));
}

TEST(UpdateTraffic, RoundingGivesPointsBackToTheBiggestLossesThenTheSmallerShare) {
  // 90 over 35:25 is 52.5 and 37.5: both lose .5, the smaller share gets the point back.
  EXPECT_EQ(update({{"a", 40, ""}, {"b", 35, ""}, {"c", 25, ""}}, to({{"a", 10}})),
            (Traffic{{"a", 10, ""}, {"b", 52, ""}, {"c", 38, ""}}));
  // 50 over three equal shares: 16.67 each; two points back, in key order.
  EXPECT_EQ(update({{"a", 20, ""}, {"b", 20, ""}, {"c", 20, ""}, {"d", 40, ""}}, to({{"d", 50}})),
            (Traffic{{"a", 17, ""}, {"b", 17, ""}, {"c", 16, ""}, {"d", 50, ""}}));
}

TEST(UpdateTraffic, ARevisionSetToZeroLeavesAndAnUntaggedLeftoverOfZeroToo) {
  EXPECT_EQ(update({{"a", 50, ""}, {"b", 50, ""}}, to({{"a", 0}})), (Traffic{{"b", 100, ""}}));
  // Everything named: the others get nothing and go.
  EXPECT_EQ(update({{"a", 50, ""}, {"b", 50, ""}}, to({{"c", 100}})), (Traffic{{"c", 100, ""}}));
}

TEST(UpdateTraffic, LatestIsAKeyOfItsOwnSortedLast) {
  EXPECT_EQ(update({{std::string(kLatest), 100, ""}}, to({{"a", 20}})),
            (Traffic{{"a", 20, ""}, {std::string(kLatest), 80, ""}}));
  TrafficFlags latest;
  latest.to_latest = true;
  EXPECT_EQ(update({{"a", 90, ""}, {"b", 10, "canary"}}, latest),
            (Traffic{{std::string(kLatest), 100, ""}, {"b", 0, "canary"}}));
}

TEST(UpdateTraffic, TargetsOfOneRevisionAreSummed) {
  TrafficFlags flags;
  flags.update_tags = {{"x", "b"}};
  EXPECT_EQ(update({{"a", 40, ""}, {"a", 10, ""}, {"b", 50, ""}}, flags),
            (Traffic{{"a", 50, ""}, {"b", 50, ""}, {"b", 0, "x"}}));
}

TEST(UpdateTraffic, ToTagsNamesTheRevisionsTheTagsAreOn) {
  TrafficFlags flags;
  flags.to_tags = {{"canary", 30}};
  EXPECT_EQ(update({{"a", 90, ""}, {"b", 10, "canary"}}, flags),
            (Traffic{{"a", 70, ""}, {"b", 30, ""}, {"b", 0, "canary"}}));
  flags.to_tags = {{"nope", 30}};
  EXPECT_EQ(error_of({{"a", 100, ""}}, flags),
            "there is no revision tagged with [nope] in the traffic allocation for [hello]");
}

TEST(UpdateTraffic, TagFlags) {
  const Traffic current{{"a", 90, "stable"}, {"b", 10, "canary"}};
  TrafficFlags move;
  move.update_tags = {{"canary", "a"}};
  EXPECT_EQ(update(current, move),
            (Traffic{{"a", 90, ""}, {"b", 10, ""}, {"a", 0, "stable"}, {"a", 0, "canary"}}));
  TrafficFlags remove;
  remove.remove_tags = {"canary", "not-there"};
  EXPECT_EQ(update(current, remove), (Traffic{{"a", 90, ""}, {"b", 10, ""}, {"a", 0, "stable"}}));
  TrafficFlags clear;
  clear.clear_tags = true;
  EXPECT_EQ(update(current, clear), (Traffic{{"a", 90, ""}, {"b", 10, ""}}));
  TrafficFlags set;  // replaces every tag
  set.set_tags = {{"latest", std::string(kLatest)}, {"beta", "b"}};
  EXPECT_EQ(update(current, set), (Traffic{{"a", 90, ""},
                                           {"b", 10, ""},
                                           {"b", 0, "beta"},
                                           {std::string(kLatest), 0, "latest"}}));
}

TEST(UpdateTraffic, TagsAndPercentsTogether) {
  TrafficFlags flags = to({{"b", 100}});
  flags.remove_tags = {"canary"};
  EXPECT_EQ(update({{"a", 90, ""}, {"b", 10, "canary"}}, flags), (Traffic{{"b", 100, ""}}));
}

TEST(UpdateTraffic, GcloudsErrors) {
  EXPECT_EQ(error_of({{"a", 90, ""}}, to({{"a", 100}})),
            "current traffic allocation of 90 is not 100 percent");
  EXPECT_EQ(error_of({{"a", 50, ""}, {"b", 50, ""}}, to({{"a", 60}, {"c", 60}})),
            "over 100% of traffic is specified");
  EXPECT_EQ(error_of({{"a", 100, ""}}, to({{"a", 101}})),
            "new traffic for target a is 101, not between 0 and 100");
  EXPECT_EQ(error_of({{"a", 100, ""}}, to({{"a", -5}, {"b", 50}})),
            "new traffic for target a is -5, not between 0 and 100");
  EXPECT_EQ(error_of({{"a", 50, ""}, {"b", 50, ""}}, to({{"a", 40}, {"b", 40}})),
            "every target with traffic is updated but 100% of traffic has not been specified");
}

TEST(UpdateTraffic, ALaterValueForTheSameKeyWins) {
  EXPECT_EQ(update({{"a", 50, ""}, {"b", 50, ""}}, to({{"a", 10}, {"a", 30}})),
            (Traffic{{"a", 30, ""}, {"b", 70, ""}}));
}

TEST(ParseFlags, PercentagesAndPairs) {
  auto percents = parse_percentages("a=10,LATEST=90");
  ASSERT_TRUE(percents.has_value());
  EXPECT_EQ(*percents, (std::vector<std::pair<std::string, int>>{{"a", 10}, {"LATEST", 90}}));
  EXPECT_EQ(parse_percentages("a=ten").error(),
            "'a=ten': the percent must be an integer from 0 to 100");
  EXPECT_EQ(parse_percentages("a=1.5").error(),
            "'a=1.5': the percent must be an integer from 0 to 100");
  EXPECT_EQ(parse_pairs("a").error(), "'a' is not KEY=VALUE");
  EXPECT_EQ(parse_pairs("=b").error(), "'=b' is not KEY=VALUE");
  EXPECT_EQ(parse_pairs("a=b,").error(), "'' is not KEY=VALUE");
  EXPECT_FALSE(parse_pairs("").has_value());
  auto pairs = parse_pairs("canary=hello-00002,latest=LATEST");
  ASSERT_TRUE(pairs.has_value());
  EXPECT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[1], (std::pair<std::string, std::string>{"latest", "LATEST"}));
}

}  // namespace
}  // namespace revgate::cli
