// HTTP/2 to revisions (`protocol: h2c`, or `h2` over TLS with ALPN): one H2Upstream is one
// multiplexed connection to an endpoint, libnghttp2's client session fed from the socket on its
// worker thread; every proxied request is one stream on it. H2UpstreamPool keeps a worker's
// connections per endpoint and hands out the first with a free stream slot (Envoy's HTTP/2
// connection pool: one connection per worker and endpoint until its streams run out), so many
// requests share one connection instead of one connection each. Worker thread only.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "proxy/h2_memory.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace revgate::proxy {

// What a request going over an H2Upstream implements. Calls come from the connection's read
// and write handlers; inside them the stream may call the connection's stream methods (their
// sends go out once the callback returns).
class H2UpstreamStream {
 public:
  virtual ~H2UpstreamStream() = default;
  // The connection the stream waited for is up (true; now submit) or could not be made.
  virtual void on_upstream_ready(bool connected) = 0;
  // One field of a response head (informational or final) or of the trailers.
  virtual void on_upstream_header(std::string_view name, std::string_view value) = 0;
  virtual void on_upstream_headers_done(bool end_stream) = 0;
  // Response body bytes; the stream calls consume() once it passed them on, which is what
  // opens the upstream's window again (flow control follows the client's pace).
  virtual void on_upstream_data(const std::uint8_t* data, std::size_t size) = 0;
  virtual void on_upstream_end() = 0;  // END_STREAM after the body (DATA)
  // The stream ended: `error` 0 after END_STREAM both ways, else its RST_STREAM code (or
  // REFUSED_STREAM when a GOAWAY said it was never processed, or INTERNAL_ERROR when the
  // connection failed). No call comes after this one.
  virtual void on_upstream_closed(std::uint32_t error) = 0;
  // The request body, pulled as the upstream's window allows (nghttp2's data provider): bytes,
  // or NGHTTP2_ERR_DEFERRED until resume(); NGHTTP2_DATA_FLAG_EOF in `flags` at the end.
  virtual ssize_t read_request_body(std::uint8_t* out, std::size_t length,
                                    std::uint32_t* flags) = 0;
};

class H2Upstream : public std::enable_shared_from_this<H2Upstream> {
 public:
  // `snapshot` holds `target`'s TLS context and the decision's revision and endpoint.
  H2Upstream(Worker& worker, std::shared_ptr<const Snapshot> snapshot,
             const UpstreamEndpoint& target, std::uint32_t destination);
  ~H2Upstream();

  // Dials `endpoint` (TLS with ALPN h2 for `protocol: h2`); the waiting streams hear of the
  // outcome through on_upstream_ready().
  void connect(const routing::Decision& decision, std::chrono::milliseconds timeout);
  // A stream that takes a slot on this connection: told on_upstream_ready() once connected
  // (at once, before this returns, when it already is).
  void wait(const std::shared_ptr<H2UpstreamStream>& stream);
  // The stream stops waiting or gives its slot back unused.
  void forget(H2UpstreamStream* stream);

  // Opens a stream (after on_upstream_ready(true)); 0 or less when nghttp2 refuses. The
  // connection holds the stream until it ends (a request waiting for its answer may have
  // nothing else pending).
  std::int32_t submit(const std::vector<nghttp2_nv>& head, bool has_body,
                      std::shared_ptr<H2UpstreamStream> stream);
  void resume(std::int32_t id);                      // more request body to read
  void consume(std::int32_t id, std::size_t bytes);  // response bytes passed on
  // The stream is abandoned (client gone, timeout, local reply): RST_STREAM CANCEL, and no
  // more callbacks for it.
  void cancel(std::int32_t id);
  void flush();  // sends what nghttp2 has queued (deferred inside its callbacks)

  bool connected() const { return connected_; }
  // May take another stream: not closed, no GOAWAY from either side, a free slot.
  bool has_capacity() const;
  bool idle() const { return streams_.empty() && waiting_.empty(); }
  Clock::time_point idle_since() const { return idle_since_; }
  const std::string& key() const { return connection_.key; }
  // Graceful end (reload removed the endpoint, drain): GOAWAY, closed once its streams end.
  void shut_down();
  void close();  // now; open streams hear on_upstream_closed(INTERNAL_ERROR)

 private:
  using error_code = boost::system::error_code;

  void on_connected(error_code ec);
  void on_handshake(error_code ec);
  void start_session();
  void tell_waiting(bool connected);
  void read();
  H2UpstreamStream* find(std::int32_t id);
  void stream_ended();
  void release_later(std::shared_ptr<H2UpstreamStream> stream);

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t name_size, const std::uint8_t* value, std::size_t value_size,
                       std::uint8_t flags, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_data_chunk(nghttp2_session*, std::uint8_t flags, std::int32_t id,
                           const std::uint8_t* data, std::size_t size, void* self);
  static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t error, void* self);
  static ssize_t read_body(nghttp2_session*, std::int32_t id, std::uint8_t* out,
                           std::size_t length, std::uint32_t* flags, nghttp2_data_source* source,
                           void* self);

  Worker& worker_;
  std::shared_ptr<const Snapshot> snapshot_;  // keeps what target_ and decision_ point to
  const UpstreamEndpoint& target_;
  routing::Decision decision_;  // the request that dialled it: for the logs
  UpstreamConnection connection_;  // socket (TLS for h2), key, metrics destination
  nghttp2_session* session_ = nullptr;
  std::unordered_map<
      std::int32_t, std::shared_ptr<H2UpstreamStream>, std::hash<std::int32_t>, std::equal_to<std::int32_t>,
      H2HeapAllocator<std::pair<const std::int32_t, std::shared_ptr<H2UpstreamStream>>>>
      streams_;
  std::vector<std::shared_ptr<H2UpstreamStream>> waiting_;  // until connected
  std::unique_ptr<char[]> in_;
  std::string out_;
  boost::asio::steady_timer connect_timer_;
  Clock::time_point idle_since_;
  bool connecting_ = false;
  bool connected_ = false;
  bool holding_sends_ = false;  // inside nghttp2_session_mem_recv: flush afterwards
  bool writing_ = false;
  bool reading_ = false;
  bool closed_ = false;
  bool goaway_ = false;    // sent or received: no new streams
  bool retiring_ = false;  // shut down while still connecting: GOAWAY once connected
  bool timed_out_ = false;

  friend class H2UpstreamPool;
};

// A worker's HTTP/2 upstream connections, by pool key.
class H2UpstreamPool {
 public:
  explicit H2UpstreamPool(Worker& worker) : worker_(worker) {}
  ~H2UpstreamPool();
  // A connection to `target` with a free stream slot (connected or still connecting), or a new
  // one being dialled.
  std::shared_ptr<H2Upstream> acquire(const std::shared_ptr<const Snapshot>& snapshot,
                                      const UpstreamEndpoint& target,
                                      const routing::Decision& decision, std::uint32_t destination,
                                      std::chrono::milliseconds connect_timeout);
  // Closes connections idle for `idle_timeout`.
  void sweep(Clock::time_point now, std::chrono::milliseconds idle_timeout);
  // After a reload: connections to endpoints not in `live` end gracefully.
  void retain(const PoolKeySet& live);
  void shut_down_all();  // drain: GOAWAY to each, closed once their streams end
  void close_all();

 private:
  Worker& worker_;
  std::unordered_map<std::string, std::vector<std::shared_ptr<H2Upstream>>, PoolKeyHash,
                     std::equal_to<>>
      connections_;
};

}  // namespace revgate::proxy
