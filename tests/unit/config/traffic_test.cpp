// Unit tests of config/traffic.h: check_traffic on lists built in code (as the admin API's
// PATCH builds them from JSON), each rule with its index, field and exact message, the order of
// the problems, and expand_default_traffic.
#include "config/traffic.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace revgate::config {
namespace {

Service service_with(std::vector<std::string> revision_names) {
  Service service;
  service.name = "hello";
  for (auto& name : revision_names) {
    Revision revision;
    revision.name = std::move(name);
    service.revisions.push_back(std::move(revision));
  }
  return service;
}

TrafficTarget to(std::string revision, int percent, std::string tag = "") {
  TrafficTarget target;
  target.revision_name = std::move(revision);
  target.percent = percent;
  target.tag = std::move(tag);
  return target;
}

TrafficTarget latest(int percent, std::string tag = "") {
  TrafficTarget target;
  target.latest_revision = true;
  target.percent = percent;
  target.tag = std::move(tag);
  return target;
}

// "index field rule" of each problem, in order: compact to compare.
std::vector<std::string> summary(const std::vector<TrafficProblem>& problems) {
  std::vector<std::string> out;
  for (const auto& p : problems) {
    out.push_back(std::to_string(p.index) + " " + std::string(to_string(p.field)) + " " + p.rule);
  }
  return out;
}

const Service kHello = service_with({"hello-1", "hello-2"});

TEST(CheckTraffic, AValidListHasNoProblem) {
  std::vector<TrafficTarget> traffic = {to("hello-1", 90), to("hello-2", 10, "canary"),
                                        latest(0, "latest")};
  EXPECT_TRUE(check_traffic(kHello, traffic).empty());
}

TEST(CheckTraffic, AnEmptyListIsValid) {
  EXPECT_TRUE(check_traffic(kHello, {}).empty());  // Knative's default route, spelt out later
}

TEST(CheckTraffic, TargetKindBoth) {
  TrafficTarget both = to("hello-1", 100);
  both.latest_revision = true;
  auto problems = check_traffic(kHello, std::vector{both});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].index, 0u);
  EXPECT_EQ(problems[0].field, TrafficField::latest_revision);
  EXPECT_EQ(problems[0].rule, "target-kind");
  EXPECT_EQ(problems[0].message,
            "a traffic target has revisionName or latestRevision: true, not both");
}

TEST(CheckTraffic, TargetKindNeither) {
  auto problems = check_traffic(kHello, std::vector{to("", 100)});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].field, TrafficField::target);
  EXPECT_EQ(problems[0].rule, "target-kind");
  EXPECT_EQ(problems[0].message, "a traffic target needs revisionName or latestRevision: true");
}

TEST(CheckTraffic, UnknownRevisionListsTheKnownOnes) {
  auto problems = check_traffic(kHello, std::vector{to("hello-1", 50), to("hello-9", 50)});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].index, 1u);
  EXPECT_EQ(problems[0].field, TrafficField::revision_name);
  EXPECT_EQ(problems[0].rule, "revision-exists");
  EXPECT_EQ(problems[0].message,
            "revisionName 'hello-9' is not a revision of service 'hello' (its revisions: "
            "hello-1, hello-2)");
  // A service without revisions says so.
  problems = check_traffic(service_with({}), std::vector{to("hello-1", 100)});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].message.find("(its revisions: none)"), std::string::npos)
      << problems[0].message;
}

TEST(CheckTraffic, UnknownRevisionInABigService) {
  // Past the scan limit the names are looked up in a sorted index: same answers.
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back("r-" + std::to_string(i));
  Service big = service_with(names);
  EXPECT_TRUE(check_traffic(big, std::vector{to("r-39", 60), to("r-0", 40)}).empty());
  EXPECT_EQ(summary(check_traffic(big, std::vector{to("r-40", 100)})),
            std::vector<std::string>{"0 revisionName revision-exists"});
}

TEST(CheckTraffic, PercentRange) {
  for (int bad : {-1, 101, 1000}) {
    auto problems = check_traffic(kHello, std::vector{to("hello-1", bad)});
    ASSERT_EQ(problems.size(), 1u) << bad;  // no percent-sum over a percent out of range
    EXPECT_EQ(problems[0].field, TrafficField::percent);
    EXPECT_EQ(problems[0].rule, "percent-range");
    EXPECT_EQ(problems[0].message,
              "percent must be an integer from 0 to 100, got '" + std::to_string(bad) + "'");
  }
  EXPECT_EQ(percent_problem_message("the string '50'"),
            "percent must be an integer from 0 to 100, got the string '50'");
}

TEST(CheckTraffic, PercentSum) {
  auto problems = check_traffic(kHello, std::vector{to("hello-1", 90), to("hello-2", 20)});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].field, TrafficField::list);
  EXPECT_EQ(problems[0].rule, "percent-sum");
  EXPECT_EQ(problems[0].message,
            "the traffic percents of service 'hello' sum to 110; they must sum to 100");
  EXPECT_EQ(summary(check_traffic(kHello, std::vector{latest(0)})),
            std::vector<std::string>{"0 list percent-sum"});
}

