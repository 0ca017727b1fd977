// One event-loop thread and everything mutable it owns (ARCHITECTURE.md principle 2): its
// io_context, its SO_REUSEPORT acceptors, routing cursors, upstream pool, metrics shard, random
// source and the list of its sessions. Only the worker's own thread touches it, except for the
// methods documented as "any thread", which post into the worker.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include "config/config.h"
#include "metrics/metrics.h"
#include "proxy/header_arena.h"
#include "proxy/upstream_pool.h"
#include "routing/route_table.h"

namespace boost::asio::ssl {
class context;
}
namespace revgate::tls {
class ClientContext;
class ServerContext;
}  // namespace revgate::tls
namespace revgate::accesslog {
class WorkerLog;
}

namespace revgate::proxy {

class H2UpstreamPool;

// How the proxy reaches one revision endpoint, fixed at config load.
struct UpstreamEndpoint {
  // The pool this endpoint's connections return to: "address:port" for cleartext; for TLS also
  // the client context's serial number and the verified name, so a connection is only reused
  // under the very settings it was verified with.
  std::string pool_key;
  const tls::ClientContext* tls = nullptr;  // https:// endpoints; owned by the Snapshot
  std::string server_name;                  // SNI and the name verified (TLS only)
  // h2c and h2: requests go as streams over the worker's multiplexed HTTP/2 connections.
  config::UpstreamProtocol protocol = config::UpstreamProtocol::http1;
  bool http2() const { return protocol != config::UpstreamProtocol::http1; }
};

// What a config load (or a traffic change) produces, shared read-only by every worker.
struct Snapshot {
  // The config in force: the file's, with the runtime traffic changes applied (what the admin
  // API shows as spec). Sessions read its timeouts and limits.
  std::shared_ptr<const config::Config> config;
  // Compiled from the effective traffic: `config`'s, with any rollout in progress expanded.
  std::shared_ptr<const routing::RouteTable> table;
  std::vector<std::uint32_t> destination_ids;  // metrics destination id by revision index
  // By revision index, then by position in the revision's endpoints.
  std::vector<std::vector<UpstreamEndpoint>> upstreams;
  std::vector<std::shared_ptr<const tls::ClientContext>> client_contexts;  // keeps them alive
  // Every pool_key of `upstreams`: a worker closes pooled connections to the others.
  std::shared_ptr<const PoolKeySet> pool_keys;
  const UpstreamEndpoint& upstream(const routing::Revision& revision,
                                   const routing::Endpoint& endpoint) const {
    return upstreams[revision.index][&endpoint - revision.endpoints.data()];
  }
};

// A worker's own view of a snapshot: its routing cursors live here. Sessions keep the view of
// the request they serve, so a reload never changes a request in flight; the shared_ptr's
// count is only ever touched by this worker's thread.
struct WorkerView {
  explicit WorkerView(std::shared_ptr<const Snapshot> s)
      : snapshot(std::move(s)), router(snapshot->table) {}
  std::shared_ptr<const Snapshot> snapshot;
  routing::Router router;
};

// xoshiro256** (public domain, Blackman & Vigna): fast per-worker entropy for splits and ids.
class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();

 private:
  std::uint64_t s_[4];
};

using SessionHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// Implemented by Session; the worker only needs to sweep and drain its sessions.
class SessionBase : public SessionHook {
 public:
  virtual ~SessionBase() = default;
  virtual void check_deadline(Clock::time_point now) = 0;
  virtual void drain() = 0;
  virtual void abort() = 0;  // close now: the worker is going away
  // A reload changed the upstream endpoints (`live`: every pool key still configured): an
  // upgraded connection to one that is gone gets `grace` to finish.
  virtual void upstreams_changed(const PoolKeySet& live, Clock::duration grace) = 0;
};

// How one worker serves one listener. Immutable; a reload that changes the listener gives the
// worker a new one, and sessions keep the one they were accepted with (and its TLS context).
struct ListenerSpec {
  std::uint32_t id = 0;  // the process's listener id, never reused (metrics label index)
  std::string name;
  bool https = false;
  boost::asio::ssl::context* tls = nullptr;       // this worker's context on a TLS listener
  std::shared_ptr<tls::ServerContext> tls_owner;  // owns `tls`
  std::chrono::milliseconds handshake_timeout{10'000};
  std::uint16_t https_redirect_port = 0;  // httpsRedirect: answer 301 to https on this port
  bool h2c = false;  // cleartext: the HTTP/2 preface starts an HTTP/2 connection
};

// A listener change a reload hands to one worker, applied with the new snapshot.
struct ListenerChange {
  enum class Kind { add, update, remove } kind = Kind::add;
  std::uint32_t id = 0;
  std::shared_ptr<const ListenerSpec> spec;  // add, update
  std::optional<Acceptor> acceptor;          // add: bound and listening, on this worker's context
};

// What a reload or a traffic change hands to one worker, applied at once on its thread.
struct WorkerUpdate {
  WorkerUpdate();
  WorkerUpdate(WorkerUpdate&&) noexcept;
  WorkerUpdate& operator=(WorkerUpdate&&) noexcept;
  ~WorkerUpdate();
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<ListenerChange> listeners;
  // accessLog changed: the worker's log buffer is replaced by this one (null: logging is off
  // now), after the old one has handed its lines to the old writer.
  bool replace_access_log = false;
  std::unique_ptr<accesslog::WorkerLog> access_log;
};

class Worker {
 public:
  Worker(unsigned id, std::shared_ptr<const Snapshot> snapshot);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  unsigned id() const { return id_; }
  boost::asio::io_context& io() { return io_; }

