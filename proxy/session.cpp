#include "proxy/session.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/write.hpp>  // local replies

#include "proxy/body_parser.h"
#include "proxy/h2_connection.h"
#include "proxy/http_headers.h"
#include "proxy/log.h"
#include "proxy/request_record.h"
#include "proxy/route_rules.h"
#include "proxy/upstream_tls.h"
#include "tls/client_context.h"
#include "tls/server_context.h"
#include "tracing/trace_context.h"

namespace revgate::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kReadSize = 16 * 1024;               // heads
constexpr std::size_t kBodyReadSize = Worker::kChunkSize;  // bodies: one chunk per read
constexpr std::uint32_t kResponseHeaderLimit = 80 * 1024;  // Envoy's default is 60 KiB
constexpr std::chrono::milliseconds kLingerTime{2000};
// An idle keep-alive connection gives back its buffers after this long (see park()).
constexpr std::chrono::milliseconds kParkAfter{200};
// A head buffer that grew past this for one big head is not kept for the connection's life.
constexpr std::size_t kKeptHeadCapacity = 8 * 1024;

// Length of the request line at the start of `buffer` (without its line end), or npos while
// its end has not arrived.
template <class Buffer>
std::size_t request_line_end(const Buffer& buffer) {
  auto data = buffer.data();
  std::string_view bytes(static_cast<const char*>(data.data()), data.size());
  auto end = bytes.find('\n');
  if (end == std::string_view::npos) return end;
  return end > 0 && bytes[end - 1] == '\r' ? end - 1 : end;
}

bool is_informational(unsigned status) { return status >= 100 && status < 200 && status != 101; }

}  // namespace

Session::Session(Worker& worker, Socket socket, std::shared_ptr<const ListenerSpec> listener)
    : worker_(worker), stream_(std::move(socket)), listener_(std::move(listener)) {
  error_code ec;
  auto remote = stream_.socket().remote_endpoint(ec);
  if (!ec) client_ip_ = remote.address().to_string();
  stream_.socket().set_option(tcp::no_delay(true), ec);
  worker_.shard().connection_opened(listener_->id);
}

Session::~Session() {
  if (exchange_) release_exchange(std::move(exchange_));
  if (!handed_over_) worker_.shard().connection_closed(listener_->id);
  if (chunk_) worker_.release_chunk(std::move(chunk_));
}

thread_local std::vector<std::unique_ptr<Session::Exchange>> Session::free_exchanges_;

std::unique_ptr<Session::Exchange> Session::acquire_exchange(BlockPool& blocks) {
  // Exchanges are per thread like the worker's block pool, so a pooled one's arena already
  // draws on `blocks`.
  if (free_exchanges_.empty()) return std::make_unique<Exchange>(blocks);
  auto exchange = std::move(free_exchanges_.back());
  free_exchanges_.pop_back();
  return exchange;
}

void Session::release_exchange(std::unique_ptr<Exchange> exchange) {
  exchange->response.reset();
  exchange->h2_response.reset();
  exchange->request.reset();
  exchange->h2_block.clear();
  constexpr std::size_t kKeptBodyCapacity = 64 * 1024;  // an HTTP/2 stream's window
  for (std::string* body : {&exchange->h2_body_in, &exchange->h2_body_out}) {
    if (body->capacity() > kKeptBodyCapacity) std::string().swap(*body);
    body->clear();
  }
  exchange->arena.reset();  // after every head that lived in it
  exchange->decision = {};
  exchange->route_view = {};
  constexpr std::size_t kMaxFreeExchanges = 1024;
  if (free_exchanges_.size() < kMaxFreeExchanges) free_exchanges_.push_back(std::move(exchange));
}

void Session::start() {
  worker_.link(*this);
  view_ = worker_.view();
  if (listener_->tls != nullptr) {
    // A TLS listener: the handshake comes first, within its own timeout.
    stream_.use_tls(*listener_->tls);
    phase_ = Phase::handshaking;
    arm_deadline(listener_->handshake_timeout);
    return stream_.tls()->async_handshake(
        asio::ssl::stream_base::server, [self = shared_from_this()](error_code ec) {
          if (self->phase_ != Phase::handshaking) return;
          auto& shard = self->worker_.shard();
          if (ec) {
            shard.tls_handshake(self->listener_->id, metrics::WorkerShard::kTlsFailure);
            return self->close();  // a failed handshake has no one to answer
          }
          shard.tls_handshake(self->listener_->id,
                              SSL_version(self->stream_.tls()->native_handle()) == TLS1_3_VERSION
                                  ? metrics::WorkerShard::kTls13
                                  : metrics::WorkerShard::kTls12);
          if (tls::negotiated_alpn(self->stream_.tls()->native_handle()) == "h2") {
            return self->become_http2();
          }
          self->wait_first_head();
        });
  }
  wait_first_head();
}

void Session::wait_first_head() {
  // A new connection must start its first head within the request-headers timeout; one that
  // sends nothing (a preconnect, a health check) is closed without an answer.
  phase_ = Phase::waiting;
  waiting_since_ = Clock::now();
  arm_deadline(config().timeouts.request_headers);
  may_be_h2_ = listener_->h2c;
  parse_request_head();
}

