#include "proxy/upstream_pool.h"

#include <algorithm>
#include <cstring>

namespace revgate::proxy {

std::string_view endpoint_key(std::string_view address, std::uint16_t port, char (&out)[64]) {
  std::size_t n = std::min(address.size(), sizeof(out) - 7);
  std::memcpy(out, address.data(), n);
  out[n++] = ':';
  char digits[6];
  int d = 0;
  do {
    digits[d++] = static_cast<char>('0' + port % 10);
    port /= 10;
  } while (port != 0);
  while (d > 0) out[n++] = digits[--d];
  return {out, n};
}

std::unique_ptr<UpstreamConnection> UpstreamPool::take(std::string_view key) {
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  auto connection = std::move(it->second.back());
  it->second.pop_back();
  return connection;
}

void UpstreamPool::give_back(std::unique_ptr<UpstreamConnection> connection,
                             Clock::time_point now) {
  auto it = idle_.find(std::string_view{connection->key});
  if (it == idle_.end()) it = idle_.emplace(connection->key, std::vector<std::unique_ptr<UpstreamConnection>>{}).first;
  if (it->second.size() >= max_idle_per_endpoint_) return;  // closed by the destructor
  connection->idle_since = now;
  it->second.push_back(std::move(connection));
}

void UpstreamPool::close_idle(Clock::time_point now, std::chrono::milliseconds idle_timeout) {
  for (auto& [key, connections] : idle_) {
    // Oldest first in the vector: erase the prefix that has been idle too long.
    auto fresh = std::find_if(connections.begin(), connections.end(), [&](const auto& c) {
      return now - c->idle_since < idle_timeout;
    });
    connections.erase(connections.begin(), fresh);
  }
}

void UpstreamPool::close_all() { idle_.clear(); }

std::size_t UpstreamPool::idle_count() const {
  std::size_t n = 0;
  for (const auto& [key, connections] : idle_) n += connections.size();
  return n;
}

}  // namespace revgate::proxy
