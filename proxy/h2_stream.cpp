#include "proxy/h2_stream.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <optional>
#include <span>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>

#include "proxy/body_parser.h"
#include "proxy/h2_connection.h"
#include "proxy/request_record.h"
#include "proxy/route_rules.h"
#include "proxy/upstream_tls.h"
#include "tracing/trace_context.h"

namespace revgate::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kReadSize = 16 * 1024;
constexpr std::uint32_t kResponseHeaderLimit = 80 * 1024;  // as for HTTP/1.1 clients

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return {reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
          value.size(), NGHTTP2_NV_FLAG_NONE};
}

ssize_t read_body_callback(nghttp2_session*, std::int32_t, std::uint8_t* out, std::size_t length,
                           std::uint32_t* flags, nghttp2_data_source* source, void*) {
  return static_cast<H2Stream*>(source->ptr)->read_body(out, length, flags);
}

bool is_informational(unsigned status) { return status >= 100 && status < 200 && status != 101; }

// gRPC's status for a proxy-generated error, as Envoy maps HTTP statuses
// (grpc/doc/http-grpc-status-mapping.md), but a timeout is DEADLINE_EXCEEDED.
const char* grpc_status_for(unsigned status) {
  switch (status) {
    case 400: return "13";  // INTERNAL
    case 401: return "16";  // UNAUTHENTICATED
    case 403: return "7";   // PERMISSION_DENIED
    case 404: return "12";  // UNIMPLEMENTED
    case 408:
    case 504: return "4";   // DEADLINE_EXCEEDED
    case 413:
    case 431: return "8";   // RESOURCE_EXHAUSTED
    case 429:
    case 502:
    case 503: return "14";  // UNAVAILABLE
    default: return "2";    // UNKNOWN
  }
}

// grpc-timeout: up to 8 digits and a unit (H M S m u n), PROTOCOL-HTTP2.md.
std::optional<std::chrono::milliseconds> parse_grpc_timeout(std::string_view text) {
  if (text.size() < 2 || text.size() > 9) return std::nullopt;
  std::uint64_t value = 0;
  const auto digits = text.substr(0, text.size() - 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  using namespace std::chrono;
  switch (text.back()) {
    case 'H': return duration_cast<milliseconds>(hours(value));
    case 'M': return duration_cast<milliseconds>(minutes(value));
    case 'S': return duration_cast<milliseconds>(seconds(value));
    case 'm': return milliseconds(value);
    case 'u': return duration_cast<milliseconds>(microseconds(value));
    case 'n': return duration_cast<milliseconds>(nanoseconds(value));
    default: return std::nullopt;
  }
}

}  // namespace

H2Stream::H2Stream(H2Connection& connection, std::int32_t id)
    : connection_(&connection),
      worker_(connection.worker()),
      id_(id),
      view_(worker_.view()),
      arena_(worker_.header_blocks()),
      request_(ArenaAllocator<char>(&arena_)),
      request_start_(Clock::now()) {
  in_flight_ = true;
  worker_.shard().request_started();
}

H2Stream::~H2Stream() {
  if (chunk_) worker_.release_chunk(std::move(chunk_));
  release_buffers(std::move(buffers_));
}

thread_local std::vector<std::unique_ptr<H2Stream::Buffers>> H2Stream::free_buffers_;

std::unique_ptr<H2Stream::Buffers> H2Stream::acquire_buffers() {
  if (free_buffers_.empty()) return std::make_unique<Buffers>();
  auto buffers = std::move(free_buffers_.back());
  free_buffers_.pop_back();
  return buffers;
}

void H2Stream::release_buffers(std::unique_ptr<Buffers> buffers) {
  constexpr std::size_t kMaxFree = 1024;
  constexpr std::size_t kKeptCapacity = 64 * 1024;  // a stream window: what a body piece takes
  if (free_buffers_.size() >= kMaxFree) return;
  for (std::string* text : {&buffers->head_out, &buffers->body_in, &buffers->body_out,
                            &buffers->cookie, &buffers->location, &buffers->response_body}) {
    if (text->capacity() > kKeptCapacity) std::string().swap(*text);
    text->clear();
  }
  buffers->block.clear();
  buffers->request_block.clear();
  buffers->nv.clear();
  free_buffers_.push_back(std::move(buffers));
}

// ---------------------------------------------------------------- the request head

