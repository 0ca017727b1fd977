// The admin listener (SPEC.md section 6): /healthz, /readyz, /metrics, POST /reload and the
// admin API (GET /config and /apis/..., PATCH of a service's traffic, answered by api/ through
// the control plane) over HTTP/1.1. Runs on the control thread's io_context, never on a
// worker's; what it serves comes from the Server through callbacks, so this file knows nothing
// of workers or reloads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/snapshot.h"
#include "proxy/net.h"

namespace revgate::proxy {

struct AdminReply {
  unsigned status = 200;
  std::string content_type;
  std::string body;
};

// The answer to POST /reload: 200 with the generation now in force, or 422 with every error
// (as the log writes them: "file:line:col: message [rule]"); JSON either way.
AdminReply reload_reply(bool applied, std::uint64_t generation,
                        const std::vector<std::string>& errors,
                        const std::vector<std::string>& warnings);

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
  // POST /reload: reload the config file; the reply comes once it is in force (or refused).
  std::function<void(std::function<void(AdminReply)>)> reload;
  // PATCH /apis/...: (target, content type, body) -> the API's answer.
  std::function<void(std::string_view, std::string_view, std::string_view,
                     std::function<void(AdminReply)>)>
      patch;
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
