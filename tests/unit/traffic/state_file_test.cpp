// Unit tests of traffic/state_file: the JSON document (round trip, layout, every kind of
// malformed file and its message) and its atomic replacement on a real file system, in a fresh
// temporary directory per test.
#include "traffic/state_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>

namespace revgate::traffic {
namespace {

namespace fs = std::filesystem;

config::TrafficTarget target(std::string revision, bool latest, int percent, std::string tag = "") {
  config::TrafficTarget t;
  t.revision_name = std::move(revision);
  t.latest_revision = latest;
  t.percent = percent;
  t.tag = std::move(tag);
  return t;
}

Rollout rollout(std::string tag, int percent, std::vector<RevisionShare> shares) {
  Rollout r;
  r.tag = std::move(tag);
  r.percent = percent;
  r.revisions = std::move(shares);
  r.start_ms = 1'700'000'000'000;
  r.next_step_ms = 1'700'000'003'020;
  r.step_duration_ms = 3020;
  r.step_size = 1;
  return r;
}

// Overlays with tags and latestRevision targets, rollouts with step params, services out of
// order (the file sorts them).
State sample() {
  State state;
  Overlay shop;
  shop.namespace_name = "prod";
  shop.service = "shop";
  shop.traffic = {target("", true, 80, "current"), target("shop-a", false, 20, "old")};
  shop.base = {target("", true, 100)};
  shop.updated_ms = 1'700'000'000'123;
  Overlay hello;
  hello.service = "hello";
  hello.traffic = {};  // Knative's default route
  hello.base = {target("hello-00001", false, 90), target("hello-00002", false, 10, "canary")};
  hello.updated_ms = 42;
  state.overlays = {shop, hello};
  state.rollouts = {{"prod", "shop", {rollout("current", 80, {{"shop-a", 60}, {"shop-b", 20}})}},
                    {"default",
                     "api",
                     {rollout("", 90, {{"api-1", 50}, {"api-2", 30}, {"api-3", 10}}),
                      rollout("beta", 10, {{"api-2", 9}, {"api-3", 1}})}}};
  return state;
}

// The same state in the file's order: services sorted, overlays and rollouts by service.
State sorted(State state) {
  std::ranges::sort(state.overlays, {},
                    [](const Overlay& o) { return std::tie(o.namespace_name, o.service); });
  std::ranges::sort(state.rollouts, {},
                    [](const ServiceRollouts& s) { return std::tie(s.namespace_name, s.service); });
  return state;
}

TEST(StateText, RoundTripsEveryField) {
  const State state = sample();
  const std::string text = format_state(state);
  auto parsed = parse_state(text, "s.json");
  ASSERT_TRUE(parsed.has_value()) << parsed.error() << "\n" << text;
  EXPECT_EQ(*parsed, sorted(state));
  EXPECT_EQ(format_state(*parsed), text);  // stable
}

TEST(StateText, IsIndentedSortedAndInKnativesSpelling) {
  State state;
  Overlay b;
  b.service = "b";
  b.traffic = {target("", true, 70), target("b-1", false, 30, "old")};
  b.base = {target("", true, 100)};
  b.updated_ms = 7;
  Overlay a = b;
  a.service = "a";
  state.overlays = {b, a};
  state.rollouts = {{"default", "b", {rollout("", 70, {{"b-1", 69}, {"b-2", 1}})}}};
  EXPECT_EQ(format_state(state), R"({
  "version": 1,
  "services": [
    {
      "namespace": "default",
      "name": "a",
      "overlay": {
        "traffic": [
          {"latestRevision": true, "percent": 70},
          {"revisionName": "b-1", "percent": 30, "tag": "old"}
        ],
        "base": [
          {"latestRevision": true, "percent": 100}
        ],
        "updatedMs": 7
      }
    },
    {
      "namespace": "default",
      "name": "b",
      "overlay": {
        "traffic": [
          {"latestRevision": true, "percent": 70},
          {"revisionName": "b-1", "percent": 30, "tag": "old"}
        ],
        "base": [
          {"latestRevision": true, "percent": 100}
        ],
        "updatedMs": 7
      },
      "rollouts": [
        {
          "percent": 70,
          "revisions": [
            {"revisionName": "b-1", "percent": 69},
            {"revisionName": "b-2", "percent": 1}
          ],
          "stepParams": {
            "startTimeMs": 1700000000000,
            "nextStepTimeMs": 1700000003020,
            "stepDurationMs": 3020,
            "stepSize": 1
          }
        }
      ]
    }
  ]
}
)");
}

TEST(StateText, EmptyState) {
  EXPECT_EQ(format_state(State{}), "{\n  \"version\": 1,\n  \"services\": []\n}\n");
  auto parsed = parse_state(format_state(State{}), "s.json");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, State{});
}

