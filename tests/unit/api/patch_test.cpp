// Unit tests of api/patch: RFC 7386 merge patches, and the PATCH of a Service's traffic planned
// against a config written inline: what is accepted, and every refusal with its status, reason
// and causes (the fields a client sees).
#include "api/patch.h"

#include <gtest/gtest.h>

#include <string>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "config/config.h"
#include "routing/route_table.h"

namespace revgate::api {
namespace {

namespace json = boost::json;

constexpr const char* kYaml = R"(
listeners:
  - name: http
    address: 127.0.0.1:8080
services:
  - name: hello
    revisions:
      - name: hello-00001
        endpoints: ["127.0.0.1:9001"]
      - name: hello-00002
        endpoints: ["127.0.0.1:9002"]
    traffic:
      - revisionName: hello-00001
        percent: 90
      - revisionName: hello-00002
        percent: 10
        tag: canary
  - name: shop
    namespace: prod
    revisions:
      - name: shop-a
        endpoints: ["127.0.0.1:9100"]
)";

constexpr std::string_view kHello = "/apis/serving.knative.dev/v1/namespaces/default/services/hello";

class PatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = config::load_string(kYaml, "test.yaml");
    ASSERT_TRUE(loaded.has_value());
    snapshot_.config = std::make_shared<const config::Config>(std::move(*loaded));
    snapshot_.table = routing::RouteTable::compile(*snapshot_.config, 3);
    snapshot_.generation = 3;
  }

  std::expected<TrafficPatch, Response> plan(std::string_view body,
                                             std::string_view target = kHello,
                                             std::string_view type = kMergePatchType) {
    return plan_traffic_patch(snapshot_, target, type, body);
  }

  // The refusal's status and its causes as "field: message" lines.
  static std::vector<std::string> causes(const Response& response) {
    std::vector<std::string> out;
    const auto& details = response.body.at("details").as_object();
    for (const auto& cause : details.at("causes").as_array()) {
      out.push_back(std::string(cause.at("field").as_string()) + ": " +
                    std::string(cause.at("message").as_string()));
    }
    return out;
  }

  Snapshot snapshot_;
};

json::value parse(std::string_view text) { return json::parse(text); }

TEST(MergePatch, FollowsRfc7386AppendixA) {
  // The RFC's own examples: original, patch, result.
  const std::vector<std::array<const char*, 3>> cases = {
      {R"({"a":"b"})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"b"})", R"({"b":"c"})", R"({"a":"b","b":"c"})"},
      {R"({"a":"b"})", R"({"a":null})", R"({})"},
      {R"({"a":"b","b":"c"})", R"({"a":null})", R"({"b":"c"})"},
      {R"({"a":["b"]})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"c"})", R"({"a":["b"]})", R"({"a":["b"]})"},
      {R"({"a":{"b":"c"}})", R"({"a":{"b":"d","c":null}})", R"({"a":{"b":"d"}})"},
      {R"({"a":[{"b":"c"}]})", R"({"a":[1]})", R"({"a":[1]})"},
      {R"(["a","b"])", R"(["c","d"])", R"(["c","d"])"},
      {R"({"a":"b"})", R"(["c"])", R"(["c"])"},
      {R"({"a":"foo"})", R"(null)", R"(null)"},
      {R"({"a":"foo"})", R"("bar")", R"("bar")"},
      {R"({"e":null})", R"({"a":1})", R"({"e":null,"a":1})"},
      {R"([1,2])", R"({"a":"b","c":null})", R"({"a":"b"})"},
      {R"({})", R"({"a":{"bb":{"ccc":null}}})", R"({"a":{"bb":{}}})"},
  };
  for (const auto& [original, patch, result] : cases) {
    EXPECT_EQ(merge_patch(parse(original), parse(patch)), parse(result))
        << original << " + " << patch;
  }
}

TEST_F(PatchTest, ANewSplitIsAcceptedAndReplacesTheListWhole) {
  auto planned = plan(R"({"spec":{"traffic":[
      {"revisionName":"hello-00002","percent":100,"tag":"canary"}]}})");
  ASSERT_TRUE(planned.has_value()) << json::serialize(planned.error().body);
  EXPECT_EQ(planned->service_index, 0u);
  ASSERT_EQ(planned->traffic.size(), 1u);
  EXPECT_EQ(planned->traffic[0].revision_name, "hello-00002");
  EXPECT_EQ(planned->traffic[0].percent, 100);
  EXPECT_EQ(planned->traffic[0].tag, "canary");
  EXPECT_FALSE(planned->traffic[0].latest_revision);
}

