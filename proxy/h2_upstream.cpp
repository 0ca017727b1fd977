#include "proxy/h2_upstream.h"

#include <openssl/ssl.h>

#include <algorithm>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/write.hpp>

#include "proxy/h2_memory.h"
#include "proxy/h2_output.h"
#include "proxy/log.h"
#include "proxy/upstream_tls.h"

namespace revgate::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kReadSize = 16 * 1024;
// The connection's receive window: streams keep the default 64 KiB each; response bytes are
// acknowledged only once passed on to the client.
constexpr std::int32_t kConnectionWindow = 1 << 20;
// Streams assumed before the server's SETTINGS say (RFC 9113 recommends at least 100), and
// never more than this many on one connection whatever it says: more requests open another.
constexpr std::uint32_t kAssumedStreams = 100;
constexpr std::uint32_t kMaxStreams = 1000;

H2Upstream& self_of(void* user_data) { return *static_cast<H2Upstream*>(user_data); }

std::string_view text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace

H2Upstream::H2Upstream(Worker& worker, std::shared_ptr<const Snapshot> snapshot,
                       const UpstreamEndpoint& target, std::uint32_t destination)
    : worker_(worker),
      snapshot_(std::move(snapshot)),
      target_(target),
      connection_(worker.io().get_executor()),
      connect_timer_(worker.io()),
      idle_since_(Clock::now()) {
  connection_.key = target.pool_key;
  worker_.pool().opened(connection_, destination);
}

H2Upstream::~H2Upstream() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

// ---------------------------------------------------------------- connect

void H2Upstream::connect(const routing::Decision& decision, std::chrono::milliseconds timeout) {
  decision_ = decision;
  connecting_ = true;
  error_code ec;
  const auto& endpoint = *decision.endpoint;
  auto address = asio::ip::make_address(endpoint.address, ec);
  if (ec) return on_connected(ec);
  connect_timer_.expires_after(timeout);
  connect_timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (ec || !self->connecting_) return;
    self->timed_out_ = true;
    error_code ignored;
    self->connection_.stream.socket().cancel(ignored);
  });
  connection_.stream.socket().async_connect(
      tcp::endpoint(address, endpoint.port),
      [self = shared_from_this()](error_code ec) { self->on_connected(ec); });
}

void H2Upstream::on_connected(error_code ec) {
  if (closed_) return;
  if (ec || timed_out_) return close();  // counted by the streams (connect failures, UF)
  connection_.stream.socket().set_option(tcp::no_delay(true), ec);
  if (target_.tls == nullptr) return start_session();
  if (!begin_upstream_tls(connection_, target_, decision_)) return close();
  // HTTP/2 or nothing: a server that does not agree to h2 is a misconfigured revision.
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  SSL_set_alpn_protos(connection_.stream.tls()->native_handle(), kH2, sizeof kH2);
  connection_.stream.tls()->async_handshake(
      asio::ssl::stream_base::client,
      [self = shared_from_this()](error_code ec) { self->on_handshake(ec); });
}

void H2Upstream::on_handshake(error_code ec) {
  if (closed_) return;
  if (ec || timed_out_) {
    log_upstream_tls_failure(connection_, target_, decision_, timed_out_, ec);
    return close();
  }
  const unsigned char* chosen = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(connection_.stream.tls()->native_handle(), &chosen, &length);
  if (std::string_view(reinterpret_cast<const char*>(chosen), length) != "h2") {
    log_error("upstream {} (revision {}): the server did not choose HTTP/2 by ALPN (protocol: "
              "h2 needs it)",
              decision_.endpoint->authority, decision_.revision->name);
    return close();
  }
  start_session();
}

void H2Upstream::start_session() {
  connecting_ = false;
  connect_timer_.cancel();
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  nghttp2_option* options = nullptr;
  nghttp2_option_new(&options);
  nghttp2_option_set_no_auto_window_update(options, 1);  // the client's pace decides
  nghttp2_option_set_peer_max_concurrent_streams(options, kAssumedStreams);
  // An upstream is trusted less than nghttp2's defaults assume: the same flood limits as for
  // clients.
  nghttp2_option_set_max_outbound_ack(options, 1000);
  nghttp2_option_set_max_settings(options, 32);
  nghttp2_option_set_max_continuations(options, 8);
  nghttp2_session_client_new3(&session_, callbacks, this, options, h2_session_memory());
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 80 * 1024},  // as for HTTP/1.1 response heads
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  in_ = std::make_unique_for_overwrite<char[]>(kReadSize);
  connected_ = true;
  tell_waiting(true);
  if (retiring_) shut_down();
  flush();
  read();
}

