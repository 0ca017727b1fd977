#include "proxy/control_plane.h"

#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <iterator>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/post.hpp>

#include "api/patch.h"
#include "api/resources.h"
#include "proxy/config_watcher.h"
#include "proxy/log.h"
#include "routing/route_table.h"
#include "tls/client_context.h"
#include "traffic/overlay.h"
#include "traffic/rollout.h"

namespace revgate::proxy {

namespace asio = boost::asio;

// What build() makes and commit() puts in force.
struct ControlPlane::Built {
  std::shared_ptr<const config::Config> file;
  traffic::State state;  // what the state file is to hold with it
  std::shared_ptr<const Snapshot> snapshot;
};

// An upstream TLS client context with what it was made from: reused by the next snapshot when
// the revision's tls settings and the files' stamps are the same.
struct ControlPlane::ClientContextEntry {
  std::shared_ptr<const tls::ClientContext> context;
  std::uint64_t serial = 0;
  std::string stamps;  // size, mtime and inode of each file it read
};

namespace {

std::string file_stamp(const std::string& path) {
  if (path.empty()) return "-";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "missing";
  return fmt::format("{}:{}:{}.{}", st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

std::string tls_settings_key(const config::UpstreamTls* tls) {
  if (tls == nullptr) return "system";
  return fmt::format("{}\n{}\n{}\n{}", tls->ca_file, tls->server_name, tls->cert_file,
                     tls->key_file);
}

std::string tls_file_stamps(const config::UpstreamTls* tls) {
  if (tls == nullptr) return {};
  return fmt::format("{} {} {}", file_stamp(tls->ca_file), file_stamp(tls->cert_file),
                     file_stamp(tls->key_file));
}

// Wall clock: rollout times are kept in the state file, across restarts.
std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ControlPlane::ControlPlane(asio::io_context& io, std::string config_path)
    : io_(io), config_path_(std::move(config_path)), rollout_timer_(io), retired_timer_(io) {}

ControlPlane::~ControlPlane() = default;

std::expected<std::shared_ptr<const Snapshot>, std::string> ControlPlane::start(
    config::Config config) {
  std::vector<std::string> warnings;
  generation_ = 1;
  // The runtime changes and rollouts of the previous run. A state file that cannot be read is
  // not a reason to stay down: the config file alone is a working config.
  traffic::State state;
  if (!config.state_file.empty()) {
    auto loaded = traffic::load_state(config.state_file);
    if (loaded) {
      state = std::move(*loaded);
    } else {
      log_error("{}; starting from the config file's traffic alone", loaded.error());
    }
  }
  auto built = build(std::make_shared<const config::Config>(std::move(config)), std::move(state),
                     generation_, warnings);
  if (!built) return std::unexpected(built.error());
  for (const auto& warning : warnings) log_warning("{}", warning);
  if (built->file->access_log) {
    auto writer = accesslog::Writer::create(*built->file->access_log);
    if (!writer) return std::unexpected("accessLog: " + writer.error());
    access_log_ = std::move(*writer);
  }
  file_config_ = std::move(built->file);
  snapshot_ = std::move(built->snapshot);
  if (built->state != state_) {
    state_ = std::move(built->state);
    save_state();
  }
  schedule_rollout_step();
  return snapshot_;
}

void ControlPlane::attach(std::vector<Worker*> workers, ListenerSet* listeners) {
  workers_ = std::move(workers);
  listeners_ = listeners;
}

void ControlPlane::watch_config_file() {
  if (config_path_.empty()) return;
  auto watcher = ConfigWatcher::create(
      io_, config_path_, [this] { reload("file change", [](const ReloadResult&) {}); });
  if (!watcher) {
    log_warning("config file {} is not watched ({}); reload with SIGHUP or POST /reload",
                config_path_, watcher.error());
    return;
  }
  watcher_ = std::move(*watcher);
  watcher_->mark();
}

void ControlPlane::stop() {
  stopped_ = true;
  rollout_timer_.cancel();
  retired_timer_.cancel();
  if (watcher_) watcher_->close();
}

void ControlPlane::keep_restart_settings(config::Config& next,
                                         std::vector<std::string>& warnings) const {
  const auto& running = *file_config_;
  if (next.workers != running.workers) {
    warnings.push_back(fmt::format("workers: {} -> {} needs a restart; the rest is applied",
                                   running.workers, next.workers));
    next.workers = running.workers;
  }
  if (next.admin.host != running.admin.host || next.admin.port != running.admin.port) {
    warnings.push_back(
        fmt::format("admin.address: {}:{} -> {}:{} needs a restart; the rest is "
                    "applied",
                    running.admin.host, running.admin.port, next.admin.host, next.admin.port));
    next.admin = running.admin;
  }
}

void ControlPlane::stop_access_log() {
  if (access_log_) access_log_->stop();
}

std::expected<ControlPlane::Built, std::string> ControlPlane::build(
    std::shared_ptr<const config::Config> file, traffic::State state, std::uint64_t generation,
    std::vector<std::string>& warnings) {
  Built built;
  built.file = file;
  // Desired: the file with the runtime traffic changes that still fit it. Copies of a large
  // config are made only when there is something to lay over it.
  std::shared_ptr<const config::Config> desired = file;
  if (!state.overlays.empty()) {
    auto applied = traffic::apply_overlays(*file, std::move(state.overlays));
    for (auto& reason : applied.dropped) warnings.push_back(std::move(reason));
    state.overlays = std::move(applied.kept);
    desired = std::make_shared<const config::Config>(std::move(applied.config));
  }
  // Effective: the rollouts in progress expanded (Knative's status.traffic).
  const config::Config* previous = snapshot_ ? snapshot_->config.get() : nullptr;
  state.rollouts = traffic::plan_rollouts(*desired, previous, state.rollouts, now_ms());
  std::optional<config::Config> effective;
  if (!state.rollouts.empty()) effective = traffic::effective_config(*desired, state.rollouts);
  auto snapshot = make_snapshot(desired, effective ? *effective : *desired, generation);
  if (!snapshot) return std::unexpected(snapshot.error());
  built.snapshot = std::move(*snapshot);
  built.state = std::move(state);
  return built;
}

std::expected<std::shared_ptr<const Snapshot>, std::string> ControlPlane::make_snapshot(
    std::shared_ptr<const config::Config> desired, const config::Config& effective,
    std::uint64_t generation) {
  auto result = std::make_shared<Snapshot>();
  result->table = routing::RouteTable::compile(effective, generation);
  result->destination_ids.resize(result->table->revisions().size());
  for (const auto& service : result->table->services()) {
    for (const auto& target : service->targets) {
      if (target.revision == nullptr) continue;
      const auto& revision = *target.revision;
      result->destination_ids[revision.index] =
          catalog_.intern({service->host, service->name, service->namespace_name, revision.name});
    }
  }
  std::unordered_map<std::string_view, const config::Revision*> by_name;
  for (const auto& service : effective.services) {
    for (const auto& revision : service.revisions) by_name.emplace(revision.name, &revision);
  }
  auto pool_keys = std::make_shared<PoolKeySet>();
  std::map<std::string, std::shared_ptr<ClientContextEntry>> contexts_in_use;
  result->upstreams.resize(result->table->revisions().size());
  for (const auto& revision : result->table->revisions()) {
    const auto& configured = *by_name.at(revision->name);
    const ClientContextEntry* context = nullptr;
    auto& upstreams = result->upstreams[revision->index];
    for (std::size_t i = 0; i < revision->endpoints.size(); ++i) {
      const auto& endpoint = revision->endpoints[i];
      const auto& written = configured.endpoints[i];
      auto& upstream = upstreams.emplace_back();
      upstream.pool_key = fmt::format("{}:{}", endpoint.address, endpoint.port);
      upstream.protocol = configured.protocol;
      if (written.tls) {
        if (context == nullptr) {
          const auto* tls = configured.tls ? &*configured.tls : nullptr;
          const auto key = tls_settings_key(tls);
          auto stamps = tls_file_stamps(tls);
          auto& entry = contexts_in_use[key];
          if (!entry) {
            auto it = client_contexts_.find(key);
            if (it != client_contexts_.end() && it->second->stamps == stamps) {
              entry = it->second;
            } else {
              auto created = tls::ClientContext::create(tls);
              if (!created) {
                return std::unexpected(
                    fmt::format("revision {}: {}", revision->name, created.error()));
              }
              entry = std::make_shared<ClientContextEntry>(ClientContextEntry{
                  std::move(*created), ++client_context_serial_, std::move(stamps)});
            }
            result->client_contexts.push_back(entry->context);
          }
          context = entry.get();
        }
        upstream.tls = context->context.get();
        upstream.server_name = std::string(context->context->server_name_for(written));
        fmt::format_to(std::back_inserter(upstream.pool_key), " tls#{} {}", context->serial,
                       upstream.server_name);
      }
      pool_keys->insert(upstream.pool_key);
    }
  }
  // Only now that nothing can fail: later snapshots reuse exactly the contexts in use.
  client_contexts_ = std::move(contexts_in_use);
  result->pool_keys = std::move(pool_keys);
  result->config = std::move(desired);
  return result;
}

void ControlPlane::free_retired() {
  // use_count() is exact here: only this thread copies or drops the control's references, and
  // a count of 1 means no worker view and no request holds the snapshot any more.
  const auto before = retired_.size();
  std::erase_if(retired_, [](const auto& snapshot) { return snapshot.use_count() == 1; });
  // A large table's pages go back to the system rather than stay with the allocator: RSS
  // returns to what the table in force needs. A few ms here, never on a worker.
  if (retired_.size() != before) ::malloc_trim(0);
  if (retired_.empty() || stopped_) return;
  retired_timer_.expires_after(std::chrono::seconds(1));
  retired_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) free_retired();
  });
}

void ControlPlane::publish(std::shared_ptr<const Snapshot> snapshot,
                           std::vector<std::vector<ListenerChange>> listener_changes,
                           std::function<void()> installed,
                           std::optional<std::unique_ptr<accesslog::Writer>> new_log) {
  std::shared_ptr<accesslog::Writer> old_log;
  if (new_log) {
    old_log = std::move(access_log_);
    access_log_ = std::move(*new_log);
  }
  if (snapshot_) {
    retired_.push_back(std::move(snapshot_));
    if (retired_.size() == 1) free_retired();
  }
  snapshot_ = snapshot;
  if (workers_.empty()) {
    if (installed) installed();
    return;
  }
  // Each worker acknowledges on its own thread; the count is kept here, on the control thread.
  auto pending = std::make_shared<std::size_t>(workers_.size());
  auto& io = io_;
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    WorkerUpdate update;
    update.snapshot = snapshot;
    if (w < listener_changes.size()) update.listeners = std::move(listener_changes[w]);
    if (new_log) {
      update.replace_access_log = true;
      if (access_log_) update.access_log = std::make_unique<accesslog::WorkerLog>(*access_log_);
    }
    workers_[w]->install(std::move(update), [this, &io, pending, installed, old_log] {
      asio::post(io, [this, pending, installed, old_log] {
        if (--*pending != 0) return;
        // No worker writes to the old log any more: what they handed it is written now.
        if (old_log) old_log->stop();
        if (installed) installed();
        free_retired();  // the replaced table, unless a request in flight still holds it
      });
    });
  }
}