TEST_F(PatchTest, LatestRevisionTargetsAndParametersOfTheMediaType) {
  auto planned = plan(R"({"spec":{"traffic":[{"latestRevision":true,"percent":100}]}})", kHello,
                      "Application/Merge-Patch+JSON; charset=utf-8");
  ASSERT_TRUE(planned.has_value()) << json::serialize(planned.error().body);
  ASSERT_EQ(planned->traffic.size(), 1u);
  EXPECT_TRUE(planned->traffic[0].latest_revision);
}

TEST_F(PatchTest, NullTrafficIsKnativesDefaultRoute) {
  auto planned = plan(R"({"spec":{"traffic":null}})");
  ASSERT_TRUE(planned.has_value()) << json::serialize(planned.error().body);
  EXPECT_TRUE(planned->traffic.empty());
}

TEST_F(PatchTest, AnEmptyPatchKeepsTheTrafficAsItIs) {
  auto planned = plan("{}");
  ASSERT_TRUE(planned.has_value()) << json::serialize(planned.error().body);
  ASSERT_EQ(planned->traffic.size(), 2u);
  EXPECT_EQ(planned->traffic[0].percent, 90);
  EXPECT_EQ(planned->traffic[1].tag, "canary");
}

TEST_F(PatchTest, ServicesInOtherNamespacesAreFound) {
  auto planned = plan(R"({"spec":{"traffic":[{"revisionName":"shop-a","percent":100}]}})",
                      "/apis/serving.knative.dev/v1/namespaces/prod/services/shop");
  ASSERT_TRUE(planned.has_value()) << json::serialize(planned.error().body);
  EXPECT_EQ(planned->service_index, 1u);
}

TEST_F(PatchTest, OnlyAMergePatchIsAccepted) {
  for (std::string_view type :
       {"application/json-patch+json", "application/strategic-merge-patch+json",
        "application/json", ""}) {
    auto planned = plan("{}", kHello, type);
    ASSERT_FALSE(planned.has_value()) << type;
    EXPECT_EQ(planned.error().status, 415u) << type;
    EXPECT_EQ(planned.error().body.at("reason"), "UnsupportedMediaType");
  }
}

TEST_F(PatchTest, ABodyThatIsNotJsonIs400) {
  auto planned = plan(R"({"spec": {"traffic": [)");
  ASSERT_FALSE(planned.has_value());
  EXPECT_EQ(planned.error().status, 400u);
  EXPECT_EQ(planned.error().body.at("reason"), "BadRequest");
}

TEST_F(PatchTest, AnUnknownServiceIs404LikeKubernetes) {
  auto planned = plan("{}", "/apis/serving.knative.dev/v1/namespaces/default/services/nope");
  ASSERT_FALSE(planned.has_value());
  EXPECT_EQ(planned.error().status, 404u);
  EXPECT_EQ(planned.error().body.at("message"),
            "services.serving.knative.dev \"nope\" not found");
  // The same name in another namespace is another service.
  EXPECT_EQ(plan("{}", "/apis/serving.knative.dev/v1/namespaces/prod/services/hello")
                .error()
                .status,
            404u);
}

TEST_F(PatchTest, OnlyServicesArePatchedAndOnlyInANamespace) {
  EXPECT_EQ(plan("{}", "/apis/serving.knative.dev/v1/namespaces/default/routes/hello")
                .error()
                .status,
            405u);
  EXPECT_EQ(plan("{}", "/apis/serving.knative.dev/v1/namespaces/-/services/hello").error().status,
            400u);
  EXPECT_EQ(plan("{}", "/apis/serving.knative.dev/v1/services").error().status, 404u);
}

TEST_F(PatchTest, FieldsOtherThanTheTrafficAreTheConfigFilesAndRefused) {
  auto planned = plan(R"({"metadata":{"labels":{"team":"a"}},"spec":{"template":null}})");
  ASSERT_FALSE(planned.has_value());
  EXPECT_EQ(planned.error().status, 422u);
  EXPECT_EQ(planned.error().body.at("reason"), "Invalid");
  const auto list = causes(planned.error());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_TRUE(list[0].starts_with("metadata.labels: cannot be changed at run time")) << list[0];
  EXPECT_TRUE(list[1].starts_with("spec.template: cannot be changed")) << list[1];
}

