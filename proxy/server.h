// The proxy process: binds the listeners and the admin listener, runs the workers, reloads the
// config on SIGHUP and drains on SIGTERM/SIGINT. Created and run by one (the main) thread;
// stop() may be called from any thread. No Asio or Beast types here.
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
  // `config_path` is re-read on SIGHUP; empty disables reload (the demo).
  static std::expected<std::unique_ptr<Server>, std::string> create(config::Config config,
                                                                     std::string config_path);
  ~Server();

  // The addresses actually bound, listeners first, then admin.
  std::vector<BoundAddress> bound_addresses() const;

  // Serves until SIGTERM/SIGINT (or stop()), then drains: requests in flight may finish within
  // the grace period. Returns the process exit code.
  int run();
  void stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace revgate::proxy
