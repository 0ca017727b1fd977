// The HTTP/2 side of proxy/http_headers.h: header blocks for HTTP/2 clients (from HTTP/1.1
// upstream heads) and for HTTP/2 upstreams (from any client's request head).
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "proxy/http_headers.h"

namespace revgate::proxy {
namespace {

namespace http = boost::beast::http;
using Fields = std::vector<std::pair<std::string, std::string>>;

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

Fields fields_of(const HeaderBlock& block) {
  Fields out;
  for (std::size_t i = 0; i < block.size(); ++i) {
    out.emplace_back(block.name(i), block.value(i));
  }
  return out;
}

const ForwardedFor kForwarded{"10.0.0.7", "http", "hello-00002", "default",
                              "11111111-2222-4333-8444-555555555555", "", ""};

TEST(HeaderBlock, LowercasesNamesAndKeepsValuesAsGiven) {
  HeaderBlock block;
  block.add("X-Revision", "Hello-00001");
  block.add(":status", "200");
  EXPECT_EQ(fields_of(block), (Fields{{"x-revision", "Hello-00001"}, {":status", "200"}}));
  block.clear();
  EXPECT_EQ(block.size(), 0u);
}

TEST(WriteH2RequestHead, PseudoHeadersFirstThenForwardedFieldsWithoutHost) {
  ParsedHead<true> parsed(
      "POST /a?b=1 HTTP/1.1\r\nHost: Hello.Example.com\r\nAccept: */*\r\n"
      "X-Forwarded-For: 192.0.2.1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
      "Transfer-Encoding: chunked\r\nTE: trailers, deflate\r\nUpgrade: h2c\r\n\r\n");
  HeaderBlock block;
  write_h2_request_head(block, parsed.head(), kForwarded, "http", 42);
  EXPECT_EQ(fields_of(block), (Fields{{":method", "POST"},
                                      {":scheme", "http"},
                                      {":authority", "Hello.Example.com"},
                                      {":path", "/a?b=1"},
                                      {"accept", "*/*"},
                                      {"x-forwarded-for", "192.0.2.1, 10.0.0.7"},
                                      {"x-forwarded-proto", "http"},
                                      {"x-request-id", "11111111-2222-4333-8444-555555555555"},
                                      {"knative-serving-revision", "hello-00002"},
                                      {"knative-serving-namespace", "default"},
                                      {"content-length", "42"},
                                      {"te", "trailers"}}));
}

TEST(WriteH2RequestHead, NoLengthNoTeWhenNotAskedFor) {
  ParsedHead<true> parsed("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n");
  HeaderBlock block;
  write_h2_request_head(block, parsed.head(), kForwarded, "https", std::nullopt);
  const auto fields = fields_of(block);
  EXPECT_EQ(fields[1], (std::pair<std::string, std::string>{":scheme", "https"}));
  for (const auto& [name, value] : fields) {
    EXPECT_NE(name, "te");
    EXPECT_NE(name, "content-length");
    EXPECT_NE(name, "host") << ":authority carries it";
  }
}

TEST(WriteH2ResponseHead, StatusThenEndToEndFieldsOnly) {
  ParsedHead<false> parsed(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n"
      "Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n"
      "X-Envoy-Upstream-Service-Time: 999\r\nX-Revgate-Revision: forged\r\n\r\n");
  HeaderBlock block;
  write_h2_response_head(block, parsed.head());
  EXPECT_EQ(fields_of(block), (Fields{{":status", "200"}, {"content-type", "text/plain"}}));
}

TEST(WriteH2Trailers, OnlyTheFieldsAfterTheHead) {
  ParsedHead<false> parsed("HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\n"
                           "Grpc-Status: 0\r\nGrpc-Message: ok\r\n\r\n");
  HeaderBlock block;
  EXPECT_TRUE(write_h2_trailers(block, parsed.head(), 1));
  EXPECT_EQ(fields_of(block), (Fields{{"grpc-status", "0"}, {"grpc-message", "ok"}}));
  EXPECT_FALSE(write_h2_trailers(block, parsed.head(), 3)) << "none after the last field";
}

TEST(IsProxyResponseField, AnyCase) {
  EXPECT_TRUE(is_proxy_response_field("x-envoy-upstream-service-time"));
  EXPECT_TRUE(is_proxy_response_field("X-Revgate-Endpoint"));
  EXPECT_FALSE(is_proxy_response_field("x-revision"));
}

}  // namespace
}  // namespace revgate::proxy
