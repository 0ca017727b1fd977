// Unit tests of traffic/overlay: runtime traffic laid over configs loaded from inline YAML, and
// every reason an overlay is dropped when a new config file arrives.
#include "traffic/overlay.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "config/traffic.h"

namespace revgate::traffic {
namespace {

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
        percent: 100
  - name: shop
    namespace: prod
    revisions:
      - name: shop-a
        endpoints: ["127.0.0.1:9100"]
)";

config::Config load(std::string yaml) {
  auto loaded = config::load_string(yaml, "test.yaml");
  EXPECT_TRUE(loaded.has_value());
  return loaded ? std::move(*loaded) : config::Config{};
}

const config::Service& service(const config::Config& config, std::string_view name) {
  for (const auto& s : config.services) {
    if (s.name == name) return s;
  }
  throw std::runtime_error("no such service in the test config");
}

config::TrafficTarget target(std::string revision, int percent, std::string tag = "") {
  config::TrafficTarget t;
  t.revision_name = std::move(revision);
  t.latest_revision = t.revision_name.empty();
  t.percent = percent;
  t.tag = std::move(tag);
  return t;
}

// hello split 90/10 with a canary tag, made against kYaml's file.
Overlay canary(const config::Config& file) {
  return make_overlay(service(file, "hello"),
                      {target("hello-00001", 90), target("hello-00002", 10, "canary")}, 1234);
}

TEST(Overlay, MakeOverlayRemembersTheFilesTraffic) {
  const auto file = load(kYaml);
  const Overlay overlay = canary(file);
  EXPECT_EQ(overlay.namespace_name, "default");
  EXPECT_EQ(overlay.service, "hello");
  EXPECT_EQ(overlay.base, service(file, "hello").traffic);
  EXPECT_EQ(overlay.updated_ms, 1234);
}

TEST(Overlay, AppliedOverTheFileReplacesThatServicesTrafficOnly) {
  const auto file = load(kYaml);
  const auto applied = apply_overlays(file, {canary(file)});
  EXPECT_TRUE(applied.dropped.empty());
  ASSERT_EQ(applied.kept.size(), 1u);
  EXPECT_EQ(applied.kept[0], canary(file));
  EXPECT_EQ(service(applied.config, "hello").traffic, canary(file).traffic);
  EXPECT_EQ(service(applied.config, "shop").traffic, service(file, "shop").traffic);
}

TEST(Overlay, EmptyTrafficIsTheDefaultRoute) {
  const auto file = load(kYaml);
  const auto applied = apply_overlays(file, {make_overlay(service(file, "hello"), {}, 1)});
  EXPECT_TRUE(applied.dropped.empty());
  EXPECT_EQ(service(applied.config, "hello").traffic,
            std::vector<config::TrafficTarget>{target("", 100)});
  EXPECT_TRUE(applied.kept[0].traffic.empty());  // kept as it was set
}

TEST(Overlay, DroppedWhenTheServiceIsGone) {
  const auto file = load(kYaml);
  Overlay overlay = canary(file);
  overlay.service = "gone";
  const auto applied = apply_overlays(file, {overlay});
  EXPECT_TRUE(applied.kept.empty());
  ASSERT_EQ(applied.dropped.size(), 1u);
  EXPECT_NE(applied.dropped[0].find("default/gone"), std::string::npos) << applied.dropped[0];
  EXPECT_NE(applied.dropped[0].find("no longer in the config file"), std::string::npos);
  EXPECT_EQ(applied.config.services.size(), file.services.size());
}

TEST(Overlay, DroppedWhenTheFileEditedThatServicesTraffic) {
  const auto file = load(kYaml);
  const Overlay overlay = canary(file);
  std::string edited = kYaml;
  edited.replace(edited.find("percent: 100"), 12, "percent: 100\n        tag: prod");
  const auto newer = load(edited);
  const auto applied = apply_overlays(newer, {overlay});
  EXPECT_TRUE(applied.kept.empty());
  ASSERT_EQ(applied.dropped.size(), 1u);
  EXPECT_NE(applied.dropped[0].find("default/hello"), std::string::npos) << applied.dropped[0];
  EXPECT_NE(applied.dropped[0].find("traffic for it changed"), std::string::npos);
  EXPECT_EQ(service(applied.config, "hello").traffic, service(newer, "hello").traffic);
}

TEST(Overlay, KeptWhenOnlyOtherPartsOfTheFileChanged) {
  const auto file = load(kYaml);
  std::string edited = kYaml;
  edited.replace(edited.find("127.0.0.1:9100"), 14, "127.0.0.1:9200");
  const auto applied = apply_overlays(load(edited), {canary(file)});
  EXPECT_TRUE(applied.dropped.empty());
  EXPECT_EQ(service(applied.config, "hello").traffic, canary(file).traffic);
}

TEST(Overlay, DroppedWithEveryProblemWhenItBreaksTheNewFilesRules) {
  const auto file = load(kYaml);
  Overlay overlay = canary(file);
  overlay.traffic.push_back(target("hello-00009", 5));  // no such revision, and the sum is 105
  const auto problems = config::check_traffic(service(file, "hello"), overlay.traffic);
  ASSERT_GE(problems.size(), 2u);
  EXPECT_TRUE(std::ranges::any_of(problems, [](auto& p) { return p.rule == "revision-exists"; }));

  const auto applied = apply_overlays(file, {overlay});
  EXPECT_TRUE(applied.kept.empty());
  ASSERT_EQ(applied.dropped.size(), 1u);
  const std::string& reason = applied.dropped[0];
  EXPECT_NE(reason.find("default/hello"), std::string::npos) << reason;
  for (const auto& problem : problems) {
    EXPECT_NE(reason.find(problem.message), std::string::npos) << reason;
    EXPECT_NE(reason.find("[" + problem.rule + "]"), std::string::npos) << reason;
  }
  EXPECT_EQ(service(applied.config, "hello").traffic, service(file, "hello").traffic);
}

TEST(Overlay, DroppedWhenARevisionItNamesLeftTheFile) {
  // The file's traffic for hello is the same, but hello-00002 (the canary) is gone.
  const auto file = load(kYaml);
  std::string edited = kYaml;
  const auto from = edited.find("      - name: hello-00002");
  edited.erase(from, edited.find("    traffic:") - from);
  const auto newer = load(edited);
  ASSERT_EQ(service(newer, "hello").revisions.size(), 1u);
  const auto applied = apply_overlays(newer, {canary(file)});
  ASSERT_EQ(applied.dropped.size(), 1u);
  EXPECT_NE(applied.dropped[0].find("[revision-exists]"), std::string::npos) << applied.dropped[0];
}

TEST(Overlay, ASecondOverlayForOneServiceIsDropped) {
  const auto file = load(kYaml);
  Overlay second = make_overlay(service(file, "hello"), {target("hello-00002", 100)}, 99);
  const auto applied = apply_overlays(file, {canary(file), second});
  ASSERT_EQ(applied.kept.size(), 1u);
  EXPECT_EQ(applied.kept[0], canary(file));
  ASSERT_EQ(applied.dropped.size(), 1u);
  EXPECT_NE(applied.dropped[0].find("second overlay"), std::string::npos);
}

TEST(Overlay, KeptOverlaysAreSortedAndEachDropIsIndependent) {
  const auto file = load(kYaml);
  Overlay shop = make_overlay(service(file, "shop"), {target("shop-a", 100, "live")}, 5);
  Overlay gone = canary(file);
  gone.namespace_name = "zzz";
  const auto applied = apply_overlays(file, {shop, gone, canary(file)});
  ASSERT_EQ(applied.kept.size(), 2u);
  EXPECT_EQ(applied.kept[0].service, "hello");  // default/hello before prod/shop
  EXPECT_EQ(applied.kept[1].service, "shop");
  EXPECT_EQ(applied.dropped.size(), 1u);
  EXPECT_EQ(service(applied.config, "shop").traffic, shop.traffic);
}

TEST(Overlay, SetOverlayReplacesTheServicesOverlayAndKeepsOrder) {
  const auto file = load(kYaml);
  std::vector<Overlay> overlays;
  set_overlay(overlays, make_overlay(service(file, "shop"), {target("shop-a", 100)}, 1));
  set_overlay(overlays, canary(file));
  set_overlay(overlays, make_overlay(service(file, "hello"), {target("hello-00002", 100)}, 2));
  ASSERT_EQ(overlays.size(), 2u);
  EXPECT_EQ(overlays[0].service, "hello");
  EXPECT_EQ(overlays[0].updated_ms, 2);
  EXPECT_EQ(overlays[0].traffic, std::vector<config::TrafficTarget>{target("hello-00002", 100)});
  EXPECT_EQ(overlays[1].service, "shop");
}

}  // namespace
}  // namespace revgate::traffic
