// The process's listeners (config `listeners`): bound once per worker with SO_REUSEPORT, their
// TLS contexts and certificate reloaders, and what a reload changes of them. Control thread
// only; workers receive acceptors and ListenerSpecs through ListenerChange.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/server.h"
#include "proxy/worker.h"
#include "tls/certificates.h"
#include "tls/server_context.h"

namespace revgate::proxy {

// Binds host:port on `io`; `share_port` sets SO_REUSEPORT (one socket per worker). With
// `listen` false the socket is bound only: it takes no connection (the kernel spreads SYNs only
// over listening sockets of a SO_REUSEPORT group) until start_listening.
std::expected<Acceptor, std::string> bind_acceptor(boost::asio::io_context& io,
                                                   const std::string& host, std::uint16_t port,
                                                   bool share_port, bool listen = true);
std::expected<void, std::string> start_listening(Acceptor& acceptor);

class ListenerSet {
 public:
  explicit ListenerSet(std::vector<Worker*> workers) : workers_(std::move(workers)) {}

  // At start, before the workers run: binds every listener of `config` and gives each worker
  // its acceptors. The error names the listener.
  std::expected<void, std::string> start(const config::Config& config);

  // A reload, step 1: what it takes to go from the running listeners to `config`'s. Listeners
  // that are new (or moved to another address) are bound, and changed TLS settings loaded, now,
  // so that a failure fails the reload before anything changed. A listener keeps its socket
  // when its address stays (and, for port 0, its name too): its connections are untouched.
  struct Plan;
  std::expected<std::unique_ptr<Plan>, std::string> plan(const config::Config& config);
  // Step 2: the plan is in force; each worker's changes, to hand to Worker::install with the
  // snapshot (index = worker). Dropping an uncommitted plan closes what it bound.
  std::vector<std::vector<ListenerChange>> commit(std::unique_ptr<Plan> plan);

  // Certificates: SIGHUP and reloads load every TLS listener's files again (forced); the poll
  // only those whose files changed. A file that does not load keeps the certificates in force.
  void reload_certificates(bool forced);
  bool has_tls() const;

  std::vector<BoundAddress> bound() const;
  // Listener names by id (the metrics' listener label), removed listeners included.
  const std::vector<std::string>& names_by_id() const { return names_; }
  struct CertificateReloadCounts {
    std::string listener;
    std::uint64_t ok = 0;
    std::uint64_t failed = 0;
  };
  std::vector<CertificateReloadCounts> certificate_reloads() const;

  ~ListenerSet();

  // One running listener (public for the Plan's sake; only ListenerSet touches them).
  struct Running {
    std::uint32_t id = 0;
    config::Listener config;
    std::uint16_t port = 0;  // as bound (the configured one, or the one port 0 picked)
    std::unique_ptr<tls::CertificateReloader> reloader;         // TLS only
    std::vector<std::shared_ptr<tls::ServerContext>> contexts;  // TLS only, one per worker
    std::vector<std::shared_ptr<const ListenerSpec>> specs;     // one per worker, as handed out
    std::uint64_t reloads_ok = 0;
    std::uint64_t reloads_failed = 0;
  };

  struct Plan {
    struct Entry {
      std::optional<std::size_t> kept;  // index in running_: the socket stays
      // The listener as it will run: for a kept one, its new config and (when its TLS settings
      // changed) the new TLS pieces; for a new one, everything but its id.
      std::unique_ptr<Running> next;
      bool tls_changed = false;
      std::vector<Acceptor> acceptors;  // a new listener: one per worker
    };
    std::vector<Entry> entries;  // in the new config's order
  };

 private:
  std::expected<void, std::string> load_tls(Running& listener);
  std::expected<std::vector<Acceptor>, std::string> bind_everywhere(const config::Listener& config,
                                                                    std::uint16_t& port);
  std::vector<std::shared_ptr<const ListenerSpec>> make_specs(const Running& listener,
                                                              std::uint16_t https_port) const;

  std::vector<Worker*> workers_;
  std::vector<std::unique_ptr<Running>> running_;  // in config order
  std::vector<std::string> names_;                 // by id; ids are never reused
  // Session tickets are encrypted with keys shared by every worker's context, so a client
  // resumes whichever worker the kernel hands its next connection to.
  std::optional<tls::SessionTicketKeys> ticket_keys_;
};

}  // namespace revgate::proxy
