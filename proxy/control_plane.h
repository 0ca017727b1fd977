// The control plane: which config is in force and how it changes at run time: reloads of the
// file (SIGHUP, the file watch, POST /reload), runtime traffic changes (the admin API's PATCH),
// gradual rollouts and the state file that keeps the latter two, each compiled into a Snapshot
// and published to every worker. Control thread only (the process's main thread, which also
// serves the admin listener): nothing here ever runs on a worker's event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "accesslog/writer.h"
#include "api/api.h"
#include "config/config.h"
#include "metrics/metrics.h"
#include "proxy/listeners.h"
#include "proxy/worker.h"
#include "traffic/state_file.h"

namespace revgate::proxy {

class ConfigWatcher;

class ControlPlane {
 public:
  // `config_path` is the file reloads read (empty: the demo, which has none).
  ControlPlane(boost::asio::io_context& io, std::string config_path);
  ~ControlPlane();

  // At start, before any worker exists: the first snapshot, from `config` and the state file
  // (runtime traffic changes and rollouts of the previous run). Fails only when an https://
  // revision's client TLS files cannot be used.
  std::expected<std::shared_ptr<const Snapshot>, std::string> start(config::Config config);
  // The access log's writer (null when off): the workers' buffers write to it. Replaced by a
  // reload that changes accessLog.
  accesslog::Writer* access_log() const { return access_log_.get(); }
  // At exit, after the workers flushed: everything logged is written.
  void stop_access_log();
  // Then: where snapshots go, and the listeners reloads change.
  void attach(std::vector<Worker*> workers, ListenerSet* listeners);
  // Watch the config file (inotify) and reload when it changes. Logs and goes on without the
  // watch when inotify is not available.
  void watch_config_file();

  struct ReloadResult {
    bool applied = false;
    std::uint64_t generation = 0;       // in force afterwards
    std::vector<std::string> errors;    // "file:line:col: message [rule]", or one line
    std::vector<std::string> warnings;  // settings that need a restart, overlays dropped
  };
  // Loads, validates and compiles the file, changes the listeners, and publishes; `done` runs
  // once every worker has installed the new snapshot (or at once on failure, the running config
  // staying in force). `trigger` names the cause in log lines ("SIGHUP", "file change", ...).
  void reload(std::string_view trigger, std::function<void(ReloadResult)> done);

  // PATCH of a Knative Service: a JSON merge patch of spec.traffic. `done` gets the answer:
  // the service as GET shows it once every worker routes by the new traffic, or the refusal.
  void patch_service(std::string_view target, std::string_view content_type, std::string_view body,
                     std::function<void(api::Response)> done);

  // After SIGTERM: changes are refused from now on, timers stop.
  void stop();

  // For the admin API and metrics.
  api::Snapshot api_snapshot() const;
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  std::uint64_t generation() const { return generation_; }
  std::uint64_t reloads_ok() const { return reloads_ok_; }
  std::uint64_t reloads_failed() const { return reloads_failed_; }
  const metrics::DestinationCatalog& catalog() const { return catalog_; }
  std::vector<metrics::RolloutGauge> rollout_gauges() const;

 private:
  struct Built;
  // The config as it will run: `file` with the runtime traffic of `state` applied (desired),
  // and the rollouts expanded (effective), compiled. Nothing changes until commit().
  std::expected<Built, std::string> build(std::shared_ptr<const config::Config> file,
                                          traffic::State state, std::uint64_t generation,
                                          std::vector<std::string>& warnings);
  std::expected<std::shared_ptr<const Snapshot>, std::string> make_snapshot(
      std::shared_ptr<const config::Config> desired, const config::Config& effective,
      std::uint64_t generation);
  // Puts `built` in force and publishes it with the listener changes; `installed` runs when
  // every worker has it.
  void commit(Built built, std::vector<std::vector<ListenerChange>> listener_changes,
              std::function<void()> installed,
              std::optional<std::unique_ptr<accesslog::Writer>> new_log);
  // `new_log` set: accessLog changed, the workers switch to this writer (null: off) and the
  // old one is stopped once none of them uses it.
  void publish(std::shared_ptr<const Snapshot> snapshot,
               std::vector<std::vector<ListenerChange>> listener_changes,
               std::function<void()> installed,
               std::optional<std::unique_ptr<accesslog::Writer>> new_log = std::nullopt);
  // Frees the retired snapshots no worker or request uses any more, here rather than on the
  // worker thread that happens to drop the last reference (10,000 services are tens of
  // thousands of frees: a stall on a data path).
  void free_retired();
  void save_state();
  void schedule_rollout_step();
  void step_rollouts();
  // Settings a running process cannot take: kept as they are, with a warning each.
  void keep_restart_settings(config::Config& next, std::vector<std::string>& warnings) const;

  boost::asio::io_context& io_;
  std::string config_path_;
  std::vector<Worker*> workers_;
  ListenerSet* listeners_ = nullptr;
  std::unique_ptr<ConfigWatcher> watcher_;
  std::unique_ptr<accesslog::Writer> access_log_;
  boost::asio::steady_timer rollout_timer_;
  bool stopped_ = false;

  std::shared_ptr<const config::Config> file_config_;  // as loaded from the file
  traffic::State state_;  // runtime traffic changes and rollouts in progress (the state file's)
  std::shared_ptr<const Snapshot> snapshot_;              // in force
  std::vector<std::shared_ptr<const Snapshot>> retired_;  // replaced; freed by free_retired()
  boost::asio::steady_timer retired_timer_;
  std::uint64_t generation_ = 0;
  std::chrono::system_clock::time_point loaded_at_ = std::chrono::system_clock::now();
  std::uint64_t reloads_ok_ = 0;
  std::uint64_t reloads_failed_ = 0;
  metrics::DestinationCatalog catalog_;

  // Upstream TLS client contexts, kept across reloads while a revision's settings and files
  // stay the same, so that pooled TLS connections survive a reload (pool keys carry the serial).
  struct ClientContextEntry;
  std::map<std::string, std::shared_ptr<ClientContextEntry>> client_contexts_;
  std::uint64_t client_context_serial_ = 0;
};

}  // namespace revgate::proxy