// A valid document with one substitution, so that each case shows exactly what is wrong.
constexpr std::string_view kValid = R"({
  "version": 1,
  "services": [
    {
      "namespace": "default",
      "name": "hello",
      "overlay": {
        "traffic": [{"revisionName": "hello-1", "percent": 100, "tag": "t"}],
        "base": [{"latestRevision": true, "percent": 100}],
        "updatedMs": 5
      },
      "rollouts": [
        {
          "tag": "x",
          "percent": 50,
          "revisions": [{"revisionName": "hello-1", "percent": 40}, {"revisionName": "hello-2", "percent": 10}],
          "stepParams": {"startTimeMs": 1, "nextStepTimeMs": 2, "stepDurationMs": 3, "stepSize": 4}
        }
      ]
    }
  ]
})";

struct MalformedCase {
  const char* name;
  std::string_view from;  // replaced in kValid (must occur)
  std::string_view to;
  const char* message;  // what the error must say after "s.json"
};

class MalformedState : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedState, IsRefusedWithWhatAndWhere) {
  const MalformedCase& c = GetParam();
  std::string text(kValid);
  const auto at = text.find(c.from);
  ASSERT_NE(at, std::string::npos) << c.from;
  text.replace(at, c.from.size(), c.to);
  auto parsed = parse_state(text, "s.json");
  ASSERT_FALSE(parsed.has_value()) << text;
  EXPECT_EQ(parsed.error(), std::string("s.json") + c.message);
}

