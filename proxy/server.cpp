#include "proxy/server.h"

#include <csignal>
#include <iterator>
#include <optional>
#include <thread>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "accesslog/writer.h"
#include "metrics/metrics.h"
#include "proxy/admin.h"
#include "proxy/log.h"
#include "proxy/worker.h"
#include "routing/route_table.h"
#include "tls/certificates.h"
#include "tls/client_context.h"
#include "tls/server_context.h"

namespace revgate::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// How often certificate files are checked for changes (stat only; a reload when they changed).
constexpr std::chrono::seconds kCertificatePollInterval{2};

namespace {

std::expected<Acceptor, std::string> bind_acceptor(asio::io_context& io, const std::string& host,
                                                   std::uint16_t port, bool share_port) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) return std::unexpected("bad address " + host);
  tcp::endpoint endpoint(address, port);
  Acceptor acceptor(io.get_executor());
  auto failed = [&] {
    return std::unexpected(fmt::format("cannot listen on {}:{}: {}", host, port, ec.message()));
  };
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return failed();
  acceptor.set_option(Acceptor::reuse_address(true), ec);
  if (ec) return failed();
  if (share_port) {
    acceptor.set_option(reuse_port(true), ec);
    if (ec) return failed();
  }
  acceptor.bind(endpoint, ec);
  if (ec) return failed();
  acceptor.listen(4096, ec);
  if (ec) return failed();
  return acceptor;
}

}  // namespace

struct Server::Impl {
  std::string config_path;
  std::shared_ptr<const Snapshot> snapshot;
  std::uint64_t generation = 1;
  // When `generation` came into force (the admin API's timestamps).
  std::chrono::system_clock::time_point loaded_at = std::chrono::system_clock::now();
  metrics::DestinationCatalog catalog;
  // One TLS context per worker per TLS listener (a context's reload is not synchronised, so
  // each belongs to one worker). Declared before the workers: their sessions use them.
  std::vector<std::unique_ptr<tls::ServerContext>> tls_contexts;
  // Certificates of each TLS listener: reloaded here (control thread), installed by each
  // worker on its own thread into its own context.
  struct TlsListener {
    std::string name;
    std::unique_ptr<tls::CertificateReloader> reloader;
    std::vector<std::pair<Worker*, tls::ServerContext*>> contexts;
    std::uint64_t reloads_ok = 0;
    std::uint64_t reloads_failed = 0;
  };
  std::vector<TlsListener> tls_listeners;
  // The access log's background writer (null when off); outlives the workers' buffers.
  std::unique_ptr<accesslog::Writer> access_log;
  // The control loop (admin, signals, reloads, the grace timer). With one worker it is that
  // worker's loop on the main thread: a single-threaded process, like one nginx worker, whose
  // socket calls take the kernel's cheaper single-threaded file lookup. With more workers it
  // has its own context here. Declared before what uses it, so it outlives them.
  std::unique_ptr<asio::io_context> own_io;
  std::vector<std::unique_ptr<Worker>> workers;
  asio::io_context* io = nullptr;
  std::vector<BoundAddress> bound;
  std::unique_ptr<AdminServer> admin;
  std::optional<asio::signal_set> signals;
  std::optional<asio::steady_timer> grace_timer;
  std::optional<asio::steady_timer> certificate_poll;
  std::size_t running_workers = 0;
  bool draining = false;
  std::uint64_t reloads_ok = 0;
  std::uint64_t reloads_failed = 0;
  std::string spare_metrics_text;  // memory of the last scrape, reused by the next
  // Numbers every upstream TLS client context ever made, for pool keys: a pooled connection
  // is only reused with the context (CA, client certificate) that verified it.
  std::uint64_t client_context_serial = 0;