void Session::become_http2() {
  std::string received(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  auto connection = std::make_shared<H2Connection>(worker_, std::move(stream_), listener_,
                                                  std::move(client_ip_));
  end_in_flight();  // the first byte counted a request; the streams count their own
  handed_over_ = true;  // the connection stays open, and counted, as the H2Connection
  phase_ = Phase::closed;
  deadline_ = Clock::time_point::max();
  unlink();
  connection->start(received);
}

void Session::arm_deadline(std::chrono::milliseconds timeout) {
  deadline_ = Clock::now() + timeout;
}

// ---------------------------------------------------------------- 1. read request head

void Session::read_request_head() {
  if (buffer_.size() == 0) {
    // Keep-alive: nothing of the next request yet. Its head timer starts with its first byte.
    if (draining_) return close();
    phase_ = Phase::waiting;
    waiting_since_ = Clock::now();
    arm_deadline(config().timeouts.idle);
  } else {
    begin_head();  // pipelined: the next head is already here
  }
  parse_request_head();
}

void Session::begin_head() {
  // The worker's current view: a reload applies from the next request on, including the next
  // request of a connection that was idle across the reload.
  if (view_ != worker_.view()) view_ = worker_.view();
  const auto& limits = config().limits;
  phase_ = Phase::reading_head;
  request_start_ = Clock::now();
  if (!in_flight_) {
    in_flight_ = true;
    worker_.shard().request_started();
  }
  arm_deadline(config().timeouts.request_headers);
  head_bytes_ = 0;
  start_line_done_ = false;
  if (!exchange_) exchange_ = acquire_exchange(worker_.header_blocks());
  exchange_->request.emplace(std::piecewise_construct, std::make_tuple(),
                             std::make_tuple(ArenaAllocator<char>(&exchange_->arena)));
  // The head limits are enforced here (parse_request_head); Beast's own limit is a backstop.
  exchange_->request->header_limit(
      static_cast<std::uint32_t>(limits.request_headers_bytes + kReadSize));
  if (limits.request_body_bytes != 0) {
    exchange_->request->body_limit(limits.request_body_bytes);
  } else {
    exchange_->request->body_limit(boost::none);
  }
}

void Session::parse_request_head() {
  const auto& limits = config().limits;
  if (may_be_h2_ && buffer_.size() != 0) {
    // h2c: the connection preface (RFC 9113 3.4) decides; its first bytes look like a request.
    const std::string_view seen(static_cast<const char*>(buffer_.data().data()),
                                std::min(buffer_.size(), kHttp2Preface.size()));
    if (!kHttp2Preface.starts_with(seen)) {
      may_be_h2_ = false;
    } else if (seen.size() == kHttp2Preface.size()) {
      return become_http2();
    }
  }
  if (buffer_.size() != 0 && !may_be_h2_) {
    if (!start_line_done_) {
      // The request line is complete at its first line end (Beast takes it whole or not at all).
      auto line_end = request_line_end(buffer_);
      if (line_end == std::string_view::npos ? buffer_.size() > limits.request_line_bytes
                                             : line_end > limits.request_line_bytes) {
        return fail(ErrorKind::request_line_too_long);
      }
      start_line_done_ = line_end != std::string_view::npos;
    }
    error_code ec;
    auto used = exchange_->request->put(buffer_.data(), ec);
    buffer_.consume(used);
    head_bytes_ += used;
    if (!ec && exchange_->request->is_header_done()) {
      if (head_bytes_ > limits.request_headers_bytes) return fail(ErrorKind::headers_too_large);
      return on_request_head();
    }
    if (ec == http::error::header_limit) return fail(ErrorKind::headers_too_large);
    if (ec == http::error::body_limit) return fail(ErrorKind::body_too_large);
    if (ec && ec != http::error::need_more) return fail(ErrorKind::bad_request);
    // The head so far (consumed fields plus what waits in the buffer) already exceeds the limit.
    if (head_bytes_ + buffer_.size() > limits.request_headers_bytes) {
      return fail(ErrorKind::headers_too_large);
    }
  }
  stream_.async_read_some(
      buffer_.prepare(kReadSize), [self = shared_from_this()](error_code ec, std::size_t n) {
        if (self->phase_ != Phase::waiting && self->phase_ != Phase::reading_head) {
          return;  // a timeout or drain took over
        }
        if (ec == asio::error::operation_aborted && self->parked_) {
          return self->wait_parked();  // park() took the read back
        }
        if (ec) {
          // The client went away between or during heads: nothing to answer.
          if (self->phase_ == Phase::reading_head) {
            self->flags_ |= metrics::kDownstreamConnectionTermination;
          }
          return self->close();
        }
        self->parked_ = false;  // data won the race with park()
        self->buffer_.commit(n);
        if (self->phase_ == Phase::waiting) self->begin_head();
        self->parse_request_head();
      });
}

void Session::on_request_head() {
  auto& request = exchange_->request->get();
  const auto& limits = config().limits;

  // Checks Beast's parser leaves to us (SPEC section 5; RFC 9112 6.1, 6.3).
  if (request.target().size() > limits.request_line_bytes) {
    return fail(ErrorKind::request_line_too_long);
  }
  // One pass over the fields gathers what the checks and routing need.
  std::size_t field_count = 0;
  std::size_t host_count = 0;
  bool has_transfer_encoding = false;
  bool has_content_length = false;
  bool has_expect = false;
  bool connection_upgrade = false;
  upgrade_asked_ = {};
  upgrade_ = {};
  exchange_->route_view = {};
  exchange_->route_view.path = request.target();
  exchange_->route_view.source_ip = client_ip_;
  expect_continue_ = false;
  for (const auto& field : request) {
    ++field_count;
    switch (field.name()) {
      case http::field::host:
        ++host_count;
        exchange_->route_view.host = field.value();
        break;
      case http::field::transfer_encoding:
        has_transfer_encoding = true;
        break;
      case http::field::content_length:
        has_content_length = true;
        break;
      case http::field::cookie:
        if (exchange_->route_view.cookie_header.empty())
          exchange_->route_view.cookie_header = field.value();
        break;
      case http::field::expect:
        has_expect = true;
        expect_continue_ = beast::iequals(field.value(), "100-continue");
        break;
      case http::field::upgrade:
        upgrade_asked_ = field.value();
        break;
      case http::field::connection:
        for (auto token : http::token_list{field.value()}) {
          connection_upgrade |= beast::iequals(token, "upgrade");
        }
        break;
      case http::field::unknown:
        if (beast::iequals(field.name_string(), "knative-serving-tag")) {
          exchange_->route_view.tag_header = field.value();
        }
        break;
      default:
        break;
    }
  }
  if (field_count > limits.request_header_count) return fail(ErrorKind::headers_too_large);
  if (host_count > 1 || (host_count == 0 && request.version() >= 11)) {
    return fail(ErrorKind::bad_request);
  }
  // Both framings, or a transfer coding that does not end in chunked: the classic smuggling
  // vectors. Refuse before anything reaches an upstream.
  if (has_transfer_encoding && (has_content_length || !exchange_->request->chunked())) {
    return fail(ErrorKind::bad_request);
  }

  if (!connection_upgrade || request.version() < 11) upgrade_asked_ = {};
  client_keep_alive_ = exchange_->request->keep_alive();
  replayable_ = is_replayable(request.method(), exchange_->request->is_done());
  response_bytes_seen_ = false;
  client_http10_ = request.version() < 11;
  is_head_request_ = request.method() == http::verb::head;
  // Expect is answered here, when the body is wanted (erasing leaves the other views valid).
  if (has_expect) request.erase(http::field::expect);

  // Parse the body bytes that came with the head now, so that a malformed chunk is refused
  // before an upstream is chosen.
  if (!exchange_->request->is_done() && buffer_.size() != 0) {
    if (!chunk_) chunk_ = worker_.acquire_chunk();
    error_code ec;
    chunk_fill_ = parse_body(*exchange_->request, buffer_, chunk_.get(), Worker::kChunkSize, ec);
    if (ec == http::error::body_limit) return fail(ErrorKind::body_too_large);
    if (ec) return fail(ErrorKind::bad_request);
    request_body_bytes_ += chunk_fill_;
  }
  route_request();
}

// ---------------------------------------------------------------- 2. route

void Session::route_request() {
  if (listener_->https_redirect_port != 0) return redirect_to_https();
  auto& request = exchange_->request->get();
  auto& router = view_->router;
  const auto match = router.table()->find_host(exchange_->route_view.host);
  if (match.service != nullptr && match.service->hash_key == routing::HashKey::header) {
    // A sticky service hashes on a header only routing knows the name of.
    auto it = request.find(match.service->hash_header);
    if (it != request.end()) exchange_->route_view.hash_header = it->value();
  }
  auto& rng = worker_.rng();
  {
    // Route rules and consistent hashing look at the whole head; the view points into it
    // only while routing.
    const HeadFields fields(request, exchange_->route_view.host);
    exchange_->route_view.fields = &fields;
    exchange_->decision = router.route(match, exchange_->route_view, rng.next());
    exchange_->route_view.fields = nullptr;
  }
  if (const auto* rule = exchange_->decision.rule; rule != nullptr && rule->answers_locally()) {
    return answer_by_rule(*rule);
  }
  if (!exchange_->decision) return fail(ErrorKind::no_route);
  if (exchange_->decision.endpoint == nullptr) return fail(ErrorKind::no_healthy_upstream);
  if (!allow_upgrade()) return fail(ErrorKind::upgrade_refused);

  // The head for the upstream: hop-by-hop out, forwarding headers in, framing re-added.
  format_uuid4(rng.next(), rng.next(), exchange_->request_id);
  char traceparent[tracing::kTraceparentSize];
  const auto trace = tracing::make_traceparent(
      rng.next(), rng.next(), rng.next(), tracing::sample(config().tracing.sample_rate, rng.next()),
      traceparent);
  if (exchange_->request->chunked()) {
    request_framing_ = Framing::chunked;
  } else if (exchange_->request->content_length()) {
    request_framing_ = Framing::content_length;
  } else {
    request_framing_ = Framing::none;
  }
  apply_request_rule(request, exchange_->decision);  // rewrite, header edits (none: no rule)
  const auto& target =
      view_->snapshot->upstream(*exchange_->decision.revision, *exchange_->decision.endpoint);
  if (target.http2()) {
    // HTTP/2 has no Upgrade (RFC 8441's extended CONNECT is not spoken here): a WebSocket
    // revision speaks HTTP/1.1, as on Cloud Run with HTTP/2 end to end.
    if (!upgrade_.empty()) return fail(ErrorKind::upgrade_refused);
    const auto length = exchange_->request->content_length();
    write_h2_request_head(
        exchange_->h2_block, request,
        {client_ip_, listener_->https ? "https" : "http", exchange_->decision.revision->name,
         exchange_->decision.service->namespace_name,
         std::string_view(exchange_->request_id, sizeof exchange_->request_id), trace, {}},
        target.tls != nullptr ? "https" : "http",
        length ? std::optional<std::uint64_t>(*length) : std::nullopt);
    return connect_h2_upstream();
  }
  write_request_head(
      exchange_->head_out, request,
      {client_ip_, listener_->https ? "https" : "http", exchange_->decision.revision->name,
       exchange_->decision.service->namespace_name,
       std::string_view(exchange_->request_id, sizeof exchange_->request_id), trace, upgrade_},
      request_framing_, exchange_->request->content_length().value_or(0));
  connect_upstream();
}

// ---------------------------------------------------------------- 3. connect upstream

// Every upstream operation's handler holds the connection (`upstream = upstream_`) as well as
// the session: release_upstream() may drop the session's reference while an operation is
// pending, and Asio's TLS stream is still touched when an aborted operation completes.

void Session::connect_upstream() {
  phase_ = Phase::connecting;
  const auto& endpoint = *exchange_->decision.endpoint;
  const auto& target = view_->snapshot->upstream(*exchange_->decision.revision, endpoint);
  const auto destination = view_->snapshot->destination_ids[exchange_->decision.revision->index];
  if (!retried_) upstream_ = worker_.pool().take(target.pool_key, destination);
  if (upstream_) {
    if (!upstream_->watching) return send_request();
    upstream_->waiter = shared_from_this();  // the pool's watch is ending: wait for its word
    return;
  }

  error_code ec;
  auto address = asio::ip::make_address(endpoint.address, ec);
  if (ec) return on_upstream_failure(ErrorKind::upstream_connect);
  upstream_ = std::make_shared<UpstreamConnection>(stream_.get_executor());
  upstream_->key = target.pool_key;
  worker_.pool().opened(*upstream_, destination);
  timed_out_ = false;
  arm_deadline(config().timeouts.upstream_connect);  // the TLS handshake included
  upstream_->stream.socket().async_connect(tcp::endpoint(address, endpoint.port),
                                           [self = shared_from_this(), upstream = upstream_](
                                               error_code ec) { self->on_upstream_connected(ec); });
}

void Session::on_upstream_checked(bool usable) {
  if (phase_ != Phase::connecting) return;
  if (usable) return send_request();
  // It went bad while idle (closed, or stray bytes): drop it, take the next or connect anew.
  release_upstream(false);
  connect_upstream();
}

void Session::on_upstream_connected(error_code ec) {
  if (phase_ != Phase::connecting) return;
  if (ec || timed_out_) return on_upstream_failure(ErrorKind::upstream_connect);
  upstream_->stream.socket().set_option(tcp::no_delay(true), ec);
  const auto& target =
      view_->snapshot->upstream(*exchange_->decision.revision, *exchange_->decision.endpoint);
  if (target.tls == nullptr) return send_request();

  // https:// endpoint: TLS with the revision's client context, verifying `server_name`.
  if (!begin_upstream_tls(*upstream_, target, exchange_->decision)) {
    return on_upstream_failure(ErrorKind::upstream_connect);
  }
  auto* tls = upstream_->stream.tls();
  tls->async_handshake(asio::ssl::stream_base::client,
                       [self = shared_from_this(), upstream = upstream_](error_code ec) {
                         self->on_upstream_handshake(ec);
                       });
}

void Session::on_upstream_handshake(error_code ec) {
  if (phase_ != Phase::connecting) return;
  if (ec || timed_out_) {
    const auto& target =
        view_->snapshot->upstream(*exchange_->decision.revision, *exchange_->decision.endpoint);
    log_upstream_tls_failure(*upstream_, target, exchange_->decision, timed_out_, ec);
    return on_upstream_failure(ErrorKind::upstream_connect);
  }
  send_request();
}

// ---------------------------------------------------------------- 4. send request

void Session::send_request() {
  phase_ = Phase::sending_request;
  deadline_ = Clock::time_point::max();
  if (started_endpoint_ == nullptr) {  // a retry is the same request
    started_endpoint_ = exchange_->decision.endpoint;
    view_->router.request_started(*started_endpoint_);
  }
  upstream_start_ = Clock::now();
  ++upstream_->requests;
  head_pending_ = true;
  write_request();
}

void Session::write_request() {
  // Body phases have no overall deadline, only this one: no progress for `timeouts.idle`.
  arm_deadline(config().timeouts.idle);
  waiting_on_client_ = false;
  const auto buffers = gather(request_framing_, exchange_->request->is_done());
  asio::async_write(upstream_->stream, buffers,
                    [self = shared_from_this(), upstream = upstream_](error_code ec, std::size_t) {
                      self->on_request_written(ec);
                    });
}

std::span<const asio::const_buffer> Session::gather(Framing framing, bool body_done) {
  // One write per step: the head (once), the body piece (with chunk framing), the last chunk.
  std::size_t n = 0;
  if (head_pending_) exchange_->out_buffers[n++] = asio::buffer(exchange_->head_out);
  if (chunk_fill_ != 0) {
    if (framing == Framing::chunked) {
      exchange_->out_buffers[n++] =
          asio::buffer(chunk_size_line(chunk_fill_, exchange_->chunk_line));
      exchange_->out_buffers[n++] = asio::buffer(chunk_.get(), chunk_fill_);
      exchange_->out_buffers[n++] = asio::buffer("\r\n", 2);
    } else {
      exchange_->out_buffers[n++] = asio::buffer(chunk_.get(), chunk_fill_);
    }
  }
  if (body_done && framing == Framing::chunked)
    exchange_->out_buffers[n++] = asio::buffer("0\r\n\r\n", 5);
  return {exchange_->out_buffers.data(), n};
}

void Session::on_request_written(error_code ec) {
  if (phase_ != Phase::sending_request) return;
  if (ec) {
    // A pooled connection the upstream closed while idle: send a bodyless request again on a
    // new connection (as Go's transport and nginx do); anything else is the upstream's fault.
    if (upstream_->requests > 1 && !retried_ && replayable_) {
      retried_ = true;
      ++worker_.shard().upstream(upstream_->destination).retries;
      release_upstream(false);
      return connect_upstream();
    }
    return on_upstream_failure(ErrorKind::upstream_reset);
  }
  head_pending_ = false;
  chunk_fill_ = 0;
  if (exchange_->request->is_done()) return read_response_head();
  fill_request_chunk();
}

void Session::fill_request_chunk() {
  if (!chunk_) chunk_ = worker_.acquire_chunk();
  if (buffer_.size() != 0) {
    error_code ec;
    chunk_fill_ = parse_body(*exchange_->request, buffer_, chunk_.get(), Worker::kChunkSize, ec);
    if (ec) {
      // The head already went upstream: that connection cannot be reused.
      release_upstream(false);
      return fail(ec == http::error::body_limit ? ErrorKind::body_too_large
                                                : ErrorKind::bad_request);
    }
    request_body_bytes_ += chunk_fill_;
  }
  if (chunk_fill_ != 0 || exchange_->request->is_done()) return write_request();

  auto read_more = [self = shared_from_this()] {
    self->arm_deadline(self->config().timeouts.idle);
    self->waiting_on_client_ = true;
    self->stream_.async_read_some(self->buffer_.prepare(kBodyReadSize),
                                  [self](error_code ec, std::size_t n) {
                                    if (self->phase_ != Phase::sending_request) return;
                                    if (ec) {
                                      // The client left mid-upload: the upstream got a partial
                                      // request, drop it.
                                      self->flags_ |= metrics::kDownstreamConnectionTermination;
                                      self->release_upstream(false);
                                      self->record_metrics();
                                      return self->close();
                                    }
                                    self->buffer_.commit(n);
                                    self->fill_request_chunk();
                                  });
  };
  if (expect_continue_) {
    // The client waits for this before it sends the body (RFC 9110 10.1.1).
    expect_continue_ = false;
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    return asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                             [self = shared_from_this(), read_more](error_code ec, std::size_t) {
                               if (self->phase_ != Phase::sending_request) return;
                               if (ec) {
                                 self->release_upstream(false);
                                 return self->close();
                               }
                               read_more();
                             });
  }
  read_more();
}

