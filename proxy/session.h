// One downstream HTTP/1.1 connection and the requests it carries, proxied one at a time.
// A request's life is a fixed sequence of phases (ARCHITECTURE.md principle 5):
//   1 read request head  2 route  3 connect upstream  4 send request (head, then body)
//   5 read response head  6 relay response body  7 finish (metrics, keep-alive or close)
// Owned by its worker thread; kept alive by the shared_ptr its pending handlers hold.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "proxy/h2_upstream.h"
#include "proxy/header_arena.h"
#include "proxy/http_headers.h"
#include "proxy/page_allocator.h"
#include "proxy/proxy_error.h"
#include "proxy/stream.h"
#include "proxy/tunnel.h"
#include "proxy/worker.h"

namespace revgate::proxy {

class Session : public SessionBase,
                public UpstreamWaiter,
                public H2UpstreamStream,
                public std::enable_shared_from_this<Session> {
 public:
  Session(Worker& worker, Socket socket, std::shared_ptr<const ListenerSpec> listener);
  ~Session() override;

  void start();
  void wait_first_head();
  // The connection speaks HTTP/2 (ALPN h2, or the preface on an h2c listener): an H2Connection
  // takes it over with what was read so far, and this session ends.
  void become_http2();
  void check_deadline(Clock::time_point now) override;
  void drain() override;
  void abort() override { close(); }
  void upstreams_changed(const PoolKeySet& live, Clock::duration grace) override;

  // A revision with `protocol: h2c` or `h2` (session_h2.cpp): the request is a stream on one
  // of the worker's H2Upstream connections.
  void on_upstream_ready(bool connected) override;
  void on_upstream_header(std::string_view name, std::string_view value) override;
  void on_upstream_headers_done(bool end_stream) override;
  void on_upstream_data(const std::uint8_t* data, std::size_t size) override;
  void on_upstream_end() override;
  void on_upstream_closed(std::uint32_t error) override;
  ssize_t read_request_body(std::uint8_t* out, std::size_t length, std::uint32_t* flags) override;

 private:
  using RequestParser =
      boost::beast::http::request_parser<boost::beast::http::buffer_body, ArenaAllocator<char>>;
  using ResponseParser =
      boost::beast::http::response_parser<boost::beast::http::buffer_body, ArenaAllocator<char>>;
  using error_code = boost::system::error_code;
  using ReadBuffer = boost::beast::basic_flat_buffer<PageAllocator<char>>;

  enum class Phase : std::uint8_t {
    handshaking,        // TLS listener: before the first request
    waiting,            // keep-alive: no byte of the next request yet
    reading_head,       // 1
    connecting,         // 3
    sending_request,    // 4
    reading_response,   // 5
    relaying_response,  // 6
    tunneling,          // after a 101: bytes both ways (session_upgrade.cpp)
    replying,           // a local reply (an error) is being written
    lingering,          // closing: sent all, discarding what the client still sends
    closed,
  };

  // 1. Read request head.
  void read_request_head();
  void begin_head();
  void parse_request_head();
  void on_request_head();
  // 2. Route.
  void route_request();
  // 3. Connect upstream (a pooled connection, or a new one).
  void connect_upstream();
  void on_upstream_connected(error_code ec);
  void on_upstream_handshake(error_code ec);  // https:// endpoints
  void on_upstream_checked(bool usable) override;
  // 4. Send request: head, then the body one chunk at a time.
  void send_request();
  void write_request();
  void on_request_written(error_code ec);
  void fill_request_chunk();
  // 5. Read response head.
  void read_response_head();
  void parse_response_head();
  void on_response_head();
  // 6. Relay response body.
  void write_response();
  void on_response_written(error_code ec);
  void fill_response_chunk();
  // The buffers of the next write: pending head, body piece, last chunk.
  std::span<const boost::asio::const_buffer> gather(Framing framing, bool body_done);
  // 7. Finish.
  void finish_request();
  // HTTP/1.1 Upgrade (session_upgrade.cpp): the Upgrade to send on, once routed; after a 101
  // the connection becomes a Tunnel until either side is done.
  bool allow_upgrade();
  void start_tunnel();
  void end_tunnel(bool idle);
  void count_tunnel_bytes();
  // HTTP/2 revisions (session_h2.cpp): phases 3 to 6 over a stream of an H2Upstream.
  void connect_h2_upstream();
  void read_h2_request_body();
  void write_h2_response();
  void on_h2_response_written(error_code ec, bool last);
  void finish_h2_response();
  void release_h2_upstream();
  void reset_h2_state();

  // Failures and local replies.
  void fail(ErrorKind kind);
  void on_upstream_failure(ErrorKind kind);
  void reply_local(unsigned status, std::string_view body, bool close,
                   std::string_view location = {});
  void redirect_to_https();
  void answer_by_rule(const routing::RouteRule& rule);
  void record_metrics();
  std::string_view response_fields();  // the fields the proxy adds to the response head
  void end_in_flight();
  void close();
  void close_gracefully();
  void release_upstream(bool reusable);
  void arm_deadline(std::chrono::milliseconds timeout);
  void park();  // idle keep-alive: give the buffers back, wait for readability
  void wait_parked();

  const config::Config& config() const { return *view_->snapshot->config; }

  Worker& worker_;
  Stream stream_;
  // Shared with the worker's listener: a reload may replace or remove the listener (and its TLS
  // context) while this connection still uses it.
  std::shared_ptr<const ListenerSpec> listener_;
  std::string client_ip_;
  ReadBuffer buffer_;  // bytes from the client not parsed yet; whole pages (see park())
  Phase phase_ = Phase::waiting;
  bool draining_ = false;
  bool may_be_h2_ = false;  // h2c listener, nothing but a prefix of the HTTP/2 preface read yet
  bool handed_over_ = false;  // become_http2(): an H2Connection has the connection now
  bool parked_ = false;  // waiting: buffers given back, waiting for readability
  Clock::time_point waiting_since_{};
  bool client_keep_alive_ = true;
  bool client_http10_ = false;
  Clock::time_point deadline_ = Clock::time_point::max();
  std::size_t head_bytes_ = 0;    // bytes of the current head the parser consumed
  bool start_line_done_ = false;  // the request line's end has arrived (and was within limits)

  // Per request.
  std::shared_ptr<WorkerView> view_;
  // What the request in progress needs (header arena, parsers, routing decision, head buffers),
  // taken from a per-thread pool when its first byte arrives and given back when it ends: an
  // idle keep-alive connection holds none of it (it would be most of a session's size).
  struct Exchange {
    explicit Exchange(BlockPool& blocks) : arena(blocks) {}
    HeaderArena arena;                // the heads of the request and its response live here
    routing::RequestView route_view;  // views into the request head, gathered as it is checked
    routing::Decision decision;
    std::array<boost::asio::const_buffer, 5> out_buffers;  // the write in progress
    char chunk_line[18];
    char request_id[36];  // the X-Request-Id made for a request without one
    std::optional<RequestParser> request;
    std::optional<ResponseParser> response;
    std::string head_out;         // the head being sent on (to the upstream, then the client)
    std::string response_fields;  // x-envoy-upstream-service-time, Set-Cookie, debug fields
    // HTTP/2 revisions: the request head (then the response trailers), the response head, and
    // the response body received (in) and being written to the client (out).
    HeaderBlock h2_block;
    std::vector<nghttp2_nv> h2_nv;
    std::optional<ResponseHead> h2_response;
    std::string h2_body_in;
    std::string h2_body_out;
  };
  static std::unique_ptr<Exchange> acquire_exchange(BlockPool& blocks);
  static void release_exchange(std::unique_ptr<Exchange> exchange);
  // Each worker is one thread, so a thread-local free list is per worker and needs no lock.
  static thread_local std::vector<std::unique_ptr<Exchange>> free_exchanges_;
  std::unique_ptr<Exchange> exchange_;
  std::shared_ptr<UpstreamConnection> upstream_;
  std::unique_ptr<boost::beast::http::response<boost::beast::http::string_body>> local_reply_;
  std::unique_ptr<char[]> chunk_;
  std::size_t chunk_fill_ = 0;
  // The client's Upgrade value (in the request head) when it also said `Connection: upgrade`;
  // upgrade_ is what went upstream (empty when the service does not allow it).
  std::string_view upgrade_asked_;
  std::string_view upgrade_;
  std::unique_ptr<Tunnel> tunnel_;
  std::chrono::milliseconds tunnel_idle_{0};
  std::size_t tunnel_head_bytes_ = 0;  // the 101's head, sent through the tunnel first
  Clock::time_point tunnel_grace_end_ = Clock::time_point::max();  // its endpoint was removed
  bool head_pending_ = false;
  Framing request_framing_ = Framing::none;
  Framing response_framing_ = Framing::none;
  bool retried_ = false;          // a request is sent again at most once
  bool expect_continue_ = false;  // the client waits for "100 Continue" before its body
  bool timed_out_ = false;        // set by the deadline sweep before it cancels upstream I/O
  bool recorded_ = false;         // this request's metrics were recorded
  bool in_flight_ = false;        // counted in the shard's requests in flight
  const routing::Endpoint* started_endpoint_ = nullptr;  // counted active in the router
  Clock::time_point upstream_start_{};                   // the request (last attempt) went upstream
  std::int64_t upstream_service_ms_ = -1;  // to the response head; -1: no upstream answered
  bool replayable_ = false;                // idempotent and bodyless: may be sent again once
  bool response_bytes_seen_ = false;       // the upstream sent something for this request
  bool waiting_on_client_ = false;         // sending_request: reading the body (not writing it)
  bool is_head_request_ = false;
  std::uint16_t flags_ = 0;
  unsigned status_ = 0;
  std::uint64_t request_body_bytes_ = 0;
  std::uint64_t response_body_bytes_ = 0;
  Clock::time_point request_start_{};
  // An HTTP/2 revision's stream (session_h2.cpp).
  std::shared_ptr<H2Upstream> h2_upstream_;
  std::int32_t h2_id_ = 0;
  bool h2_open_ = false;            // the upstream stream is open: cancel it when abandoned
  bool h2_body_deferred_ = false;   // its data provider waits for the client's body
  bool h2_reading_client_ = false;  // a read of the client's body is pending
  bool h2_request_sent_ = false;    // the whole request went to nghttp2
  bool h2_informational_ = false;   // the head being received is a 1xx
  bool h2_head_done_ = false;       // the final response head arrived
  bool h2_in_trailers_ = false;     // exchange_->h2_block holds the response trailers
  bool h2_ended_ = false;           // END_STREAM from the upstream
  bool h2_writing_ = false;
  unsigned h2_status_ = 0;
  std::size_t h2_chunk_taken_ = 0;  // of chunk_, handed to nghttp2
  std::uint64_t h2_body_sent_ = 0;  // request body bytes handed to nghttp2
  std::size_t h2_unconsumed_ = 0;   // response bytes received, not yet acknowledged
};

}  // namespace revgate::proxy