  // Compiles a validated config. Fails only when an https:// revision's client TLS files
  // (caFile, certFile, keyFile) cannot be used; the message names the revision and the file.
  std::expected<std::shared_ptr<const Snapshot>, std::string> make_snapshot(config::Config config) {
    auto result = std::make_shared<Snapshot>();
    result->table = routing::RouteTable::compile(config, generation);
    result->destination_ids.resize(result->table->revisions().size());
    for (const auto& service : result->table->services()) {
      for (const auto& target : service->targets) {
        const auto& revision = *target.revision;
        result->destination_ids[revision.index] =
            catalog.intern({service->host, service->name, service->namespace_name, revision.name});
      }
    }
    std::unordered_map<std::string_view, const config::Revision*> by_name;
    for (const auto& service : config.services) {
      for (const auto& revision : service.revisions) by_name.emplace(revision.name, &revision);
    }
    result->upstreams.resize(result->table->revisions().size());
    for (const auto& revision : result->table->revisions()) {
      const auto& configured = *by_name.at(revision->name);
      const tls::ClientContext* context = nullptr;
      auto& upstreams = result->upstreams[revision->index];
      for (std::size_t i = 0; i < revision->endpoints.size(); ++i) {
        const auto& endpoint = revision->endpoints[i];
        const auto& written = configured.endpoints[i];
        auto& upstream = upstreams.emplace_back();
        upstream.pool_key = fmt::format("{}:{}", endpoint.address, endpoint.port);
        if (!written.tls) continue;
        if (context == nullptr) {
          auto created = tls::ClientContext::create(configured.tls ? &*configured.tls : nullptr);
          if (!created) {
            return std::unexpected(fmt::format("revision {}: {}", revision->name, created.error()));
          }
          context = created->get();
          result->client_contexts.push_back(std::move(*created));
          ++client_context_serial;
        }
        upstream.tls = context;
        upstream.server_name = std::string(context->server_name_for(written));
        fmt::format_to(std::back_inserter(upstream.pool_key), " tls#{} {}", client_context_serial,
                       upstream.server_name);
      }
    }
    result->config = std::make_shared<const config::Config>(std::move(config));
    return result;
  }

  void wait_signal() {
    signals->async_wait([this](boost::system::error_code ec, int signal) {
      if (ec) return;
      if (signal == SIGHUP) {
        reload();
        reload_certificates(true);
        return wait_signal();
      }
      log_info("signal {}: draining, grace period {} ms", signal == SIGINT ? "SIGINT" : "SIGTERM",
               snapshot->config->timeouts.shutdown_grace.count());
      begin_drain();
    });
  }

  void reload() {
    if (config_path.empty()) {
      log_warning("SIGHUP: no config file to reload");
      return;
    }
    auto loaded = config::load_file(config_path);
    if (!loaded) {
      ++reloads_failed;
      for (const auto& error : loaded.error()) log_error("reload: {}", error.to_string());
      log_error("reload failed: {} error(s); the running config stays in force",
                loaded.error().size());
      return;
    }
    if (loaded->listeners.size() != snapshot->config->listeners.size()) {
      log_warning("reload: listener changes take effect after a restart");
    }
    const auto& running_log = snapshot->config->access_log;
    if (loaded->access_log.has_value() != running_log.has_value() ||
        (running_log && (loaded->access_log->path != running_log->path ||
                         loaded->access_log->format != running_log->format))) {
      log_warning("reload: accessLog changes take effect after a restart");
    }
    ++generation;
    auto made = make_snapshot(std::move(*loaded));
    if (!made) {
      --generation;
      ++reloads_failed;
      log_error("reload failed: {}; the running config stays in force", made.error());
      return;
    }
    snapshot = std::move(*made);
    loaded_at = std::chrono::system_clock::now();
    for (auto& worker : workers) worker->install(snapshot);
    ++reloads_ok;
    log_info("reload: config generation {} in force", generation);
  }

  // SIGHUP reloads every listener's files; the poll only those whose files changed. A bad file
  // leaves the certificates in force and is reported once per change.
  void reload_certificates(bool forced) {
    for (auto& listener : tls_listeners) {
      auto result = forced ? std::optional(listener.reloader->reload()) : listener.reloader->poll();
      if (!result) continue;
      if (!*result) {
        ++listener.reloads_failed;
        log_error("listener {}: certificate reload failed, the certificates in force stay: {}",
                  listener.name, result->error());
        continue;
      }
      ++listener.reloads_ok;
      for (auto [worker, context] : listener.contexts) {
        asio::post(worker->io(), [context, set = **result] { context->install(set); });
      }
      log_info("listener {}: certificates reloaded", listener.name);
    }
  }

