// HTTP/1.1 Upgrade for Session (README "WebSockets and other upgrades"): whether the service
// lets the client's Upgrade through, and the tunnel a 101 turns the connection into.
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/string.hpp>

#include "proxy/session.h"

namespace revgate::proxy {

namespace beast = boost::beast;

bool Session::allow_upgrade() {
  if (upgrade_asked_.empty()) return true;
  // The first protocol the client names decides ("websocket", "WebSocket", "foo/2").
  std::string_view name = upgrade_asked_.substr(0, upgrade_asked_.find(','));
  name = name.substr(0, name.find('/'));
  while (!name.empty() && (name.front() == ' ' || name.front() == '\t')) name.remove_prefix(1);
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
  if (beast::iequals(name, "h2c")) {
    // Never sent on (HTTP/2 reaches a revision over a connection of its own): the request goes
    // as plain HTTP/1.1, its Upgrade dropped like any hop-by-hop field.
    upgrade_asked_ = {};
    return true;
  }
  for (const auto& type : exchange_->decision.service->upgrade_types) {
    if (beast::iequals(type, name)) {
      upgrade_ = upgrade_asked_;
      return true;
    }
  }
  return false;  // 403, as Envoy answers an upgrade its upgrade_configs do not name
}

void Session::start_tunnel() {
  status_ = 101;
  client_keep_alive_ = false;  // what follows the 101 is no longer HTTP
  phase_ = Phase::tunneling;
  write_response_head(exchange_->head_out, exchange_->response->get(), Framing::upgrade, 0,
                      false, false, response_fields());
  // What each side sent past its head goes first: the client's first frames (after its
  // handshake), the upstream's (often in the same packet as its 101), behind the 101's head.
  std::string to_upstream = beast::buffers_to_string(buffer_.data());
  std::string to_client = std::move(exchange_->head_out);
  tunnel_head_bytes_ = to_client.size();
  to_client += beast::buffers_to_string(upstream_->buffer.data());
  // A tunnel may sit idle for an hour: what it holds meanwhile is its sockets and this session,
  // not the read buffers of either head (given back whole, not just emptied) or a body piece.
  buffer_ = ReadBuffer();
  upstream_->buffer = beast::flat_buffer();
  exchange_->head_out = std::string();
  if (chunk_) worker_.release_chunk(std::move(chunk_));
  tunnel_idle_ = config().timeouts.tunnel_idle;
  tunnel_ = std::make_unique<Tunnel>(worker_, stream_, upstream_);
  tunnel_->start(std::move(to_upstream), std::move(to_client), shared_from_this(),
                 [this](bool) { end_tunnel(false); });
  deadline_ = tunnel_->last_activity() + tunnel_idle_;
}

void Session::end_tunnel(bool idle) {
  if (idle) {
    flags_ |= metrics::kStreamIdleTimeout;
    tunnel_->stop();
  }
  count_tunnel_bytes();
  record_metrics();
  release_upstream(false);
  close();
}

void Session::count_tunnel_bytes() {
  // Bytes both ways, as Envoy counts an upgraded stream's: the client's to the revision as
  // received, the revision's to the client as sent (the 101's head not counted).
  request_body_bytes_ += tunnel_->bytes_to_upstream();
  const auto to_client = tunnel_->bytes_to_client();
  response_body_bytes_ += to_client > tunnel_head_bytes_ ? to_client - tunnel_head_bytes_ : 0;
}

void Session::upstreams_changed(const PoolKeySet& live, Clock::duration grace) {
  if (phase_ != Phase::tunneling || !upstream_ || live.contains(upstream_->key)) return;
  if (tunnel_grace_end_ != Clock::time_point::max()) return;  // already counting down
  tunnel_grace_end_ = Clock::now() + grace;
  deadline_ = std::min(deadline_, tunnel_grace_end_);
}

}  // namespace revgate::proxy