void H2Upstream::wait(const std::shared_ptr<H2UpstreamStream>& stream) {
  if (closed_) return stream->on_upstream_ready(false);  // its connect failed already
  if (connected_) return stream->on_upstream_ready(true);
  waiting_.push_back(stream);
}

void H2Upstream::forget(H2UpstreamStream* stream) {
  std::erase_if(waiting_, [stream](const auto& waiting) { return waiting.get() == stream; });
}

void H2Upstream::tell_waiting(bool connected) {
  // A waiter may submit (or give up) from its callback: the list is taken first.
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (const auto& stream : waiting) stream->on_upstream_ready(connected);
}

// ---------------------------------------------------------------- streams

std::int32_t H2Upstream::submit(const std::vector<nghttp2_nv>& head, bool has_body,
                                std::shared_ptr<H2UpstreamStream> stream) {
  if (!connected_ || closed_ || goaway_) return -1;
  nghttp2_data_provider provider{};
  provider.read_callback = read_body;
  const auto id = nghttp2_submit_request(session_, nullptr, head.data(), head.size(),
                                         has_body ? &provider : nullptr, nullptr);
  if (id > 0) {
    streams_.emplace(id, std::move(stream));
  } else {
    // Out of stream ids (2^30 requests on this connection) or refused by the session: no more
    // streams here; the next request opens another connection.
    shut_down();
  }
  flush();
  return id;
}

void H2Upstream::resume(std::int32_t id) {
  if (closed_ || !streams_.contains(id)) return;
  nghttp2_session_resume_data(session_, id);
  flush();
}

// The stream's window opens as its client takes the bytes; the connection's opened when they
// arrived (on_data_chunk), so that streams whose clients do not read hold up only themselves,
// each at most its own 64 KiB window, never the connection's other streams.
void H2Upstream::consume(std::int32_t id, std::size_t bytes) {
  if (closed_ || bytes == 0) return;
  nghttp2_session_consume_stream(session_, id, bytes);
  flush();
}

void H2Upstream::cancel(std::int32_t id) {
  if (closed_) return;
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  release_later(std::move(it->second));
  streams_.erase(it);
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  stream_ended();
  flush();
}

H2UpstreamStream* H2Upstream::find(std::int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void H2Upstream::stream_ended() {
  if (!streams_.empty()) return;
  idle_since_ = Clock::now();
  if (goaway_ && connected_) nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
}

bool H2Upstream::has_capacity() const {
  if (closed_ || goaway_ || retiring_) return false;
  if (connected_ && nghttp2_session_check_request_allowed(session_) == 0) return false;
  std::uint32_t limit = kAssumedStreams;
  if (session_ != nullptr) {
    limit = std::min(
        nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
        kMaxStreams);
  }
  return streams_.size() + waiting_.size() < limit;
}

// ---------------------------------------------------------------- I/O

void H2Upstream::read() {
  if (closed_ || reading_ || !nghttp2_session_want_read(session_)) return;
  reading_ = true;
  connection_.stream.async_read_some(
      asio::buffer(in_.get(), kReadSize), [self = shared_from_this()](error_code ec, std::size_t n) {
        self->reading_ = false;
        if (self->closed_) return;
        if (ec) return self->close();  // the upstream closed or reset the connection
        self->holding_sends_ = true;
        const auto used = nghttp2_session_mem_recv(
            self->session_, reinterpret_cast<const std::uint8_t*>(self->in_.get()), n);
        self->holding_sends_ = false;
        self->flush();
        if (used < 0) {
          // A protocol error from the upstream: nghttp2's GOAWAY says why, then it closes.
          if (!self->writing_) self->close();
          return;
        }
        self->read();
      });
}

void H2Upstream::flush() {
  if (holding_sends_ || writing_ || closed_ || !connected_) return;
  const auto output = take_session_output(session_, out_, kReadSize);
  if (output == SessionOutput::kNothing) return;
  if (output != SessionOutput::kBytes) return close();  // finished, or the session failed
  writing_ = true;
  asio::async_write(connection_.stream, asio::buffer(out_),
                    [self = shared_from_this()](error_code ec, std::size_t) {
                      self->writing_ = false;
                      if (self->closed_) return;
                      if (ec) return self->close();
                      self->flush();
                      self->read();
                    });
}

void H2Upstream::shut_down() {
  if (closed_ || goaway_) return;
  if (!connected_) {
    // Still dialling: the requests waiting for it are served first, then it goes.
    retiring_ = true;
    return;
  }
  goaway_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
  stream_ended();
  flush();
}

void H2Upstream::close() {
  if (closed_) return;
  closed_ = true;
  connecting_ = false;
  connect_timer_.cancel();
  worker_.pool().closed(connection_);  // closes the socket: pending operations are aborted
  tell_waiting(false);
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) {
    stream->on_upstream_closed(NGHTTP2_INTERNAL_ERROR);
    release_later(std::move(stream));
  }
}

