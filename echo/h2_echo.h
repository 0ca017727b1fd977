// HTTP/2 for `revgate echo` (libnghttp2's server session, fed from the connection's Asio socket
// on the echo's worker thread): a connection that opens with the HTTP/2 preface (prior
// knowledge, h2c) gets the same answers as HTTP/1.1 (the JSON echo with "version": "HTTP/2",
// X-Revision; of the test targets /_echo/status/NNN and /_echo/delay/MS), and a gRPC-shaped
// echo with no code generation:
//   /revgate.Echo/Unary   every request message back, then grpc-status 0;
//   /revgate.Echo/Stream  each message back as it arrives (bidirectional streaming), then
//                         grpc-status 0 once the client ends its side;
//   any other gRPC method: grpc-status 12 (UNIMPLEMENTED), trailers only.
// Messages are gRPC's length-prefixed frames, passed back as they came.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>

namespace revgate::echo {

// The 24 bytes an HTTP/2 client with prior knowledge opens with (RFC 9113 3.4).
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct H2EchoContext {
  std::string revision;
  std::string remote;              // the client's address, for the JSON echo
  std::function<void()> counted;   // one call per request (stream), for /_echo/stats
  // --delay-ms / --delay-p50-ms: the delay of a plain or unary answer, in microseconds.
  std::function<std::uint64_t()> next_delay_us;
};

// Takes over `stream` (a TCP socket with prior knowledge, or TLS that negotiated ALPN h2);
// `received` holds what was read already (the preface and maybe more).
template <class Stream>
void serve_http2(Stream stream, std::string received, H2EchoContext context);

extern template void serve_http2(boost::asio::ip::tcp::socket, std::string, H2EchoContext);
extern template void serve_http2(boost::asio::ssl::stream<boost::asio::ip::tcp::socket>,
                                 std::string, H2EchoContext);

}  // namespace revgate::echo
