// Per-worker pool of idle keep-alive connections to revision endpoints (nginx's upstream
// keepalive, Envoy's per-worker connection pools). Owned by one worker thread; never shared.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/net.h"
#include <boost/beast/core/flat_buffer.hpp>

namespace revgate::proxy {

using Clock = std::chrono::steady_clock;

// One connection to an endpoint, with the bytes read from it that no response consumed yet.
struct UpstreamConnection {
  explicit UpstreamConnection(const Executor& executor) : socket(executor) {}
  Socket socket;
  boost::beast::flat_buffer buffer;
  std::string key;  // "address:port": the pool it returns to
  Clock::time_point idle_since{};
  std::uint64_t requests = 0;  // requests sent on it; > 0 means it was reused
};

// "address:port" without allocating; `out` must hold 64 bytes.
std::string_view endpoint_key(std::string_view address, std::uint16_t port, char (&out)[64]);

class UpstreamPool {
 public:
  explicit UpstreamPool(std::size_t max_idle_per_endpoint)
      : max_idle_per_endpoint_(max_idle_per_endpoint) {}

  // The most recently used idle connection to `key`, or null.
  std::unique_ptr<UpstreamConnection> take(std::string_view key);
  // Keep a connection whose last response ended cleanly; closes it when the pool is full.
  void give_back(std::unique_ptr<UpstreamConnection> connection, Clock::time_point now);
  // Close connections idle since before `now - idle_timeout`.
  void close_idle(Clock::time_point now, std::chrono::milliseconds idle_timeout);
  void close_all();
  void set_max_idle_per_endpoint(std::size_t n) { max_idle_per_endpoint_ = n; }
  std::size_t idle_count() const;

 private:
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const noexcept {
      return std::hash<std::string_view>{}(key);
    }
  };
  std::size_t max_idle_per_endpoint_;
  // LIFO per endpoint: the hottest connection is reused first, cold ones age out.
  std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConnection>>, KeyHash,
                     std::equal_to<>>
      idle_;
};

}  // namespace revgate::proxy
