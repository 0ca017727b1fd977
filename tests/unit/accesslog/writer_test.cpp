// Unit tests of the access log's path to its file: WorkerLogs on several threads and the
// background Writer (every line exactly once, in per-worker order), a sink that never drains
// (append never blocks, drops are counted), flush at stop, reopen for rotation, open errors.
#include "accesslog/writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace revgate::accesslog {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

config::AccessLog log_config(std::string path,
                             config::AccessLogFormat format = config::AccessLogFormat::text) {
  config::AccessLog config;
  config.path = std::move(path);
  config.format = format;
  return config;
}

class AccessLogFile : public testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);  // as the revgate binary does
    std::string pattern =
        (std::filesystem::temp_directory_path() / "revgate-accesslog-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Writer> open(const std::string& name, config::AccessLogFormat format,
                               WriterOptions options = {}) {
    auto writer = Writer::create(log_config((dir_ / name).string(), format), options);
    EXPECT_TRUE(writer.has_value()) << (writer ? "" : writer.error());
    return writer ? std::move(*writer) : nullptr;
  }

  std::vector<std::string> lines_of(const std::string& name) {
    std::ifstream in(dir_ / name);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  std::filesystem::path dir_;
};

Entry entry_with_id(std::string_view request_id) {
  Entry entry;
  entry.start_time = std::chrono::system_clock::now();
  entry.method = "GET";
  entry.path = "/some/path?with=query";
  entry.protocol = "HTTP/1.1";
  entry.response_code = 200;
  entry.bytes_sent = 1234;
  entry.duration_ms = 2;
  entry.upstream_service_time_ms = 1;
  entry.upstream_host = "127.0.0.1:9001";
  entry.service = "hello";
  entry.namespace_name = "default";
  entry.revision = "hello-00001";
  entry.authority = "hello.default.example.com";
  entry.user_agent = "test/1.0";
  entry.request_id = request_id;
  return entry;
}

TEST_F(AccessLogFile, TwoWorkersEveryLineOnceInOrder) {
  auto writer = open("access.log", config::AccessLogFormat::json);
  ASSERT_NE(writer, nullptr);
  constexpr int kWorkers = 2;
  constexpr int kLines = 20'000;
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&writer, w] {
      WorkerLog log(*writer, /*flush_bytes=*/4096);  // many hand-offs
      char id[32];
      for (int i = 0; i < kLines; ++i) {
        int n = std::snprintf(id, sizeof id, "w%d-%d", w, i);
        log.append(entry_with_id(std::string_view(id, n)));
        if (i % 1000 == 0) log.flush();  // as the worker's sweep does
      }
    });  // ~WorkerLog flushes the rest
  }
  for (std::thread& t : workers) t.join();
  writer->stop();
  EXPECT_EQ(writer->dropped_lines(), 0u);
  EXPECT_EQ(writer->write_errors(), 0u);
  EXPECT_EQ(writer->queued_bytes(), 0u);

  std::vector<std::string> lines = lines_of("access.log");
  ASSERT_EQ(lines.size(), std::size_t(kWorkers * kLines));
  int next[kWorkers] = {};
  for (const std::string& line : lines) {
    json::value value = json::parse(line);
    std::string id(value.at("request_id").as_string());
    int w = -1;
    int i = -1;
    ASSERT_EQ(std::sscanf(id.c_str(), "w%d-%d", &w, &i), 2) << line;
    ASSERT_TRUE(w >= 0 && w < kWorkers) << line;
    ASSERT_EQ(i, next[w]) << "worker " << w << " out of order or duplicated";
    ++next[w];
    ASSERT_EQ(value.at("revision"), "hello-00001");
  }
  for (int w = 0; w < kWorkers; ++w) EXPECT_EQ(next[w], kLines);
}