void ControlPlane::commit(Built built, std::vector<std::vector<ListenerChange>> listener_changes,
                          std::function<void()> installed,
                          std::optional<std::unique_ptr<accesslog::Writer>> new_log) {
  // A rollout step keeps the generation (and the time it came into force): only status moves.
  if (built.snapshot->table->generation() != snapshot_->table->generation()) {
    loaded_at_ = std::chrono::system_clock::now();
  }
  file_config_ = std::move(built.file);
  if (built.state != state_) {
    state_ = std::move(built.state);
    save_state();
  }
  publish(std::move(built.snapshot), std::move(listener_changes), std::move(installed),
          std::move(new_log));
  schedule_rollout_step();
}

void ControlPlane::reload(std::string_view trigger, std::function<void(ReloadResult)> done) {
  ReloadResult result;
  result.generation = generation_;
  // Config errors are logged one per line, then counted; any other refusal is one line.
  const auto refuse = [&](std::vector<std::string> errors, bool config_errors = false) {
    ++reloads_failed_;
    if (config_errors) {
      for (const auto& error : errors) log_error("reload: {}", error);
      log_error("reload failed ({}): {} error(s); the running config stays in force", trigger,
                errors.size());
    } else {
      log_error("reload failed: {}; the running config stays in force ({})", errors.front(),
                trigger);
    }
    result.errors = std::move(errors);
    done(std::move(result));
  };
  if (stopped_) return refuse({"shutting down: the config is no longer reloaded"});
  if (config_path_.empty()) return refuse({"there is no config file to reload (revgate demo)"});
  // Certificates are read again by every reload, whatever becomes of the config file's: a
  // renewed certificate must not wait for a config that validates.
  if (listeners_ != nullptr) listeners_->reload_certificates(true);
  if (watcher_) watcher_->mark();
  auto loaded = config::load_file(config_path_);
  if (!loaded) {
    std::vector<std::string> errors;
    for (const auto& error : loaded.error()) errors.push_back(error.to_string());
    return refuse(std::move(errors), true);
  }
  keep_restart_settings(*loaded, result.warnings);
  auto file = std::make_shared<const config::Config>(std::move(*loaded));
  auto listener_plan =
      listeners_ != nullptr
          ? listeners_->plan(*file)
          : std::expected<std::unique_ptr<ListenerSet::Plan>, std::string>(nullptr);
  if (!listener_plan) return refuse({listener_plan.error()});
  // A changed access log opens its new file now, so that a bad path fails the reload.
  std::optional<std::unique_ptr<accesslog::Writer>> new_log;
  const auto& log = file_config_->access_log;
  if (file->access_log.has_value() != log.has_value() ||
      (log && (file->access_log->path != log->path || file->access_log->format != log->format))) {
    new_log.emplace();
    if (file->access_log) {
      auto writer = accesslog::Writer::create(*file->access_log);
      if (!writer) return refuse({"accessLog: " + writer.error()});
      *new_log = std::move(*writer);
    }
  }
  auto built = build(std::move(file), state_, generation_ + 1, result.warnings);
  if (!built) return refuse({built.error()});

  ++generation_;
  ++reloads_ok_;
  for (const auto& warning : result.warnings) log_warning("reload ({}): {}", trigger, warning);
  std::vector<std::vector<ListenerChange>> changes;
  if (*listener_plan) changes = listeners_->commit(std::move(*listener_plan));
  result.applied = true;
  result.generation = generation_;
  if (new_log)
    log_info("reload ({}): access log now {}", trigger, *new_log ? (*new_log)->path() : "off");
  commit(
      std::move(*built), std::move(changes),
      [result = std::move(result), done = std::move(done)]() mutable {
        log_info("reload: config generation {} in force", result.generation);
        done(std::move(result));
      },
      std::move(new_log));
}