void H2Stream::on_header(std::string_view name, std::string_view value) {
  const auto& limits = config().limits;
  // The limits of HTTP/1.1 heads, counted as the same fields would take there ("name: value"
  // and a line end), so a head too large for one protocol is too large for the other.
  header_bytes_ += name.size() + value.size() + 4;
  if (!name.starts_with(':')) ++header_count_;
  if (header_bytes_ > limits.request_headers_bytes ||
      header_count_ > limits.request_header_count) {
    head_too_large_ = true;
  }
  if (head_too_large_) return;  // nothing more is kept; 431 once the head is in
  // Pseudo-headers come first (nghttp2 checks that, and that each comes once); they go
  // straight into the head, in the stream's header arena like every field.
  if (name.starts_with(':')) {
    if (name == ":method") {
      request_.method_string(value);
      has_method_ = true;
    } else if (name == ":path") {
      request_.target(value);
      has_path_ = true;
    } else if (name == ":authority") {
      request_.insert(http::field::host, value);
      has_authority_ = true;
    }
    return;  // :scheme is the listener's
  }
  if (name == "host") {
    // :authority wins where both came (RFC 9113 8.3.1).
    if (!has_authority_) request_.insert(http::field::host, value);
    has_authority_ = true;
  } else if (name == "cookie") {
    // HTTP/2 may split Cookie into one field per crumb; HTTP/1.1 wants one (RFC 9113 8.2.3).
    auto& cookie = buffers_->cookie;
    if (!cookie.empty()) cookie.append("; ");
    cookie.append(value);
  } else if (name == "content-length") {
    has_content_length_ = true;  // nghttp2 checked it is a number, and checks it against DATA
    std::from_chars(value.data(), value.data() + value.size(), content_length_);
  } else if (name == "expect") {
    expect_continue_ = beast::iequals(value, "100-continue");
  } else {
    request_.insert(name, value);
  }
}

void H2Stream::on_head_done(bool end_stream) {
  request_ended_ = end_stream;
  if (head_too_large_) return fail(ErrorKind::headers_too_large);
  if (!has_method_ || !has_path_ || !has_authority_) {
    return fail(ErrorKind::bad_request);  // CONNECT (no :path), or no authority at all
  }
  request_.version(11);
  if (!buffers_->cookie.empty()) request_.insert(http::field::cookie, buffers_->cookie);
  if (const auto& limit = config().limits.request_body_bytes;
      limit != 0 && has_content_length_ && content_length_ > limit) {
    return fail(ErrorKind::body_too_large);
  }
  route_view_.host = request_[http::field::host];
  route_view_.path = request_.target();
  route_view_.cookie_header = buffers_->cookie;
  route_view_.source_ip = connection_->client_ip();
  if (auto it = request_.find("knative-serving-tag"); it != request_.end()) {
    route_view_.tag_header = it->value();
  }
  if (auto it = request_.find(http::field::content_type); it != request_.end()) {
    grpc_ = it->value().starts_with("application/grpc");
  }
  const auto verb = request_.method();
  is_head_request_ = verb == http::verb::head;
  replayable_ = is_replayable(verb, request_ended_);
  route_request();
}

// ---------------------------------------------------------------- route

void H2Stream::route_request() {
  const auto& listener = connection_->listener();
  if (listener.https_redirect_port != 0) {
    auto& location = buffers_->location;
    if (!https_redirect_location(location, route_view_.host, listener.https_redirect_port,
                                 request_.target())) {
      return fail(ErrorKind::bad_request);
    }
    return reply_local(301, "moved to https\n", location);
  }
  auto& router = view_->router;
  const auto match = router.table()->find_host(route_view_.host);
  if (match.service != nullptr && match.service->hash_key == routing::HashKey::header) {
    auto it = request_.find(match.service->hash_header);
    if (it != request_.end()) route_view_.hash_header = it->value();
  }
  auto& rng = worker_.rng();
  {
    // Route rules and consistent hashing look at the whole head; the view points into it
    // only while routing.
    const HeadFields fields(request_, route_view_.host);
    route_view_.fields = &fields;
    decision_ = router.route(match, route_view_, rng.next());
    route_view_.fields = nullptr;
  }
  if (const auto* rule = decision_.rule; rule != nullptr && rule->answers_locally()) {
    if (rule->direct_response) {
      return reply_local(static_cast<unsigned>(rule->direct_response->status),
                         rule->direct_response->body);
    }
    redirect_location(buffers_->location, *rule, listener.https, route_view_.host,
                      request_.target());
    return reply_local(static_cast<unsigned>(rule->redirect->code), "", buffers_->location);
  }
  if (!decision_) return fail(ErrorKind::no_route);
  if (decision_.endpoint == nullptr) return fail(ErrorKind::no_healthy_upstream);

  format_uuid4(rng.next(), rng.next(), request_id_);
  char traceparent[tracing::kTraceparentSize];
  const auto trace = tracing::make_traceparent(
      rng.next(), rng.next(), rng.next(), tracing::sample(config().tracing.sample_rate, rng.next()),
      traceparent);
  if (request_ended_) {
    request_framing_ = Framing::none;
  } else if (has_content_length_) {
    request_framing_ = Framing::content_length;
  } else {
    request_framing_ = Framing::chunked;  // HTTP/2 bodies need no length: chunked upstream
  }
  const ForwardedFor forwarded{connection_->client_ip(), listener.https ? "https" : "http",
                               decision_.revision->name, decision_.service->namespace_name,
                               std::string_view(request_id_, sizeof request_id_), trace, {}};
  apply_request_rule(request_, decision_);  // rewrite, header edits (none: no rule)
  const auto& target = view_->snapshot->upstream(*decision_.revision, *decision_.endpoint);
  upstream_http2_ = target.http2();
  if (upstream_http2_) {
    write_h2_request_head(buffers_->request_block, request_, forwarded,
                          target.tls != nullptr ? "https" : "http",
                          has_content_length_ ? std::optional(content_length_) : std::nullopt);
  } else {
    write_request_head(buffers_->head_out, request_, forwarded, request_framing_, content_length_);
  }
  if (expect_continue_ && !request_ended_) {
    const nghttp2_nv informational[] = {make_nv(":status", "100")};
    nghttp2_submit_headers(connection_->session(), NGHTTP2_FLAG_NONE, id_, nullptr, informational,
                           1, nullptr);
    flush();
  }
  connect_upstream();
}

