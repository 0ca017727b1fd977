#include "proxy/control_plane.h"

#include <sys/stat.h>

#include <iterator>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/post.hpp>

#include "api/resources.h"
#include "proxy/config_watcher.h"
#include "proxy/log.h"
#include "routing/route_table.h"
#include "tls/client_context.h"

namespace revgate::proxy {

namespace asio = boost::asio;

// What build() makes and commit() puts in force.
struct ControlPlane::Built {
  std::shared_ptr<const config::Config> file;
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

}  // namespace

ControlPlane::ControlPlane(asio::io_context& io, std::string config_path)
    : io_(io), config_path_(std::move(config_path)), rollout_timer_(io), retired_timer_(io) {}

ControlPlane::~ControlPlane() = default;

std::expected<std::shared_ptr<const Snapshot>, std::string> ControlPlane::start(
    config::Config config) {
  std::vector<std::string> warnings;
  generation_ = 1;
  auto built =
      build(std::make_shared<const config::Config>(std::move(config)), generation_, warnings);
  if (!built) return std::unexpected(built.error());
  for (const auto& warning : warnings) log_warning("{}", warning);
  if (built->file->access_log) {
    auto writer = accesslog::Writer::create(*built->file->access_log);
    if (!writer) return std::unexpected("accessLog: " + writer.error());
    access_log_ = std::move(*writer);
  }
  file_config_ = std::move(built->file);
  snapshot_ = std::move(built->snapshot);
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
    std::shared_ptr<const config::Config> file, std::uint64_t generation,
    std::vector<std::string>& warnings) {
  Built built;
  built.file = file;
  auto snapshot = make_snapshot(file, *file, generation);
  if (!snapshot) return std::unexpected(snapshot.error());
  built.snapshot = std::move(*snapshot);
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
  std::erase_if(retired_, [](const auto& snapshot) { return snapshot.use_count() == 1; });
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
    workers_[w]->install(std::move(update), [&io, pending, installed, old_log] {
      asio::post(io, [pending, installed, old_log] {
        if (--*pending != 0) return;
        // No worker writes to the old log any more: what they handed it is written now.
        if (old_log) old_log->stop();
        if (installed) installed();
      });
    });
  }
}

void ControlPlane::commit(Built built, std::vector<std::vector<ListenerChange>> listener_changes,
                          std::function<void()> installed,
                          std::optional<std::unique_ptr<accesslog::Writer>> new_log) {
  file_config_ = std::move(built.file);
  loaded_at_ = std::chrono::system_clock::now();
  publish(std::move(built.snapshot), std::move(listener_changes), std::move(installed),
          std::move(new_log));
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
  auto built = build(std::move(file), generation_ + 1, result.warnings);
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
  done({405, api::status_object(405, "MethodNotAllowed", "not yet")});
}

void ControlPlane::save_state() {}
void ControlPlane::schedule_rollout_step() {}
void ControlPlane::step_rollouts() {}

api::Snapshot ControlPlane::api_snapshot() const {
  return api::Snapshot{snapshot_->config, snapshot_->table, generation_, loaded_at_,
                       listeners_ != nullptr && listeners_->has_tls()};
}

std::vector<metrics::RolloutGauge> ControlPlane::rollout_gauges() const { return {}; }

}  // namespace revgate::proxy
