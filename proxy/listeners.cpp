#include "proxy/listeners.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include "proxy/log.h"

namespace revgate::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

std::expected<Acceptor, std::string> bind_acceptor(asio::io_context& io, const std::string& host,
                                                   std::uint16_t port, bool share_port,
                                                   bool listen) {
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
  if (listen) {
    if (auto listening = start_listening(acceptor); !listening) {
      return std::unexpected(listening.error());
    }
  }
  return acceptor;
}

std::expected<void, std::string> start_listening(Acceptor& acceptor) {
  boost::system::error_code ec;
  acceptor.listen(4096, ec);
  if (!ec) return {};
  const auto why = ec.message();
  const auto local = acceptor.local_endpoint(ec);
  return std::unexpected(
      fmt::format("cannot listen on {}:{}: {}", local.address().to_string(), local.port(), why));
}

ListenerSet::~ListenerSet() = default;

namespace {

bool same_tls(const std::optional<config::ListenerTls>& a,
              const std::optional<config::ListenerTls>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  if (a->min_version != b->min_version || a->require_sni != b->require_sni ||
      a->handshake_timeout != b->handshake_timeout ||
      a->certificates.size() != b->certificates.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a->certificates.size(); ++i) {
    if (a->certificates[i].cert_file != b->certificates[i].cert_file ||
        a->certificates[i].key_file != b->certificates[i].key_file) {
      return false;
    }
  }
  return true;
}

bool same_spec(const ListenerSpec& a, const ListenerSpec& b) {
  return a.id == b.id && a.name == b.name && a.https == b.https && a.tls == b.tls &&
         a.handshake_timeout == b.handshake_timeout &&
         a.https_redirect_port == b.https_redirect_port && a.h2c == b.h2c;
}

}  // namespace

std::expected<void, std::string> ListenerSet::load_tls(Running& listener) {
  const auto& tls = *listener.config.tls;
  auto loaded = tls::CertificateSet::load(tls);
  if (!loaded) return std::unexpected(loaded.error());
  if (!ticket_keys_) {
    auto keys = tls::SessionTicketKeys::generate();
    if (!keys) return std::unexpected("tls: " + keys.error());
    ticket_keys_ = std::move(*keys);
  }
  listener.reloader = std::make_unique<tls::CertificateReloader>(*loaded);
  listener.contexts.clear();
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    auto context = tls::ServerContext::create(tls, *loaded, *ticket_keys_,
                                              tls::ServerOptions{listener.config.alpn});
    if (!context) return std::unexpected(context.error());
    listener.contexts.push_back(std::move(*context));
  }
  return {};
}

std::expected<std::vector<Acceptor>, std::string> ListenerSet::bind_everywhere(
    const config::Listener& config, std::uint16_t& port) {
  // Every worker gets its own SO_REUSEPORT acceptor, so the kernel spreads connections across
  // workers. The first bind fixes the port when the config says 0.
  std::vector<Acceptor> acceptors;
  port = config.port;
  for (Worker* worker : workers_) {
    auto acceptor = bind_acceptor(worker->io(), config.host, port, true, false);
    if (!acceptor) return std::unexpected(acceptor.error());
    port = acceptor->local_endpoint().port();
    acceptors.push_back(std::move(*acceptor));
  }
  return acceptors;
}

std::expected<std::unique_ptr<ListenerSet::Plan>, std::string> ListenerSet::plan(
    const config::Config& config) {
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      const auto& a = config.listeners[j];
      const auto& b = config.listeners[i];
      if (a.port != 0 && a.host == b.host && a.port == b.port) {
        return std::unexpected(fmt::format("listeners {} and {} both listen on {}:{}", a.name,
                                           b.name, b.host, b.port));
      }
    }
  }
  auto plan = std::make_unique<Plan>();
  std::vector<bool> claimed(running_.size());
  for (const auto& listener : config.listeners) {
    auto& entry = plan->entries.emplace_back();
    // The same socket serves on: same address, and for "any free port" the same name as well.
    // A listener started on port 0 whose config now names the port it got keeps its socket.
    for (std::size_t i = 0; i < running_.size(); ++i) {
      const auto& running = running_[i]->config;
      if (claimed[i] || running.host != listener.host) continue;
      const bool same_port = running.port == listener.port ||
                             (listener.port != 0 && listener.port == running_[i]->port);
      if (!same_port) continue;
      if (listener.port == 0 && running.name != listener.name) continue;
      claimed[i] = true;
      entry.kept = i;
      break;
    }
    entry.next = std::make_unique<Running>();
    entry.next->config = listener;
    const auto fail = [&](const std::string& why) {
      return std::unexpected(fmt::format("listener {}: {}", listener.name, why));
    };
    if (entry.kept) {
      entry.next->port = running_[*entry.kept]->port;
      entry.tls_changed = !same_tls(running_[*entry.kept]->config.tls, listener.tls) ||
                          running_[*entry.kept]->config.alpn != listener.alpn;
    } else {
      auto acceptors = bind_everywhere(listener, entry.next->port);
      if (!acceptors) return fail(acceptors.error());
      entry.acceptors = std::move(*acceptors);
      entry.tls_changed = true;
    }
    if (entry.tls_changed && listener.tls) {
      if (auto loaded = load_tls(*entry.next); !loaded) return fail(loaded.error());
    }
  }
  return plan;
}