// ---------------------------------------------------------------- connect upstream

void H2Stream::connect_upstream() {
  phase_ = Phase::connecting;
  const auto& endpoint = *decision_.endpoint;
  const auto& target = view_->snapshot->upstream(*decision_.revision, endpoint);
  const auto destination = view_->snapshot->destination_ids[decision_.revision->index];
  if (upstream_http2_) {
    h2_upstream_ = worker_.h2_pool().acquire(view_->snapshot, target, decision_, destination,
                                             config().timeouts.upstream_connect);
    return h2_upstream_->wait(shared_from_this());
  }
  if (!retried_) upstream_ = worker_.pool().take(target.pool_key, destination);
  if (upstream_) {
    if (!upstream_->watching) return send_request();
    upstream_->waiter = shared_from_this();  // the pool's watch is ending: wait for its word
    return;
  }
  error_code ec;
  auto address = asio::ip::make_address(endpoint.address, ec);
  if (ec) return on_upstream_failure(ErrorKind::upstream_connect);
  upstream_ = std::make_shared<UpstreamConnection>(worker_.io().get_executor());
  upstream_->key = target.pool_key;
  worker_.pool().opened(*upstream_, destination);
  timed_out_ = false;
  arm_deadline(config().timeouts.upstream_connect);
  upstream_->stream.socket().async_connect(
      tcp::endpoint(address, endpoint.port),
      [self = shared_from_this(), upstream = upstream_](error_code ec) {
        self->on_upstream_connected(ec);
      });
}

void H2Stream::on_upstream_checked(bool usable) {
  if (phase_ != Phase::connecting) return;
  if (usable) return send_request();
  release_upstream(false);
  connect_upstream();
}

void H2Stream::on_upstream_connected(error_code ec) {
  if (phase_ != Phase::connecting) return;
  if (ec || timed_out_) return on_upstream_failure(ErrorKind::upstream_connect);
  upstream_->stream.socket().set_option(tcp::no_delay(true), ec);
  const auto& target = view_->snapshot->upstream(*decision_.revision, *decision_.endpoint);
  if (target.tls == nullptr) return send_request();
  if (!begin_upstream_tls(*upstream_, target, decision_)) {
    return on_upstream_failure(ErrorKind::upstream_connect);
  }
  upstream_->stream.tls()->async_handshake(
      asio::ssl::stream_base::client,
      [self = shared_from_this(), upstream = upstream_](error_code ec) {
        self->on_upstream_handshake(ec);
      });
}

void H2Stream::on_upstream_handshake(error_code ec) {
  if (phase_ != Phase::connecting) return;
  if (ec || timed_out_) {
    const auto& target = view_->snapshot->upstream(*decision_.revision, *decision_.endpoint);
    log_upstream_tls_failure(*upstream_, target, decision_, timed_out_, ec);
    return on_upstream_failure(ErrorKind::upstream_connect);
  }
  send_request();
}

// ---------------------------------------------------------------- send request

void H2Stream::send_request() {
  phase_ = Phase::sending_request;
  deadline_ = Clock::time_point::max();
  if (started_endpoint_ == nullptr) {
    started_endpoint_ = decision_.endpoint;
    view_->router.request_started(*started_endpoint_);
  }
  upstream_start_ = Clock::now();
  ++upstream_->requests;
  head_pending_ = true;
  write_request();
}