// ---------------------------------------------------------------- 5. read response head

void Session::read_response_head() {
  phase_ = Phase::reading_response;
  timed_out_ = false;
  arm_deadline(config().timeouts.upstream_response);
  exchange_->response.emplace(std::piecewise_construct, std::make_tuple(),
                              std::make_tuple(ArenaAllocator<char>(&exchange_->arena)));
  exchange_->response->header_limit(kResponseHeaderLimit);
  exchange_->response->body_limit(boost::none);
  if (is_head_request_) exchange_->response->skip(true);
  parse_response_head();
}

void Session::parse_response_head() {
  auto& buffer = upstream_->buffer;
  if (buffer.size() != 0) {
    error_code ec;
    auto used = exchange_->response->put(buffer.data(), ec);
    buffer.consume(used);
    if (!ec && exchange_->response->is_header_done()) return on_response_head();
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
          // Closed before any response byte on a reused connection: the upstream dropped an
          // idle connection as we used it. A bodyless idempotent request may go again.
          if (self->upstream_->requests > 1 && !self->retried_ && self->replayable_ &&
              !self->response_bytes_seen_) {
            self->retried_ = true;
            ++self->worker_.shard().upstream(self->upstream_->destination).retries;
            self->release_upstream(false);
            self->exchange_->response.reset();
            return self->connect_upstream();
          }
          return self->on_upstream_failure(ErrorKind::upstream_reset);
        }
        self->response_bytes_seen_ = true;
        self->upstream_->buffer.commit(n);
        self->parse_response_head();
      });
}

