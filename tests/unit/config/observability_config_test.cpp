// Unit tests of the observability keys of the config: `accessLog`, `tracing` and a service's
// `debugHeaders`. Each rule with its exact line:column; paths resolved against the config file.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace revgate::config {
namespace {

// Inline YAML starts on the line after `R"(`: line numbers read as in an editor.
std::string_view strip_first_newline(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return yaml;
}

LoadResult load(std::string_view yaml, const std::string& source = "test.yaml") {
  return load_string(strip_first_newline(yaml), source);
}

std::string all_errors(const LoadResult& result) {
  if (result) return " (none)";
  std::string text;
  for (const ConfigError& error : result.error()) text += "\n  " + error.to_string();
  return text;
}

// Passes when loading `yaml` fails with exactly one error, breaking `rule` at line:column.
testing::AssertionResult only_error(std::string_view rule, int line, int column,
                                    std::string_view yaml,
                                    const std::string& source = "test.yaml") {
  LoadResult result = load(yaml, source);
  if (!result && result.error().size() == 1) {
    const ConfigError& error = result.error()[0];
    if (error.rule == rule && error.line == line && error.column == column) {
      return testing::AssertionSuccess();
    }
  }
  return testing::AssertionFailure() << "expected only " << source << ":" << line << ":" << column
                                     << " [" << rule << "], got:" << all_errors(result);
}

Config must_load(std::string_view yaml, const std::string& source = "test.yaml") {
  LoadResult result = load(yaml, source);
  EXPECT_TRUE(result.has_value()) << "errors:" << all_errors(result);
  return result ? *result : Config{};
}

// `yaml` with its one '@' replaced by `value`.
std::string fill(std::string_view yaml, std::string_view value) {
  std::size_t at = yaml.find('@');
  std::string text(yaml.substr(0, at));
  text += value;
  text += yaml.substr(at + 1);
  return text;
}

constexpr std::string_view kMinimal = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
)";

// ---- defaults ----

TEST(ObservabilityConfig, DefaultsAreOff) {
  Config config = must_load(kMinimal);
  EXPECT_FALSE(config.access_log.has_value());
  EXPECT_DOUBLE_EQ(config.tracing.sample_rate, 0.01);
  ASSERT_EQ(config.services.size(), 1u);
  EXPECT_FALSE(config.services[0].debug_headers);
}

// ---- accessLog ----

TEST(ObservabilityConfig, AccessLogToStdoutDefaultsToTextFormat) {
  Config config =
      must_load(std::string(strip_first_newline(kMinimal)) + "accessLog: {path: stdout}\n");
  ASSERT_TRUE(config.access_log.has_value());
  EXPECT_EQ(config.access_log->path, "stdout");
  EXPECT_EQ(config.access_log->format, AccessLogFormat::text);
  EXPECT_EQ(config.access_log->pos.line, 5);
  EXPECT_EQ(config.access_log->pos.column, 12);
}

TEST(ObservabilityConfig, AccessLogStderrJson) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  path: stderr
  format: json
)");
  ASSERT_TRUE(config.access_log.has_value());
  EXPECT_EQ(config.access_log->path, "stderr");
  EXPECT_EQ(config.access_log->format, AccessLogFormat::json);
}

TEST(ObservabilityConfig, AccessLogEmptyValueMeansOff) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
)");
  EXPECT_FALSE(config.access_log.has_value());
}

TEST(ObservabilityConfig, AccessLogNeedsPath) {
  EXPECT_TRUE(only_error("required", 2, 12, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog: {format: json}
)"));
  EXPECT_TRUE(only_error("required", 4, 3, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  format: json
  path:
)"));
}

TEST(ObservabilityConfig, AccessLogPathMustNotBeEmpty) {
  EXPECT_TRUE(only_error("access-log-path", 3, 9, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  path: ""
)"));
}

TEST(ObservabilityConfig, AccessLogPathMustBeAString) {
  EXPECT_TRUE(only_error("type", 3, 9, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  path: [a, b]
)"));
}

TEST(ObservabilityConfig, AccessLogDirectoryMustExist) {
  EXPECT_TRUE(only_error("access-log-path", 3, 9, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  path: /nonexistent-revgate-dir/access.log
)"));
  LoadResult result = load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog: {path: /nonexistent-revgate-dir/access.log}
)");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error()[0].to_string(),
            "test.yaml:2:19: accessLog path '/nonexistent-revgate-dir/access.log': directory "
            "'/nonexistent-revgate-dir' does not exist [access-log-path]");
}

TEST(ObservabilityConfig, AccessLogPathMustNotBeADirectory) {
  std::string tmp = std::filesystem::temp_directory_path().string();
  EXPECT_TRUE(only_error("access-log-path", 3, 9,
                         fill(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  path: @
)",
                              tmp)))
      << tmp;
}

TEST(ObservabilityConfig, AccessLogFormatIsJsonOrText) {
  for (std::string_view bad : {"JSON", "envoy", "\"\"", "1"}) {
    EXPECT_TRUE(only_error("access-log-format", 4, 11,
                           fill(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  path: stdout
  format: @
)",
                                bad)))
        << bad;
  }
  EXPECT_TRUE(only_error("type", 4, 11, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  path: stdout
  format: {a: b}
)"));
}

TEST(ObservabilityConfig, AccessLogUnknownKey) {
  EXPECT_TRUE(only_error("unknown-key", 4, 3, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  path: stdout
  fromat: json
)"));
  LoadResult result = load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog: {path: stdout, fromat: json}
)");
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error()[0].message.find("did you mean 'format'?"), std::string::npos)
      << result.error()[0].message;
}

TEST(ObservabilityConfig, AccessLogMustBeAMap) {
  EXPECT_TRUE(only_error("type", 2, 12, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog: stdout
)"));
}

class AccessLogInTempDir : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "revgate-obs-config-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

TEST_F(AccessLogInTempDir, RelativePathResolvesAgainstTheConfigDirectory) {
  std::filesystem::create_directory(dir_ / "logs");
  std::string source = (dir_ / "revgate.yaml").string();
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog: {path: logs/../logs/access.log, format: json}
)",
                            source);
  ASSERT_TRUE(config.access_log.has_value());
  EXPECT_EQ(config.access_log->path, (dir_ / "logs/access.log").string());
  EXPECT_FALSE(std::filesystem::exists(dir_ / "logs/access.log"));  // created when opened

  // A missing relative directory names both the written and the resolved path.
  LoadResult result = load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog:
  path: missing/access.log
)",
                           source);
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 1u);
  const ConfigError& error = result.error()[0];
  EXPECT_EQ(error.rule, "access-log-path");
  EXPECT_EQ(error.file, source);
  EXPECT_EQ(error.line, 3);
  EXPECT_EQ(error.column, 9);
  EXPECT_NE(
      error.message.find("'missing/access.log' (" + (dir_ / "missing/access.log").string() + ")"),
      std::string::npos)
      << error.message;
}