void H2Stream::write_request() {
  if (phase_ != Phase::sending_request || writing_) return;
  buffers_->body_out.swap(buffers_->body_in);  // what came so far goes now; more collects in buffers_->body_in
  const bool finishing = request_ended_;
  std::size_t n = 0;
  if (head_pending_) out_buffers_[n++] = asio::buffer(buffers_->head_out);
  if (!buffers_->body_out.empty()) {
    if (request_framing_ == Framing::chunked) {
      out_buffers_[n++] = asio::buffer(chunk_size_line(buffers_->body_out.size(), chunk_line_));
      out_buffers_[n++] = asio::buffer(buffers_->body_out);
      out_buffers_[n++] = asio::buffer("\r\n", 2);
    } else {
      out_buffers_[n++] = asio::buffer(buffers_->body_out);
    }
  }
  if (finishing && request_framing_ == Framing::chunked) {
    out_buffers_[n++] = asio::buffer("0\r\n\r\n", 5);
  }
  if (n == 0) {
    // Waiting for the client's next DATA (its body stopped moving: 408 after `idle`).
    if (finishing) return read_response_head();
    return arm_deadline(config().timeouts.idle);
  }
  writing_ = true;
  arm_deadline(config().timeouts.idle);
  asio::async_write(upstream_->stream, std::span<const asio::const_buffer>(out_buffers_.data(), n),
                    [self = shared_from_this(), upstream = upstream_,
                     body_bytes = buffers_->body_out.size(), finishing](error_code ec, std::size_t) {
                      self->writing_ = false;
                      self->on_request_written(ec, body_bytes, finishing);
                    });
}

void H2Stream::on_request_written(error_code ec, std::size_t body_bytes, bool finished) {
  if (phase_ != Phase::sending_request) return;
  if (ec) {
    if (may_retry()) return retry();
    return on_upstream_failure(ErrorKind::upstream_reset);
  }
  head_pending_ = false;
  buffers_->body_out.clear();
  request_body_bytes_ += body_bytes;
  consume(body_bytes);  // the client may send that much more
  flush();
  if (finished) return read_response_head();
  write_request();
}

// A pooled connection the upstream closed while idle: a bodyless idempotent request goes
// again, once, on a new connection (as for HTTP/1.1 clients).
bool H2Stream::may_retry() const {
  return upstream_->requests > 1 && !retried_ && replayable_ && !response_bytes_seen_;
}

void H2Stream::count_retry() {
  retried_ = true;
  ++worker_.shard().upstream(view_->snapshot->destination_ids[decision_.revision->index]).retries;
}

void H2Stream::retry() {
  count_retry();
  release_upstream(false);
  response_.reset();
  connect_upstream();
}

void H2Stream::on_data(const std::uint8_t* data, std::size_t size) {
  unconsumed_ += size;
  if (!body_wanted_) return consume(size);
  const auto limit = config().limits.request_body_bytes;
  if (limit != 0 &&
      request_body_bytes_ + buffers_->body_out.size() + buffers_->body_in.size() + size > limit) {
    release_upstream(false);  // a head (and maybe some body) went up: unusable
    return fail(ErrorKind::body_too_large);
  }
  buffers_->body_in.append(reinterpret_cast<const char*>(data), size);
  if (resume_h2_body()) return;
  write_request();
}

// An HTTP/2 upstream's data provider waiting for request body: it has some (or the end) now.
bool H2Stream::resume_h2_body() {
  if (!h2_body_deferred_ || !h2_open_) return false;
  h2_body_deferred_ = false;
  h2_upstream_->resume(h2_id_);
  return true;
}

void H2Stream::on_end_stream() {
  request_ended_ = true;
  if (resume_h2_body()) return;
  write_request();
}

void H2Stream::consume(std::size_t bytes) {
  bytes = std::min(bytes, unconsumed_);
  unconsumed_ -= bytes;
  if (connection_ != nullptr && bytes != 0) {
    nghttp2_session_consume(connection_->session(), id_, bytes);
  }
}

// ---------------------------------------------------------------- response head

std::chrono::milliseconds H2Stream::response_timeout() const {
  auto timeout = config().timeouts.upstream_response;
  if (auto it = request_.find("grpc-timeout"); it != request_.end()) {
    // The client's deadline, when sooner: the proxy answers DEADLINE_EXCEEDED itself.
    if (auto deadline = parse_grpc_timeout(it->value())) timeout = std::min(timeout, *deadline);
  }
  return timeout;
}

void H2Stream::read_response_head() {
  phase_ = Phase::reading_response;
  timed_out_ = false;
  arm_deadline(response_timeout());
  response_.emplace(std::piecewise_construct, std::make_tuple(),
                    std::make_tuple(ArenaAllocator<char>(&arena_)));
  response_->header_limit(kResponseHeaderLimit);
  response_->body_limit(boost::none);
  if (is_head_request_) response_->skip(true);
  parse_response_head();
}

