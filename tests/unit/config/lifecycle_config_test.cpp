// Unit tests of the config keys for a config's life across reloads and restarts: a service's
// `rolloutDuration`, `timeouts.drainDelay` and the top-level `stateFile` (its default beside the
// config file, resolution, and the state-file rule).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "config/config.h"
#include "config_test_util.h"

namespace revgate::config {
namespace {

using namespace std::chrono_literals;
using namespace test_util;

// ---- rolloutDuration ----

constexpr std::string_view kRollout = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    rolloutDuration: @
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
)";

TEST(RolloutDuration, OffByDefault) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services: [{name: hello, revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]}]
)");
  EXPECT_EQ(config.services.at(0).rollout_duration, 0ms);
}

TEST(RolloutDuration, AcceptedForms) {
  const std::pair<std::string_view, std::chrono::milliseconds> cases[] = {
      {"300s", 300s}, {"5m", 5min}, {"1h", 1h},  {"1s", 1s},   {"1500ms", 1500ms},
      {"90", 90s},    {"0", 0ms},   {"0s", 0ms}, {"0ms", 0ms}, {"~", 0ms},
  };
  for (const auto& [text, expected] : cases) {
    Config config = must_load(fill(kRollout, text));
    EXPECT_EQ(config.services.at(0).rollout_duration, expected) << text;
  }
}

TEST(RolloutDuration, AtLeastOneSecond) {
  EXPECT_EQ(only_error(fill(kRollout, "500ms")),
            "4:22: rolloutDuration '500ms' is too short: a rollout takes at least 1s (0 turns "
            "rollouts off) [rollout-duration]");
  EXPECT_EQ(only_error(fill(kRollout, "999ms")).substr(0, 5), "4:22:");
  EXPECT_NE(only_error(fill(kRollout, "0.5s")).find("[rollout-duration]"), std::string::npos);
}

TEST(RolloutDuration, NotADuration) {
  EXPECT_EQ(only_error(fill(kRollout, "-1s")),
            "4:22: rolloutDuration '-1s' must not be negative [duration]");
  EXPECT_EQ(only_error(fill(kRollout, "soon")),
            "4:22: rolloutDuration 'soon' is not a duration such as 500ms, 30s, 5m or 1h "
            "[duration]");
  EXPECT_NE(only_error(fill(kRollout, "[5m]")).find("[type]"), std::string::npos);
}

// ---- timeouts.drainDelay ----

constexpr std::string_view kDrain = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
timeouts: {drainDelay: @}
)";

TEST(DrainDelay, NoneByDefault) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
)");
  EXPECT_EQ(config.timeouts.drain_delay, 0ms);
}

TEST(DrainDelay, MayBeZero) {
  const std::pair<std::string_view, std::chrono::milliseconds> cases[] = {
      {"0", 0ms}, {"0s", 0ms}, {"0ms", 0ms}, {"5s", 5s}, {"250ms", 250ms}, {"1m", 1min}};
  for (const auto& [text, expected] : cases) {
    Config config = must_load(fill(kDrain, text));
    EXPECT_EQ(config.timeouts.drain_delay, expected) << text;
  }
}

TEST(DrainDelay, Rejected) {
  EXPECT_EQ(only_error(fill(kDrain, "-5s")),
            "2:24: drainDelay '-5s' must not be negative [duration]");
  EXPECT_EQ(only_error(fill(kDrain, "5 s")).substr(0, 5), "2:24:");
  // The other timeouts still refuse 0: a timeout of 0 would fire at once.
  EXPECT_NE(only_error(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
timeouts: {drainDelay: 0s, shutdownGrace: 0s}
)")
                .find("shutdownGrace '0s' must be greater than zero [duration]"),
            std::string::npos);
}

// ---- stateFile ----

TEST(StateFile, DefaultsBesideTheConfigFile) {
  const std::string yaml = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
)";
  EXPECT_EQ(must_load(yaml, "/etc/x/revgate.yaml").state_file, "/etc/x/revgate.state.json");
  EXPECT_EQ(must_load(yaml, "test.yaml").state_file, "test.state.json");
  EXPECT_EQ(must_load(yaml, "conf/revgate").state_file, "conf/revgate.state.json");
  EXPECT_EQ(must_load(yaml, "./a/../revgate.yml").state_file, "revgate.state.json");
  // Not a file: no state file.
  EXPECT_EQ(must_load(yaml, "<demo>").state_file, "");
  // `stateFile:` with no value is the default too.
  EXPECT_EQ(must_load(std::string(yaml) + "stateFile:\n", "/etc/x/revgate.yaml").state_file,
            "/etc/x/revgate.state.json");
}

TEST(StateFile, AbsolutePath) {
  std::string tmp = std::filesystem::temp_directory_path().string();
  Config config = must_load(fill(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
stateFile: @
)",
                                 tmp + "/revgate-state.json"),
                            "/etc/x/revgate.yaml");
  EXPECT_EQ(config.state_file, tmp + "/revgate-state.json");
}

TEST(StateFile, Rules) {
  EXPECT_EQ(only_error(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
stateFile: /nonexistent-revgate-dir/state.json
)"),
            "2:12: stateFile '/nonexistent-revgate-dir/state.json': directory "
            "'/nonexistent-revgate-dir' does not exist [state-file]");
  std::string tmp = std::filesystem::temp_directory_path().string();
  EXPECT_EQ(only_error(fill(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
stateFile: @
)",
                            tmp)),
            "2:12: stateFile '" + tmp + "' is a directory; name a file in it [state-file]");
  EXPECT_EQ(only_error(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
stateFile: ""
)"),
            "2:12: stateFile must not be empty; leave it out for a file beside the config file "
            "[state-file]");
  EXPECT_EQ(only_error(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
stateFile: [a]
)"),
            "2:12: stateFile must be a string, got a list [type]");
}

class StateFileInTempDir : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "revgate-state-config-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(StateFileInTempDir, LoadFileDefaultsBesideIt) {
  std::string path = (dir_ / "revgate.yaml").string();
  std::ofstream(path) << "listeners: [{name: http, address: \"127.0.0.1:0\"}]\n";
  LoadResult result = load_file(path);
  ASSERT_TRUE(result.has_value()) << all_errors(result);
  EXPECT_EQ(result->state_file, (dir_ / "revgate.state.json").string());
}

TEST_F(StateFileInTempDir, RelativePathResolvesAgainstTheConfigDirectory) {
  std::filesystem::create_directory(dir_ / "var");
  std::string source = (dir_ / "revgate.yaml").string();
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
stateFile: var/../var/state.json
)",
                            source);
  EXPECT_EQ(config.state_file, (dir_ / "var/state.json").string());
  EXPECT_FALSE(std::filesystem::exists(dir_ / "var/state.json"));  // written by its owner
  // A missing relative directory names both the written and the resolved path.
  std::string error = only_error(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
stateFile: missing/state.json
)",
                                 source);
  EXPECT_EQ(error, "2:12: stateFile 'missing/state.json' (" +
                       (dir_ / "missing/state.json").string() + "): directory '" +
                       (dir_ / "missing").string() + "' does not exist [state-file]");
}

}  // namespace
}  // namespace revgate::config
