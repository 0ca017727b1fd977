#include "proxy/h2_connection.h"

#include <algorithm>

#include <boost/asio/write.hpp>

#include "proxy/h2_memory.h"
#include "proxy/h2_output.h"
#include "proxy/h2_stream.h"

namespace revgate::proxy {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kReadSize = 16 * 1024;
// Receive window of the connection as a whole (every stream's is the default 64 KiB): enough for
// a few streams uploading at once. Bytes are acknowledged only once written upstream.
constexpr std::int32_t kConnectionWindow = 1 << 20;

H2Connection& self_of(void* user_data) { return *static_cast<H2Connection*>(user_data); }

}  // namespace

H2Connection::H2Connection(Worker& worker, Stream stream,
                           std::shared_ptr<const ListenerSpec> listener, std::string client_ip)
    : worker_(worker),
      stream_(std::move(stream)),
      listener_(std::move(listener)),
      client_ip_(std::move(client_ip)) {}  // counted open by the Session that accepted it

H2Connection::~H2Connection() {
  for (auto& [id, stream] : streams_) stream->detach();
  if (session_ != nullptr) nghttp2_session_del(session_);
  worker_.shard().connection_closed(listener_->id);
}

void H2Connection::start(std::string_view received) {
  worker_.link(*this);
  idle_since_ = Clock::now();
  const auto& config = *worker_.view()->snapshot->config;

  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  nghttp2_option* options = nullptr;
  nghttp2_option_new(&options);
  // Flow control follows the upstream: DATA is acknowledged once written on (H2Stream).
  nghttp2_option_set_no_auto_window_update(options, 1);
  // Floods (CVE-2019-9512 PING and SETTINGS floods, CVE-2023-44487 rapid reset, CVE-2024-27316
  // CONTINUATION flood): nghttp2 ends the connection with GOAWAY ENHANCE_YOUR_CALM past these.
  nghttp2_option_set_max_outbound_ack(options, 1000);
  nghttp2_option_set_max_settings(options, 32);
  nghttp2_option_set_stream_reset_rate_limit(options, 1000, 33);
  nghttp2_option_set_max_continuations(options, 8);
  nghttp2_session_server_new3(&session_, callbacks, this, options, h2_session_memory());
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);

  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, config.limits.max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<std::uint32_t>(
           std::min<std::size_t>(config.limits.request_headers_bytes, 0x7fffffff))},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  in_ = std::make_unique_for_overwrite<char[]>(kReadSize);
  if (!feed(received.data(), received.size())) {
    flush();  // nghttp2 may have queued a GOAWAY that says why
    return close();
  }
  flush();
  read();
}

bool H2Connection::feed(const char* data, std::size_t size) {
  holding_sends_ = true;
  const auto used =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(data), size);
  holding_sends_ = false;
  return used >= 0;
}

void H2Connection::read() {
  if (closed_ || reading_ || !nghttp2_session_want_read(session_)) return;
  reading_ = true;
  stream_.async_read_some(asio::buffer(in_.get(), kReadSize),
                          [self = shared_from_this()](error_code ec, std::size_t n) {
                            self->reading_ = false;
                            if (self->closed_) return;
                            if (ec) return self->close();  // the client went away
                            const bool ok = self->feed(self->in_.get(), n);
                            self->flush();
                            if (!ok) {
                              // A protocol error or a flood: nghttp2 queued its GOAWAY, which
                              // the flush above sends; nothing more is read.
                              if (!self->writing_) self->close();
                              return;
                            }
                            self->read();
                          });
}

void H2Connection::flush() {
  if (holding_sends_ || writing_ || closed_) return;
  const auto output = take_session_output(session_, out_, kReadSize);
  if (output == SessionOutput::kNothing) return;
  if (output != SessionOutput::kBytes) return close();  // finished, or the session failed
  writing_ = true;
  asio::async_write(stream_, asio::buffer(out_),
                    [self = shared_from_this()](error_code ec, std::size_t) {
                      self->writing_ = false;
                      if (self->closed_) return;
                      if (ec) return self->close();
                      self->flush();
                      self->read();  // nghttp2 may want input again (after a full send queue)
                    });
}

