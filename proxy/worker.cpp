#include "proxy/worker.h"

#include <algorithm>

#include <boost/asio/post.hpp>

#include "accesslog/writer.h"
#include "proxy/h2_upstream.h"
#include "proxy/log.h"
#include "proxy/session.h"

namespace revgate::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// How often deadlines are checked: timeouts fire at most this late. One sweep per worker
// replaces a timer per connection and phase (nginx and HAProxy keep timers coarse likewise).
constexpr std::chrono::milliseconds kSweepInterval{250};

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
}  // namespace

Rng::Rng(std::uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

std::uint64_t Rng::next() {
  auto rotl = [](std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

Worker::Worker(unsigned id, std::shared_ptr<const Snapshot> snapshot)
    : id_(id),
      // Only this worker's thread does I/O on its context (other threads only post), so the
      // reactor's per-socket locking is dead weight.
      io_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      sweep_timer_(io_),
      view_(std::make_shared<WorkerView>(snapshot)),
      pool_(snapshot->config->upstream.max_idle_per_endpoint, shard_),
      h2_pool_(std::make_unique<H2UpstreamPool>(*this)),
      rng_(std::random_device{}() ^ (std::uint64_t{id} << 32)) {}

Worker::~Worker() {
  stop();
  join();
  // Sessions still open (the grace period ran out) are kept alive by their pending handlers.
  // Close them and run those handlers now, while the pools and the shard they touch exist.
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto& session = *it++;
    session.abort();
  }
  boost::system::error_code ignored;
  for (auto& listener : listeners_) listener->acceptor.close(ignored);
  sweep_timer_.cancel();
  h2_pool_->close_all();
  pool_.close_all();
  io_.restart();
  io_.poll();
}

void Worker::add_listener(Acceptor acceptor, std::shared_ptr<const ListenerSpec> spec) {
  listeners_.push_back(std::make_shared<Listener>(std::move(acceptor), std::move(spec), io_));
}

void Worker::start(std::function<void()> on_exit) {
  thread_ = std::thread([this, on_exit = std::move(on_exit)] {
    run();
    on_exit();
  });
}

void Worker::set_access_log(std::unique_ptr<accesslog::WorkerLog> log) {
  access_log_ = std::move(log);
}

void Worker::run() {
  for (const auto& listener : listeners_) accept(listener);
  sweep();
  io_.run();
  if (access_log_) access_log_->flush();  // the lines of the last requests, on this thread
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::accept(const std::shared_ptr<Listener>& listener) {
  listener->acceptor.async_accept([this, listener](boost::system::error_code ec, Socket socket) {
    if (ec == asio::error::operation_aborted || !listener->acceptor.is_open()) return;
    if (!ec) {
      std::make_shared<Session>(*this, std::move(socket), listener->spec)->start();
      return accept(listener);
    }
    // Out of descriptors (or memory): the backlog stays readable, so accepting again at once
    // would spin. Pause as nginx does, and say so at most once a second.
    const auto now = Clock::now();
    if (now - listener->last_warning > std::chrono::seconds(1)) {
      listener->last_warning = now;
      log_warning("worker {}: accept on {}: {}; pausing accepts", id_, listener->spec->name,
                  ec.message());
    }
    listener->retry.expires_after(std::chrono::milliseconds(250));
    listener->retry.async_wait([this, listener](boost::system::error_code wait_ec) {
      if (!wait_ec && listener->acceptor.is_open()) accept(listener);
    });
  });
}

void Worker::close_listener(Listener& listener) {
  boost::system::error_code ec;
  listener.retry.cancel();
  listener.acceptor.non_blocking(true, ec);
  while (!ec) {
    Socket socket(io_);
    listener.acceptor.accept(socket, ec);
    if (!ec) std::make_shared<Session>(*this, std::move(socket), listener.spec)->start();
  }
  listener.acceptor.close(ec);  // the pending async_accept ends with operation_aborted
}

void Worker::apply(ListenerChange& change) {
  const auto it = std::find_if(listeners_.begin(), listeners_.end(),
                               [&](const auto& l) { return l->spec->id == change.id; });
  switch (change.kind) {
    case ListenerChange::Kind::add:
      if (closing_) {
        boost::system::error_code ignored;
        change.acceptor->close(ignored);
        return;
      }
      listeners_.push_back(
          std::make_shared<Listener>(std::move(*change.acceptor), std::move(change.spec), io_));
      return accept(listeners_.back());
    case ListenerChange::Kind::update:
      // New connections get the new spec; open ones keep the one they were accepted with.
      if (it != listeners_.end()) (*it)->spec = std::move(change.spec);
      return;
    case ListenerChange::Kind::remove:
      if (it == listeners_.end()) return;
      close_listener(**it);
      listeners_.erase(it);
      return;
  }
}

void Worker::sweep() {
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const auto now = Clock::now();
    // check_deadline may close (and unlink) the session it is called on: step past it first.
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      auto& session = *it++;
      session.check_deadline(now);
    }
    pool_.sweep(now, view_->snapshot->config->timeouts.upstream_idle);
    h2_pool_->sweep(now, view_->snapshot->config->timeouts.upstream_idle);
    trim_chunks();
    if (access_log_) access_log_->flush();  // a quiet worker's lines wait at most one sweep
    if (closing_ && sessions_.empty()) {
      h2_pool_->close_all();
      pool_.close_all();
      return io_.stop();  // drained: end the loop
    }
    sweep();
  });
}