  void poll_certificates() {
    if (tls_listeners.empty()) return;
    certificate_poll->expires_after(kCertificatePollInterval);
    certificate_poll->async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      reload_certificates(false);
      poll_certificates();
    });
  }

  void begin_drain() {
    if (draining) return;
    draining = true;
    signals->cancel();
    certificate_poll->cancel();
    if (admin) admin->close();
    for (auto& worker : workers) worker->drain();
    grace_timer->expires_after(snapshot->config->timeouts.shutdown_grace);
    grace_timer->async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      log_warning("grace period over: closing the connections still open");
      for (auto& worker : workers) worker->stop();
    });
  }

  void on_worker_exit() {
    if (--running_workers == 0) {
      grace_timer->cancel();
      io->stop();
    }
  }

  void collect_metrics(std::function<void(std::string)> done) {
    struct Gather {
      metrics::WorkerShard merged;
      std::size_t pending;
      std::function<void(std::string)> done;
    };
    auto gather = std::make_shared<Gather>(Gather{{}, workers.size(), std::move(done)});
    auto finish = [this, gather] {
      metrics::ProcessView process;
      for (const auto& listener : snapshot->config->listeners) {
        process.listener_names.push_back(listener.name);
      }
      for (const auto& service : snapshot->table->services()) {
        for (const auto& target : service->targets) {
          process.traffic.push_back({service->name, service->namespace_name, target.revision->name,
                                     target.tag, target.percent});
        }
      }
      process.config_generation = generation;
      process.reloads_ok = reloads_ok;
      process.reloads_failed = reloads_failed;
      process.process = metrics::read_process_stats();
      if (access_log) process.access_log_dropped_lines = access_log->dropped_lines();
      for (const auto& listener : tls_listeners) {
        process.certificate_reloads.push_back(
            {listener.name, listener.reloads_ok, listener.reloads_failed});
      }
      std::string text = std::move(spare_metrics_text);
      metrics::render_prometheus_to(text, gather->merged, catalog.snapshot(), process);
      gather->done(std::move(text));
    };
    if (workers.empty()) return finish();
    for (auto& worker : workers) {
      worker->collect_metrics([this, gather, finish](metrics::WorkerShard shard) {
        asio::post(*io, [gather, finish, shard = std::move(shard)] {
          gather->merged.merge(shard);
          if (--gather->pending == 0) finish();
        });
      });
    }
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  if (!impl_) return;
  for (auto& worker : impl_->workers) worker->stop();
  for (auto& worker : impl_->workers) worker->join();
}