void H2Connection::send_goaway() {
  if (goaway_sent_ || closed_) return;
  goaway_sent_ = true;
  // Graceful: the streams the client opened so far are served; it opens new ones elsewhere.
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  stream_finished();
  flush();
}

void H2Connection::stream_finished() {
  if (streams_.empty()) idle_since_ = Clock::now();
  // Draining and done: end the session (nghttp2 then wants neither read nor write).
  if (goaway_sent_ && streams_.empty()) nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
}

void H2Connection::drain() { send_goaway(); }

void H2Connection::check_deadline(Clock::time_point now) {
  if (closed_) return;
  if (worker_.draining() && !goaway_sent_) send_goaway();
  // A stream's deadline may reset it; the close it causes waits until the sweep is over.
  holding_sends_ = true;
  for (auto& [id, stream] : streams_) stream->check_deadline(now);
  holding_sends_ = false;
  const auto idle = worker_.view()->snapshot->config->timeouts.idle;
  if (streams_.empty() && now - idle_since_ >= idle && !goaway_sent_) {
    // Idle keep-alive, HTTP/2's way: GOAWAY, then close once it is out.
    goaway_sent_ = true;
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
  }
  flush();
}

void H2Connection::close() {
  if (closed_) return;
  closed_ = true;
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) stream->detach();
  error_code ignored;
  stream_.socket().close(ignored);
  unlink();
}

H2Stream* H2Connection::find(std::int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

// ---------------------------------------------------------------- nghttp2 callbacks

int H2Connection::on_begin_frame(nghttp2_session* session, const nghttp2_frame_hd* frame,
                                 void* user) {
  if (frame->type == NGHTTP2_HEADERS && frame->stream_id % 2 == 1 &&
      !self_of(user).skipped_ids_.headers_begin(frame->stream_id)) {
    nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR);  // nghttp2 drops it
  }
  return 0;
}

int H2Connection::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto& self = self_of(user);
  self.streams_.emplace(frame->hd.stream_id,
                        std::allocate_shared<H2Stream>(H2HeapAllocator<H2Stream>(), self,
                                                       frame->hd.stream_id));
  return 0;
}

int H2Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                            std::size_t name_size, const std::uint8_t* value,
                            std::size_t value_size, std::uint8_t, void* user) {
  // Trailers of a request are not passed on (HTTP/1.1 upstreams get a plain last chunk).
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (H2Stream* stream = self_of(user).find(frame->hd.stream_id)) {
    stream->on_header(std::string_view(reinterpret_cast<const char*>(name), name_size),
                      std::string_view(reinterpret_cast<const char*>(value), value_size));
  }
  return 0;
}

int H2Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  H2Stream* stream = self_of(user).find(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      stream->on_head_done(end_stream);
    } else if (end_stream) {
      stream->on_end_stream();  // after trailers
    }
  } else if (frame->hd.type == NGHTTP2_DATA && end_stream) {
    stream->on_end_stream();
  }
  return 0;
}

int H2Connection::on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t id,
                                const std::uint8_t* data, std::size_t size, void* user) {
  if (H2Stream* stream = self_of(user).find(id)) {
    stream->on_data(data, size);
  } else {
    nghttp2_session_consume(session, id, size);  // nobody wants it: give the window back
  }
  return 0;
}

int H2Connection::on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t error,
                                  void* user) {
  auto& self = self_of(user);
  auto it = self.streams_.find(id);
  if (it == self.streams_.end()) return 0;
  auto stream = std::move(it->second);  // pending upstream handlers may keep it a while
  self.streams_.erase(it);
  stream->on_closed(error);
  self.stream_finished();
  return 0;
}

}  // namespace revgate::proxy
