// One downstream HTTP/2 connection (a TLS connection that chose ALPN h2, or a cleartext one on
// an `h2c: true` listener that opened with the preface): libnghttp2's server session fed from
// the connection's Asio stream on its worker thread (no thread of its own), every request
// stream an H2Stream. nghttp2 does the framing, HPACK, flow control and RFC 9113's message
// checks (connection-specific fields, pseudo-headers, te, content-length against DATA); this
// class adds the limits (concurrent streams, header list size via the streams, floods of
// PING/SETTINGS/RST_STREAM/CONTINUATION through nghttp2's options), the idle timeout and
// GOAWAY on drain. A Session hands its connection over once it knows the protocol.
// Worker thread only.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "proxy/h2_memory.h"
#include "proxy/h2_stream_ids.h"
#include "proxy/stream.h"
#include "proxy/worker.h"

namespace revgate::proxy {

class H2Stream;

// What an HTTP/2 client with prior knowledge opens with (RFC 9113 3.4).
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

class H2Connection : public SessionBase, public std::enable_shared_from_this<H2Connection> {
 public:
  // Takes over the connection (and its place in the listener's open-connection count) from
  // the Session that accepted it.
  H2Connection(Worker& worker, Stream stream, std::shared_ptr<const ListenerSpec> listener,
               std::string client_ip);
  ~H2Connection() override;

  // `received`: what the Session read already (the preface, maybe more).
  void start(std::string_view received);
  void check_deadline(Clock::time_point now) override;
  void drain() override;
  void abort() override { close(); }
  void upstreams_changed(const PoolKeySet&, Clock::duration) override {}

  // For its streams.
  Worker& worker() { return worker_; }
  const ListenerSpec& listener() const { return *listener_; }
  std::string_view client_ip() const { return client_ip_; }
  nghttp2_session* session() { return session_; }
  // Sends what nghttp2 has queued (deferred while input is being processed).
  void flush();
  void stream_finished();  // a stream ended: a draining connection may now close

 private:
  using error_code = boost::system::error_code;

  bool feed(const char* data, std::size_t size);
  void read();
  void close();
  void send_goaway();
  H2Stream* find(std::int32_t id);

  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* frame, void* self);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t name_size, const std::uint8_t* value, std::size_t value_size,
                       std::uint8_t flags, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_data_chunk(nghttp2_session*, std::uint8_t flags, std::int32_t id,
                           const std::uint8_t* data, std::size_t size, void* self);
  static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t error, void* self);

  Worker& worker_;
  Stream stream_;
  std::shared_ptr<const ListenerSpec> listener_;
  std::string client_ip_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<std::int32_t, std::shared_ptr<H2Stream>, std::hash<std::int32_t>,
                     std::equal_to<std::int32_t>,
                     H2HeapAllocator<std::pair<const std::int32_t, std::shared_ptr<H2Stream>>>>
      streams_;
  SkippedStreamIds skipped_ids_;
  std::unique_ptr<char[]> in_;  // one read's bytes
  std::string out_;             // what is being written
  // Inside nghttp2_session_mem_recv, or looping over streams_: no mem_send now (it may run
  // callbacks that change streams_); the caller flushes afterwards.
  bool holding_sends_ = false;
  bool writing_ = false;
  bool reading_ = false;
  bool closed_ = false;
  bool goaway_sent_ = false;
  Clock::time_point idle_since_;  // no stream open since then
};

}  // namespace revgate::proxy