std::expected<std::unique_ptr<Server>, std::string> Server::create(config::Config config,
                                                                   std::string config_path) {
  auto impl = std::make_unique<Impl>();
  impl->config_path = std::move(config_path);
  unsigned worker_count = config.workers > 0 ? static_cast<unsigned>(config.workers)
                                             : std::max(1u, std::thread::hardware_concurrency());
  auto snapshot = impl->make_snapshot(std::move(config));
  if (!snapshot) return std::unexpected(snapshot.error());
  impl->snapshot = std::move(*snapshot);
  const auto& cfg = *impl->snapshot->config;

  if (cfg.access_log) {
    auto writer = accesslog::Writer::create(*cfg.access_log);
    if (!writer) return std::unexpected("accessLog: " + writer.error());
    impl->access_log = std::move(*writer);
  }
  for (unsigned i = 0; i < worker_count; ++i) {
    impl->workers.push_back(std::make_unique<Worker>(i, impl->snapshot));
    if (impl->access_log) {
      impl->workers.back()->set_access_log(
          std::make_unique<accesslog::WorkerLog>(*impl->access_log));
    }
  }
  if (worker_count == 1) {
    impl->io = &impl->workers.front()->io();
  } else {
    impl->own_io = std::make_unique<asio::io_context>(1);
    impl->io = impl->own_io.get();
  }
  impl->signals.emplace(*impl->io, SIGINT, SIGTERM, SIGHUP);
  impl->grace_timer.emplace(*impl->io);
  impl->certificate_poll.emplace(*impl->io);
  // Session tickets are encrypted with keys shared by every worker's context, so a client
  // resumes whichever worker the kernel hands its next connection to.
  std::optional<tls::SessionTicketKeys> ticket_keys;
  // Every worker gets its own SO_REUSEPORT acceptor on each listener, so the kernel spreads
  // connections across workers. The first bind fixes the port when the config says 0.
  for (std::uint32_t id = 0; id < cfg.listeners.size(); ++id) {
    const auto& listener = cfg.listeners[id];
    std::shared_ptr<const tls::CertificateSet> certificates;
    if (listener.tls) {
      auto loaded = tls::CertificateSet::load(*listener.tls);
      if (!loaded)
        return std::unexpected(fmt::format("listener {}: {}", listener.name, loaded.error()));
      certificates = std::move(*loaded);
      if (!ticket_keys) {
        auto keys = tls::SessionTicketKeys::generate();
        if (!keys) return std::unexpected("tls: " + keys.error());
        ticket_keys = std::move(*keys);
      }
    }
    if (listener.tls) {
      impl->tls_listeners.push_back(
          {listener.name, std::make_unique<tls::CertificateReloader>(certificates), {}});
    }
    std::uint16_t port = listener.port;
    for (auto& worker : impl->workers) {
      auto acceptor = bind_acceptor(worker->io(), listener.host, port, true);
      if (!acceptor)
        return std::unexpected(fmt::format("listener {}: {}", listener.name, acceptor.error()));
      port = acceptor->local_endpoint().port();
      ListenerSpec spec{id, listener.name, listener.tls.has_value()};
      if (listener.tls) {
        auto context = tls::ServerContext::create(*listener.tls, certificates, *ticket_keys);
        if (!context)
          return std::unexpected(fmt::format("listener {}: {}", listener.name, context.error()));
        spec.tls = &(*context)->asio_context();
        impl->tls_listeners.back().contexts.emplace_back(worker.get(), context->get());
        spec.handshake_timeout = listener.tls->handshake_timeout;
        impl->tls_contexts.push_back(std::move(*context));
      }
      worker->add_listener(std::move(*acceptor), std::move(spec));
    }
    impl->bound.push_back({listener.name, listener.host, port});
  }
  // httpsRedirect points at the first TLS listener's port (validation requires one).
  std::uint16_t https_port = 0;
  for (std::size_t id = 0; id < cfg.listeners.size() && https_port == 0; ++id) {
    if (cfg.listeners[id].tls) https_port = impl->bound[id].port;
  }
  for (auto& worker : impl->workers) worker->set_https_redirect(cfg, https_port);
  auto admin = bind_acceptor(*impl->io, cfg.admin.host, cfg.admin.port, false);
  if (!admin) return std::unexpected("admin: " + admin.error());
  impl->bound.push_back({"admin", cfg.admin.host, admin->local_endpoint().port()});
  auto* raw = impl.get();
  impl->admin = std::make_unique<AdminServer>(
      std::move(*admin),
      AdminHandlers{
          [raw] { return !raw->draining; },
          [raw](std::function<void(std::string)> done) { raw->collect_metrics(std::move(done)); },
          [raw](std::string text) {
            if (text.capacity() > raw->spare_metrics_text.capacity()) {
              raw->spare_metrics_text = std::move(text);
            }
          },
          [raw, https = https_port != 0] {
            return api::Snapshot{raw->snapshot->config, raw->snapshot->table, raw->generation,
                                 raw->loaded_at, https};
          }});
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::vector<BoundAddress> Server::bound_addresses() const { return impl_->bound; }

int Server::run() {
  auto& impl = *impl_;
  impl.wait_signal();
  impl.poll_certificates();
  impl.admin->start();
  for (const auto& bound : impl.bound) {
    log_info("{} listening on {}:{}", bound.name, bound.host, bound.port);
  }
  log_info("ready: {} worker(s), config generation {}", impl.workers.size(), impl.generation);
  if (!impl.own_io) {
    impl.workers.front()->run();  // the single worker's loop is the main thread's
  } else {
    impl.running_workers = impl.workers.size();
    for (auto& worker : impl.workers) {
      worker->start([&impl] { asio::post(*impl.io, [&impl] { impl.on_worker_exit(); }); });
    }
    impl.io->run();
    for (auto& worker : impl.workers) worker->join();
  }
  // Every worker flushed its lines when its loop ended: write them all before exiting.
  if (impl.access_log) impl.access_log->stop();
  log_info("stopped");
  return 0;
}

void Server::stop() {
  asio::post(*impl_->io, [impl = impl_.get()] { impl->begin_drain(); });
}

}  // namespace revgate::proxy
