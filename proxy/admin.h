// The admin listener (SPEC.md section 6): /healthz, /readyz, /metrics and the admin API
// (GET /config, /apis/..., answered by api/) over HTTP/1.1. Runs on the main thread's
// io_context; what it serves comes from the Server through callbacks, so this file knows
// nothing of workers or reloads.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "api/snapshot.h"
#include "proxy/net.h"

namespace revgate::proxy {

struct AdminHandlers {
  std::function<bool()> ready;
  // Produces the Prometheus text asynchronously and calls back with it on the admin thread.
  std::function<void(std::function<void(std::string)>)> metrics;
  // Takes back a metrics text once it is sent, so the next scrape reuses its memory (a
  // rendering of thousands of series is tens of MiB: fresh pages cost more than formatting).
  std::function<void(std::string)> recycle;
  // The config in force, for the admin API (api/); called on the admin thread. Left empty,
  // /config and /apis are plain 404s like any unknown path.
  std::function<api::Snapshot()> snapshot;
};

class AdminServer {
 public:
  AdminServer(Acceptor acceptor, AdminHandlers handlers);
  void start();
  void close();

 private:
  void accept();
  Acceptor acceptor_;
  std::shared_ptr<const AdminHandlers> handlers_;
};

}  // namespace revgate::proxy