TEST_F(AccessLogFile, StopWritesEverythingQueued) {
  auto writer = open("access.log", config::AccessLogFormat::text);
  ASSERT_NE(writer, nullptr);
  {
    WorkerLog log(*writer);  // 64 KiB threshold: these stay buffered until flush
    for (int i = 0; i < 100; ++i) log.append(entry_with_id(std::to_string(i)));
    EXPECT_GT(log.buffered_bytes(), 0u);
    log.flush();
    EXPECT_EQ(log.buffered_bytes(), 0u);
    writer->stop();
    // A flush that comes after stop() is still written (on the caller's thread).
    log.append(entry_with_id("late"));
  }
  std::vector<std::string> lines = lines_of("access.log");
  ASSERT_EQ(lines.size(), 101u);
  EXPECT_NE(lines[0].find("\"0\" \"hello.default.example.com\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[100].find("\"late\""), std::string::npos) << lines[100];
  writer->stop();  // idempotent
}

TEST_F(AccessLogFile, DestroyingTheWriterStopsIt) {
  {
    auto writer = open("access.log", config::AccessLogFormat::json);
    ASSERT_NE(writer, nullptr);
    WorkerLog log(*writer);
    for (int i = 0; i < 10; ++i) log.append(entry_with_id(std::to_string(i)));
  }  // ~WorkerLog flushes, then ~Writer writes and joins
  EXPECT_EQ(lines_of("access.log").size(), 10u);
}

TEST_F(AccessLogFile, AppendsToAnExistingFileWithMode0644) {
  std::ofstream(dir_ / "access.log") << "an older line\n";
  {
    auto writer = open("access.log", config::AccessLogFormat::text);
    ASSERT_NE(writer, nullptr);
    WorkerLog log(*writer);
    log.append(entry_with_id("x"));
  }
  auto lines = lines_of("access.log");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "an older line");

  {
    auto writer = open("new.log", config::AccessLogFormat::text);
    ASSERT_NE(writer, nullptr);
  }
  auto perms = std::filesystem::status(dir_ / "new.log").permissions();
  mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(static_cast<mode_t>(perms), 0644 & ~mask);
}

TEST_F(AccessLogFile, ReopenForRotation) {
  auto writer = open("access.log", config::AccessLogFormat::json);
  ASSERT_NE(writer, nullptr);
  WorkerLog log(*writer);
  log.append(entry_with_id("before"));
  log.flush();
  // Wait until the thread has written it, as a rotation script would not know either: the
  // rename happens whenever; lines before it land in the old file, after reopen in the new one.
  for (int i = 0; i < 500 && writer->queued_bytes() > 0; ++i) std::this_thread::sleep_for(2ms);
  std::filesystem::rename(dir_ / "access.log", dir_ / "access.log.1");
  ASSERT_TRUE(writer->reopen().has_value());
  log.append(entry_with_id("after"));
  log.flush();
  writer->stop();
  auto old_lines = lines_of("access.log.1");
  auto new_lines = lines_of("access.log");
  ASSERT_EQ(old_lines.size(), 1u);
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_EQ(json::parse(old_lines[0]).at("request_id"), "before");
  EXPECT_EQ(json::parse(new_lines[0]).at("request_id"), "after");
}

TEST_F(AccessLogFile, ReopenErrorKeepsTheOldFile) {
  std::filesystem::create_directory(dir_ / "logs");
  config::AccessLog config = log_config((dir_ / "logs/access.log").string());
  auto writer = Writer::create(config);
  ASSERT_TRUE(writer.has_value());
  std::filesystem::rename(dir_ / "logs", dir_ / "gone");
  auto reopened = (*writer)->reopen();
  ASSERT_FALSE(reopened.has_value());
  EXPECT_NE(reopened.error().find(config.path), std::string::npos) << reopened.error();
  WorkerLog log(**writer);
  log.append(entry_with_id("still"));
  log.flush();
  (*writer)->stop();
  std::ifstream in(dir_ / "gone/access.log");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_NE(line.find("\"still\""), std::string::npos);
}

TEST_F(AccessLogFile, OpenErrorsNameThePath) {
  config::AccessLog missing = log_config((dir_ / "no/such/dir/access.log").string());
  auto writer = Writer::create(missing);
  ASSERT_FALSE(writer.has_value());
  EXPECT_EQ(writer.error(),
            "cannot open access log '" + missing.path + "': No such file or directory");

  writer = Writer::create(log_config(dir_.string()));
  ASSERT_FALSE(writer.has_value());
  EXPECT_NE(writer.error().find(dir_.string()), std::string::npos) << writer.error();
}