TEST_F(PatchTest, TrafficRulesAreTheConfigFilesWithFieldPaths) {
  auto planned = plan(R"({"spec":{"traffic":[
      {"revisionName":"hello-00001","percent":50},
      {"revisionName":"hello-00009","percent":30,"tag":"Bad_Tag"}]}})");
  ASSERT_FALSE(planned.has_value());
  EXPECT_EQ(planned.error().status, 422u);
  const auto list = causes(planned.error());
  ASSERT_EQ(list.size(), 3u) << ::testing::PrintToString(list);
  EXPECT_TRUE(list[0].starts_with("spec.traffic[1].revisionName: ")) << list[0];
  EXPECT_TRUE(list[0].ends_with("[revision-exists]")) << list[0];
  EXPECT_TRUE(list[1].starts_with("spec.traffic[1].tag: ")) << list[1];
  EXPECT_TRUE(list[1].ends_with("[tag-name]")) << list[1];
  EXPECT_TRUE(list[2].starts_with("spec.traffic: ")) << list[2];
  EXPECT_TRUE(list[2].ends_with("[percent-sum]")) << list[2];
  EXPECT_NE(std::string(planned.error().body.at("message").as_string())
                .find("Service.serving.knative.dev \"hello\" is invalid: ["),
            std::string::npos);
}

TEST_F(PatchTest, ATargetNeedsExactlyOneKind) {
  auto planned = plan(R"({"spec":{"traffic":[{"percent":100},
      {"revisionName":"hello-00001","latestRevision":true,"percent":0}]}})");
  ASSERT_FALSE(planned.has_value());
  const auto list = causes(planned.error());
  ASSERT_EQ(list.size(), 2u) << ::testing::PrintToString(list);
  EXPECT_TRUE(list[0].starts_with("spec.traffic[0]: ")) << list[0];
  EXPECT_TRUE(list[0].ends_with("[target-kind]")) << list[0];
  EXPECT_TRUE(list[1].starts_with("spec.traffic[1].latestRevision: ")) << list[1];
}

TEST_F(PatchTest, PercentsOutOfRangeAndOfTheWrongType) {
  auto planned = plan(R"({"spec":{"traffic":[
      {"revisionName":"hello-00001","percent":120},
      {"revisionName":"hello-00002","percent":"10"},
      {"latestRevision":true,"percent":12.5},
      {"latestRevision":true,"percent":100000000000,"tag":"x"}]}})");
  ASSERT_FALSE(planned.has_value());
  const auto list = causes(planned.error());
  ASSERT_EQ(list.size(), 3u) << ::testing::PrintToString(list);
  EXPECT_EQ(list[0], "spec.traffic[1].percent: percent must be an integer from 0 to 100, got the "
                     "string '10' [type]");
  EXPECT_EQ(list[1], "spec.traffic[2].percent: percent must be an integer from 0 to 100, got "
                     "12.5 [type]");
  EXPECT_EQ(list[2], "spec.traffic[3].percent: percent must be an integer from 0 to 100, got "
                     "100000000000 [percent-range]");
  // A readable but out-of-range percent is the rules' to report once the types are right.
  auto range = plan(R"({"spec":{"traffic":[{"revisionName":"hello-00001","percent":120}]}})");
  ASSERT_FALSE(range.has_value());
  const auto range_list = causes(range.error());
  ASSERT_FALSE(range_list.empty());
  EXPECT_TRUE(range_list[0].starts_with("spec.traffic[0].percent: ")) << range_list[0];
  EXPECT_TRUE(range_list[0].ends_with("[percent-range]")) << range_list[0];
}

TEST_F(PatchTest, UnknownAndStatusOnlyFieldsAreRefused) {
  auto planned = plan(R"({"spec":{"traffic":[
      {"revisionName":"hello-00001","percent":100,"weight":3,
       "url":"http://x","configurationName":"hello"}]}})");
  ASSERT_FALSE(planned.has_value());
  const auto list = causes(planned.error());
  ASSERT_EQ(list.size(), 3u) << ::testing::PrintToString(list);
  EXPECT_TRUE(list[0].starts_with("spec.traffic[0].weight: unknown field")) << list[0];
  EXPECT_TRUE(list[1].starts_with("spec.traffic[0].url: must not set")) << list[1];
  EXPECT_TRUE(list[2].starts_with("spec.traffic[0].configurationName: must not set")) << list[2];
}

TEST_F(PatchTest, TrafficThatIsNotAListOfMapsIsATypeError) {
  auto not_list = plan(R"({"spec":{"traffic":{"percent":100}}})");
  ASSERT_FALSE(not_list.has_value());
  EXPECT_EQ(causes(not_list.error()),
            std::vector<std::string>{"spec.traffic: traffic must be a list, got a map [type]"});
  auto not_map = plan(R"({"spec":{"traffic":[7]}})");
  ASSERT_FALSE(not_map.has_value());
  EXPECT_EQ(causes(not_map.error()),
            std::vector<std::string>{
                "spec.traffic[0]: a traffic target must be a map, got 7 [type]"});
}

}  // namespace
}  // namespace revgate::api
