// An HTTP/1.1 client's request to an HTTP/2 revision (`protocol: h2c` or `h2`) for Session:
// the request is a stream on one of the worker's H2Upstream connections. Its body is pulled by
// nghttp2 as the upstream's window allows, read from the client only as fast; the response
// comes back as an HTTP/1.1 head (chunked when the upstream gave no content-length, trailers
// in the last chunk), each piece acknowledged upstream once written to the client.
#include <charconv>
#include <cstring>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "proxy/body_parser.h"
#include "proxy/route_rules.h"
#include "proxy/session.h"

namespace revgate::proxy {

namespace asio = boost::asio;
namespace http = boost::beast::http;

void Session::connect_h2_upstream() {
  phase_ = Phase::connecting;
  const auto& decision = exchange_->decision;
  const auto& target = view_->snapshot->upstream(*decision.revision, *decision.endpoint);
  h2_upstream_ = worker_.h2_pool().acquire(view_->snapshot, target, decision,
                                           view_->snapshot->destination_ids[decision.revision->index],
                                           config().timeouts.upstream_connect);
  h2_upstream_->wait(shared_from_this());
}

void Session::on_upstream_ready(bool connected) {
  if (phase_ != Phase::connecting) return;
  if (!connected) {
    h2_upstream_.reset();
    return on_upstream_failure(ErrorKind::upstream_connect);
  }
  phase_ = Phase::reading_response;
  if (started_endpoint_ == nullptr) {
    started_endpoint_ = exchange_->decision.endpoint;
    view_->router.request_started(*started_endpoint_);
  }
  upstream_start_ = Clock::now();
  auto& nv = exchange_->h2_nv;
  nv.clear();
  const auto& block = exchange_->h2_block;
  for (std::size_t i = 0; i < block.size(); ++i) {
    const auto name = block.name(i);
    const auto value = block.value(i);
    nv.push_back({reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                  reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
                  value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  const bool has_body = !exchange_->request->is_done() || chunk_fill_ != 0;
  h2_id_ = h2_upstream_->submit(nv, has_body, shared_from_this());
  if (h2_id_ <= 0) {
    h2_id_ = 0;
    h2_upstream_.reset();
    return on_upstream_failure(ErrorKind::upstream_reset);
  }
  h2_open_ = true;
  h2_request_sent_ = !has_body;
  arm_deadline(h2_request_sent_ ? config().timeouts.upstream_response : config().timeouts.idle);
}

// ---------------------------------------------------------------- request body

ssize_t Session::read_request_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags) {
  auto& request = *exchange_->request;
  if (h2_chunk_taken_ == chunk_fill_) {
    h2_chunk_taken_ = chunk_fill_ = 0;
    if (!request.is_done() && buffer_.size() != 0) {
      if (!chunk_) chunk_ = worker_.acquire_chunk();
      error_code ec;
      chunk_fill_ = parse_body(request, buffer_, chunk_.get(), Worker::kChunkSize, ec);
      if (ec) {
        // A broken body after the head went up: the upstream gets a reset, the client an error
        // (or, once a response is on its way to the client, the end of the connection: a reply
        // cannot replace a response half sent).
        asio::post(stream_.get_executor(),
                   [self = shared_from_this(), ec, exchange = exchange_.get()] {
                     if (self->exchange_.get() != exchange || self->phase_ == Phase::closed) {
                       return;  // that exchange ended meanwhile
                     }
                     self->release_upstream(false);
                     if (self->phase_ == Phase::relaying_response) return self->close();
                     self->fail(ec == http::error::body_limit ? ErrorKind::body_too_large
                                                              : ErrorKind::bad_request);
                   });
        return NGHTTP2_ERR_DEFERRED;
      }
      request_body_bytes_ += chunk_fill_;
    }
  }
  const auto n = std::min(length, chunk_fill_ - h2_chunk_taken_);
  if (n != 0) std::memcpy(out, chunk_.get() + h2_chunk_taken_, n);
  h2_chunk_taken_ += n;
  h2_body_sent_ += n;
  if (h2_chunk_taken_ == chunk_fill_ && request.is_done()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    h2_request_sent_ = true;
    if (!h2_head_done_) arm_deadline(config().timeouts.upstream_response);
    return static_cast<ssize_t>(n);
  }
  if (!h2_head_done_) arm_deadline(config().timeouts.idle);
  if (n != 0) return static_cast<ssize_t>(n);
  read_h2_request_body();
  return NGHTTP2_ERR_DEFERRED;
}

void Session::read_h2_request_body() {
  h2_body_deferred_ = true;
  if (h2_reading_client_) return;
  h2_reading_client_ = true;
  auto read_more = [self = shared_from_this()] {
    self->stream_.async_read_some(
        self->buffer_.prepare(Worker::kChunkSize), [self](error_code ec, std::size_t n) {
          self->h2_reading_client_ = false;
          if (self->phase_ != Phase::reading_response && self->phase_ != Phase::relaying_response)
            return;
          if (ec) {
            // The client left mid-upload: the upstream stream is reset.
            self->flags_ |= metrics::kDownstreamConnectionTermination;
            self->release_upstream(false);
            self->record_metrics();
            return self->close();
          }
          self->buffer_.commit(n);
          if (self->h2_open_ && self->h2_body_deferred_) {
            self->h2_body_deferred_ = false;
            self->h2_upstream_->resume(self->h2_id_);
          }
        });
  };
  if (!expect_continue_) return read_more();
  // The client waits for this before it sends the body (RFC 9110 10.1.1).
  expect_continue_ = false;
  static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                    [self = shared_from_this(), read_more](error_code ec, std::size_t) {
                      if (ec) {
                        self->h2_reading_client_ = false;
                        self->release_upstream(false);
                        return self->close();
                      }
                      read_more();
                    });
}

// ---------------------------------------------------------------- response

void Session::on_upstream_header(std::string_view name, std::string_view value) {
  if (phase_ != Phase::reading_response && phase_ != Phase::relaying_response) return;
  if (h2_head_done_) {
    auto& trailers = exchange_->h2_block;  // the request head is long gone upstream
    if (!h2_in_trailers_) {
      h2_in_trailers_ = true;
      trailers.clear();
    }
    if (!is_proxy_response_field(name)) trailers.add(name, value);
    return;
  }
  if (name == ":status") {
    std::from_chars(value.data(), value.data() + value.size(), h2_status_);
    h2_informational_ = h2_status_ < 200;
    if (!h2_informational_) {
      auto& head = exchange_->h2_response.emplace(ArenaAllocator<char>(&exchange_->arena));
      head.result(h2_status_);
      head.version(11);
    }
    return;
  }
  if (h2_informational_ || name.starts_with(':') || is_proxy_response_field(name)) return;
  exchange_->h2_response->insert(name, value);
}

void Session::on_upstream_headers_done(bool end_stream) {
  if (phase_ != Phase::reading_response && phase_ != Phase::relaying_response) return;
  response_bytes_seen_ = true;
  if (h2_head_done_) return on_upstream_end();  // trailers, always with END_STREAM
  if (h2_informational_) {
    h2_informational_ = false;
    if (end_stream || h2_status_ == 101) return on_upstream_failure(ErrorKind::upstream_protocol);
    return;  // 100 Continue was the proxy's to answer
  }
  h2_head_done_ = true;
  h2_ended_ = end_stream;
  status_ = h2_status_;
  auto& response = *exchange_->h2_response;
  std::uint64_t length = 0;
  bool has_length = false;
  if (auto it = response.find(http::field::content_length); it != response.end()) {
    const auto text = it->value();
    has_length = std::from_chars(text.data(), text.data() + text.size(), length).ec == std::errc();
  }
  if (is_head_request_ || status_ == 204 || status_ == 304) {
    response_framing_ = Framing::none;
  } else if (has_length) {
    response_framing_ = Framing::content_length;
  } else if (!client_http10_) {
    response_framing_ = Framing::chunked;
  } else {
    response_framing_ = Framing::until_close;
    client_keep_alive_ = false;
  }
  // Unread request body (the upstream answered before it all went): the connection cannot
  // carry another request.
  if (!exchange_->request->is_done()) client_keep_alive_ = false;
  if (draining_ || worker_.draining()) client_keep_alive_ = false;
  apply_response_rule(response, exchange_->decision);
  write_response_head(exchange_->head_out, response, response_framing_, length, client_keep_alive_,
                      client_http10_, response_fields());
  head_pending_ = true;
  phase_ = Phase::relaying_response;
  write_h2_response();
}

void Session::on_upstream_data(const std::uint8_t* data, std::size_t size) {
  h2_unconsumed_ += size;
  if (phase_ != Phase::relaying_response) return;  // dropped; consumed when released
  exchange_->h2_body_in.append(reinterpret_cast<const char*>(data), size);
  write_h2_response();
}

void Session::on_upstream_end() {
  h2_ended_ = true;
  write_h2_response();
}

void Session::write_h2_response() {
  if (h2_writing_ || phase_ != Phase::relaying_response) return;
  auto& body = exchange_->h2_body_out;
  body.swap(exchange_->h2_body_in);  // what came so far goes now; more collects meanwhile
  const bool last = h2_ended_;
  auto& buffers = exchange_->out_buffers;
  std::size_t n = 0;
  if (head_pending_) buffers[n++] = asio::buffer(exchange_->head_out);
  const bool chunked = response_framing_ == Framing::chunked;
  if (!body.empty() && response_framing_ != Framing::none) {
    if (chunked) buffers[n++] = asio::buffer(chunk_size_line(body.size(), exchange_->chunk_line));
    buffers[n++] = asio::buffer(body);
    if (chunked) buffers[n++] = asio::buffer("\r\n", 2);
  }
  if (last && chunked) {
    // The last chunk, with the upstream's trailers (gRPC's grpc-status among them) if any.
    auto& tail = exchange_->response_fields;  // written into the head already: free now
    tail.assign("0\r\n");
    if (h2_in_trailers_) {
      const auto& trailers = exchange_->h2_block;
      for (std::size_t i = 0; i < trailers.size(); ++i) {
        tail.append(trailers.name(i)).append(": ").append(trailers.value(i)).append("\r\n");
      }
    }
    tail.append("\r\n");
    buffers[n++] = asio::buffer(tail);
  }
  if (n == 0) {
    if (last) return finish_h2_response();
    return arm_deadline(config().timeouts.idle);  // waiting for the upstream's next DATA
  }
  h2_writing_ = true;
  arm_deadline(config().timeouts.idle);
  asio::async_write(stream_, std::span<const asio::const_buffer>(buffers.data(), n),
                    [self = shared_from_this(), last](error_code ec, std::size_t) {
                      self->h2_writing_ = false;
                      self->on_h2_response_written(ec, last);
                    });
}

void Session::on_h2_response_written(error_code ec, bool last) {
  if (phase_ != Phase::relaying_response) return;
  if (ec) {
    flags_ |= metrics::kDownstreamConnectionTermination;
    release_upstream(false);
    record_metrics();
    return close();
  }
  head_pending_ = false;
  auto& body = exchange_->h2_body_out;
  response_body_bytes_ += body.size();
  if (h2_upstream_ && !body.empty()) {
    h2_unconsumed_ -= std::min(h2_unconsumed_, body.size());
    h2_upstream_->consume(h2_id_, body.size());  // the upstream may send that much more
  }
  body.clear();
  if (last) return finish_h2_response();
  write_h2_response();
}

void Session::finish_h2_response() {
  release_upstream(true);
  if (response_framing_ == Framing::until_close || h2_reading_client_) {
    // Close-delimited, or the client is still uploading what the upstream did not wait for
    // (its read is pending: no lingering read beside it).
    record_metrics();
    return h2_reading_client_ ? close() : close_gracefully();
  }
  finish_request();
}

void Session::on_upstream_closed(std::uint32_t error) {
  h2_open_ = false;
  h2_body_deferred_ = false;
  if (phase_ == Phase::reading_response) {
    // Refused (or the connection went) before any answer: the upstream never processed it.
    const bool unprocessed = error == NGHTTP2_REFUSED_STREAM || error == NGHTTP2_INTERNAL_ERROR;
    if (unprocessed && !retried_ && !response_bytes_seen_ && h2_body_sent_ == 0 &&
        (error == NGHTTP2_REFUSED_STREAM || replayable_)) {
      retried_ = true;
      ++worker_.shard()
            .upstream(view_->snapshot->destination_ids[exchange_->decision.revision->index])
            .retries;
      release_upstream(false);
      return connect_h2_upstream();
    }
    return on_upstream_failure(error == NGHTTP2_NO_ERROR ? ErrorKind::upstream_protocol
                                                         : ErrorKind::upstream_reset);
  }
  if (phase_ == Phase::relaying_response && !h2_ended_) {
    // Cut off mid-body: all the client can be told is the end of its connection.
    flags_ |= metrics::kUpstreamConnectionTermination;
    release_upstream(false);
    record_metrics();
    close();
  }
}

void Session::release_h2_upstream() {
  // What came and was never passed on still holds the upstream connection's window.
  h2_upstream_->consume(h2_id_, std::exchange(h2_unconsumed_, 0));
  if (h2_open_) {
    h2_upstream_->cancel(h2_id_);
  } else if (h2_id_ == 0) {
    h2_upstream_->forget(this);  // still waiting for the connection
  }
  h2_open_ = false;
  h2_upstream_.reset();
  h2_id_ = 0;
}

void Session::reset_h2_state() {
  h2_id_ = 0;
  h2_open_ = h2_body_deferred_ = h2_reading_client_ = h2_request_sent_ = false;
  h2_informational_ = h2_head_done_ = h2_in_trailers_ = h2_ended_ = h2_writing_ = false;
  h2_status_ = 0;
  h2_chunk_taken_ = h2_body_sent_ = h2_unconsumed_ = 0;
}

}  // namespace revgate::proxy
