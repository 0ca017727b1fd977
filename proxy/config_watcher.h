// Watches the config file with inotify and says when what its path names has changed: an edit
// in place, an editor's write-then-rename, a Kubernetes ConfigMap volume's `..data` symlink
// swap. Runs on the control thread's io_context; never touches a worker.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

namespace revgate::proxy {

class ConfigWatcher {
 public:
  // Watches the directories on the way from `path` to the file it finally names (each symlink's
  // directory, then the real file's), as both editors and ConfigMaps replace entries there
  // rather than write the file. `on_change` runs on `io` once the events have been quiet for
  // `settle` and the file's identity or contents (device, inode, size, mtime, ctime) differ
  // from the last mark().
  static std::expected<std::unique_ptr<ConfigWatcher>, std::string> create(
      boost::asio::io_context& io, std::string path, std::function<void()> on_change,
      std::chrono::milliseconds settle = std::chrono::milliseconds(100));
  ~ConfigWatcher();

  // The file is about to be read (by any trigger): later changes are measured from here.
  void mark();
  void close();

 private:
  struct Stamp {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    timespec mtime{};
    timespec ctime{};
    bool operator==(const Stamp& o) const;
  };
  ConfigWatcher(boost::asio::io_context& io, int fd, std::string path,
                std::function<void()> on_change, std::chrono::milliseconds settle);
  std::optional<Stamp> stamp() const;
  void watch_chain();  // (re)watch the directories from path to the real file
  void read_events();
  void settled();

  std::string path_;
  std::function<void()> on_change_;
  std::chrono::milliseconds settle_;
  int fd_;
  boost::asio::posix::stream_descriptor stream_;
  boost::asio::steady_timer settle_timer_;
  std::map<std::string, int> watched_;  // directory -> watch descriptor
  std::optional<Stamp> marked_;
  bool missing_reported_ = false;
  alignas(8) char events_[4096];
};

}  // namespace revgate::proxy
