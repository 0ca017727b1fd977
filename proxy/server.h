// The proxy process: binds the listeners and the admin listener, runs the workers (each on its
// own thread) and the control plane (on the thread that calls run(): admin API, reloads on
// SIGHUP, file change and POST /reload, traffic changes), and drains on SIGTERM/SIGINT.
// Created and run by one (the main) thread; stop() may be called from any thread. No Asio or
// Beast types here.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

namespace revgate::proxy {

struct BoundAddress {
  std::string name;  // listener name, or "admin"
  std::string host;
  std::uint16_t port = 0;
};

class Server {
 public:
  // Binds every listener (port 0 picks a free one) but serves nothing until run().
  // `config_path` is the file reloads read; empty disables them (the demo).
  static std::expected<std::unique_ptr<Server>, std::string> create(config::Config config,
                                                                    std::string config_path);
  ~Server();

  // The addresses actually bound, listeners first, then admin.
  std::vector<BoundAddress> bound_addresses() const;

  // Serves until SIGTERM/SIGINT (or stop()), then drains: /readyz turns 503, after
  // timeouts.drainDelay the listeners close, requests in flight may finish within
  // timeouts.shutdownGrace. Returns the process exit code.
  int run();
  void stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace revgate::proxy
