#include "proxy/server.h"

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <iterator>
#include <optional>
#include <thread>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "accesslog/writer.h"
#include "metrics/metrics.h"
#include "metrics/prometheus_text.h"
#include "proxy/admin.h"
#include "proxy/control_plane.h"
#include "proxy/listeners.h"
#include "proxy/log.h"
#include "proxy/worker.h"
#include "routing/route_table.h"

namespace revgate::proxy {

namespace asio = boost::asio;

// How often certificate files are checked for changes (stat only; a reload when they changed).
constexpr std::chrono::seconds kCertificatePollInterval{2};
// The control thread's nice value: CFS gives a nice-10 thread about a tenth of a nice-0 one's
// share when both want the CPU, and all of it when the workers are idle.
constexpr int kControlThreadNice = 10;

struct Server::Impl {
  // The control thread's loop: admin listener, signals, reloads, timers. Declared first so that
  // it outlives everything that posts to it.
  asio::io_context io{1};
  std::unique_ptr<ControlPlane> control;
  std::unique_ptr<ListenerSet> listeners;
  std::vector<std::unique_ptr<Worker>> workers;
  BoundAddress admin_bound;
  std::unique_ptr<AdminServer> admin;
  std::optional<asio::signal_set> signals;
  std::optional<asio::steady_timer> drain_timer;
  std::optional<asio::steady_timer> grace_timer;
  std::optional<asio::steady_timer> certificate_poll;
  std::size_t running_workers = 0;
  bool draining = false;

  const config::Config& config() const { return *control->snapshot()->config; }

  void wait_signal() {
    signals->async_wait([this](boost::system::error_code ec, int signal) {
      if (ec) return;
      if (signal == SIGHUP) {
        control->reload("SIGHUP", [](const ControlPlane::ReloadResult&) {});
        return wait_signal();
      }
      begin_drain(signal == SIGINT ? "SIGINT" : "SIGTERM");
    });
  }