INSTANTIATE_TEST_SUITE_P(
    Every, MalformedState,
    ::testing::Values(
        MalformedCase{"not_json", "\"version\": 1,", "\"version\": 1,,",
                      ":2:16: not valid JSON: syntax error"},
        MalformedCase{"truncated", "  ]\n}", "  ]\n", ":22:1: not valid JSON: incomplete JSON"},
        MalformedCase{"trailing_garbage", "  ]\n}", "  ]\n} x",
                      ":22:3: not valid JSON: extra data"},
        MalformedCase{"version_missing", "\"version\": 1,", "", ": \"version\" is required"},
        MalformedCase{"version_other", "\"version\": 1,", "\"version\": 2,",
                      ": version: unsupported version 2 (this revgate reads version 1)"},
        MalformedCase{"version_string", "\"version\": 1,", "\"version\": \"1\",",
                      ": version: unsupported version \"1\" (this revgate reads version 1)"},
        MalformedCase{"unknown_top_key", "\"version\": 1,", "\"version\": 1, \"extra\": 0,",
                      ": unknown key \"extra\""},
        MalformedCase{"services_misspelt", "\"services\"", "\"servicez\"",
                      ": unknown key \"servicez\""},
        MalformedCase{"unknown_service_key", "\"name\": \"hello\",",
                      "\"name\": \"hello\", \"debug\": true,",
                      ": services[0]: unknown key \"debug\""},
        MalformedCase{"namespace_missing", "\"namespace\": \"default\",", "",
                      ": services[0]: \"namespace\" is required"},
        MalformedCase{"name_empty", "\"name\": \"hello\"", "\"name\": \"\"",
                      ": services[0].name: must not be empty"},
        MalformedCase{"name_number", "\"name\": \"hello\"", "\"name\": 7",
                      ": services[0].name: expected a string, got a number"},
        MalformedCase{"traffic_not_array",
                      "\"traffic\": [{\"revisionName\": \"hello-1\", "
                      "\"percent\": 100, \"tag\": \"t\"}]",
                      "\"traffic\": null",
                      ": services[0].overlay.traffic: expected an array, got null"},
        MalformedCase{"target_unknown_key", "\"tag\": \"t\"", "\"tags\": \"t\"",
                      ": services[0].overlay.traffic[0]: unknown key \"tags\""},
        MalformedCase{"percent_string", "\"percent\": 100, \"tag\"",
                      "\"percent\": \"100\", \"tag\"",
                      ": services[0].overlay.traffic[0].percent: expected an integer from 0 to "
                      "100, got a string"},
        MalformedCase{"percent_range", "\"percent\": 100, \"tag\"", "\"percent\": 120, \"tag\"",
                      ": services[0].overlay.traffic[0].percent: expected an integer from 0 to "
                      "100, got 120"},
        MalformedCase{"percent_fraction", "\"percent\": 100, \"tag\"", "\"percent\": 99.5, \"tag\"",
                      ": services[0].overlay.traffic[0].percent: expected an integer from 0 to "
                      "100, got 99.5"},
        MalformedCase{"percent_missing", "\"percent\": 100, \"tag\"", "\"tag\"",
                      ": services[0].overlay.traffic[0]: \"percent\" is required"},
        MalformedCase{"latest_not_bool", "\"latestRevision\": true", "\"latestRevision\": \"yes\"",
                      ": services[0].overlay.base[0].latestRevision: expected a boolean, got a "
                      "string"},
        MalformedCase{"base_missing", "\"base\"", "\"bass\"",
                      ": services[0].overlay: unknown key \"bass\""},
        MalformedCase{"updated_negative", "\"updatedMs\": 5", "\"updatedMs\": -5",
                      ": services[0].overlay.updatedMs: expected an integer of at least 0, got -5"},
        MalformedCase{"neither_overlay_nor_rollouts", "\"name\": \"hello\",",
                      "\"name\": \"hello\"}, {\"namespace\": \"default\", \"name\": \"x\",",
                      ": services[0]: has neither \"overlay\" nor \"rollouts\""},
        MalformedCase{"rollout_unknown_key", "\"tag\": \"x\",", "\"tag\": \"x\", \"deadline\": 0,",
                      ": services[0].rollouts[0]: unknown key \"deadline\""},
        MalformedCase{
            "rollout_one_revision", ", {\"revisionName\": \"hello-2\", \"percent\": 10}]", "]",
            ": services[0].rollouts[0]: a rollout in progress has at least two revisions"},
        MalformedCase{"rollout_sum", "\"percent\": 40}", "\"percent\": 41}",
                      ": services[0].rollouts[0]: the revisions' percents sum to 51, not the "
                      "rollout's percent 50"},
        MalformedCase{"rollout_zero_share",
                      "\"percent\": 40}, {\"revisionName\": \"hello-2\", "
                      "\"percent\": 10}",
                      "\"percent\": 50}, {\"revisionName\": \"hello-2\", \"percent\": 0}",
                      ": services[0].rollouts[0]: revision \"hello-2\" has 0%; a share in a "
                      "rollout has at least 1%"},
        MalformedCase{"rollout_duplicate_revision", "\"revisionName\": \"hello-2\"",
                      "\"revisionName\": \"hello-1\"",
                      ": services[0].rollouts[0]: revision \"hello-1\" is listed twice"},
        MalformedCase{"rollout_revision_unnamed", "\"revisionName\": \"hello-2\"",
                      "\"revisionName\": \"\"",
                      ": services[0].rollouts[0].revisions[1].revisionName: must not be empty"},
        MalformedCase{"step_size_zero", "\"stepSize\": 4", "\"stepSize\": 0",
                      ": services[0].rollouts[0]: stepSize must be at least 1"},
        MalformedCase{"step_duration_zero", "\"stepDurationMs\": 3", "\"stepDurationMs\": 0",
                      ": services[0].rollouts[0]: stepDurationMs must be at least 1"},
        MalformedCase{"step_params_missing_key", "\"startTimeMs\": 1, ", "",
                      ": services[0].rollouts[0].stepParams: \"startTimeMs\" is required"},
        MalformedCase{"step_params_huge", "\"nextStepTimeMs\": 2", "\"nextStepTimeMs\": 1e300",
                      ": services[0].rollouts[0].stepParams.nextStepTimeMs: expected an integer "
                      "of at least 0, got 1e+300"},
        MalformedCase{"duplicate_service",
                      "\"namespace\": \"default\",\n      \"name\": \"hello\",",
                      "\"namespace\": \"default\", \"name\": \"hello\", \"overlay\": {\"traffic\": "
                      "[], \"base\": [], \"updatedMs\": 0}}, {\"namespace\": \"default\", "
                      "\"name\": \"hello\",",
                      ": services[1]: two overlays for service default/hello"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(StateText, TopLevelMustBeAnObject) {
  auto parsed = parse_state("[1]", "s.json");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error(), "s.json: expected an object, got an array");
}

TEST(StateText, EmptyRolloutsListIsRefused) {
  std::string text(kValid);
  const auto from = text.find("\"rollouts\": [");
  text.replace(from, text.find("\n  ]\n}") - from, "\"rollouts\": []\n    }");
  auto parsed = parse_state(text, "s.json");
  ASSERT_FALSE(parsed.has_value()) << text;
  EXPECT_EQ(parsed.error(), "s.json: services[0].rollouts: is empty (leave it out)");
}

TEST(StateText, TwoRolloutsForOneTagAreRefused) {
  State state;
  state.rollouts = {{"default", "a", {rollout("", 50, {{"a-1", 49}, {"a-2", 1}})}}};
  std::string text = format_state(state);
  // The same rollout twice in the list.
  const auto start = text.find("        {\n          \"percent\"");
  const auto end = text.find("\n      ]");
  const std::string one = text.substr(start, end - start);
  text.insert(end, ",\n" + one);
  auto parsed = parse_state(text, "s.json");
  ASSERT_FALSE(parsed.has_value()) << text;
  EXPECT_EQ(parsed.error(), "s.json: services[0]: service default/a has two rollouts for tag \"\"");
}

// ---- the file ----

class StateFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "revgate-traffic-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "revgate.state.json").string();
    tmp_ = path_ + ".tmp";
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, ec);
    fs::remove_all(dir_, ec);
  }

  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  static void write(const std::string& path, std::string_view text) {
    std::ofstream(path, std::ios::binary) << text;
  }
  static ino_t inode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_ino;
  }

  fs::path dir_;
  std::string path_;
  std::string tmp_;
};

