// The access log's background writer and the per-worker buffers that feed it. Workers take the
// Writer's mutex once per buffer hand-off (every ~64 KiB or 250 ms), never per request; the
// writer thread holds it only to swap the queue, never across a write(2).
#include "accesslog/writer.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace revgate::accesslog {
namespace {

constexpr std::size_t kMaxFreeBuffers = 32;    // recycled buffers kept beyond that are freed
constexpr std::size_t kSlackBytes = 8 * 1024;  // room for the line that crosses the threshold
constexpr int kOpenFlags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;

}  // namespace

std::expected<std::unique_ptr<Writer>, std::string> Writer::create(const config::AccessLog& config,
                                                                   WriterOptions options) {
  int fd = -1;
  bool owned = false;
  if (config.path == "stdout") {
    fd = STDOUT_FILENO;
  } else if (config.path == "stderr") {
    fd = STDERR_FILENO;
  } else {
    fd = ::open(config.path.c_str(), kOpenFlags, 0644);
    if (fd < 0) {
      return std::unexpected(
          fmt::format("cannot open access log '{}': {}", config.path, std::strerror(errno)));
    }
    owned = true;
  }
  try {
    return std::unique_ptr<Writer>(
        new Writer(fd, owned, /*reopenable=*/owned, config.path, config.format, options));
  } catch (const std::system_error& e) {  // the thread could not start
    if (owned) ::close(fd);
    return std::unexpected(fmt::format("access log '{}': {}", config.path, e.what()));
  }
}

std::unique_ptr<Writer> Writer::create_for_fd(int fd, bool owned, config::AccessLogFormat format,
                                              WriterOptions options) {
  return std::unique_ptr<Writer>(
      new Writer(fd, owned, /*reopenable=*/false, fmt::format("fd {}", fd), format, options));
}

Writer::Writer(int fd, bool owned, bool reopenable, std::string path,
               config::AccessLogFormat format, WriterOptions options)
    : fd_(fd),
      owned_(owned),
      reopenable_(reopenable),
      path_(std::move(path)),
      format_(format),
      options_(options) {
  queue_.reserve(64);
  // The thread takes no signal: they are the main thread's business (sigwait in cli/).
  sigset_t all;
  sigset_t previous;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  try {
    thread_ = std::thread([this] { run(); });
  } catch (...) {
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    throw;
  }
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ::pthread_setname_np(thread_.native_handle(), "revgate-alog");
}

Writer::~Writer() {
  stop();
  if (owned_) ::close(fd_);
}

std::string Writer::hand_off(std::string&& full, std::size_t lines) {
  if (full.empty()) return std::string(std::move(full));
  std::unique_lock lock(mutex_);
  if (stopped_) {
    // Late flush at shutdown: the thread is gone, write here (under the lock, in order).
    Pending pending{std::move(full), lines, 0};
    pending.error = write_all(pending.buffer);
    account(pending);
    report(pending.error);
    pending.buffer.clear();
    return std::move(pending.buffer);
  }
  if (queued_bytes_ + full.size() > options_.max_queued_bytes) {
    // The sink is not keeping up: drop this buffer rather than make the worker wait.
    dropped_lines_ += lines;
    dropped_bytes_ += full.size();
    full.clear();
    return std::string(std::move(full));
  }
  queued_bytes_ += full.size();
  queue_.push_back(Pending{std::move(full), lines, 0});
  std::string next;
  if (!free_.empty()) {
    next = std::move(free_.back());
    free_.pop_back();
  }
  lock.unlock();
  wake_.notify_one();
  return next;
}

void Writer::run() {
  std::vector<Pending> batch;
  batch.reserve(64);
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) {
      stopped_ = true;  // in the same critical section: a later hand_off writes by itself
      return;
    }
    batch.swap(queue_);
    lock.unlock();
    for (Pending& pending : batch) {
      pending.error = write_all(pending.buffer);
      report(pending.error);
    }
    lock.lock();
    for (Pending& pending : batch) {
      queued_bytes_ -= pending.buffer.size();
      account(pending);
      if (free_.size() < kMaxFreeBuffers) {
        pending.buffer.clear();
        free_.push_back(std::move(pending.buffer));
      }
    }
    batch.clear();
  }
}

int Writer::write_all(const std::string& data) {
  const char* next = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, next, left);
    if (n > 0) {
      next += n;
      left -= static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A non-blocking stdout (set so by whoever shares it): wait until it takes more.
      pollfd writable{.fd = fd_, .events = POLLOUT, .revents = 0};
      ::poll(&writable, 1, -1);
    } else {
      return n < 0 ? errno : EIO;
    }
  }
  return 0;
}

void Writer::account(const Pending& pending) {
  if (pending.error == 0) return;
  ++write_errors_;
  dropped_lines_ += pending.lines;
  dropped_bytes_ += pending.buffer.size();
}

void Writer::report(int error) {
  if (error == 0) {
    failing_ = false;
    return;
  }
  if (failing_) return;  // once per streak of failures, not once per buffer
  failing_ = true;
  std::string line = fmt::format("revgate: access log {}: write failed: {}; dropping lines\n",
                                 path_, std::strerror(error));
  [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
}

void Writer::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

std::expected<void, std::string> Writer::reopen() {
  if (!reopenable_) return {};
  int fd = ::open(path_.c_str(), kOpenFlags, 0644);
  if (fd < 0) {
    return std::unexpected(
        fmt::format("cannot reopen access log '{}': {}", path_, std::strerror(errno)));
  }
  // Atomic for a concurrent write(2) on fd_: it goes to the old file or to the new one.
  int rc = ::dup3(fd, fd_, O_CLOEXEC);
  int error = errno;
  ::close(fd);
  if (rc < 0) {
    return std::unexpected(
        fmt::format("cannot reopen access log '{}': {}", path_, std::strerror(error)));
  }
  return {};
}

std::uint64_t Writer::dropped_lines() const {
  std::lock_guard lock(mutex_);
  return dropped_lines_;
}

std::uint64_t Writer::dropped_bytes() const {
  std::lock_guard lock(mutex_);
  return dropped_bytes_;
}

std::uint64_t Writer::write_errors() const {
  std::lock_guard lock(mutex_);
  return write_errors_;
}

std::size_t Writer::queued_bytes() const {
  std::lock_guard lock(mutex_);
  return queued_bytes_;
}

// ---- WorkerLog ----

WorkerLog::WorkerLog(Writer& writer, std::size_t flush_bytes)
    : writer_(writer), format_(writer.format()), flush_bytes_(flush_bytes) {
  reserve();
}

WorkerLog::~WorkerLog() { flush(); }

void WorkerLog::reserve() {
  if (buffer_.capacity() < flush_bytes_ + kSlackBytes) buffer_.reserve(flush_bytes_ + kSlackBytes);
}

void WorkerLog::append(const Entry& entry) {
  if (format_ == config::AccessLogFormat::json) {
    append_json(entry, buffer_);
  } else {
    append_text(entry, buffer_);
  }
  ++lines_;
  if (buffer_.size() >= flush_bytes_) flush();
}

void WorkerLog::flush() {
  if (lines_ == 0) return;
  buffer_ = writer_.hand_off(std::move(buffer_), lines_);
  lines_ = 0;
  reserve();
}

}  // namespace revgate::accesslog
