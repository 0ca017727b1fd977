// Body bytes out of Beast's buffer_body parsers (requests and responses, HTTP/1.1 sessions and
// the HTTP/1.1 upstreams of HTTP/2 streams): the parser fills a caller's chunk, so a body is
// relayed piece by piece and never held whole. Header-only; any thread.
#pragma once

#include <cstddef>

#include <boost/beast/http/error.hpp>
#include <boost/system/error_code.hpp>

namespace revgate::proxy {

// A chunk-size line or a trailer section longer than this is refused (see parse_body).
inline constexpr std::size_t kMaxChunkFraming = 16 * 1024;

// Parses body bytes waiting in `buffer` into `chunk` until the chunk is full, the buffer holds
// no complete piece, or the body ends; Beast's parser takes one framing step per put(), so a
// chunked body needs the loop. Returns the bytes produced; `ec` is set only on a real error.
template <class Parser, class Buffer>
std::size_t parse_body(Parser& parser, Buffer& buffer, char* chunk, std::size_t capacity,
                       boost::system::error_code& ec) {
  auto& body = parser.get().body();
  body.data = chunk;
  body.size = capacity;
  while (!parser.is_done() && buffer.size() != 0 && body.size != 0) {
    auto used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == boost::beast::http::error::need_buffer || ec == boost::beast::http::error::need_more) {
      ec = {};
      break;
    }
    if (ec || used == 0) break;
  }
  const std::size_t produced = capacity - body.size;
  // Beast bounds neither chunk extensions nor trailers: a chunk line or trailer section that
  // does not end within this many bytes is an attack on memory, not a body.
  if (!ec && produced == 0 && !parser.is_done() && buffer.size() > kMaxChunkFraming) {
    ec = boost::beast::http::error::bad_chunk;
  }
  return produced;
}

}  // namespace revgate::proxy