TEST_F(StateFile, MissingFileIsAnEmptyState) {
  auto loaded = load_state(path_);
  ASSERT_TRUE(loaded.has_value()) << loaded.error();
  EXPECT_EQ(*loaded, State{});
  EXPECT_FALSE(fs::exists(path_));  // loading creates nothing
}

TEST_F(StateFile, SaveThenLoadRoundTrips) {
  ASSERT_TRUE(save_state(path_, sample()).has_value());
  EXPECT_EQ(read(path_), format_state(sample()));
  EXPECT_FALSE(fs::exists(tmp_));
  auto loaded = load_state(path_);
  ASSERT_TRUE(loaded.has_value()) << loaded.error();
  EXPECT_EQ(*loaded, sorted(sample()));
}

TEST_F(StateFile, LoadErrorsNameTheFile) {
  write(path_, "{\"version\": 1, \"services\": 3}");
  auto loaded = load_state(path_);
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error(), path_ + ": services: expected an array, got a number");
}

TEST_F(StateFile, UnreadablePathIsAnErrorNotAnEmptyState) {
  fs::create_directory(path_);  // a directory where the file should be
  auto loaded = load_state(path_);
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error(), "cannot read " + path_ + ": Is a directory");

  const std::string file = (dir_ / "plain").string();
  write(file, "x");
  loaded = load_state(file + "/revgate.state.json");
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error(), "cannot open " + file + "/revgate.state.json: Not a directory");
}