void ControlPlane::patch_service(std::string_view target, std::string_view content_type,
                                 std::string_view body, std::function<void(api::Response)> done) {
  if (stopped_) {
    return done({503, api::status_object(503, "ServiceUnavailable",
                                         "shutting down: traffic changes are refused")});
  }
  auto planned = api::plan_traffic_patch(api_snapshot(), target, content_type, body);
  if (!planned) return done(std::move(planned.error()));
  const auto& running = snapshot_->config->services[planned->service_index];
  const config::Service* file_service = nullptr;
  for (const auto& service : file_config_->services) {
    if (service.name == running.name && service.namespace_name == running.namespace_name) {
      file_service = &service;
    }
  }
  const auto internal = [&](std::string message) {
    log_error("PATCH {}/{}: {}", running.namespace_name, running.name, message);
    done({500, api::status_object(500, "InternalError", message)});
  };
  if (file_service == nullptr) return internal("the service is not in the config file");

  traffic::State next = state_;
  auto overlay = traffic::make_overlay(*file_service, std::move(planned->traffic), now_ms());
  if (overlay.traffic == overlay.base) {
    // Back to what the file says: there is no runtime change to keep any more.
    std::erase_if(next.overlays, [&](const traffic::Overlay& o) {
      return o.namespace_name == overlay.namespace_name && o.service == overlay.service;
    });
  } else {
    traffic::set_overlay(next.overlays, std::move(overlay));
  }
  std::vector<std::string> warnings;
  auto built = build(file_config_, std::move(next), generation_ + 1, warnings);
  if (!built) return internal(built.error());
  for (const auto& warning : warnings) log_warning("PATCH: {}", warning);
  // Kept before it is applied: what a restart would not know is not put in force.
  if (const auto& path = file_config_->state_file; !path.empty()) {
    if (auto saved = traffic::save_state(path, built->state); !saved) {
      return internal(fmt::format("{}; the traffic was not changed", saved.error()));
    }
  }
  ++generation_;
  log_info("PATCH {}/{}: traffic changed, generation {}", running.namespace_name, running.name,
           generation_);
  state_ = built->state;  // saved above: commit() has nothing more to write
  commit(
      std::move(*built), {},
      [this, target = std::string(target), done = std::move(done)] {
        done(api::handle(api_snapshot(), "GET", target));
      },
      std::nullopt);
}