  // Before start(), from the control thread: adopt an already bound, listening socket.
  void add_listener(Acceptor acceptor, std::shared_ptr<const ListenerSpec> spec);
  // Before start(): this worker's access log buffer (null: access logging is off).
  void set_access_log(std::unique_ptr<accesslog::WorkerLog> log);
  // Runs the event loop on a new thread; `on_exit` is called on it when the loop ends.
  void start(std::function<void()> on_exit);
  void join();

  // Any thread: publish a new snapshot (and the listener and log changes that go with it), then
  // call `installed` on the worker's thread. Requests already routed keep their snapshot; the next
  // request of every connection uses the new one.
  void install(WorkerUpdate update, std::function<void()> installed);
  // Any thread, drain phase 1: every response from now on says `Connection: close`; listeners
  // still accept and idle keep-alive connections stay open (a request on one is still served).
  void begin_drain();
  // Any thread, drain phase 2: stop accepting (the connections already queued are served),
  // close idle connections and pooled upstream ones, let requests in flight finish; the loop
  // ends when the last connection has closed.
  void stop_accepting();
  // Any thread: stop the event loop now (end of the grace period). Also how a drained worker
  // ends its loop, whatever else (an admin connection) still waits on its context.
  void stop();
  // Any thread: copy this worker's metrics on its own thread, then call `done` there.
  void collect_metrics(std::function<void(metrics::WorkerShard)> done);

  // --- Worker thread only, for its sessions.
  const std::shared_ptr<WorkerView>& view() const { return view_; }
  UpstreamPool& pool() { return pool_; }
  H2UpstreamPool& h2_pool() { return *h2_pool_; }  // h2c and h2 revisions' connections
  BlockPool& header_blocks() { return header_blocks_; }
  metrics::WorkerShard& shard() { return shard_; }
  Rng& rng() { return rng_; }
  accesslog::WorkerLog* access_log() { return access_log_.get(); }
  bool draining() const { return draining_; }  // responses say Connection: close
  bool closing() const { return closing_; }    // drain phase 2: listeners and pool closed
  void link(SessionBase& session) { sessions_.push_back(session); }
  // Body relay buffers, recycled so that a request with a body does not allocate one.
  static constexpr std::size_t kChunkSize = 32 * 1024;
  std::unique_ptr<char[]> acquire_chunk();
  void release_chunk(std::unique_ptr<char[]> chunk);

 private:
  struct Listener {
    Listener(Acceptor a, std::shared_ptr<const ListenerSpec> s, boost::asio::io_context& io)
        : acceptor(std::move(a)), spec(std::move(s)), retry(io) {}
    Acceptor acceptor;
    std::shared_ptr<const ListenerSpec> spec;
    boost::asio::steady_timer retry;  // accepting pauses after EMFILE and the like
    Clock::time_point last_warning{};
  };
  void run();
  void accept(const std::shared_ptr<Listener>& listener);
  // Serves the connections already in the listener's queue, then closes it: closing a socket
  // with connections queued would reset them.
  void close_listener(Listener& listener);
  void apply(ListenerChange& change);
  void sweep();
  void trim_chunks();

  unsigned id_;
  boost::asio::io_context io_;
  std::thread thread_;
  // Pending accepts hold their listener, so one removed by a reload lives until its handler ran.
  std::vector<std::shared_ptr<Listener>> listeners_;
  boost::asio::steady_timer sweep_timer_;
  std::shared_ptr<WorkerView> view_;
  metrics::WorkerShard shard_;  // before the pool, which counts into it
  UpstreamPool pool_;
  std::unique_ptr<H2UpstreamPool> h2_pool_;  // after pool_: its connections count in pool_
  BlockPool header_blocks_;
  Rng rng_;
  bool draining_ = false;  // drain phase 1 or 2
  bool closing_ = false;   // drain phase 2: no listener, no idle connection
  boost::intrusive::list<SessionBase, boost::intrusive::constant_time_size<false>> sessions_;
  std::unique_ptr<accesslog::WorkerLog> access_log_;  // flushed every sweep and at loop end
  std::vector<std::unique_ptr<char[]>> free_chunks_;
  std::size_t unused_chunks_ = 0;  // fewest chunks left in the pool since the last sweep
};

}  // namespace revgate::proxy