void Session::on_response_head() {
  auto& response = exchange_->response->get();
  if (is_informational(response.result_int())) {
    // 100 Continue was answered by us; drop informational responses and read the real one.
    return read_response_head();
  }
  if (response.result_int() == 101) {
    if (!upgrade_.empty()) return start_tunnel();
    // No upgrade went upstream (Upgrade is hop-by-hop here): a 101 is a broken upstream.
    return on_upstream_failure(ErrorKind::upstream_protocol);
  }
  deadline_ = Clock::time_point::max();
  status_ = response.result_int();

  if (is_head_request_ || status_ == 204 || status_ == 304) {
    response_framing_ = Framing::none;
  } else if (exchange_->response->content_length()) {
    response_framing_ = Framing::content_length;
  } else if (!client_http10_) {
    response_framing_ = Framing::chunked;  // chunked or close-delimited upstream: re-framed
  } else {
    response_framing_ = Framing::until_close;  // HTTP/1.0 knows no chunks
    client_keep_alive_ = false;
  }
  if (draining_ || worker_.draining()) client_keep_alive_ = false;
  apply_response_rule(response, exchange_->decision);
  write_response_head(exchange_->head_out, response, response_framing_,
                      exchange_->response->content_length().value_or(0), client_keep_alive_,
                      client_http10_, response_fields());
  head_pending_ = true;
  phase_ = Phase::relaying_response;
  chunk_fill_ = 0;
  fill_response_chunk();
}

