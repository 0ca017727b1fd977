#include "proxy/upstream_pool.h"

#include <algorithm>

#include <boost/asio/buffer.hpp>

namespace revgate::proxy {

std::shared_ptr<UpstreamConnection> UpstreamPool::take(std::string_view key,
                                                       std::uint32_t destination) {
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  auto connection = std::move(it->second.back());
  it->second.pop_back();
  connection->in_pool = false;
  --shard_.upstream(connection->destination).idle;
  connection->destination = destination;
  ++shard_.upstream(destination).active;
  if (connection->watching) {
    // Ends the watch: its handler tells the taker whether anything came meanwhile. No system
    // call: Asio completes the pending read as aborted.
    boost::system::error_code ignored;
    connection->stream.socket().cancel(ignored);
  }
  return connection;
}

void UpstreamPool::give_back(std::shared_ptr<UpstreamConnection> connection,
                             Clock::time_point now) {
  auto it = idle_.find(std::string_view{connection->key});
  --shard_.upstream(connection->destination).active;
  if (it == idle_.end()) {
    // The first idle connection to this endpoint, or one to an endpoint a reload removed (its
    // request started before the reload): only the former is kept. A lookup off the hot path.
    if (live_ && !live_->contains(std::string_view{connection->key})) return discard(*connection);
    it = idle_.emplace(connection->key, Idle{}).first;
  }
  if (it->second.size() >= max_idle_per_endpoint_) return discard(*connection);
  ++shard_.upstream(connection->destination).idle;
  connection->idle_since = now;
  connection->in_pool = true;
  it->second.push_back(std::move(connection));
}

void UpstreamPool::watch(const std::shared_ptr<UpstreamConnection>& connection) {
  connection->watching = true;
  connection->stream.async_read_some(
      boost::asio::buffer(&connection->watch_byte, 1),
      [this, connection](boost::system::error_code ec, std::size_t bytes) {
        on_watch_end(connection, ec, bytes);
      });
}

void UpstreamPool::on_watch_end(const std::shared_ptr<UpstreamConnection>& connection,
                                boost::system::error_code ec, std::size_t bytes) {
  connection->watching = false;
  const bool quiet = ec == boost::asio::error::operation_aborted && bytes == 0;
  if (connection->in_pool) {
    if (quiet) return;  // the pool is closing it
    // Closed by the upstream, or bytes no request asked for: never hand it out. Counted idle
    // only if it really was still in the pool.
    connection->in_pool = false;
    auto it = idle_.find(std::string_view{connection->key});
    const bool removed = it != idle_.end() && std::erase(it->second, connection) > 0;
    return removed ? discard_idle(*connection) : discard(*connection);
  }
  if (auto waiter = std::move(connection->waiter)) waiter->on_upstream_checked(quiet);
}

void UpstreamPool::opened(UpstreamConnection& connection, std::uint32_t destination) {
  connection.destination = destination;
  ++shard_.upstream(destination).active;
  ++shard_.upstream(destination).opened;
}

void UpstreamPool::closed(UpstreamConnection& connection) {
  --shard_.upstream(connection.destination).active;
  discard(connection);
}

void UpstreamPool::discard_idle(UpstreamConnection& connection) {
  connection.in_pool = false;  // a watch ending later must not count it again
  --shard_.upstream(connection.destination).idle;
  discard(connection);
}

void UpstreamPool::discard(UpstreamConnection& connection) {
  // The watch's handler may keep the object alive a little longer: close the socket now.
  boost::system::error_code ignored;
  connection.stream.socket().close(ignored);
}

void UpstreamPool::sweep(Clock::time_point now, std::chrono::milliseconds idle_timeout) {
  for (auto& [key, connections] : idle_) {
    // Oldest first in the vector: close the prefix that has been idle too long.
    auto fresh = std::find_if(connections.begin(), connections.end(),
                              [&](const auto& c) { return now - c->idle_since < idle_timeout; });
    std::for_each(connections.begin(), fresh, [this](const auto& c) { discard_idle(*c); });
    connections.erase(connections.begin(), fresh);
  }
  // Watch what stays. A watch never completes inside async_read_some (Asio posts even an
  // immediate completion), so this loop cannot see the vectors change under it.
  for (auto& [key, connections] : idle_) {
    for (const auto& c : connections) {
      if (!c->watching) watch(c);
    }
  }
}

void UpstreamPool::retain(std::shared_ptr<const PoolKeySet> live) {
  live_ = std::move(live);
  for (auto it = idle_.begin(); it != idle_.end();) {
    if (live_->contains(std::string_view{it->first})) {
      ++it;
      continue;
    }
    for (const auto& connection : it->second) discard_idle(*connection);
    it = idle_.erase(it);
  }
}

void UpstreamPool::close_all() {
  for (auto& [key, connections] : idle_) {
    for (const auto& connection : connections) discard_idle(*connection);
  }
  idle_.clear();
}

}  // namespace revgate::proxy