TEST(CheckTraffic, TagName) {
  auto problems = check_traffic(kHello, std::vector{to("hello-1", 100, "Canary")});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].field, TrafficField::tag);
  EXPECT_EQ(problems[0].rule, "tag-name");
  EXPECT_EQ(problems[0].message.rfind("tag 'Canary' is not a DNS-1035 label: it ", 0), 0u)
      << problems[0].message;
  // An empty tag is no tag.
  EXPECT_TRUE(check_traffic(kHello, std::vector{to("hello-1", 100, "")}).empty());
}

TEST(CheckTraffic, TagUniqueNamesTheFirstUse) {
  // From JSON (no positions): the earlier target by its index.
  std::vector<TrafficTarget> traffic = {to("hello-1", 50, "a"), to("hello-2", 50, "b"),
                                        latest(0, "a")};
  auto problems = check_traffic(kHello, traffic);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].index, 2u);
  EXPECT_EQ(problems[0].field, TrafficField::tag);
  EXPECT_EQ(problems[0].rule, "tag-unique");
  EXPECT_EQ(problems[0].message, "tag 'a' is already used by traffic[0] in service 'hello'");
  // From YAML: its line.
  traffic[0].pos = {12, 9};
  problems = check_traffic(kHello, traffic);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].message, "tag 'a' is already used at line 12 in service 'hello'");
  // An invalid tag is not a first use: the next one with that name is not a duplicate.
  EXPECT_EQ(summary(check_traffic(kHello,
                                  std::vector{to("hello-1", 50, "1st"), to("hello-2", 50, "1st")})),
            (std::vector<std::string>{"0 tag tag-name", "1 tag tag-name"}));
}

TEST(CheckTraffic, TagUniqueInALongList) {
  // Past the scan limit tags are indexed by a hash map: same answers.
  std::vector<TrafficTarget> traffic;
  for (int i = 0; i < 30; ++i) {
    traffic.push_back(latest(i == 0 ? 100 : 0, std::string("t").append(std::to_string(i))));
  }
  traffic.push_back(latest(0, "t7"));
  auto problems = check_traffic(kHello, traffic);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].index, 30u);
  EXPECT_EQ(problems[0].message, "tag 't7' is already used by traffic[7] in service 'hello'");
}

TEST(CheckTraffic, ProblemsComeInListOrderThenTheSum) {
  TrafficTarget both = to("hello-9", 120, "x_y");
  both.latest_revision = true;
  std::vector<TrafficTarget> traffic = {to("hello-1", 30, "dup"), both, to("", 10, "dup"),
                                        to("hello-2", 30)};
  EXPECT_EQ(summary(check_traffic(kHello, traffic)),
            (std::vector<std::string>{
                "1 latestRevision target-kind", "1 revisionName revision-exists",
                "1 percent percent-range", "1 tag tag-name", "2 target target-kind",
                "2 tag tag-unique"}));  // no percent-sum: one percent is out of range
  traffic[1].percent = 20;              // now every percent is in range, and they sum to 90
  EXPECT_EQ(summary(check_traffic(kHello, traffic)),
            (std::vector<std::string>{
                "1 latestRevision target-kind", "1 revisionName revision-exists", "1 tag tag-name",
                "2 target target-kind", "2 tag tag-unique", "0 list percent-sum"}));
}

TEST(CheckTraffic, IgnoresTheServicesOwnTraffic) {
  // The admin API checks a new list against the service as loaded, whose traffic differs.
  Service service = kHello;
  service.traffic = {to("nope", 7, "Bad")};
  EXPECT_TRUE(check_traffic(service, std::vector{to("hello-2", 100, "canary")}).empty());
  EXPECT_EQ(summary(check_traffic(service, std::vector{to("hello-2", 99)})),
            std::vector<std::string>{"0 list percent-sum"});
}

TEST(CheckTraffic, FieldNames) {
  EXPECT_EQ(to_string(TrafficField::list), "list");
  EXPECT_EQ(to_string(TrafficField::target), "target");
  EXPECT_EQ(to_string(TrafficField::revision_name), "revisionName");
  EXPECT_EQ(to_string(TrafficField::latest_revision), "latestRevision");
  EXPECT_EQ(to_string(TrafficField::percent), "percent");
  EXPECT_EQ(to_string(TrafficField::tag), "tag");
}

TEST(ExpandDefaultTraffic, EmptyBecomesAllToLatest) {
  auto traffic = expand_default_traffic({});
  ASSERT_EQ(traffic.size(), 1u);
  EXPECT_TRUE(traffic[0].latest_revision);
  EXPECT_EQ(traffic[0].revision_name, "");
  EXPECT_EQ(traffic[0].percent, 100);
  EXPECT_EQ(traffic[0].tag, "");
  EXPECT_EQ(traffic[0].pos.line, 0);
  std::vector<TrafficTarget> given = {to("hello-1", 100, "a")};
  EXPECT_EQ(expand_default_traffic(given), given);
}

}  // namespace
}  // namespace revgate::config
