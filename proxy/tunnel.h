// An upgraded connection (a WebSocket after its 101): bytes relayed both ways between the
// client and the upstream until both directions have ended. An end of one direction (the
// sender's FIN) is passed on as a half-close on cleartext, so the other direction goes on
// (HAProxy's and Envoy's TCP proxy behaviour); over TLS, where a half-close is not something
// the peer can be told apart from a close, it ends the tunnel. A reset or error on either side
// ends it at once. An idle direction holds no buffer: on cleartext it waits for readability
// and takes one of the worker's chunks only to move bytes (an idle WebSocket costs its sockets
// and its session, as nginx's idle upstream connections do).
// Runs on its session's worker thread; every pending operation holds `keep` (the session).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "proxy/stream.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace revgate::proxy {

class Tunnel {
 public:
  // `done(failed)` is called once, when both directions have ended (false) or one side failed
  // or was reset (true); both sockets are closed then.
  using Done = std::function<void(bool failed)>;

  Tunnel(Worker& worker, Stream& client, std::shared_ptr<UpstreamConnection> upstream);
  ~Tunnel();
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // `to_upstream` and `to_client`: bytes read past the heads on either side, sent first.
  void start(std::string to_upstream, std::string to_client, std::shared_ptr<void> keep,
             Done done);
  // Ends the tunnel now (idle timeout, grace over): closes both sockets; done is not called.
  void stop();

  std::uint64_t bytes_to_upstream() const { return up_.bytes; }
  std::uint64_t bytes_to_client() const { return down_.bytes; }
  Clock::time_point last_activity() const { return last_activity_; }

 private:
  struct Direction {
    Stream* from = nullptr;
    Stream* to = nullptr;
    std::string pending;  // leftover bytes to write before the first read
    std::unique_ptr<char[]> chunk;
    std::size_t fill = 0;
    std::uint64_t bytes = 0;
    bool ended = false;
  };
  using Keep = std::shared_ptr<void>;
  void wait(Direction& d, const Keep& keep);
  void read(Direction& d, const Keep& keep);
  void write(Direction& d, const Keep& keep);
  void end(Direction& d);
  void finish(bool failed);
  void close_sockets();

  Worker& worker_;
  Stream& client_;
  std::shared_ptr<UpstreamConnection> upstream_;
  Direction up_;    // client -> upstream
  Direction down_;  // upstream -> client
  Done done_;
  bool finished_ = false;
  Clock::time_point last_activity_{};
};

}  // namespace revgate::proxy
