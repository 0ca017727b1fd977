#include "proxy/config_watcher.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <boost/asio/buffer.hpp>

#include "proxy/log.h"

namespace revgate::proxy {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// Entries appearing, vanishing or being renamed (editors, ConfigMaps), and files closed after
// writing (an edit in place). Not IN_MODIFY: a file being written is not ready yet.
constexpr std::uint32_t kDirectoryEvents =
    IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB | IN_ONLYDIR;
constexpr int kMaxSymlinkHops = 16;

bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

bool ConfigWatcher::Stamp::operator==(const Stamp& o) const {
  return device == o.device && inode == o.inode && size == o.size && same_time(mtime, o.mtime) &&
         same_time(ctime, o.ctime);
}

std::expected<std::unique_ptr<ConfigWatcher>, std::string> ConfigWatcher::create(
    asio::io_context& io, std::string path, std::function<void()> on_change,
    std::chrono::milliseconds settle) {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return std::unexpected(fmt::format("inotify: {}", std::strerror(errno)));
  std::error_code ec;
  auto absolute = fs::absolute(path, ec);
  if (!ec) path = absolute.lexically_normal().string();
  auto watcher = std::unique_ptr<ConfigWatcher>(
      new ConfigWatcher(io, fd, std::move(path), std::move(on_change), settle));
  watcher->watch_chain();
  if (watcher->watched_.empty()) {
    return std::unexpected(
        fmt::format("cannot watch the directory of {}: {}", watcher->path_, std::strerror(errno)));
  }
  watcher->read_events();
  return watcher;
}

ConfigWatcher::ConfigWatcher(asio::io_context& io, int fd, std::string path,
                             std::function<void()> on_change, std::chrono::milliseconds settle)
    : path_(std::move(path)),
      on_change_(std::move(on_change)),
      settle_(settle),
      fd_(fd),
      stream_(io, fd),
      settle_timer_(io) {}

ConfigWatcher::~ConfigWatcher() { close(); }

void ConfigWatcher::close() {
  boost::system::error_code ignored;
  settle_timer_.cancel();
  stream_.close(ignored);  // closes the inotify descriptor and with it every watch
}

std::optional<ConfigWatcher::Stamp> ConfigWatcher::stamp() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return std::nullopt;
  return Stamp{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
}

void ConfigWatcher::mark() { marked_ = stamp(); }

void ConfigWatcher::watch_chain() {
  // The directory of the path as written, then of every symlink's target in turn: a ConfigMap's
  // `revgate.yaml -> ..data/revgate.yaml` has its swap in the first, a file linked from
  // elsewhere is edited in the last.
  std::set<std::string> wanted;
  fs::path current = path_;
  for (int hop = 0; hop < kMaxSymlinkHops; ++hop) {
    wanted.insert(current.parent_path().string());
    std::error_code ec;
    if (!fs::is_symlink(current, ec)) break;
    auto target = fs::read_symlink(current, ec);
    if (ec) break;
    current = (target.is_absolute() ? target : current.parent_path() / target).lexically_normal();
  }
  for (auto it = watched_.begin(); it != watched_.end();) {
    if (wanted.contains(it->first)) {
      ++it;
      continue;
    }
    ::inotify_rm_watch(fd_, it->second);
    it = watched_.erase(it);
  }
  for (const auto& directory : wanted) {
    // Re-adding an existing directory is harmless: it may now be another inode (a swapped link).
    const int wd = ::inotify_add_watch(fd_, directory.c_str(), kDirectoryEvents);
    if (wd >= 0) watched_[directory] = wd;
  }
}

void ConfigWatcher::read_events() {
  stream_.async_read_some(asio::buffer(events_), [this](boost::system::error_code ec, std::size_t) {
    if (ec) return;  // closed (shutdown), or the descriptor is gone
    // Which entry changed does not matter: the file's stamp decides, once things are quiet.
    settle_timer_.expires_after(settle_);
    settle_timer_.async_wait([this](boost::system::error_code wait_ec) {
      if (!wait_ec) settled();
    });
    read_events();
  });
}

void ConfigWatcher::settled() {
  watch_chain();
  const auto now = stamp();
  if (!now) {
    if (!missing_reported_) {
      log_warning("config file {} is gone; the running config stays in force", path_);
      missing_reported_ = true;
    }
    return;
  }
  missing_reported_ = false;
  if (marked_ && *now == *marked_) return;
  on_change_();
}

}  // namespace revgate::proxy