void H2Upstream::release_later(std::shared_ptr<H2UpstreamStream> stream) {
  // The stream may be what called in here (a cancel, a flush that failed): it must not be
  // destroyed under itself. Its last reference goes once the current handler is done.
  asio::post(worker_.io(), [stream = std::move(stream)] {});
}

// ---------------------------------------------------------------- nghttp2 callbacks

int H2Upstream::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                          std::size_t name_size, const std::uint8_t* value, std::size_t value_size,
                          std::uint8_t, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (H2UpstreamStream* stream = self_of(user).find(frame->hd.stream_id)) {
    stream->on_upstream_header(text(name, name_size), text(value, value_size));
  }
  return 0;
}

int H2Upstream::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto& self = self_of(user);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    // No new streams here; nghttp2 closes those past last_stream_id with REFUSED_STREAM.
    self.goaway_ = true;
    self.stream_ended();  // none open: the connection ends now
    return 0;
  }
  H2UpstreamStream* stream = self.find(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    stream->on_upstream_headers_done(end_stream);
  } else if (frame->hd.type == NGHTTP2_DATA && end_stream) {
    stream->on_upstream_end();
  }
  return 0;
}

int H2Upstream::on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t id,
                              const std::uint8_t* data, std::size_t size, void* user) {
  nghttp2_session_consume_connection(session, size);  // see consume()
  if (H2UpstreamStream* stream = self_of(user).find(id)) {
    stream->on_upstream_data(data, size);
  } else {
    nghttp2_session_consume_stream(session, id, size);  // a cancelled stream's
  }
  return 0;
}

int H2Upstream::on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t error,
                                void* user) {
  auto& self = self_of(user);
  auto it = self.streams_.find(id);
  if (it == self.streams_.end()) return 0;
  auto stream = std::move(it->second);
  self.streams_.erase(it);
  stream->on_upstream_closed(error);
  self.release_later(std::move(stream));
  self.stream_ended();
  return 0;
}

ssize_t H2Upstream::read_body(nghttp2_session*, std::int32_t id, std::uint8_t* out,
                              std::size_t length, std::uint32_t* flags, nghttp2_data_source*,
                              void* user) {
  H2UpstreamStream* stream = self_of(user).find(id);
  if (stream == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return stream->read_request_body(out, length, flags);
}

// ---------------------------------------------------------------- pool

H2UpstreamPool::~H2UpstreamPool() { close_all(); }

std::shared_ptr<H2Upstream> H2UpstreamPool::acquire(const std::shared_ptr<const Snapshot>& snapshot,
                                                    const UpstreamEndpoint& target,
                                                    const routing::Decision& decision,
                                                    std::uint32_t destination,
                                                    std::chrono::milliseconds connect_timeout) {
  auto& connections = connections_[target.pool_key];
  for (const auto& connection : connections) {
    if (connection->has_capacity()) return connection;
  }
  auto connection = std::make_shared<H2Upstream>(worker_, snapshot, target, destination);
  connections.push_back(connection);
  connection->connect(decision, connect_timeout);
  return connection;
}

void H2UpstreamPool::sweep(Clock::time_point now, std::chrono::milliseconds idle_timeout) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    auto& connections = it->second;
    for (const auto& connection : connections) {
      if (connection->connected_ && connection->idle() &&
          now - connection->idle_since() >= idle_timeout) {
        connection->shut_down();  // GOAWAY, then closed: the server sees a clean end
      }
    }
    std::erase_if(connections, [](const auto& connection) { return connection->closed_; });
    it = connections.empty() ? connections_.erase(it) : std::next(it);
  }
}

void H2UpstreamPool::retain(const PoolKeySet& live) {
  for (auto& [key, connections] : connections_) {
    if (live.contains(std::string_view{key})) continue;
    for (const auto& connection : connections) connection->shut_down();
  }
}

void H2UpstreamPool::shut_down_all() {
  for (auto& [key, connections] : connections_) {
    for (const auto& connection : connections) connection->shut_down();
  }
}

void H2UpstreamPool::close_all() {
  auto all = std::move(connections_);
  connections_.clear();
  for (auto& [key, connections] : all) {
    for (const auto& connection : connections) connection->close();
  }
}

}  // namespace revgate::proxy
