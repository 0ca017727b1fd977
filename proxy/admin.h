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

// A response body produced piece by piece: appends the next piece to `out` until it holds at
// least `until_size` bytes; false once the body is complete.
using BodySource = std::function<bool(std::string& out, std::size_t until_size)>;

struct AdminHandlers {
  std::function<bool()> ready;
  // Gathers a scrape asynchronously and calls back on the admin thread with its Prometheus
  // text, which the session streams in chunks: a scrape of 10,000 services is hundreds of MiB,
  // never held in memory whole.
  std::function<void(std::function<void(BodySource)>)> metrics;
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
