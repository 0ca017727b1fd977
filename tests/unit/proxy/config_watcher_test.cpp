// Unit tests of ConfigWatcher with real inotify in a temporary directory: each way a config file
// gets replaced (in place, rename over, vim's backup dance, a ConfigMap's ..data swap, a file
// linked from elsewhere) is seen once; what does not change the file is not.
#include "proxy/config_watcher.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace revgate::proxy {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

void write(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

class ConfigWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/revgate-watch-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Starts watching `path`, marked as loaded now.
  void watch(const fs::path& path) {
    auto created = ConfigWatcher::create(
        io_, path.string(), [this] { ++changes_; }, 20ms);
    ASSERT_TRUE(created.has_value()) << created.error();
    watcher_ = std::move(*created);
    watcher_->mark();
  }

  // Runs the loop for `time` (events, then the settle timer) and returns the changes seen.
  int run_for(std::chrono::milliseconds time = 300ms) {
    io_.restart();
    io_.run_for(time);
    const int seen = changes_;
    changes_ = 0;
    return seen;
  }

  fs::path dir_;
  boost::asio::io_context io_;
  std::unique_ptr<ConfigWatcher> watcher_;
  int changes_ = 0;
};

TEST_F(ConfigWatcherTest, AnInPlaceRewriteIsOneChange) {
  const auto file = dir_ / "revgate.yaml";
  write(file, "a: 1\n");
  watch(file);
  write(file, "a: 2\n");
  EXPECT_EQ(run_for(), 1);
  EXPECT_EQ(run_for(), 0) << "nothing more happened";
}

TEST_F(ConfigWatcherTest, AnEditorsRenameOverIsOneChange) {
  const auto file = dir_ / "revgate.yaml";
  write(file, "a: 1\n");
  watch(file);
  write(dir_ / ".revgate.yaml.swp", "junk");  // editor noise beside it
  write(dir_ / "revgate.yaml.tmp", "a: 2\n");
  fs::rename(dir_ / "revgate.yaml.tmp", file);
  EXPECT_EQ(run_for(), 1);
}

TEST_F(ConfigWatcherTest, VimsBackupThenWriteIsOneChange) {
  const auto file = dir_ / "revgate.yaml";
  write(file, "a: 1\n");
  watch(file);
  fs::rename(file, dir_ / "revgate.yaml~");  // backupcopy=no: the original moves away ...
  write(file, "a: 2\n");                     // ... and a new file is written in its place
  fs::remove(dir_ / "revgate.yaml~");
  EXPECT_EQ(run_for(), 1);
}

TEST_F(ConfigWatcherTest, OtherFilesInTheDirectoryAreNotAChange) {
  const auto file = dir_ / "revgate.yaml";
  write(file, "a: 1\n");
  watch(file);
  write(dir_ / "other.yaml", "b: 1\n");
  write(dir_ / "revgate.state.json", "{}");
  fs::rename(dir_ / "revgate.state.json", dir_ / "renamed.json");
  EXPECT_EQ(run_for(), 0);
}

TEST_F(ConfigWatcherTest, AChangeAlreadyLoadedIsNotSeenAgain) {
  const auto file = dir_ / "revgate.yaml";
  write(file, "a: 1\n");
  watch(file);
  write(file, "a: 2\n");
  watcher_->mark();  // another trigger (SIGHUP, POST /reload) loaded it first
  EXPECT_EQ(run_for(), 0);
}

TEST_F(ConfigWatcherTest, AConfigMapDataSwapIsOneChange) {
  // kubelet's layout: revgate.yaml -> ..data/revgate.yaml, ..data -> ..<timestamp>.
  fs::create_directory(dir_ / "..2026_12_07_01");
  write(dir_ / "..2026_12_07_01" / "revgate.yaml", "a: 1\n");
  fs::create_directory_symlink("..2026_12_07_01", dir_ / "..data");
  fs::create_symlink("..data/revgate.yaml", dir_ / "revgate.yaml");
  watch(dir_ / "revgate.yaml");
  // The swap: a new timestamped directory, a ..data_tmp link to it renamed over ..data, then
  // the old directory removed.
  fs::create_directory(dir_ / "..2026_12_07_02");
  write(dir_ / "..2026_12_07_02" / "revgate.yaml", "a: 2\n");
  fs::create_directory_symlink("..2026_12_07_02", dir_ / "..data_tmp");
  fs::rename(dir_ / "..data_tmp", dir_ / "..data");
  fs::remove_all(dir_ / "..2026_12_07_01");
  EXPECT_EQ(run_for(), 1);
  // Twice: the watch follows the new directory.
  fs::create_directory(dir_ / "..2026_12_07_03");
  write(dir_ / "..2026_12_07_03" / "revgate.yaml", "a: 3\n");
  fs::create_directory_symlink("..2026_12_07_03", dir_ / "..data_tmp");
  fs::rename(dir_ / "..data_tmp", dir_ / "..data");
  EXPECT_EQ(run_for(), 1);
}

TEST_F(ConfigWatcherTest, AFileLinkedFromElsewhereIsWatchedWhereItLives) {
  fs::create_directory(dir_ / "real");
  fs::create_directory(dir_ / "etc");
  write(dir_ / "real" / "prod.yaml", "a: 1\n");
  fs::create_symlink(dir_ / "real" / "prod.yaml", dir_ / "etc" / "revgate.yaml");
  watch(dir_ / "etc" / "revgate.yaml");
  write(dir_ / "real" / "prod.yaml.new", "a: 2\n");
  fs::rename(dir_ / "real" / "prod.yaml.new", dir_ / "real" / "prod.yaml");
  EXPECT_EQ(run_for(), 1);
}

TEST_F(ConfigWatcherTest, AFileThatIsGoneIsNoChangeUntilItComesBack) {
  const auto file = dir_ / "revgate.yaml";
  write(file, "a: 1\n");
  watch(file);
  fs::remove(file);
  EXPECT_EQ(run_for(), 0) << "no file, no reload: the running config stays";
  write(file, "a: 2\n");
  EXPECT_EQ(run_for(), 1);
}

}  // namespace
}  // namespace revgate::proxy
