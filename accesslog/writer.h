// The access log's way to its file: a per-worker `WorkerLog` that formats lines into its own
// buffer (no lock per request), and the process-wide `Writer` whose background thread writes the
// buffers handed to it. WorkerLog: its worker's thread only. Writer: hand_off() and the counters
// from any thread; create(), reopen() and stop() from the thread that owns it (the main thread).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "accesslog/format.h"
#include "config/config.h"

namespace revgate::accesslog {

struct WriterOptions {
  // More than this waiting to be written (a slow or stuck sink): further buffers are dropped
  // and counted rather than ever making a worker wait.
  std::size_t max_queued_bytes = 64 * 1024 * 1024;
};

// Owns the log's file descriptor and one background thread that writes handed-off buffers with
// write(2), in the order they were handed off, and recycles them. Never blocks a caller of
// hand_off() on the disk: the lock it takes guards only the queue, never a write.
class Writer {
 public:
  // "stdout" and "stderr" write to fd 1 and 2; any other path is opened (created 0644) for
  // appending. The error names the path.
  static std::expected<std::unique_ptr<Writer>, std::string> create(const config::AccessLog& config,
                                                                    WriterOptions options = {});
  // Writes to `fd`, closing it at the end when `owned` (a pipe in tests, a caller's socket).
  static std::unique_ptr<Writer> create_for_fd(int fd, bool owned, config::AccessLogFormat format,
                                               WriterOptions options = {});

  ~Writer();  // stop(), then close an owned fd
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  config::AccessLogFormat format() const { return format_; }
  const std::string& path() const { return path_; }

  // Queues `full` (holding `lines` lines) for writing, or drops and counts it when the queue is
  // over max_queued_bytes, and returns an empty buffer to fill next (a recycled one when there
  // is one). After stop(), writes `full` on the caller's thread so nothing handed off is lost.
  std::string hand_off(std::string&& full, std::size_t lines);

  // Graceful shutdown: writes everything queued, then joins the thread. Idempotent. Call it
  // after the last WorkerLog::flush(); it waits for the sink, however slow.
  void stop();

  // Log rotation (SIGUSR1): opens the path again and puts the new file in place of the old one
  // (dup3), so lines after this go to the new file. A no-op for stdout, stderr and
  // create_for_fd. On error the old file stays in use. Not concurrent with stop().
  std::expected<void, std::string> reopen();

  // For metrics; any thread.
  std::uint64_t dropped_lines() const;  // queue full, or the write failed
  std::uint64_t dropped_bytes() const;
  std::uint64_t write_errors() const;  // failed writes (each drops one buffer)
  std::size_t queued_bytes() const;

 private:
  struct Pending {
    std::string buffer;
    std::size_t lines = 0;
    int error = 0;  // errno of its failed write, 0 when written
  };

  Writer(int fd, bool owned, bool reopenable, std::string path, config::AccessLogFormat format,
         WriterOptions options);
  void run();
  // write(2) until all of `data` is out; 0 or the errno that stopped it.
  int write_all(const std::string& data);
  void account(const Pending& pending);  // with mutex_ held: counts a failed write as dropped
  void report(int error);                // one stderr line when writes start failing

  const int fd_;
  const bool owned_;
  const bool reopenable_;  // opened from a file path
  const std::string path_;
  const config::AccessLogFormat format_;
  const WriterOptions options_;

  // The hand-off (once per buffer of many lines, never per request): the one lock of the
  // access log, an allowed exception to "no locks on the data path" (ARCHITECTURE.md).
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Pending> queue_;     // handed off, not yet taken by the thread
  std::vector<std::string> free_;  // written buffers kept for reuse
  std::size_t queued_bytes_ = 0;   // in queue_ and being written
  bool stopping_ = false;
  bool stopped_ = false;
  // The last write failed. Touched only by whoever writes: the thread, or after it has stopped,
  // hand_off() under the lock.
  bool failing_ = false;
  std::uint64_t dropped_lines_ = 0;
  std::uint64_t dropped_bytes_ = 0;
  std::uint64_t write_errors_ = 0;
  std::thread thread_;
};

// One per worker thread: formats each request's line into its buffer and hands the buffer to
// the Writer when it passes `flush_bytes`, or on flush() (the worker's periodic sweep and its
// shutdown). The Writer must outlive it.
class WorkerLog {
 public:
  static constexpr std::size_t kDefaultFlushBytes = 64 * 1024;

  explicit WorkerLog(Writer& writer, std::size_t flush_bytes = kDefaultFlushBytes);
  ~WorkerLog();  // flush()
  WorkerLog(const WorkerLog&) = delete;
  WorkerLog& operator=(const WorkerLog&) = delete;

  // Formats one line (JSON or text, as the Writer's config says). No lock; allocates only when
  // a line is longer than the buffer's spare room.
  void append(const Entry& entry);
  // Hands whatever is buffered to the Writer (nothing when empty).
  void flush();

  std::size_t buffered_bytes() const { return buffer_.size(); }

 private:
  void reserve();

  Writer& writer_;
  const config::AccessLogFormat format_;
  const std::size_t flush_bytes_;
  std::string buffer_;
  std::size_t lines_ = 0;
};

}  // namespace revgate::accesslog