std::string_view Session::response_fields() {
  // Envoy's x-envoy-upstream-service-time: from the request sent to its response head.
  upstream_service_ms_ =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - upstream_start_).count();
  write_proxy_fields(exchange_->response_fields, exchange_->decision, upstream_service_ms_,
                     listener_->https);
  return exchange_->response_fields;
}

// ---------------------------------------------------------------- 6. relay response body

void Session::fill_response_chunk() {
  auto& buffer = upstream_->buffer;
  if (!exchange_->response->is_done() && buffer.size() != 0) {
    if (!chunk_) chunk_ = worker_.acquire_chunk();
    error_code ec;
    chunk_fill_ = parse_body(*exchange_->response, buffer, chunk_.get(), Worker::kChunkSize, ec);
    if (ec) {
      // A broken body after the head went out: all we can do is cut the client off.
      flags_ |= metrics::kUpstreamProtocolError;
      release_upstream(false);
      record_metrics();
      return close();
    }
  }
  if (chunk_fill_ != 0 || exchange_->response->is_done()) return write_response();

  arm_deadline(config().timeouts.idle);
  upstream_->stream.async_read_some(
      buffer.prepare(kBodyReadSize),
      [self = shared_from_this(), upstream = upstream_](error_code ec, std::size_t n) {
        if (self->phase_ != Phase::relaying_response) return;
        if (ec == asio::error::eof && self->exchange_->response->need_eof()) {
          // A close-delimited body ends with the connection.
          error_code eof_ec;
          self->exchange_->response->put_eof(eof_ec);
          if (!eof_ec) return self->write_response();
        }
        if (ec) {
          self->flags_ |= metrics::kUpstreamConnectionTermination;
          self->release_upstream(false);
          self->record_metrics();
          return self->close();
        }
        self->upstream_->buffer.commit(n);
        self->fill_response_chunk();
      });
}

