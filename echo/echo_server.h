// EchoServer: the demo revision backend behind `revgate echo` (SPEC.md section 2), a small, fast
// HTTP/1.1 server used by the demo, the integration tests and the benchmarks. It owns its listening
// socket, its io_context(s) and their threads; its public functions may be called from any thread
// except its own (no user code ever runs on them).
//
// Every request is read whole (any method; Content-Length or chunked body, streamed and counted,
// never buffered) and answered `200` with `X-Revision: <name>`, `Content-Type: application/json`
// and a JSON body (one line, fields in this order):
//   {"revision": name, "method": "GET", "target": "/a?b", "version": "HTTP/1.1",
//    "headers": {"host": "...", ...}, "body_bytes": N, "remote": "127.0.0.1:51234"}
// Header names are lowercased; repeated names are joined with ", " in arrival order. A HEAD
// response carries the same headers (Content-Length included) and no body. Keep-alive follows the
// request (HTTP/1.1 default on, HTTP/1.0 only with `Connection: keep-alive`). With `delay_ms` every
// answer waits that long first (a timer: the thread keeps serving others); with `delay_p50_ms` and
// `delay_p99_ms` each answer waits a delay drawn from a log-normal distribution with that median
// and 99th percentile (echo/latency.h; microsecond resolution); with `error_rate` that fraction of
// requests (any target) is answered 500 instead, with the usual JSON body. Both draws use the
// worker's PRNG, seeded from `seed`.
//
// Special targets, all under /_echo/ (anything else, `/` included, is a plain echo):
//   /_echo/bytes/N[?chunked=1]  N bytes of application/octet-stream, byte i = 'a' + i % 26, sent
//                               in 64 KiB pieces with Content-Length (default) or, with
//                               chunked=1, Transfer-Encoding: chunked. 0 <= N <= 2^40.
//   /_echo/status/NNN           the JSON echo with status NNN (200..599; 204 and 304 bodiless).
//   /_echo/delay/MS             the JSON echo after MS milliseconds (0..3600000), instead of
//                               delay_ms.
//   /_echo/close                the JSON echo with `Connection: close`, then the server closes.
//   /_echo/stats                `{"accepted_connections": N, "requests": M}` of the whole server
//                               (this request included), for tests that count what got through.
//   /_echo/headers?h=Name:Value&h=Name:Value...
//                               the JSON echo plus these response headers, in order, verbatim
//                               (hop-by-hop ones included: Connection, Keep-Alive,
//                               Proxy-Connection, TE, Trailer, Upgrade). The query is
//                               percent-decoded and '+' means a space, so
//                               `h=Connection:X-Hop,+close` sends `Connection: X-Hop, close`.
//                               Whitespace around the value is trimmed. A Connection header with
//                               the token `close` closes the connection after the answer.
//                               Content-Length and Transfer-Encoding are refused (framing is the
//                               server's), as are names that are not tokens and values with
//                               control characters.
// `h=` also works on the other /_echo/ endpoints (e.g. /_echo/status/503?h=Retry-After:5); other
// query parameters are ignored. A malformed /_echo/ target gets 400, an unknown one 404, both with
// the JSON echo plus an "error" field. Bodies over `max_body_bytes` get 413, header blocks over
// 64 KiB get 431, unparsable requests 400; those close the connection.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <string>

namespace revgate::echo {

struct EchoOptions {
  std::string name = "echo";       // the revision name, sent as X-Revision and "revision"
  std::string host = "127.0.0.1";  // IPv4/IPv6 literal (brackets allowed) or a resolvable name
  std::uint16_t port = 0;          // 0 = any free port; read it back with EchoServer::port()
  std::uint32_t delay_ms = 0;      // wait before every answer (0..3600000)
  // A random delay instead (both set, 0 < p50 <= p99 <= 3600000, delay_ms 0): log-normal with
  // this median and 99th percentile, in ms; p50 == p99 is a fixed delay with sub-ms resolution.
  double delay_p50_ms = 0.0;
  double delay_p99_ms = 0.0;
  double error_rate = 0.0;         // 0..1: that fraction of requests is answered 500
  unsigned threads = 1;            // worker threads, each with its own io_context (1..256)
  std::uint64_t seed = 0;          // seed of the error_rate/delay PRNG; 0 = std::random_device
  std::uint64_t max_body_bytes = std::uint64_t{1} << 30;  // larger request bodies get 413
  // Both set: the port speaks TLS (PEM files), ALPN h2 or http/1.1 (h2 when the client offers
  // it), so that revisions behind https:// endpoints can be tested with every protocol.
  std::string tls_cert_file;
  std::string tls_key_file;
};

class EchoServer {
 public:
  // Validates the options, binds and listens. The error is one line naming what failed, e.g.
  // "echo: cannot listen on 127.0.0.1:9001: Address already in use".
  static std::expected<std::unique_ptr<EchoServer>, std::string> create(EchoOptions options);

  // The same, throwing std::invalid_argument (bad options) or std::system_error (cannot listen).
  explicit EchoServer(EchoOptions options);
  ~EchoServer();  // stop()
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  // Serves on the calling thread (plus threads-1 more) until stop() is called from another
  // thread; then stops like stop(). Throws std::logic_error if already started or stopped.
  void run();
  // Serves on `threads` background threads and returns. Throws std::logic_error if already
  // started or stopped.
  void start();
  // Stops serving, joins the threads, closes the listening socket and every connection.
  // Idempotent; a stopped server cannot be started again.
  void stop();

  std::uint16_t port() const noexcept;  // the bound port, valid right after construction
  std::string address() const;          // "127.0.0.1:PORT" or "[::1]:PORT", for configs
  const EchoOptions& options() const noexcept;

  // Diagnostics for tests, readable from any thread, also after stop(): connections accepted,
  // and requests answered (any status, error replies included).
  std::uint64_t accepted_connections() const noexcept;
  std::uint64_t requests() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace revgate::echo