void ControlPlane::save_state() {
  const auto& path = file_config_->state_file;
  if (path.empty()) return;
  if (auto saved = traffic::save_state(path, state_); !saved) {
    log_error("{}; the runtime traffic in force is not kept across a restart", saved.error());
  }
}

void ControlPlane::schedule_rollout_step() {
  const auto next = traffic::next_step_ms(state_.rollouts);
  if (!next || stopped_) {
    rollout_timer_.cancel();
    return;
  }
  rollout_timer_.expires_after(
      std::chrono::milliseconds(std::max<std::int64_t>(0, *next - now_ms())));
  rollout_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) step_rollouts();
  });
}

void ControlPlane::step_rollouts() {
  if (stopped_) return;
  traffic::State next = state_;
  if (!traffic::step_rollouts(next.rollouts, now_ms())) return schedule_rollout_step();
  std::vector<std::string> warnings;
  // The same file and generation: only the effective shares move (status, not spec).
  auto built = build(file_config_, std::move(next), generation_, warnings);
  if (!built) {
    log_error("rollout step: {}", built.error());
    return schedule_rollout_step();
  }
  commit(std::move(*built), {}, nullptr, std::nullopt);
}

api::Snapshot ControlPlane::api_snapshot() const {
  api::Snapshot out{snapshot_->config,
                    snapshot_->table,
                    generation_,
                    loaded_at_,
                    listeners_ != nullptr && listeners_->has_tls(),
                    {}};
  const auto& services = snapshot_->config->services;
  for (const auto& rolling : state_.rollouts) {
    for (std::size_t i = 0; i < services.size(); ++i) {
      if (services[i].name != rolling.service ||
          services[i].namespace_name != rolling.namespace_name) {
        continue;
      }
      std::string text;
      for (const auto& rollout : rolling.rollouts) {
        if (!rollout.in_progress()) continue;
        if (!text.empty()) text += "; ";
        text += fmt::format("{} has {}% of {}%{}", rollout.revisions.back().revision,
                            rollout.revisions.back().percent, rollout.percent,
                            rollout.tag.empty() ? "" : fmt::format(" (tag {})", rollout.tag));
      }
      out.rollouts.resize(services.size());
      out.rollouts[i] = std::move(text);
    }
  }
  return out;
}

std::vector<metrics::RolloutGauge> ControlPlane::rollout_gauges() const {
  std::vector<metrics::RolloutGauge> gauges;
  for (const auto& service : snapshot_->config->services) {
    if (service.rollout_duration.count() == 0) continue;
    const bool rolling = std::any_of(
        state_.rollouts.begin(), state_.rollouts.end(), [&](const traffic::ServiceRollouts& r) {
          return r.service == service.name && r.namespace_name == service.namespace_name;
        });
    gauges.push_back({service.name, service.namespace_name, rolling});
  }
  return gauges;
}

}  // namespace revgate::proxy