void Session::write_response() {
  arm_deadline(config().timeouts.idle);
  const auto buffers = gather(response_framing_, exchange_->response->is_done());
  asio::async_write(stream_, buffers, [self = shared_from_this()](error_code ec, std::size_t) {
    self->on_response_written(ec);
  });
}

void Session::on_response_written(error_code ec) {
  if (phase_ != Phase::relaying_response) return;
  if (ec) {
    flags_ |= metrics::kDownstreamConnectionTermination;
    release_upstream(false);
    record_metrics();
    return close();
  }
  response_body_bytes_ += chunk_fill_;
  chunk_fill_ = 0;
  head_pending_ = false;
  if (!exchange_->response->is_done()) return fill_response_chunk();
  // Reuse the upstream connection only if the response ended cleanly and nothing follows it.
  release_upstream(exchange_->response->keep_alive() && upstream_->buffer.size() == 0);
  finish_request();
}

// ---------------------------------------------------------------- 7. finish

void Session::finish_request() {
  record_metrics();
  if (exchange_->head_out.capacity() > kKeptHeadCapacity) std::string().swap(exchange_->head_out);
  local_reply_.reset();
  release_exchange(std::move(exchange_));  // its arena last: every head lived in it
  if (chunk_) worker_.release_chunk(std::move(chunk_));
  chunk_fill_ = 0;
  flags_ = 0;
  status_ = 0;
  upstream_service_ms_ = -1;
  request_body_bytes_ = 0;
  response_body_bytes_ = 0;
  retried_ = false;
  recorded_ = false;
  reset_h2_state();
  if (!client_keep_alive_ || draining_ || worker_.draining()) return close_gracefully();
  phase_ = Phase::waiting;  // read_request_head() moves on to reading_head if bytes wait
  read_request_head();
}