  void poll_certificates() {
    if (!listeners->has_tls() || draining) return;
    certificate_poll->expires_after(kCertificatePollInterval);
    certificate_poll->async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      listeners->reload_certificates(false);
      poll_certificates();
    });
  }

  // Drain, Kubernetes-style: readiness fails first (a load balancer stops sending), the
  // listeners stay open for drainDelay, then close; requests in flight get shutdownGrace.
  void begin_drain(std::string_view why) {
    if (draining) return;
    draining = true;
    const auto& timeouts = config().timeouts;
    log_info(
        "{}: draining; /readyz answers 503, listeners close in {} ms, then requests in "
        "flight have {} ms",
        why, timeouts.drain_delay.count(), timeouts.shutdown_grace.count());
    signals->cancel();
    certificate_poll->cancel();
    control->stop();
    for (auto& worker : workers) worker->begin_drain();
    drain_timer->expires_after(timeouts.drain_delay);
    drain_timer->async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      for (auto& worker : workers) worker->stop_accepting();
      grace_timer->expires_after(config().timeouts.shutdown_grace);
      grace_timer->async_wait([this](boost::system::error_code wait_ec) {
        if (wait_ec) return;
        log_warning("grace period over: closing the connections still open");
        for (auto& worker : workers) worker->stop();
      });
    });
  }

  void on_worker_exit() {
    if (--running_workers != 0) return;
    drain_timer->cancel();
    grace_timer->cancel();
    if (admin) admin->close();
    io.stop();
  }

  // What one scrape renders from, kept until its text is written out.
  struct Scrape {
    metrics::WorkerShard merged;
    std::vector<metrics::Destination> catalog;
    metrics::ProcessView process;
    std::optional<metrics::PrometheusText> text;
  };

  void collect_metrics(std::function<void(BodySource)> done) {
    struct Gather {
      std::shared_ptr<Scrape> scrape;
      std::size_t pending;
      std::function<void(BodySource)> done;
    };
    auto gather = std::make_shared<Gather>(
        Gather{std::make_shared<Scrape>(), workers.size(), std::move(done)});
    // The copy of each shard is made on its worker's thread (the shard is the worker's); the
    // merge and the rendering, the expensive parts, here on the control thread.
    auto finish = [this, gather] {
      auto& process = gather->scrape->process;
      process.listener_names = listeners->names_by_id();
      for (const auto& service : control->snapshot()->table->services()) {
        for (const auto& target : service->targets) {
          if (target.revision == nullptr) continue;
          process.traffic.push_back({service->name, service->namespace_name, target.revision->name,
                                     target.tag, target.percent});
        }
      }
      process.config_generation = control->generation();
      process.reloads_ok = control->reloads_ok();
      process.reloads_failed = control->reloads_failed();
      process.process = metrics::read_process_stats();
      if (auto* log = control->access_log())
        process.access_log_dropped_lines = log->dropped_lines();
      for (const auto& counts : listeners->certificate_reloads()) {
        process.certificate_reloads.push_back({counts.listener, counts.ok, counts.failed});
      }
      process.rollouts = control->rollout_gauges();
      process.draining = draining;
      auto scrape = std::move(gather->scrape);
      scrape->catalog = control->catalog().snapshot();
      scrape->text.emplace(scrape->merged, scrape->catalog, scrape->process);
      gather->done([scrape](std::string& out, std::size_t until_size) {
        return scrape->text->write_next(out, until_size);
      });
    };
    for (auto& worker : workers) {
      worker->collect_metrics([this, gather, finish](metrics::WorkerShard shard) {
        asio::post(io, [gather, finish, shard = std::move(shard)] {
          gather->scrape->merged.merge(shard);
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
  unsigned worker_count = config.workers > 0 ? static_cast<unsigned>(config.workers)
                                             : std::max(1u, std::thread::hardware_concurrency());
  impl->control = std::make_unique<ControlPlane>(impl->io, std::move(config_path));
  auto snapshot = impl->control->start(std::move(config));
  if (!snapshot) return std::unexpected(snapshot.error());
  const auto& cfg = *(*snapshot)->config;

  std::vector<Worker*> workers;
  for (unsigned i = 0; i < worker_count; ++i) {
    impl->workers.push_back(std::make_unique<Worker>(i, *snapshot));
    if (auto* log = impl->control->access_log()) {
      impl->workers.back()->set_access_log(std::make_unique<accesslog::WorkerLog>(*log));
    }
    workers.push_back(impl->workers.back().get());
  }
  impl->signals.emplace(impl->io, SIGINT, SIGTERM, SIGHUP);
  impl->drain_timer.emplace(impl->io);
  impl->grace_timer.emplace(impl->io);
  impl->certificate_poll.emplace(impl->io);
  impl->listeners = std::make_unique<ListenerSet>(workers);
  if (auto started = impl->listeners->start(cfg); !started) {
    return std::unexpected(started.error());
  }
  impl->control->attach(std::move(workers), impl->listeners.get());

  auto admin = bind_acceptor(impl->io, cfg.admin.host, cfg.admin.port, false);
  if (!admin) return std::unexpected("admin: " + admin.error());
  impl->admin_bound = {"admin", cfg.admin.host, admin->local_endpoint().port()};
  auto* raw = impl.get();
  AdminHandlers handlers;
  handlers.ready = [raw] { return !raw->draining; };
  handlers.metrics = [raw](std::function<void(BodySource)> done) {
    raw->collect_metrics(std::move(done));
  };
  handlers.snapshot = [raw] { return raw->control->api_snapshot(); };
  handlers.reload = [raw](std::function<void(AdminReply)> done) {
    raw->control->reload(
        "POST /reload", [done = std::move(done)](const ControlPlane::ReloadResult& result) {
          done(reload_reply(result.applied, result.generation, result.errors, result.warnings));
        });
  };
  handlers.patch = [raw](std::string_view target, std::string_view content_type,
                         std::string_view body, std::function<void(AdminReply)> done) {
    raw->control->patch_service(
        target, content_type, body, [done = std::move(done)](api::Response response) {
          done(AdminReply{response.status, "application/json", api::to_pretty_json(response.body)});
        });
  };
  impl->admin = std::make_unique<AdminServer>(std::move(*admin), std::move(handlers));
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::vector<BoundAddress> Server::bound_addresses() const {
  auto bound = impl_->listeners->bound();
  bound.push_back(impl_->admin_bound);
  return bound;
}

int Server::run() {
  auto& impl = *impl_;
  impl.wait_signal();
  impl.poll_certificates();
  impl.control->watch_config_file();
  impl.admin->start();
  for (const auto& bound : bound_addresses()) {
    log_info("{} listening on {}:{}", bound.name, bound.host, bound.port);
  }
  log_info("ready: {} worker(s), config generation {}", impl.workers.size(),
           impl.control->generation());
  impl.running_workers = impl.workers.size();
  for (auto& worker : impl.workers) {
    worker->start([&impl] { asio::post(impl.io, [&impl] { impl.on_worker_exit(); }); });
  }
  // The control thread yields the CPU to the workers (they were started first, so they keep
  // the process's priority): on a busy machine a 10,000-service reload or scrape then takes
  // longer instead of taking the time of proxied requests. Not an error when refused.
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kControlThreadNice);
  impl.io.run();
  for (auto& worker : impl.workers) worker->join();
  // Every worker flushed its lines when its loop ended: write them all before exiting.
  impl.control->stop_access_log();
  log_info("stopped");
  return 0;
}

void Server::stop() {
  asio::post(impl_->io, [impl = impl_.get()] { impl->begin_drain("stop"); });
}

}  // namespace revgate::proxy