TEST_F(StateFile, SaveIntoAMissingDirectoryFailsAndCreatesNothing) {
  const std::string missing = (dir_ / "nope" / "revgate.state.json").string();
  auto saved = save_state(missing, sample());
  ASSERT_FALSE(saved.has_value());
  EXPECT_EQ(saved.error(),
            "cannot save " + missing + ": create " + missing + ".tmp: No such file or directory");
  EXPECT_FALSE(fs::exists(dir_ / "nope"));
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(StateFile, SaveUnderAFileFailsAndCreatesNothing) {
  const std::string file = (dir_ / "plain").string();
  write(file, "x");
  const std::string under = file + "/revgate.state.json";
  auto saved = save_state(under, sample());
  ASSERT_FALSE(saved.has_value());
  EXPECT_NE(saved.error().find("cannot save " + under), std::string::npos) << saved.error();
  EXPECT_NE(saved.error().find("Not a directory"), std::string::npos) << saved.error();
  EXPECT_EQ(read(file), "x");
}

TEST_F(StateFile, SaveReplacesTheFileAtomically) {
  State first;
  first.overlays = {sample().overlays[1]};
  ASSERT_TRUE(save_state(path_, first).has_value());
  const std::string old_text = read(path_);
  const ino_t old_inode = inode(path_);
  // A reader that opened the old file before the save.
  const int reader = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(reader, 0);

  ASSERT_TRUE(save_state(path_, sample()).has_value());
  EXPECT_NE(inode(path_), old_inode);  // a new file renamed over it: the old one is not written
  EXPECT_EQ(read(path_), format_state(sample()));
  std::string seen(old_text.size() + 4096, '\0');
  const ssize_t n = ::pread(reader, seen.data(), seen.size(), 0);
  ::close(reader);
  ASSERT_GE(n, 0);
  seen.resize(static_cast<std::size_t>(n));
  EXPECT_EQ(seen, old_text);  // still the old complete content
  EXPECT_FALSE(fs::exists(tmp_));
}

TEST_F(StateFile, LeftoverTemporaryFileIsIgnoredByLoadAndReplacedBySave) {
  ASSERT_TRUE(save_state(path_, sample()).has_value());
  write(tmp_, "{\"version\": 1, \"serv");  // a crash in the middle of an earlier save
  auto loaded = load_state(path_);
  ASSERT_TRUE(loaded.has_value()) << loaded.error();
  EXPECT_EQ(*loaded, sorted(sample()));

  ASSERT_TRUE(save_state(path_, State{}).has_value());
  EXPECT_FALSE(fs::exists(tmp_));
  loaded = load_state(path_);
  ASSERT_TRUE(loaded.has_value()) << loaded.error();
  EXPECT_EQ(*loaded, State{});
}

TEST_F(StateFile, LeftoverTemporarySymlinkIsNotWrittenThrough) {
  const std::string victim = (dir_ / "victim").string();
  write(victim, "keep me");
  fs::create_symlink(victim, tmp_);
  ASSERT_TRUE(save_state(path_, sample()).has_value());
  EXPECT_EQ(read(victim), "keep me");
  EXPECT_EQ(read(path_), format_state(sample()));
}

TEST_F(StateFile, FailedSaveLeavesThePreviousFileAsItWas) {
  ASSERT_TRUE(save_state(path_, sample()).has_value());
  const std::string before = read(path_);
  const ino_t before_inode = inode(path_);
  // Something that is not a leftover file holds the temporary name: works as root too.
  fs::create_directory(tmp_);
  write(tmp_ + "/inside", "x");

  auto saved = save_state(path_, State{});
  ASSERT_FALSE(saved.has_value());
  EXPECT_EQ(saved.error(), "cannot save " + path_ + ": remove " + tmp_ + ": Is a directory");
  EXPECT_EQ(read(path_), before);
  EXPECT_EQ(inode(path_), before_inode);
  EXPECT_TRUE(fs::exists(tmp_ + "/inside"));  // not ours: not removed
}

TEST_F(StateFile, WriteFailureRemovesTheTemporaryFileAndKeepsThePrevious) {
  ASSERT_TRUE(save_state(path_, State{}).has_value());
  const std::string before = read(path_);
  // A file size limit below the document's size: write(2) fails with EFBIG midway.
  const std::string text = format_state(sample());
  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  struct rlimit limit = old_limit;
  limit.rlim_cur = text.size() / 2;
  const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  auto saved = save_state(path_, sample());
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(saved.has_value());
  EXPECT_EQ(saved.error(), "cannot save " + path_ + ": write " + tmp_ + ": File too large");
  EXPECT_FALSE(fs::exists(tmp_));
  EXPECT_EQ(read(path_), before);
}

TEST_F(StateFile, ReadOnlyDirectoryFailsAndKeepsThePrevious) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into read-only directories";
  ASSERT_TRUE(save_state(path_, sample()).has_value());
  const std::string before = read(path_);
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  auto saved = save_state(path_, State{});
  fs::permissions(dir_, fs::perms::owner_all);
  ASSERT_FALSE(saved.has_value());
  EXPECT_EQ(saved.error(), "cannot save " + path_ + ": create " + tmp_ + ": Permission denied");
  EXPECT_EQ(read(path_), before);
  EXPECT_FALSE(fs::exists(tmp_));
}

TEST_F(StateFile, StateThatLoadWouldRefuseIsNotSaved) {
  ASSERT_TRUE(save_state(path_, sample()).has_value());
  const std::string before = read(path_);
  State twice = sample();
  twice.overlays.push_back(twice.overlays[0]);
  auto saved = save_state(path_, twice);
  ASSERT_FALSE(saved.has_value());
  EXPECT_EQ(saved.error(), "not saving " + path_ + ": two overlays for service prod/shop");
  State inconsistent = sample();
  inconsistent.rollouts[0].rollouts[0].revisions[0].percent += 1;
  EXPECT_FALSE(save_state(path_, inconsistent).has_value());
  EXPECT_EQ(read(path_), before);
}

}  // namespace
}  // namespace revgate::traffic