void Session::end_in_flight() {
  if (started_endpoint_ != nullptr) {  // LEAST_REQUEST's count of requests at that endpoint
    view_->router.request_finished(*started_endpoint_);
    started_endpoint_ = nullptr;
  }
  if (!in_flight_) return;
  in_flight_ = false;
  worker_.shard().request_ended();
}

void Session::record_metrics() {
  if (recorded_ || !exchange_) return;
  recorded_ = true;
  end_in_flight();
  RequestRecord record;
  if (exchange_->request) {
    record.request = &exchange_->request->get();
    record.protocol = record.request->version() == 10 ? "HTTP/1.0" : "HTTP/1.1";
  }
  record.authority = exchange_->route_view.host;
  record.decision = &exchange_->decision;
  record.request_id = &exchange_->request_id;
  record.status = status_;
  record.flags = flags_;
  record.request_bytes = request_body_bytes_;
  record.response_bytes = response_body_bytes_;
  record.elapsed = Clock::now() - request_start_;
  record.upstream_service_ms = upstream_service_ms_;
  record_request(worker_, *view_->snapshot, record);
}

// ---------------------------------------------------------------- failures and local replies

void Session::fail(ErrorKind kind) {
  const auto reply = reply_for(kind);
  flags_ |= reply.flags;
  // Whatever of the request body was not read makes the connection unusable afterwards.
  const bool head_done = exchange_ && exchange_->request && exchange_->request->is_header_done();
  const bool body_left = head_done && !exchange_->request->is_done();
  reply_local(reply.status, reply.body, reply.close || body_left || !head_done);
}

void Session::on_upstream_failure(ErrorKind kind) {
  if (kind == ErrorKind::upstream_connect && exchange_->decision.revision != nullptr) {
    ++worker_.shard()
          .upstream(view_->snapshot->destination_ids[exchange_->decision.revision->index])
          .connect_failures;
  }
  release_upstream(false);
  exchange_->response.reset();
  fail(kind);
}

// A rule's redirect or directResponse: answered here, never proxied.
void Session::answer_by_rule(const routing::RouteRule& rule) {
  const bool body_left = !exchange_->request->is_done();
  if (rule.direct_response) {
    return reply_local(static_cast<unsigned>(rule.direct_response->status),
                       rule.direct_response->body, body_left);
  }
  std::string location;
  redirect_location(location, rule, listener_->https, exchange_->route_view.host,
                    exchange_->request->get().target());
  reply_local(static_cast<unsigned>(rule.redirect->code), "", body_left, location);
}

void Session::redirect_to_https() {
  std::string location;
  if (!https_redirect_location(location, exchange_->route_view.host,
                               listener_->https_redirect_port,
                               exchange_->request->get().target())) {
    return fail(ErrorKind::bad_request);
  }
  const bool body_left = !exchange_->request->is_done();
  reply_local(301, "moved to https\n", body_left, location);
}

void Session::reply_local(unsigned status, std::string_view text, bool close_after,
                          std::string_view location) {
  error_code ignored;
  stream_.socket().cancel(ignored);  // a pending head read must not race the reply
  phase_ = Phase::replying;
  arm_deadline(config().timeouts.idle);  // a client that does not read its reply
  status_ = status;
  if (close_after || draining_ || worker_.draining()) client_keep_alive_ = false;
  local_reply_ =
      std::make_unique<http::response<http::string_body>>(static_cast<http::status>(status), 11);
  auto& reply = *local_reply_;
  reply.set(http::field::content_type, "text/plain; charset=utf-8");
  if (!location.empty()) reply.set(http::field::location, location);
  reply.body().assign(text.data(), text.size());
  response_body_bytes_ = text.size();  // counted like a proxied body (metrics, access log)
  reply.keep_alive(client_keep_alive_);
  // An HTTP/1.0 client assumes close unless told otherwise.
  if (client_keep_alive_ && client_http10_) reply.set(http::field::connection, "keep-alive");
  reply.prepare_payload();
  http::async_write(stream_, reply, [self = shared_from_this()](error_code ec, std::size_t) {
    if (self->phase_ != Phase::replying) return;
    if (ec) {
      self->record_metrics();
      return self->close();
    }
    self->finish_request();
  });
}

void Session::release_upstream(bool reusable) {
  if (h2_upstream_) release_h2_upstream();
  if (!upstream_) return;
  // Pooling goes on through drain phase 1 (requests still flow); phase 2 closes the pool.
  if (reusable && !draining_ && !worker_.closing()) {
    worker_.pool().give_back(std::move(upstream_), Clock::now());
  } else {
    worker_.pool().closed(*upstream_);
  }
  upstream_.reset();
}