TEST(AccessLogWriter, StdoutAndStderr) {
  for (const char* path : {"stdout", "stderr"}) {
    auto writer = Writer::create(log_config(path, config::AccessLogFormat::json));
    ASSERT_TRUE(writer.has_value()) << writer.error();
    EXPECT_EQ((*writer)->format(), config::AccessLogFormat::json);
    EXPECT_EQ((*writer)->path(), path);
    EXPECT_TRUE((*writer)->reopen().has_value());  // nothing to reopen
  }
}

// A pipe nobody reads: the thread blocks in write(2), the queue fills up, and from then on
// append() still returns at once and the overflow is counted. Once a reader drains the pipe,
// stop() writes what was queued: read + dropped = produced, to the byte and the line.
TEST(AccessLogWriter, SlowSinkNeverBlocksAppendAndCountsDrops) {
  ::signal(SIGPIPE, SIG_IGN);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  auto writer = Writer::create_for_fd(fds[1], /*owned=*/true, config::AccessLogFormat::text,
                                      WriterOptions{.max_queued_bytes = 256 * 1024});
  constexpr int kLines = 50'000;  // ~10 MB of text against a 64 KiB pipe and a 256 KiB queue
  std::size_t produced_bytes = 0;
  auto appending = std::async(std::launch::async, [&] {
    WorkerLog log(*writer, /*flush_bytes=*/8192);
    std::string line;
    for (int i = 0; i < kLines; ++i) {
      std::string id = std::to_string(i);
      Entry entry = entry_with_id(id);
      line.clear();
      append_text(entry, line);
      produced_bytes += line.size();
      log.append(entry);
    }
    log.flush();
  });
  ASSERT_EQ(appending.wait_for(20s), std::future_status::ready) << "append blocked";
  appending.get();
  EXPECT_GT(writer->dropped_lines(), 0u);
  EXPECT_GT(writer->dropped_bytes(), 0u);
  EXPECT_LE(writer->queued_bytes(), 256u * 1024);
  EXPECT_EQ(writer->write_errors(), 0u);

  std::string received;
  std::thread reader([&] {
    char chunk[65536];
    for (;;) {
      ssize_t n = ::read(fds[0], chunk, sizeof chunk);
      if (n <= 0) break;
      received.append(chunk, static_cast<std::size_t>(n));
    }
  });
  std::uint64_t dropped_lines = 0;
  std::uint64_t dropped_bytes = 0;
  {
    writer->stop();
    dropped_lines = writer->dropped_lines();
    dropped_bytes = writer->dropped_bytes();
    writer.reset();  // closes the write end: the reader sees the end
  }
  reader.join();
  ::close(fds[0]);
  EXPECT_EQ(received.size() + dropped_bytes, produced_bytes);
  std::size_t received_lines = 0;
  for (char c : received) received_lines += c == '\n' ? 1 : 0;
  EXPECT_EQ(received_lines + dropped_lines, std::size_t(kLines));
  EXPECT_TRUE(received.empty() || received.back() == '\n');
  EXPECT_EQ(received.substr(0, 1), "[");  // whole lines only: buffers are dropped whole
}

TEST(AccessLogWriter, WriteErrorsAreCountedAsDropped) {
  ::signal(SIGPIPE, SIG_IGN);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ::close(fds[0]);  // every write fails with EPIPE
  auto writer = Writer::create_for_fd(fds[1], /*owned=*/true, config::AccessLogFormat::json);
  {
    WorkerLog log(*writer);
    for (int i = 0; i < 5; ++i) log.append(entry_with_id("x"));
  }
  writer->stop();
  EXPECT_EQ(writer->dropped_lines(), 5u);
  EXPECT_EQ(writer->write_errors(), 1u);
}

}  // namespace
}  // namespace revgate::accesslog