WorkerUpdate::WorkerUpdate() = default;
WorkerUpdate::WorkerUpdate(WorkerUpdate&&) noexcept = default;
WorkerUpdate& WorkerUpdate::operator=(WorkerUpdate&&) noexcept = default;
WorkerUpdate::~WorkerUpdate() = default;

void Worker::install(WorkerUpdate update, std::function<void()> installed) {
  asio::post(io_, [this, update = std::move(update), installed = std::move(installed)]() mutable {
    for (auto& change : update.listeners) apply(change);
    if (update.replace_access_log) access_log_ = std::move(update.access_log);  // old flushes
    const auto& snapshot = update.snapshot;
    view_ = std::make_shared<WorkerView>(snapshot);
    pool_.set_max_idle_per_endpoint(snapshot->config->upstream.max_idle_per_endpoint);
    if (snapshot->pool_keys) {
      pool_.retain(snapshot->pool_keys);
      h2_pool_->retain(*snapshot->pool_keys);
      for (auto it = sessions_.begin(); it != sessions_.end();) {
        auto& session = *it++;
        session.upstreams_changed(*snapshot->pool_keys, snapshot->config->timeouts.shutdown_grace);
      }
    }
    if (installed) installed();
  });
}

void Worker::begin_drain() {
  asio::post(io_, [this] { draining_ = true; });
}

void Worker::stop_accepting() {
  asio::post(io_, [this] {
    draining_ = true;
    closing_ = true;
    for (auto& listener : listeners_) close_listener(*listener);
    listeners_.clear();
    pool_.close_all();
    h2_pool_->shut_down_all();  // streams in flight finish
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      auto& session = *it++;
      session.drain();
    }
  });
}

void Worker::stop() { io_.stop(); }

void Worker::collect_metrics(std::function<void(metrics::WorkerShard)> done) {
  asio::post(io_, [this, done = std::move(done)] { done(shard_.counts()); });
}

std::unique_ptr<char[]> Worker::acquire_chunk() {
  if (free_chunks_.empty()) {
    unused_chunks_ = 0;
    return std::make_unique_for_overwrite<char[]>(kChunkSize);
  }
  auto chunk = std::move(free_chunks_.back());
  free_chunks_.pop_back();
  unused_chunks_ = std::min(unused_chunks_, free_chunks_.size());
  return chunk;
}

void Worker::release_chunk(std::unique_ptr<char[]> chunk) {
  // Every request in flight holds one chunk while it relays a body; keeping them avoids a
  // malloc/free of kChunkSize per request. trim_chunks() gives back what a burst left over.
  constexpr std::size_t kMaxKept = 1024;
  if (free_chunks_.size() < kMaxKept) free_chunks_.push_back(std::move(chunk));
}

void Worker::trim_chunks() {
  // Chunks that stayed in the pool for a whole sweep interval were not needed: free them.
  free_chunks_.resize(free_chunks_.size() - std::min(unused_chunks_, free_chunks_.size()));
  unused_chunks_ = free_chunks_.size();
}

}  // namespace revgate::proxy