void Session::close_gracefully() {
  // Lingering close (as nginx does): stop sending, then read and discard until the client
  // closes or a short time passes, so that a reset cannot destroy the reply in flight. The
  // time counts from the first call: a client that keeps sending does not extend it.
  if (phase_ != Phase::lingering) {
    phase_ = Phase::lingering;
    error_code ignored;
    stream_.socket().shutdown(Socket::shutdown_send, ignored);
    deadline_ = Clock::now() + kLingerTime;
  }
  buffer_.clear();
  stream_.async_read_some(buffer_.prepare(kReadSize),
                          [self = shared_from_this()](error_code ec, std::size_t) {
                            if (self->phase_ != Phase::lingering) return;
                            if (ec) return self->close();
                            self->close_gracefully();
                          });
}

void Session::close() {
  if (phase_ == Phase::closed) return;
  if (tunnel_ && !recorded_) {
    // Cut off (the grace after SIGTERM is over): still one request, with the bytes it moved.
    // The tunnel itself stays until the session goes: its aborted operations still run.
    tunnel_->stop();
    count_tunnel_bytes();
    record_metrics();
  }
  phase_ = Phase::closed;
  deadline_ = Clock::time_point::max();
  end_in_flight();  // a request cut off before its metrics were recorded
  release_upstream(false);
  error_code ignored;
  stream_.socket().close(ignored);
  unlink();  // off the worker's sweep list; the handlers still pending keep us alive
}

void Session::park() {
  // An idle keep-alive connection gives back its buffers and waits for readability instead
  // of a read (which needs a buffer): what it holds is then the session alone, as nginx's
  // keepalive handler frees its buffers. Only once idle for a while: waiting for readability
  // costs an epoll_ctl that a busy connection should not pay per request. Cleartext only: a
  // TLS stream may hold received bytes above the socket, which readability would not see.
  parked_ = true;
  error_code ignored;
  stream_.socket().cancel(ignored);  // the pending read ends with operation_aborted
}

void Session::wait_parked() {
  buffer_ = ReadBuffer();
  stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
    if (self->phase_ != Phase::waiting) return;
    self->parked_ = false;
    if (ec) return self->close();
    self->parse_request_head();  // the bytes are there: the read completes at once
  });
}

void Session::check_deadline(Clock::time_point now) {
  if (phase_ == Phase::waiting && !parked_ && stream_.tls() == nullptr &&
      now - waiting_since_ >= kParkAfter && now < deadline_) {
    return park();
  }
  if (now < deadline_) return;
  deadline_ = Clock::time_point::max();
  error_code ignored;
  switch (phase_) {
    case Phase::handshaking:
      worker_.shard().tls_handshake(listener_->id, metrics::WorkerShard::kTlsTimeout);
      return close();
    case Phase::waiting:
    case Phase::lingering:
      return close();
    case Phase::reading_head:
      return fail(ErrorKind::request_timeout);  // reply_for() adds the SI flag
    case Phase::reading_response:
      if (h2_upstream_) {
        // No response head in time from an HTTP/2 revision, or the body stopped moving while
        // it is still going up: the client stopped sending (408), or the upstream's window
        // stayed shut (504).
        const bool waiting_on_client = !h2_request_sent_ && h2_reading_client_;
        if (!h2_request_sent_) flags_ |= metrics::kStreamIdleTimeout;
        release_upstream(false);
        return fail(waiting_on_client ? ErrorKind::request_timeout : ErrorKind::upstream_timeout);
      }
      [[fallthrough]];
    case Phase::connecting:
      timed_out_ = true;  // the handler sees operation_aborted and reads this flag
      if (upstream_) upstream_->stream.socket().cancel(ignored);
      return;
    case Phase::sending_request:
      // The body stopped moving: the client stopped sending, or the upstream stopped reading.
      flags_ |= metrics::kStreamIdleTimeout;
      release_upstream(false);
      return fail(waiting_on_client_ ? ErrorKind::request_timeout : ErrorKind::upstream_timeout);
    case Phase::tunneling:
      // Idle for tunnelIdle, or the grace after a reload removed its endpoint is over.
      if (now < tunnel_grace_end_ && now - tunnel_->last_activity() < tunnel_idle_) {
        deadline_ = std::min(tunnel_->last_activity() + tunnel_idle_, tunnel_grace_end_);
        return;
      }
      return end_tunnel(true);
    case Phase::relaying_response:
    case Phase::replying:
      // The head went out already: all that is left is to cut both sides off.
      flags_ |= metrics::kStreamIdleTimeout;
      release_upstream(false);
      record_metrics();
      return close();
    default:
      return;
  }
}

void Session::drain() {
  draining_ = true;
  // No request to finish: an idle connection, or one still in its TLS handshake.
  if (phase_ == Phase::waiting || phase_ == Phase::handshaking) close();
}

}  // namespace revgate::proxy