void H2Stream::parse_response_head() {
  auto& buffer = upstream_->buffer;
  if (buffer.size() != 0) {
    error_code ec;
    auto used = response_->put(buffer.data(), ec);
    buffer.consume(used);
    if (!ec && response_->is_header_done()) return on_response_head();
    if (ec && ec != http::error::need_more) {
      return on_upstream_failure(ErrorKind::upstream_protocol);
    }
  }
  upstream_->stream.async_read_some(
      buffer.prepare(kReadSize),
      [self = shared_from_this(), upstream = upstream_](error_code ec, std::size_t n) {
        if (self->phase_ != Phase::reading_response) return;
        if (self->timed_out_) return self->on_upstream_failure(ErrorKind::upstream_timeout);
        if (ec) {
          if (self->may_retry()) return self->retry();
          return self->on_upstream_failure(ErrorKind::upstream_reset);
        }
        self->response_bytes_seen_ = true;
        self->upstream_->buffer.commit(n);
        self->parse_response_head();
      });
}

void H2Stream::on_response_head() {
  auto& response = response_->get();
  if (is_informational(response.result_int())) return read_response_head();
  // No Upgrade goes upstream from HTTP/2 (it has none): a 101 is a broken upstream.
  if (response.result_int() == 101) return on_upstream_failure(ErrorKind::upstream_protocol);
  deadline_ = Clock::time_point::max();
  status_ = response.result_int();
  upstream_service_ms_ =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - upstream_start_).count();
  auto& block = buffers_->block;
  apply_response_rule(response, decision_);
  write_h2_response_head(block, response);
  add_proxy_fields(decision_, upstream_service_ms_, connection_->listener().https,
                   [&block](std::string_view name, std::string_view value) {
                     block.add(name, value);
                   });
  head_fields_ = static_cast<std::size_t>(std::distance(response.begin(), response.end()));
  const bool has_body = !response_->is_done();
  phase_ = Phase::relaying_response;
  if (!has_body) release_upstream(response_->keep_alive() && upstream_->buffer.size() == 0);
  chunk_fill_ = chunk_taken_ = 0;
  submit_response(has_body);
}

const std::vector<nghttp2_nv>& H2Stream::block_nv() { return block_nv(buffers_->block); }

const std::vector<nghttp2_nv>& H2Stream::block_nv(const HeaderBlock& block) {
  auto& nv = buffers_->nv;
  nv.clear();
  for (std::size_t i = 0; i < block.size(); ++i) nv.push_back(make_nv(block.name(i), block.value(i)));
  return nv;
}

void H2Stream::submit_response(bool has_body) {
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = read_body_callback;
  const auto& nv = block_nv();
  nghttp2_submit_response(connection_->session(), id_, nv.data(), nv.size(),
                          has_body ? &provider : nullptr);
  arm_deadline(config().timeouts.idle);
  flush();
}

// ---------------------------------------------------------------- response body

bool H2Stream::fill_response_chunk() {
  auto& buffer = upstream_->buffer;
  if (!response_->is_done() && buffer.size() != 0) {
    if (!chunk_) chunk_ = worker_.acquire_chunk();
    error_code ec;
    chunk_fill_ = parse_body(*response_, buffer, chunk_.get(), Worker::kChunkSize, ec);
    chunk_taken_ = 0;
    if (ec) {
      flags_ |= metrics::kUpstreamProtocolError;
      release_upstream(false);
      return false;
    }
  }
  return chunk_fill_ != 0 || response_->is_done();
}

void H2Stream::read_response_body() {
  reading_upstream_ = true;
  upstream_->stream.async_read_some(
      upstream_->buffer.prepare(Worker::kChunkSize),
      [self = shared_from_this(), upstream = upstream_](error_code ec, std::size_t n) {
        self->reading_upstream_ = false;
        if (self->phase_ != Phase::relaying_response) return;
        if (ec == asio::error::eof && self->response_->need_eof()) {
          error_code eof_ec;
          self->response_->put_eof(eof_ec);  // a close-delimited body ends with the connection
          if (eof_ec) ec = eof_ec;
          else ec = {};
        }
        if (ec) {
          // Cut off mid-body: the client learns it from the reset (no END_STREAM).
          self->flags_ |= metrics::kUpstreamConnectionTermination;
          self->release_upstream(false);
          return self->reset(NGHTTP2_INTERNAL_ERROR);
        }
        self->upstream_->buffer.commit(n);
        if (self->deferred_ && self->connection_ != nullptr) {
          self->deferred_ = false;
          nghttp2_session_resume_data(self->connection_->session(), self->id_);
          self->flush();
        }
      });
}

