// The head writers of proxy/http_headers.h: what reaches the upstream and the client.
#include "proxy/http_headers.h"

#include <gtest/gtest.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

namespace revgate::proxy {
namespace {

namespace http = boost::beast::http;

// Parses a head the way the session does (arena-backed fields).
template <bool isRequest>
class ParsedHead {
 public:
  explicit ParsedHead(std::string_view text)
      : parser_(std::piecewise_construct, std::make_tuple(),
                std::make_tuple(ArenaAllocator<char>(&arena_))) {
    boost::system::error_code ec;
    parser_.put(boost::asio::buffer(text.data(), text.size()), ec);
    EXPECT_TRUE(parser_.is_header_done()) << ec.message();
  }
  const auto& head() const { return parser_.get().base(); }

 private:
  BlockPool pool_;
  HeaderArena arena_{pool_};
  http::parser<isRequest, http::empty_body, ArenaAllocator<char>> parser_;
};

const ForwardedFor kForwarded{"10.0.0.7", "http", "hello-00002", "default",
                              "11111111-2222-4333-8444-555555555555", "", ""};

std::string request_head(std::string_view text, Framing framing = Framing::none,
                         std::uint64_t length = 0) {
  ParsedHead<true> parsed(text);
  std::string out;
  write_request_head(out, parsed.head(), kForwarded, framing, length);
  return out;
}

TEST(WriteRequestHead, KeepsEndToEndFieldsAndAddsForwardingHeaders) {
  EXPECT_EQ(request_head("GET /a?b=1 HTTP/1.1\r\nHost: Hello.Example.com:8080\r\nAccept: */*\r\n\r\n"),
            "GET /a?b=1 HTTP/1.1\r\n"
            "Host: Hello.Example.com:8080\r\n"
            "Accept: */*\r\n"
            "X-Forwarded-For: 10.0.0.7\r\n"
            "X-Forwarded-Proto: http\r\n"
            "X-Request-Id: 11111111-2222-4333-8444-555555555555\r\n"
            "Knative-Serving-Revision: hello-00002\r\n"
            "Knative-Serving-Namespace: default\r\n"
            "\r\n");
}

TEST(WriteRequestHead, DropsHopByHopFieldsAndThoseConnectionNames) {
  const auto out = request_head(
      "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
      "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
      "Trailer: X-T\r\nUpgrade: websocket\r\nConnection: X-Other\r\nX-Other: 2\r\nX-Kept: 3\r\n\r\n");
  for (auto gone : {"Connection", "X-Hop", "Keep-Alive", "Proxy-Connection", "TE:", "Trailer",
                    "Upgrade", "X-Other"}) {
    EXPECT_EQ(out.find(gone), std::string::npos) << gone << " in\n" << out;
  }
  EXPECT_NE(out.find("X-Kept: 3\r\n"), std::string::npos);
}

TEST(WriteRequestHead, AnAllowedUpgradeGoesOnWithConnectionUpgrade) {
  ParsedHead<true> parsed(
      "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, X-Hop\r\nX-Hop: 1\r\n"
      "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  ForwardedFor forwarded = kForwarded;
  forwarded.upgrade = "websocket";
  std::string out;
  write_request_head(out, parsed.head(), forwarded, Framing::none, 0);
  EXPECT_NE(out.find("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("X-Hop"), std::string::npos) << "still named by Connection: " << out;
  EXPECT_EQ(out.find("Connection: Upgrade"), std::string::npos) << "the client's, dropped";
}

TEST(WriteRequestHead, AppendsToEveryXForwardedForReceived) {
  const auto out = request_head(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nA: b\r\nx-forwarded-for: 2.2.2.2, "
      "3.3.3.3\r\n\r\n");
  EXPECT_NE(out.find("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7\r\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("x-forwarded-for"), std::string::npos);
}

TEST(WriteRequestHead, KeepsARequestIdAndReplacesWhatOnlyTheProxyMaySet) {
  const auto out = request_head(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc\r\nX-Forwarded-Proto: https\r\n"
      "Knative-Serving-Revision: spoofed\r\nKnative-Serving-Namespace: spoofed\r\n\r\n");
  EXPECT_NE(out.find("X-Request-Id: abc\r\n"), std::string::npos);
  EXPECT_EQ(out.find("11111111-2222"), std::string::npos);
  EXPECT_EQ(out.find("spoofed"), std::string::npos);
  EXPECT_EQ(out.find("https"), std::string::npos);
  EXPECT_NE(out.find("Knative-Serving-Revision: hello-00002\r\n"), std::string::npos);
}

TEST(WriteRequestHead, WritesTheFramingItIsGiven) {
  const auto with_length =
      request_head("POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
                   Framing::content_length, 12);
  EXPECT_NE(with_length.find("Content-Length: 12\r\n\r\n"), std::string::npos) << with_length;
  const auto chunked = request_head(
      "POST /u HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::chunked);
  EXPECT_EQ(chunked.rfind("POST /u HTTP/1.1\r\n", 0), 0u) << "always HTTP/1.1 upstream";
  EXPECT_NE(chunked.find("Transfer-Encoding: chunked\r\n\r\n"), std::string::npos) << chunked;
  EXPECT_EQ(chunked.find("Content-Length"), std::string::npos);
}

std::string response_head(std::string_view text, Framing framing, std::uint64_t length,
                          bool keep_alive, bool http10 = false) {
  ParsedHead<false> parsed(text);
  std::string out;
  write_response_head(out, parsed.head(), framing, length, keep_alive, http10);
  return out;
}

TEST(WriteResponseHead, DropsHopByHopFieldsAndKeepsTheRest) {
  const auto out = response_head(
      "HTTP/1.1 200 OK\r\nX-Revision: a\r\nConnection: X-Hop, keep-alive\r\nX-Hop: 1\r\n"
      "Keep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\n",
      Framing::content_length, 5, true);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nX-Revision: a\r\nContent-Length: 5\r\n\r\n");
}

TEST(WriteResponseHead, ASwitchingProtocolsHeadSaysUpgradeAndNothingOfABody) {
  EXPECT_EQ(response_head("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                          "Upgrade: WebSocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                          "Content-Length: 5\r\n\r\n",
                          Framing::upgrade, 0, false),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Connection: upgrade\r\n"
            "Upgrade: WebSocket\r\n"
            "\r\n");
}

TEST(WriteResponseHead, ReframesAndSaysWhenTheConnectionCloses) {
  EXPECT_EQ(response_head("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n",
                          Framing::chunked, 0, false),
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(response_head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Framing::content_length,
                          0, true, true),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
}

TEST(WriteResponseHead, BodylessResponsesKeepTheirContentLength) {
  // A HEAD response describes the body it does not carry.
  EXPECT_EQ(response_head("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", Framing::none, 0,
                          true),
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
}

TEST(WriteResponseHead, FillsInAMissingReason) {
  EXPECT_EQ(response_head("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", Framing::content_length,
                          0, true),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
}

TEST(ChunkSizeLine, IsLowercaseHexWithCrlf) {
  char buffer[18];
  EXPECT_EQ(chunk_size_line(0, buffer), "0\r\n");
  EXPECT_EQ(chunk_size_line(32768, buffer), "8000\r\n");
  EXPECT_EQ(chunk_size_line(0xABCDEF, buffer), "abcdef\r\n");
}

TEST(FormatUuid4, SetsVersionAndVariant) {
  char uuid[36];
  format_uuid4(~0ULL, ~0ULL, uuid);
  EXPECT_EQ(std::string_view(uuid, 36), "ffffffff-ffff-4fff-bfff-ffffffffffff");
  format_uuid4(0, 0, uuid);
  EXPECT_EQ(std::string_view(uuid, 36), "00000000-0000-4000-8000-000000000000");
}

}  // namespace
}  // namespace revgate::proxy