TEST_F(AccessLogInTempDir, LoadFileWithAccessLogBesideIt) {
  std::string path = (dir_ / "revgate.yaml").string();
  std::ofstream(path) << "listeners: [{name: http, address: \"127.0.0.1:0\"}]\n"
                         "accessLog: {path: access.log}\n";
  LoadResult result = load_file(path);
  ASSERT_TRUE(result.has_value()) << all_errors(result);
  ASSERT_TRUE(result->access_log.has_value());
  EXPECT_EQ(result->access_log->path, (dir_ / "access.log").string());
}

// ---- tracing ----

TEST(ObservabilityConfig, TracingSampleRate) {
  for (auto [text, value] : std::vector<std::pair<std::string_view, double>>{
           {"0", 0.0}, {"1", 1.0}, {"0.25", 0.25}, {"1e-3", 0.001}, {"+0.5", 0.5}, {"1.0", 1.0}}) {
    Config config = must_load(fill(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
tracing: {sampleRate: @}
)",
                                   text));
    EXPECT_DOUBLE_EQ(config.tracing.sample_rate, value) << text;
  }
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
tracing:
)");
  EXPECT_DOUBLE_EQ(config.tracing.sample_rate, 0.01);
}

TEST(ObservabilityConfig, TracingSampleRateOutOfRange) {
  for (std::string_view bad : {"1.5", "-0.1", "2", "1e400", "-1e-9", "nan", "inf"}) {
    EXPECT_TRUE(only_error("sample-rate", 3, 15,
                           fill(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
tracing:
  sampleRate: @
)",
                                bad)))
        << bad;
  }
  LoadResult result = load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
tracing: {sampleRate: 1.5}
)");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error()[0].to_string(),
            "test.yaml:2:23: sampleRate must be a number from 0 to 1, got '1.5' [sample-rate]");
}

TEST(ObservabilityConfig, TracingSampleRateMustBeANumber) {
  for (std::string_view bad : {"\"0.5\"", "half", "0.5x", "0x1", "[0.5]", "1%"}) {
    EXPECT_TRUE(only_error("type", 3, 15,
                           fill(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
tracing:
  sampleRate: @
)",
                                bad)))
        << bad;
  }
}

TEST(ObservabilityConfig, TracingUnknownKey) {
  EXPECT_TRUE(only_error("unknown-key", 3, 3, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
tracing:
  sampleRatio: 0.5
)"));
}

// ---- debugHeaders ----

TEST(ObservabilityConfig, DebugHeaders) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    debugHeaders: true
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
  - name: bye
    debugHeaders: false
    revisions: [{name: bye-1, endpoints: ["127.0.0.1:9002"]}]
)");
  ASSERT_EQ(config.services.size(), 2u);
  EXPECT_TRUE(config.services[0].debug_headers);
  EXPECT_FALSE(config.services[1].debug_headers);
}

TEST(ObservabilityConfig, DebugHeadersIsABoolean) {
  for (std::string_view bad : {"yes", "1", "\"true\"", "on"}) {
    EXPECT_TRUE(only_error("type", 4, 19,
                           fill(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    debugHeaders: @
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
)",
                                bad)))
        << bad;
  }
}

TEST(ObservabilityConfig, EveryErrorInOnePass) {
  LoadResult result = load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
accessLog: {path: "", format: xml}
tracing: {sampleRate: 3}
services:
  - name: hello
    debugHeaders: maybe
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
)");
  ASSERT_FALSE(result.has_value());
  std::vector<std::string> rules;
  for (const ConfigError& error : result.error()) rules.push_back(error.rule);
  EXPECT_EQ(rules, (std::vector<std::string>{"access-log-path", "access-log-format", "sample-rate",
                                             "type"}))
      << all_errors(result);
}

}  // namespace
}  // namespace revgate::config