ssize_t H2Stream::read_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags) {
  if (phase_ == Phase::replying) {
    const auto n = std::min(length, local_body_.size() - chunk_taken_);
    std::memcpy(out, local_body_.data() + chunk_taken_, n);
    chunk_taken_ += n;
    if (chunk_taken_ == local_body_.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
  if (phase_ != Phase::relaying_response) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (upstream_http2_) return read_h2_response_body(out, length, flags);
  if (chunk_taken_ == chunk_fill_) {
    chunk_taken_ = chunk_fill_ = 0;
    if (!fill_response_chunk()) {
      if (!upstream_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // a broken body: reset
      if (!reading_upstream_) read_response_body();
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  const auto n = std::min(length, chunk_fill_ - chunk_taken_);
  std::memcpy(out, chunk_.get() + chunk_taken_, n);
  chunk_taken_ += n;
  response_body_bytes_ += n;
  arm_deadline(config().timeouts.idle);
  if (chunk_taken_ == chunk_fill_ && response_->is_done()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (write_h2_trailers(buffers_->block, response_->get(), head_fields_)) {
      // Trailers of a chunked upstream response (gRPC's grpc-status among them) end the stream.
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      const auto& nv = block_nv();
      nghttp2_submit_trailer(connection_->session(), id_, nv.data(), nv.size());
    }
    release_upstream(response_->keep_alive() && upstream_->buffer.size() == 0);
  }
  return static_cast<ssize_t>(n);
}

// ---------------------------------------------------------------- HTTP/2 upstream

void H2Stream::on_upstream_ready(bool connected) {
  if (phase_ != Phase::connecting) return;
  if (!connected) {
    h2_upstream_.reset();
    return on_upstream_failure(ErrorKind::upstream_connect);
  }
  send_h2_request();
}

void H2Stream::send_h2_request() {
  phase_ = Phase::reading_response;
  if (started_endpoint_ == nullptr) {
    started_endpoint_ = decision_.endpoint;
    view_->router.request_started(*started_endpoint_);
  }
  upstream_start_ = Clock::now();
  // DATA may have come (even all of it) while the connection was being made.
  const bool has_body = !request_ended_ || !buffers_->body_in.empty();
  h2_id_ = h2_upstream_->submit(block_nv(buffers_->request_block), has_body, shared_from_this());
  if (h2_id_ <= 0) {
    h2_id_ = 0;
    h2_upstream_.reset();
    return on_upstream_failure(ErrorKind::upstream_reset);
  }
  h2_open_ = true;
  request_sent_ = !has_body;
  // The response deadline runs once the whole request is up; while the body goes, `idle`.
  arm_deadline(request_sent_ ? response_timeout() : config().timeouts.idle);
}

ssize_t H2Stream::read_request_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags) {
  auto& body = buffers_->body_in;
  const auto n = std::min(length, body.size() - request_taken_);
  std::memcpy(out, body.data() + request_taken_, n);
  request_taken_ += n;
  if (request_taken_ == body.size()) {
    body.clear();
    request_taken_ = 0;
  }
  request_body_bytes_ += n;
  consume(n);  // with nghttp2 now: the client may send that much more
  flush();
  if (body.empty() && request_ended_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    request_sent_ = true;
    if (!upstream_head_done_) arm_deadline(response_timeout());
    return static_cast<ssize_t>(n);
  }
  if (n == 0) {
    h2_body_deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (!upstream_head_done_) arm_deadline(config().timeouts.idle);
  return static_cast<ssize_t>(n);
}

void H2Stream::on_upstream_header(std::string_view name, std::string_view value) {
  if (phase_ != Phase::reading_response && phase_ != Phase::relaying_response) return;
  auto& block = buffers_->block;
  if (upstream_head_done_) {
    if (!in_trailers_) {
      in_trailers_ = true;  // the head went out already: the block holds the trailers now
      block.clear();
    }
    if (!is_proxy_response_field(name)) block.add(name, value);
    return;
  }
  if (name == ":status") {
    // nghttp2 checked it is three digits; a head starts with it.
    std::from_chars(value.data(), value.data() + value.size(), upstream_status_);
    informational_ = upstream_status_ < 200;
    block.clear();
    if (!informational_) block.add(name, value);
    return;
  }
  if (informational_ || is_proxy_response_field(name) || response_rule_drops(decision_, name)) {
    return;
  }
  block.add(name, value);
}

void H2Stream::on_upstream_headers_done(bool end_stream) {
  if (phase_ != Phase::reading_response && phase_ != Phase::relaying_response) return;
  response_bytes_seen_ = true;
  if (upstream_head_done_) {  // trailers (always with END_STREAM)
    has_trailers_ = in_trailers_;
    return on_upstream_end();
  }
  if (informational_) {
    informational_ = false;
    // A 100 Continue was answered to the client already; 101 cannot happen without Upgrade.
    if (end_stream || upstream_status_ == 101) {
      release_upstream(false);
      return on_upstream_failure(ErrorKind::upstream_protocol);
    }
    return;
  }
  upstream_head_done_ = true;
  upstream_ended_ = end_stream;
  status_ = upstream_status_;
  upstream_service_ms_ =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - upstream_start_).count();
  auto& block = buffers_->block;
  const auto add = [&block](std::string_view name, std::string_view value) {
    block.add(name, value);
  };
  add_response_rule_fields(decision_, add);
  add_proxy_fields(decision_, upstream_service_ms_, connection_->listener().https, add);
  phase_ = Phase::relaying_response;
  response_taken_ = 0;
  submit_response(!end_stream && !is_head_request_);
}

void H2Stream::on_upstream_data(const std::uint8_t* data, std::size_t size) {
  upstream_unconsumed_ += size;
  if (phase_ != Phase::relaying_response) return;  // dropped; consumed when released
  buffers_->response_body.append(reinterpret_cast<const char*>(data), size);
  resume_response();
}

void H2Stream::on_upstream_end() {
  upstream_ended_ = true;
  resume_response();
}

void H2Stream::resume_response() {
  if (!deferred_ || connection_ == nullptr) return;
  deferred_ = false;
  nghttp2_session_resume_data(connection_->session(), id_);
  flush();
}

ssize_t H2Stream::read_h2_response_body(std::uint8_t* out, std::size_t length,
                                        std::uint32_t* flags) {
  auto& body = buffers_->response_body;
  const auto n = std::min(length, body.size() - response_taken_);
  if (n == 0 && !upstream_ended_) {
    deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  std::memcpy(out, body.data() + response_taken_, n);
  response_taken_ += n;
  if (response_taken_ == body.size()) {
    body.clear();
    response_taken_ = 0;
  }
  response_body_bytes_ += n;
  if (h2_upstream_ && n != 0) {
    upstream_unconsumed_ -= std::min(upstream_unconsumed_, n);
    h2_upstream_->consume(h2_id_, n);  // the upstream may send that much more
  }
  arm_deadline(config().timeouts.idle);
  if (body.empty() && upstream_ended_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (has_trailers_ && buffers_->block.size() != 0) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      const auto& nv = block_nv();
      nghttp2_submit_trailer(connection_->session(), id_, nv.data(), nv.size());
    }
    release_upstream(true);
  }
  return static_cast<ssize_t>(n);
}

void H2Stream::on_upstream_closed(std::uint32_t error) {
  h2_open_ = false;
  h2_body_deferred_ = false;
  if (phase_ == Phase::reading_response) {
    // Refused (or the connection went) before any answer: the upstream never processed it.
    const bool unprocessed = error == NGHTTP2_REFUSED_STREAM || error == NGHTTP2_INTERNAL_ERROR;
    if (unprocessed && !retried_ && !response_bytes_seen_ && request_body_bytes_ == 0 &&
        (error == NGHTTP2_REFUSED_STREAM || replayable_)) {
      count_retry();
      release_upstream(false);
      h2_id_ = 0;
      return connect_upstream();
    }
    release_upstream(false);
    return on_upstream_failure(error == NGHTTP2_NO_ERROR ? ErrorKind::upstream_protocol
                                                         : ErrorKind::upstream_reset);
  }
  if (phase_ == Phase::relaying_response && !upstream_ended_) {
    // Cut off mid-body: the client learns it from the reset (no END_STREAM).
    flags_ |= metrics::kUpstreamConnectionTermination;
    release_upstream(false);
    return reset(NGHTTP2_INTERNAL_ERROR);
  }
}

// ---------------------------------------------------------------- failures and local replies

void H2Stream::fail(ErrorKind kind) {
  const auto reply = reply_for(kind);
  flags_ |= reply.flags;
  reply_local(reply.status, reply.body);
}

void H2Stream::on_upstream_failure(ErrorKind kind) {
  if (kind == ErrorKind::upstream_connect && decision_.revision != nullptr) {
    ++worker_.shard().upstream(view_->snapshot->destination_ids[decision_.revision->index])
          .connect_failures;
  }
  release_upstream(false);
  response_.reset();
  fail(kind);
}

void H2Stream::reply_local(unsigned status, std::string_view body, std::string_view location) {
  if (connection_ == nullptr || phase_ == Phase::done) return;
  if (phase_ == Phase::relaying_response || phase_ == Phase::replying) {
    return reset(NGHTTP2_INTERNAL_ERROR);  // a head went out already
  }
  // The body (if any is still coming) is not wanted any more: give its window back.
  body_wanted_ = false;
  buffers_->body_in.clear();
  consume(unconsumed_);
  phase_ = Phase::replying;
  status_ = status;
  auto& block = buffers_->block;
  block.clear();
  if (grpc_) {
    // gRPC clients read errors from grpc-status, in a trailers-only response (HTTP 200).
    status_ = 200;
    block.add(":status", "200");
    block.add("content-type", "application/grpc");
    block.add("grpc-status", grpc_status_for(status));
    block.add("grpc-message", body.substr(0, body.find('\n')));
    local_body_ = {};
  } else {
    char digits[20];
    char status_text[4];
    const auto status_end = std::to_chars(status_text, status_text + 4, status).ptr;
    block.add(":status", std::string_view(status_text, status_end - status_text));
    block.add("content-type", "text/plain; charset=utf-8");
    const auto length_end = std::to_chars(digits, digits + sizeof digits, body.size()).ptr;
    block.add("content-length", std::string_view(digits, length_end - digits));
    if (!location.empty()) block.add("location", location);
    local_body_ = body;
    response_body_bytes_ = body.size();  // counted like a proxied body (metrics, access log)
  }
  chunk_taken_ = 0;
  submit_response(!local_body_.empty());
}

void H2Stream::reset(std::uint32_t error_code) {
  if (connection_ == nullptr || phase_ == Phase::done) return;
  nghttp2_submit_rst_stream(connection_->session(), NGHTTP2_FLAG_NONE, id_, error_code);
  flush();
}

void H2Stream::flush() {
  if (connection_ != nullptr) connection_->flush();
}

void H2Stream::release_upstream(bool reusable) {
  if (h2_upstream_) {
    // What came and was never passed on still holds the upstream connection's window.
    h2_upstream_->consume(h2_id_, std::exchange(upstream_unconsumed_, 0));
    if (h2_open_) {
      h2_upstream_->cancel(h2_id_);
    } else if (h2_id_ == 0) {
      h2_upstream_->forget(this);  // still waiting for the connection
    }
    h2_open_ = false;
    h2_upstream_.reset();
  }
  if (!upstream_) return;
  if (reusable && !worker_.closing()) {
    worker_.pool().give_back(std::move(upstream_), Clock::now());
  } else {
    worker_.pool().closed(*upstream_);
    error_code ignored;
    upstream_->stream.socket().close(ignored);  // pending operations end with operation_aborted
  }
  upstream_.reset();
}

// ---------------------------------------------------------------- end

void H2Stream::on_closed(std::uint32_t error) {
  if (phase_ == Phase::done) return;
  const bool complete = error == NGHTTP2_NO_ERROR &&
                        (phase_ == Phase::replying || phase_ == Phase::relaying_response);
  if (!complete) flags_ |= metrics::kDownstreamConnectionTermination;
  release_upstream(false);  // still held: the exchange did not finish cleanly
  phase_ = Phase::done;
  if (connection_ != nullptr && unconsumed_ != 0) {
    // DATA of a stream that is gone still counts against the connection's window.
    nghttp2_session_consume_connection(connection_->session(), unconsumed_);
    unconsumed_ = 0;
  }
  record();
}

void H2Stream::detach() {
  if (phase_ != Phase::done) {
    flags_ |= metrics::kDownstreamConnectionTermination;
    release_upstream(false);
    phase_ = Phase::done;
    record();
  }
  connection_ = nullptr;
}

void H2Stream::record() {
  if (recorded_) return;
  recorded_ = true;
  if (started_endpoint_ != nullptr) {
    view_->router.request_finished(*started_endpoint_);
    started_endpoint_ = nullptr;
  }
  if (in_flight_) {
    in_flight_ = false;
    worker_.shard().request_ended();
  }
  RequestRecord record;
  if (has_method_) record.request = &request_;
  record.protocol = "HTTP/2";
  record.authority = route_view_.host;
  record.decision = &decision_;
  record.request_id = &request_id_;
  record.status = status_;
  record.flags = flags_;
  record.request_bytes = request_body_bytes_;
  record.response_bytes = response_body_bytes_;
  record.elapsed = Clock::now() - request_start_;
  record.upstream_service_ms = upstream_service_ms_;
  record.grpc = grpc_;
  record_request(worker_, *view_->snapshot, record);
}

void H2Stream::check_deadline(Clock::time_point now) {
  if (now < deadline_) return;
  deadline_ = Clock::time_point::max();
  error_code ignored;
  switch (phase_) {
    case Phase::reading_response:
      if (upstream_http2_) {
        // No response head in time, or the body stopped moving while it is still going up:
        // the client's DATA stopped (408), or the upstream's window stayed shut (504).
        const bool waiting_on_client = !request_sent_ && buffers_->body_in.empty();
        if (!request_sent_) flags_ |= metrics::kStreamIdleTimeout;
        release_upstream(false);
        return fail(waiting_on_client ? ErrorKind::request_timeout : ErrorKind::upstream_timeout);
      }
      [[fallthrough]];
    case Phase::connecting:
      timed_out_ = true;  // the handler sees operation_aborted and reads this flag
      if (upstream_) upstream_->stream.socket().cancel(ignored);
      return;
    case Phase::sending_request: {
      // The body stopped moving: the client stopped sending, or the upstream stopped reading.
      flags_ |= metrics::kStreamIdleTimeout;
      const bool waiting_on_client = !writing_;
      release_upstream(false);
      return fail(waiting_on_client ? ErrorKind::request_timeout : ErrorKind::upstream_timeout);
    }
    case Phase::relaying_response:
    case Phase::replying:
      // The client does not take its response (its window stays shut), or the upstream stalls.
      flags_ |= metrics::kStreamIdleTimeout;
      release_upstream(false);
      return reset(NGHTTP2_CANCEL);
    default:
      return;
  }
}

}  // namespace revgate::proxy
