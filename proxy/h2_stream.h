// One HTTP/2 stream of a downstream H2Connection: one request, routed and split like an
// HTTP/1.1 one and proxied to the revision's HTTP/1.1 endpoint over the worker's pool. Its
// phases are the session's (route, connect, send request, read response head, relay body);
// the downstream side is nghttp2's: the head arrives as header callbacks, the body as DATA
// that is acknowledged (WINDOW_UPDATE) only once written upstream, and the response body is
// pulled by nghttp2's data provider as the client's window allows, so neither direction
// buffers more than a window. Owned by its connection's map; pending upstream handlers hold it.
// Worker thread only.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "proxy/h2_upstream.h"
#include "proxy/header_arena.h"
#include "proxy/http_headers.h"
#include "proxy/proxy_error.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace revgate::proxy {

class H2Connection;

class H2Stream : public UpstreamWaiter,
                 public H2UpstreamStream,
                 public std::enable_shared_from_this<H2Stream> {
 public:
  H2Stream(H2Connection& connection, std::int32_t id);
  ~H2Stream() override;

  // From the connection's nghttp2 callbacks (no nghttp2 call may be made from these but
  // submits; the connection sends what they queue once its input is processed).
  void on_header(std::string_view name, std::string_view value);
  void on_head_done(bool end_stream);  // the request's HEADERS (and CONTINUATIONs) are in
  void on_data(const std::uint8_t* data, std::size_t size);
  void on_end_stream();
  // The stream closed (response sent, reset by either side, or the connection is going):
  // `error` is its RST_STREAM or GOAWAY code, 0 after a complete exchange.
  void on_closed(std::uint32_t error);
  // The connection is gone (client closed or aborted): stop everything, record the request.
  void detach();
  void check_deadline(Clock::time_point now);
  // nghttp2's data provider for the response body.
  ssize_t read_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags);

  std::int32_t id() const { return id_; }

  // A revision with `protocol: h2c` or `h2`: the request is a stream on an H2Upstream.
  void on_upstream_ready(bool connected) override;
  void on_upstream_header(std::string_view name, std::string_view value) override;
  void on_upstream_headers_done(bool end_stream) override;
  void on_upstream_data(const std::uint8_t* data, std::size_t size) override;
  void on_upstream_end() override;
  void on_upstream_closed(std::uint32_t error) override;
  ssize_t read_request_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags) override;

 private:
  using ResponseParser =
      boost::beast::http::response_parser<boost::beast::http::buffer_body, ArenaAllocator<char>>;
  using error_code = boost::system::error_code;

  enum class Phase : std::uint8_t {
    receiving_head,
    connecting,
    sending_request,
    reading_response,
    relaying_response,
    replying,  // a local reply
    done,      // closed: nothing more happens
  };

  void route_request();
  void connect_upstream();
  void on_upstream_connected(error_code ec);
  void on_upstream_handshake(error_code ec);
  void on_upstream_checked(bool usable) override;
  void send_request();
  void write_request();
  bool resume_h2_body();  // true when an HTTP/2 upstream takes the body from here
  void on_request_written(error_code ec, std::size_t body_bytes, bool finished);
  bool may_retry() const;
  void retry();
  void count_retry();
  void send_h2_request();
  void resume_response();  // response bytes (or its end) came: nghttp2 may send DATA again
  ssize_t read_h2_response_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags);
  std::chrono::milliseconds response_timeout() const;  // timeouts.upstreamResponse, grpc-timeout
  void read_response_head();
  void parse_response_head();
  void on_response_head();
  bool fill_response_chunk();  // parses what the upstream buffer holds; true if bytes or done
  void read_response_body();
  void fail(ErrorKind kind);
  void on_upstream_failure(ErrorKind kind);
  void reply_local(unsigned status, std::string_view body, std::string_view location = {});
  // Views of a header block (buffers_->block by default), for a submit.
  const std::vector<nghttp2_nv>& block_nv();
  const std::vector<nghttp2_nv>& block_nv(const HeaderBlock& block);
  void submit_response(bool has_body);        // buffers_->block, then the body if any
  void consume(std::size_t bytes);  // client body bytes done with: WINDOW_UPDATE
  void release_upstream(bool reusable);
  void record();
  void reset(std::uint32_t error_code);
  void arm_deadline(std::chrono::milliseconds timeout) { deadline_ = Clock::now() + timeout; }
  void flush();
  const config::Config& config() const { return *view_->snapshot->config; }

  H2Connection* connection_;  // null once detached
  Worker& worker_;
  const std::int32_t id_;
  Phase phase_ = Phase::receiving_head;
  std::shared_ptr<WorkerView> view_;
  HeaderArena arena_;
  RequestHead request_;
  routing::RequestView route_view_;
  routing::Decision decision_;
  // What a stream needs besides its head, taken from a per-thread pool (with the capacity of
  // earlier streams' use) so that a stream allocates no strings of its own.
  struct Buffers {
    std::string head_out;  // the request head for the upstream
    std::string body_in;   // DATA received, not yet written upstream
    std::string body_out;  // the piece being written
    std::string cookie;    // Cookie fields joined with "; " (RFC 9113 8.2.3)
    std::string location;  // httpsRedirect's Location
    HeaderBlock block;     // the response head or trailers being submitted
    std::vector<nghttp2_nv> nv;
    HeaderBlock request_block;   // the request head for an HTTP/2 upstream
    std::string response_body;   // from an HTTP/2 upstream, not yet taken by nghttp2
  };
  static std::unique_ptr<Buffers> acquire_buffers();
  static void release_buffers(std::unique_ptr<Buffers> buffers);
  // Each worker is one thread, so a thread-local free list is per worker and needs no lock.
  static thread_local std::vector<std::unique_ptr<Buffers>> free_buffers_;
  std::unique_ptr<Buffers> buffers_ = acquire_buffers();
  std::size_t header_bytes_ = 0;  // as on an HTTP/1.1 head: name, ": ", value, line end
  std::size_t header_count_ = 0;  // regular fields
  bool head_too_large_ = false;
  bool has_method_ = false;
  bool has_path_ = false;
  bool has_authority_ = false;  // the head has its Host (from :authority, or a host field)
  bool has_content_length_ = false;
  std::uint64_t content_length_ = 0;
  bool expect_continue_ = false;
  bool request_ended_ = false;  // the client's END_STREAM arrived
  bool body_wanted_ = true;     // false after a local reply or a failure: DATA is dropped
  char request_id_[36];
  Framing request_framing_ = Framing::none;
  std::size_t unconsumed_ = 0;  // DATA bytes received and not acknowledged to the client yet
  char chunk_line_[18];
  std::array<boost::asio::const_buffer, 5> out_buffers_;
  bool head_pending_ = false;
  bool writing_ = false;
  std::shared_ptr<UpstreamConnection> upstream_;
  std::optional<ResponseParser> response_;
  std::size_t head_fields_ = 0;  // fields of the response head; Beast appends trailers after
  std::unique_ptr<char[]> chunk_;  // response body bytes for nghttp2 to take
  std::size_t chunk_fill_ = 0;
  std::size_t chunk_taken_ = 0;
  bool reading_upstream_ = false;
  bool deferred_ = false;  // the data provider said DEFERRED: resume when bytes come
  std::string_view local_body_;  // a local reply's body (static text)
  bool timed_out_ = false;
  bool retried_ = false;
  bool replayable_ = false;
  bool response_bytes_seen_ = false;
  bool recorded_ = false;
  bool in_flight_ = false;
  bool is_head_request_ = false;
  bool grpc_ = false;  // content-type application/grpc*: gRPC-shaped errors, request_protocol
  // An HTTP/2 upstream (upstream_http2_): the connection, the stream on it, what came back.
  bool upstream_http2_ = false;
  std::shared_ptr<H2Upstream> h2_upstream_;
  std::int32_t h2_id_ = 0;
  bool h2_open_ = false;            // the upstream stream is open: cancel it when abandoned
  bool h2_body_deferred_ = false;   // its data provider waits for client DATA
  bool request_sent_ = false;       // the whole request went to nghttp2
  bool informational_ = false;      // the head being received is a 1xx
  bool upstream_head_done_ = false; // the final response head arrived
  bool in_trailers_ = false;        // receiving the trailers
  bool has_trailers_ = false;
  bool upstream_ended_ = false;     // END_STREAM from the upstream
  unsigned upstream_status_ = 0;
  std::size_t response_taken_ = 0;  // of buffers_->response_body
  std::size_t request_taken_ = 0;   // of buffers_->body_in
  std::size_t upstream_unconsumed_ = 0;  // response bytes received, not yet acknowledged
  const routing::Endpoint* started_endpoint_ = nullptr;
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point request_start_;
  Clock::time_point upstream_start_{};
  std::int64_t upstream_service_ms_ = -1;
  std::uint16_t flags_ = 0;
  unsigned status_ = 0;
  std::uint64_t request_body_bytes_ = 0;
  std::uint64_t response_body_bytes_ = 0;
};

}  // namespace revgate::proxy
