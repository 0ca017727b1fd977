// Per-worker pool of idle keep-alive connections to revision endpoints (nginx's upstream
// keepalive, Envoy's per-worker connection pools). Owned by one worker thread; never shared.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include "metrics/metrics.h"
#include "proxy/net.h"
#include "proxy/stream.h"

namespace revgate::proxy {

using Clock = std::chrono::steady_clock;

struct PoolKeyHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view key) const noexcept {
    return std::hash<std::string_view>{}(key);
  }
};
// The pool keys of a snapshot's endpoints, probed with std::string_view.
using PoolKeySet = std::unordered_set<std::string, PoolKeyHash, std::equal_to<>>;

// Who takes a pooled connection: told, once the pool's watch on it has ended, whether the
// connection is still usable (nothing arrived on it while it was idle).
class UpstreamWaiter {
 public:
  virtual ~UpstreamWaiter() = default;
  virtual void on_upstream_checked(bool usable) = 0;
};

// One connection to an endpoint, with the bytes read from it that no response consumed yet.
struct UpstreamConnection {
  explicit UpstreamConnection(const Executor& executor) : stream(Socket(executor)) {}
  Stream stream;  // TLS over TCP for an https:// endpoint
  boost::beast::flat_buffer buffer;
  std::string key;  // UpstreamEndpoint::pool_key: the pool it returns to
  Clock::time_point idle_since{};
  std::uint64_t requests = 0;     // requests sent on it; > 0 means it was reused
  std::uint32_t destination = 0;  // metrics destination of the request that last used it
  // While idle in the pool a one-byte read watches the connection, as nginx's keepalive
  // module does: an upstream that closes it, or writes after its response, is seen then,
  // not by the next request. The watch starts at the pool's next sweep, not at once: a
  // connection reused within a sweep interval costs no extra system call.
  bool in_pool = false;
  bool watching = false;
  char watch_byte = 0;
  std::shared_ptr<UpstreamWaiter> waiter;  // set by a taker while the watch is ending
};

// Counts its connections in the worker's metrics shard: idle ones in the pool; active ones
// from take() (or the session's connect) to give_back() (or the session's close).
class UpstreamPool {
 public:
  UpstreamPool(std::size_t max_idle_per_endpoint, metrics::WorkerShard& shard)
      : max_idle_per_endpoint_(max_idle_per_endpoint), shard_(shard) {}

  // The most recently used idle connection to `key`, or null; counted active for
  // `destination`. If `watching` is still true on the result, its watch is being cancelled:
  // set `waiter` and wait for on_upstream_checked().
  std::shared_ptr<UpstreamConnection> take(std::string_view key, std::uint32_t destination);
  // Keep a connection whose last response ended cleanly; closes it when the pool is full or
  // its endpoint is no longer in the config (see retain()).
  void give_back(std::shared_ptr<UpstreamConnection> connection, Clock::time_point now);
  // After a reload: close the idle connections to endpoints not in `live` (removed from the
  // config), and from now on close such connections when they come back from a request.
  void retain(std::shared_ptr<const PoolKeySet> live);
  // A connection the session made (active) and one it closes (no longer active).
  void opened(UpstreamConnection& connection, std::uint32_t destination);
  void closed(UpstreamConnection& connection);
  // Close connections idle since before `now - idle_timeout`; start watching the others.
  void sweep(Clock::time_point now, std::chrono::milliseconds idle_timeout);
  void close_all();
  void set_max_idle_per_endpoint(std::size_t n) { max_idle_per_endpoint_ = n; }

 private:
  std::size_t max_idle_per_endpoint_;
  std::shared_ptr<const PoolKeySet> live_;  // null: every key is live
  metrics::WorkerShard& shard_;
  // LIFO per endpoint: the hottest connection is reused first, cold ones age out.
  void watch(const std::shared_ptr<UpstreamConnection>& connection);
  void on_watch_end(const std::shared_ptr<UpstreamConnection>& connection,
                    boost::system::error_code ec, std::size_t bytes);
  void discard_idle(UpstreamConnection& connection);
  static void discard(UpstreamConnection& connection);
  using Idle = std::vector<std::shared_ptr<UpstreamConnection>>;
  std::unordered_map<std::string, Idle, PoolKeyHash, std::equal_to<>> idle_;
};

}  // namespace revgate::proxy