std::vector<std::shared_ptr<const ListenerSpec>> ListenerSet::make_specs(
    const Running& listener, std::uint16_t https_port) const {
  std::vector<std::shared_ptr<const ListenerSpec>> specs;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    auto spec = std::make_shared<ListenerSpec>();
    spec->id = listener.id;
    spec->name = listener.config.name;
    spec->https = listener.config.tls.has_value();
    if (listener.config.tls) {
      spec->tls_owner = listener.contexts[i];
      spec->tls = &spec->tls_owner->asio_context();
      spec->handshake_timeout = listener.config.tls->handshake_timeout;
    }
    if (listener.config.https_redirect) spec->https_redirect_port = https_port;
    spec->h2c = listener.config.h2c;
    specs.push_back(std::move(spec));
  }
  return specs;
}

std::vector<std::vector<ListenerChange>> ListenerSet::commit(std::unique_ptr<Plan> plan) {
  std::vector<std::vector<ListenerChange>> changes(workers_.size());
  std::vector<std::unique_ptr<Running>> next;
  std::vector<bool> kept(running_.size());
  std::vector<std::vector<Acceptor>> new_acceptors;  // parallel to `next`; empty when kept
  for (auto& entry : plan->entries) {
    std::unique_ptr<Running> listener;
    if (entry.kept) {
      kept[*entry.kept] = true;
      listener = std::move(running_[*entry.kept]);
      if (listener->config.name != entry.next->config.name) {
        names_[listener->id] = entry.next->config.name;
      }
      listener->config = std::move(entry.next->config);
      if (entry.tls_changed) {
        listener->reloader = std::move(entry.next->reloader);
        listener->contexts = std::move(entry.next->contexts);
      }
    } else {
      listener = std::move(entry.next);
      listener->id = static_cast<std::uint32_t>(names_.size());
      names_.push_back(listener->config.name);
    }
    // Only now do the new sockets listen: a plan that is dropped must not have taken (and, by
    // closing, reset) connections the kernel would have queued on them.
    for (auto& acceptor : entry.acceptors) {
      if (auto listening = start_listening(acceptor); !listening) {
        log_error("listener {}: {}", listener->config.name, listening.error());
      }
    }
    new_acceptors.push_back(std::move(entry.acceptors));
    next.push_back(std::move(listener));
  }
  for (std::size_t i = 0; i < running_.size(); ++i) {
    if (kept[i]) continue;
    log_info("listener {} ({}:{}) removed: it accepts no more connections; open ones finish",
             running_[i]->config.name, running_[i]->config.host, running_[i]->port);
    for (auto& worker_changes : changes) {
      worker_changes.push_back({ListenerChange::Kind::remove, running_[i]->id, nullptr, {}});
    }
  }
  // httpsRedirect points at the first TLS listener's port (validation requires one).
  std::uint16_t https_port = 0;
  for (const auto& listener : next) {
    if (listener->config.tls) {
      https_port = listener->port;
      break;
    }
  }
  for (std::size_t l = 0; l < next.size(); ++l) {
    auto& listener = *next[l];
    auto specs = make_specs(listener, https_port);
    const bool added = !new_acceptors[l].empty();
    for (std::size_t w = 0; w < workers_.size(); ++w) {
      if (added) {
        changes[w].push_back(
            {ListenerChange::Kind::add, listener.id, specs[w], std::move(new_acceptors[l][w])});
      } else if (!same_spec(*listener.specs[w], *specs[w])) {
        changes[w].push_back({ListenerChange::Kind::update, listener.id, specs[w], {}});
      } else {
        specs[w] = listener.specs[w];  // unchanged: sessions and the worker share one spec
      }
    }
    if (added && !running_.empty()) {
      log_info("listener {} added on {}:{}", listener.config.name, listener.config.host,
               listener.port);
    }
    listener.specs = std::move(specs);
  }
  running_ = std::move(next);
  return changes;
}

std::expected<void, std::string> ListenerSet::start(const config::Config& config) {
  auto planned = plan(config);
  if (!planned) return std::unexpected(planned.error());
  auto changes = commit(std::move(*planned));
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    for (auto& change : changes[w]) {
      workers_[w]->add_listener(std::move(*change.acceptor), std::move(change.spec));
    }
  }
  return {};
}

void ListenerSet::reload_certificates(bool forced) {
  for (auto& listener : running_) {
    if (!listener->reloader) continue;
    auto result = forced ? std::optional(listener->reloader->reload()) : listener->reloader->poll();
    if (!result) continue;
    if (!*result) {
      ++listener->reloads_failed;
      log_error("listener {}: certificate reload failed, the certificates in force stay: {}",
                listener->config.name, result->error());
      continue;
    }
    ++listener->reloads_ok;
    // Each context belongs to its worker's thread: install there.
    for (std::size_t w = 0; w < workers_.size(); ++w) {
      asio::post(workers_[w]->io(),
                 [context = listener->contexts[w], set = **result] { context->install(set); });
    }
    log_info("listener {}: certificates reloaded", listener->config.name);
  }
}

bool ListenerSet::has_tls() const {
  return std::any_of(running_.begin(), running_.end(),
                     [](const auto& listener) { return listener->config.tls.has_value(); });
}

std::vector<BoundAddress> ListenerSet::bound() const {
  std::vector<BoundAddress> out;
  for (const auto& listener : running_) {
    out.push_back({listener->config.name, listener->config.host, listener->port});
  }
  return out;
}

std::vector<ListenerSet::CertificateReloadCounts> ListenerSet::certificate_reloads() const {
  std::vector<CertificateReloadCounts> out;
  for (const auto& listener : running_) {
    if (listener->reloader) {
      out.push_back({listener->config.name, listener->reloads_ok, listener->reloads_failed});
    }
  }
  return out;
}

}  // namespace revgate::proxy
