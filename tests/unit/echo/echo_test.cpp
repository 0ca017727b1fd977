// EchoServer through real loopback sockets on port 0, with a small synchronous Beast client.
#include "echo/echo_server.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using revgate::echo::EchoOptions;
using revgate::echo::EchoServer;
using Response = http::response<http::string_body>;

// A server started on background threads for the duration of a test.
std::unique_ptr<EchoServer> start_server(EchoOptions options = {}) {
  if (options.name == "echo") options.name = "rev-a";
  auto server = EchoServer::create(std::move(options));
  EXPECT_TRUE(server.has_value()) << (server ? "" : server.error());
  if (!server) return nullptr;
  (*server)->start();
  return std::move(*server);
}

class Client {
 public:
  explicit Client(std::uint16_t port) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }

  Response request(http::verb method, std::string target, std::string body = {},
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "test.local");
    for (auto& [name, value] : headers) req.insert(name, value);
    req.body() = std::move(body);
    if (method != http::verb::get && method != http::verb::head) req.prepare_payload();
    http::write(socket_, req);
    return read(method == http::verb::head);
  }

  Response get(std::string target) { return request(http::verb::get, std::move(target)); }

  Response read(bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::uint64_t{1} << 30);
    parser.skip(head);
    http::read(socket_, buffer_, parser);
    return parser.release();
  }

  void send_raw(std::string_view data) { asio::write(socket_, asio::buffer(data)); }

  // True when the server has closed the connection (read gives end of stream).
  bool closed_by_server() {
    beast::error_code ec;
    http::response_parser<http::string_body> parser;
    http::read(socket_, buffer_, parser, ec);
    return ec == http::error::end_of_stream;
  }

  tcp::socket& socket() { return socket_; }
  beast::flat_buffer& buffer() { return buffer_; }

 private:
  asio::io_context ioc_;
  tcp::socket socket_{ioc_};
  beast::flat_buffer buffer_;
};

json::object body_json(const Response& res) { return json::parse(res.body()).as_object(); }

std::string json_str(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string("<missing>");
}

std::int64_t json_int(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v ? v->to_number<std::int64_t>() : -1;
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

TEST(EchoServer, GetAnswersNameAndRequestAsJson) {
  auto server = start_server();
  ASSERT_NE(server->port(), 0);
  Client client(server->port());
  auto res = client.request(http::verb::get, "/hello?x=1", {},
                            {{"X-Test", "a"}, {"Accept", "*/*"}, {"x-test", "b \"q\""}});
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res["X-Revision"], "rev-a");
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_TRUE(res.keep_alive());
  auto o = body_json(res);
  EXPECT_EQ(json_str(o, "revision"), "rev-a");
  EXPECT_EQ(json_str(o, "method"), "GET");
  EXPECT_EQ(json_str(o, "target"), "/hello?x=1");
  EXPECT_EQ(json_str(o, "version"), "HTTP/1.1");
  EXPECT_EQ(json_int(o, "body_bytes"), 0);
  const auto local = client.socket().local_endpoint();
  EXPECT_EQ(json_str(o, "remote"), "127.0.0.1:" + std::to_string(local.port()));
  const auto& headers = o.at("headers").as_object();
  EXPECT_EQ(json_str(headers, "host"), "test.local");
  EXPECT_EQ(json_str(headers, "accept"), "*/*");
  EXPECT_EQ(json_str(headers, "x-test"), "a, b \"q\"");  // repeated names joined in order
  EXPECT_EQ(headers.size(), 3u);
}

TEST(EchoServer, PlainRootIsTheSameEcho) {
  auto server = start_server();
  Client client(server->port());
  auto res = client.get("/");
  EXPECT_EQ(res.result_int(), 200);
  auto o = body_json(res);
  EXPECT_EQ(json_str(o, "target"), "/");
  EXPECT_EQ(o.at("headers").as_object().size(), 1u);
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
}

TEST(EchoServer, KeepAliveServesManyRequestsOnOneConnection) {
  auto server = start_server();
  Client client(server->port());
  for (int i = 0; i < 5; ++i) {
    auto res = client.get("/r" + std::to_string(i));
    ASSERT_EQ(res.result_int(), 200);
    EXPECT_EQ(json_str(body_json(res), "target"), "/r" + std::to_string(i));
  }
  EXPECT_EQ(server->accepted_connections(), 1u);
  EXPECT_EQ(server->requests(), 5u);
}

TEST(EchoServer, StatsEndpointCountsConnectionsAndRequests) {
  auto server = start_server();
  {
    Client first(server->port());
    first.get("/a");
    first.get("/b");
  }
  Client client(server->port());
  auto stats = body_json(client.get("/_echo/stats"));
  EXPECT_EQ(json_int(stats, "accepted_connections"), 2);
  EXPECT_EQ(json_int(stats, "requests"), 3);  // the stats request itself included
}

TEST(EchoServer, PipelinedRequestsAreAnsweredInOrder) {
  auto server = start_server();
  Client client(server->port());
  client.send_raw(
      "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
      "GET /three HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(json_str(body_json(client.read()), "target"), "/one");
  auto two = body_json(client.read());
  EXPECT_EQ(json_str(two, "target"), "/two");
  EXPECT_EQ(json_int(two, "body_bytes"), 3);
  EXPECT_EQ(json_str(body_json(client.read()), "target"), "/three");
}

TEST(EchoServer, PostWithContentLengthCountsTheBody) {
  auto server = start_server();
  Client client(server->port());
  auto res = client.request(http::verb::post, "/upload", std::string(200'000, 'z'));
  auto o = body_json(res);
  EXPECT_EQ(json_str(o, "method"), "POST");
  EXPECT_EQ(json_int(o, "body_bytes"), 200'000);
  // The connection is still usable after a body.
  EXPECT_EQ(json_int(body_json(client.request(http::verb::put, "/p", "12345")), "body_bytes"), 5);
}

TEST(EchoServer, PostWithChunkedBodyCountsDecodedBytes) {
  auto server = start_server();
  Client client(server->port());
  client.send_raw(
      "POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n"
      "1;ext=1\r\n \r\n"
      "10000\r\n");
  client.send_raw(std::string(0x10000, 'q') + "\r\n0\r\nX-Trailer: t\r\n\r\n");
  auto o = body_json(client.read());
  EXPECT_EQ(json_int(o, "body_bytes"), 5 + 1 + 0x10000);
  EXPECT_EQ(json_str(o.at("headers").as_object(), "transfer-encoding"), "chunked");
  EXPECT_EQ(client.get("/after").result_int(), 200);
}

TEST(EchoServer, ExpectContinueGets100BeforeTheBody) {
  auto server = start_server();
  Client client(server->port());
  client.send_raw(
      "POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  std::string interim(25, '\0');
  asio::read(client.socket(), asio::buffer(interim));
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  client.send_raw("abcd");
  EXPECT_EQ(json_int(body_json(client.read()), "body_bytes"), 4);
}

TEST(EchoServer, BytesEndpointWithContentLength) {
  auto server = start_server();
  Client client(server->port());
  auto res = client.get("/_echo/bytes/200000");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_FALSE(res.chunked());
  EXPECT_EQ(res[http::field::content_length], "200000");
  EXPECT_EQ(res[http::field::content_type], "application/octet-stream");
  EXPECT_EQ(res["X-Revision"], "rev-a");
  ASSERT_EQ(res.body().size(), 200'000u);
  for (std::size_t i = 0; i < res.body().size(); ++i) {
    ASSERT_EQ(res.body()[i], static_cast<char>('a' + i % 26)) << "at " << i;
  }
  EXPECT_EQ(client.get("/_echo/bytes/0").body().size(), 0u);
  EXPECT_EQ(client.get("/_echo/bytes/1").body(), "a");
}

TEST(EchoServer, BytesEndpointChunked) {
  auto server = start_server();
  Client client(server->port());
  auto res = client.get("/_echo/bytes/200001?chunked=1");
  EXPECT_TRUE(res.chunked());
  EXPECT_EQ(res.count(http::field::content_length), 0u);
  ASSERT_EQ(res.body().size(), 200'001u);
  for (std::size_t i = 0; i < res.body().size(); ++i) {
    ASSERT_EQ(res.body()[i], static_cast<char>('a' + i % 26)) << "at " << i;
  }
  auto empty = client.get("/_echo/bytes/0?chunked=1");
  EXPECT_TRUE(empty.chunked());
  EXPECT_EQ(empty.body().size(), 0u);
  EXPECT_EQ(client.get("/").result_int(), 200);  // still in sync after the last chunk
}

TEST(EchoServer, LargeTransfersUseBoundedMemory) {
  auto server = start_server();
  Client client(server->port());
  const long before = rss_kib();
  constexpr std::uint64_t kSize = 100ull << 20;

  // Upload 100 MiB from one reused 1 MiB buffer.
  client.send_raw("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(kSize) +
                  "\r\n\r\n");
  const std::string piece(1 << 20, 'u');
  for (std::uint64_t sent = 0; sent < kSize; sent += piece.size()) client.send_raw(piece);
  EXPECT_EQ(json_int(body_json(client.read()), "body_bytes"), static_cast<std::int64_t>(kSize));

  // Download 100 MiB chunked, through one reused 64 KiB buffer.
  client.send_raw("GET /_echo/bytes/" + std::to_string(kSize) +
                  "?chunked=1 HTTP/1.1\r\nHost: h\r\n\r\n");
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  http::read_header(client.socket(), client.buffer(), parser);
  std::vector<char> chunk(64 * 1024);
  std::uint64_t received = 0;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    beast::error_code ec;
    http::read(client.socket(), client.buffer(), parser, ec);
    if (ec && ec != http::error::need_buffer) FAIL() << ec.message();
    received += chunk.size() - parser.get().body().size;
  }
  EXPECT_EQ(received, kSize);
  const long grown = rss_kib() - before;
  EXPECT_LT(grown, 32 * 1024) << "RSS grew by " << grown << " KiB";
}

TEST(EchoServer, StatusEndpoint) {
  auto server = start_server();
  Client client(server->port());
  auto res = client.get("/_echo/status/503");
  EXPECT_EQ(res.result_int(), 503);
  EXPECT_EQ(res["X-Revision"], "rev-a");
  EXPECT_EQ(json_str(body_json(res), "target"), "/_echo/status/503");
  auto no_content = client.get("/_echo/status/204");
  EXPECT_EQ(no_content.result_int(), 204);
  EXPECT_TRUE(no_content.body().empty());
  EXPECT_EQ(client.get("/_echo/status/99").result_int(), 400);
  EXPECT_EQ(client.get("/_echo/status/abc").result_int(), 400);
  auto unknown = client.get("/_echo/nope");
  EXPECT_EQ(unknown.result_int(), 404);
  EXPECT_EQ(json_str(body_json(unknown), "error"), "unknown /_echo/ endpoint");
  EXPECT_EQ(client.get("/").result_int(), 200);
}

TEST(EchoServer, DelayEndpointAndOption) {
  using Clock = std::chrono::steady_clock;
  auto server = start_server();
  Client client(server->port());
  auto t0 = Clock::now();
  EXPECT_EQ(client.get("/_echo/delay/150").result_int(), 200);
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(150));

  auto slow = start_server({.name = "slow", .delay_ms = 100});
  Client slow_client(slow->port());
  t0 = Clock::now();
  auto res = slow_client.get("/");
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(100));
  EXPECT_EQ(res["X-Revision"], "slow");
}

// --delay-p50-ms/--delay-p99-ms: each request's delay is drawn; the observed latencies through
// real sockets follow the asked median and tail (loopback and timer overhead are ~0.1 ms).
TEST(EchoServer, DelayDistributionHasTheAskedMedianAndTail) {
  using Clock = std::chrono::steady_clock;
  auto server = start_server(
      {.name = "lognormal", .delay_p50_ms = 2.0, .delay_p99_ms = 10.0, .threads = 2, .seed = 7});
  ASSERT_TRUE(server);
  constexpr int kClients = 4;
  constexpr int kPerClient = 150;
  std::vector<std::vector<double>> seen(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      Client client(server->port());
      for (int i = 0; i < kPerClient; ++i) {
        const auto t0 = Clock::now();
        EXPECT_EQ(client.get("/").result_int(), 200);
        seen[c].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    });
  }
  for (auto& t : clients) t.join();
  std::vector<double> all;
  for (auto& v : seen) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  const double n = static_cast<double>(all.size());
  const double p50 = all[all.size() / 2];
  const auto share_over = [&](double ms) {
    return static_cast<double>(all.end() - std::upper_bound(all.begin(), all.end(), ms)) / n;
  };
  EXPECT_GT(p50, 1.6);
  EXPECT_LT(p50, 3.0);
  EXPECT_LT(all[all.size() / 20], 1.3);  // p5 = 0.64 ms: not a fixed delay
  EXPECT_GT(share_over(5.0), 0.03);      // expected 9.3% over 5 ms
  EXPECT_LT(share_over(5.0), 0.20);
  EXPECT_LT(share_over(10.0), 0.04);  // expected 1% over the p99
  EXPECT_EQ(server->requests(), static_cast<std::uint64_t>(kClients * kPerClient));
}

TEST(EchoServer, DelayDistributionOptionsAreValidated) {
  EXPECT_FALSE(EchoServer::create({.delay_p50_ms = 5.0}).has_value());  // p99 missing
  EXPECT_FALSE(EchoServer::create({.delay_p50_ms = 5.0, .delay_p99_ms = 1.0}).has_value());
  EXPECT_FALSE(EchoServer::create({.delay_p99_ms = 5.0}).has_value());
  EXPECT_FALSE(EchoServer::create({.delay_p50_ms = 1.0, .delay_p99_ms = 4'000'000.0}).has_value());
  auto both = EchoServer::create({.delay_ms = 3, .delay_p50_ms = 1.0, .delay_p99_ms = 2.0});
  ASSERT_FALSE(both.has_value());
  EXPECT_EQ(both.error(), "echo: delay_ms and delay_p50_ms/delay_p99_ms exclude each other");
  EXPECT_TRUE(EchoServer::create({.delay_p50_ms = 1.0, .delay_p99_ms = 1.0}).has_value());
}

TEST(EchoServer, DelayDoesNotBlockTheThread) {
  auto server = start_server();  // one thread
  Client waiting(server->port());
  waiting.send_raw("GET /_echo/delay/3000 HTTP/1.1\r\nHost: h\r\n\r\n");
  Client other(server->port());
  EXPECT_EQ(other.get("/").result_int(), 200);  // answered while the first one waits
  EXPECT_EQ(waiting.socket().available(), 0u);
}

TEST(EchoServer, ErrorRateOneFailsEveryRequest) {
  auto server = start_server({.error_rate = 1.0});
  Client client(server->port());
  for (int i = 0; i < 20; ++i) {
    auto res = client.get(i % 2 ? "/" : "/_echo/bytes/10");
    EXPECT_EQ(res.result_int(), 500);
    EXPECT_EQ(res["X-Revision"], "rev-a");
    EXPECT_EQ(json_str(body_json(res), "revision"), "rev-a");
  }
}

TEST(EchoServer, ErrorRateZeroNeverFails) {
  auto server = start_server({.error_rate = 0.0});
  Client client(server->port());
  for (int i = 0; i < 200; ++i) ASSERT_EQ(client.get("/").result_int(), 200);
}

TEST(EchoServer, ErrorRateHalfFailsSome) {
  auto server = start_server({.error_rate = 0.5, .seed = 42});
  Client client(server->port());
  int failures = 0;
  for (int i = 0; i < 400; ++i) failures += client.get("/").result_int() == 500;
  EXPECT_GT(failures, 120);
  EXPECT_LT(failures, 280);
}

TEST(EchoServer, HeadersEndpointAddsHopByHopHeaders) {
  auto server = start_server();
  Client client(server->port());
  auto res = client.get(
      "/_echo/headers?h=Keep-Alive:timeout%3D5&h=Proxy-Connection:x&h=X-Hop:1"
      "&h=Connection:X-Hop&h=X-Spaced:+a+b+");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[http::field::keep_alive], "timeout=5");
  EXPECT_EQ(res["Proxy-Connection"], "x");
  EXPECT_EQ(res["X-Hop"], "1");
  EXPECT_EQ(res[http::field::connection], "X-Hop");
  EXPECT_EQ(res["X-Spaced"], "a b");
  EXPECT_TRUE(res.keep_alive());
  EXPECT_EQ(client.get("/").result_int(), 200);

  // A Connection header with `close` ends the connection.
  auto closing = client.get("/_echo/headers?h=Connection:X-Hop,+close&h=X-Hop:2");
  EXPECT_EQ(closing[http::field::connection], "X-Hop, close");
  EXPECT_EQ(closing.count(http::field::connection), 1u);
  EXPECT_TRUE(client.closed_by_server());

  // Also on other endpoints; bad headers are refused.
  Client again(server->port());
  auto retry = again.get("/_echo/status/503?h=Retry-After:5");
  EXPECT_EQ(retry.result_int(), 503);
  EXPECT_EQ(retry[http::field::retry_after], "5");
  EXPECT_EQ(again.get("/_echo/headers?h=X-Bad:a%0D%0AX-Injected:1").result_int(), 400);
  EXPECT_EQ(again.get("/_echo/headers?h=Content-Length:5").result_int(), 400);
  EXPECT_EQ(again.get("/_echo/headers?h=Bad+Name:1").result_int(), 400);
  EXPECT_EQ(again.get("/_echo/headers?h=NoColon").result_int(), 400);
  EXPECT_EQ(again.get("/_echo/headers?h=X-A:%zz").result_int(), 400);
}

TEST(EchoServer, HeadHasHeadersButNoBody) {
  auto server = start_server();
  Client client(server->port());
  auto get = client.get("/same");
  auto head = client.request(http::verb::head, "/same");
  EXPECT_EQ(head.result_int(), 200);
  EXPECT_EQ(head["X-Revision"], "rev-a");
  // The length of the echo it would have sent: the same JSON, with "HEAD" for "GET".
  EXPECT_EQ(head[http::field::content_length], std::to_string(get.body().size() + 1));
  auto bytes = client.request(http::verb::head, "/_echo/bytes/5000");
  EXPECT_EQ(bytes[http::field::content_length], "5000");
  auto chunked = client.request(http::verb::head, "/_echo/bytes/5000?chunked=1");
  EXPECT_TRUE(chunked.chunked());
  // No stray body bytes came after the HEAD answers: the next answer parses.
  auto after = client.get("/after");
  EXPECT_EQ(json_str(body_json(after), "target"), "/after");
  EXPECT_EQ(server->accepted_connections(), 1u);
}

TEST(EchoServer, CloseEndpointClosesAfterTheAnswer) {
  auto server = start_server();
  Client client(server->port());
  auto res = client.get("/_echo/close");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[http::field::connection], "close");
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(client.closed_by_server());
}

TEST(EchoServer, Http10ClosesUnlessKeepAlive) {
  auto server = start_server();
  Client client(server->port());
  client.send_raw("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  auto kept = client.read();
  EXPECT_EQ(kept[http::field::connection], "keep-alive");
  EXPECT_EQ(json_str(body_json(kept), "version"), "HTTP/1.0");
  client.send_raw("GET /old HTTP/1.0\r\n\r\n");
  auto res = client.read();
  EXPECT_EQ(res[http::field::connection], "close");
  EXPECT_TRUE(client.closed_by_server());
}

TEST(EchoServer, ProtocolErrorsAreAnswered) {
  EchoOptions options;
  options.max_body_bytes = 1000;
  auto server = start_server(options);
  {
    Client client(server->port());
    client.send_raw("GARBAGE\r\n\r\n");
    EXPECT_EQ(client.read().result_int(), 400);
    EXPECT_TRUE(client.closed_by_server());
  }
  {
    Client client(server->port());
    auto res = client.request(http::verb::post, "/", std::string(2000, 'x'));
    EXPECT_EQ(res.result_int(), 413);
    EXPECT_EQ(res["X-Revision"], "rev-a");
  }
  {
    Client client(server->port());
    client.send_raw("GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(70'000, 'b') + "\r\n\r\n");
    EXPECT_EQ(client.read().result_int(), 431);
  }
}

TEST(EchoServer, SeveralThreadsShareTheWork) {
  auto server = start_server({.threads = 3});
  std::vector<std::thread> clients;
  for (int c = 0; c < 6; ++c) {
    clients.emplace_back([port = server->port()] {
      Client client(port);
      for (int i = 0; i < 50; ++i) EXPECT_EQ(client.get("/").result_int(), 200);
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(server->accepted_connections(), 6u);
  EXPECT_EQ(server->requests(), 300u);
}

TEST(EchoServer, RunBlocksUntilStop) {
  auto created = EchoServer::create({.name = "runner"});
  ASSERT_TRUE(created.has_value());
  EchoServer& server = **created;
  std::thread runner([&] { server.run(); });
  {
    Client client(server.port());
    EXPECT_EQ(client.get("/").result_int(), 200);
  }
  EXPECT_THROW(server.start(), std::logic_error);
  server.stop();
  runner.join();
  EXPECT_EQ(server.requests(), 1u);  // still readable after stop
  EXPECT_THROW(server.start(), std::logic_error);
  asio::io_context ioc;
  tcp::socket socket(ioc);
  beast::error_code ec;
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()), ec);
  EXPECT_EQ(ec, asio::error::connection_refused);
}

TEST(EchoServer, StopClosesOpenConnections) {
  auto server = start_server();
  Client client(server->port());
  EXPECT_EQ(client.get("/").result_int(), 200);
  server->stop();
  EXPECT_TRUE(client.closed_by_server());
}

TEST(EchoServer, CreateReportsBadOptionsAndBusyPorts) {
  auto first = start_server();
  auto busy = EchoServer::create({.port = first->port()});
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error(), "echo: cannot listen on 127.0.0.1:" + std::to_string(first->port()) +
                              ": Address already in use");
  EXPECT_FALSE(EchoServer::create({.error_rate = 1.5}).has_value());
  EXPECT_FALSE(EchoServer::create({.name = ""}).has_value());
  EXPECT_FALSE(EchoServer::create({.name = "a\r\nb"}).has_value());
  EXPECT_FALSE(EchoServer::create({.threads = 0}).has_value());
  EXPECT_THROW(EchoServer({.error_rate = -0.1}), std::invalid_argument);
  auto v6 = EchoServer::create({.host = "[::1]"});
  if (v6) {  // where the host has IPv6 loopback
    EXPECT_EQ((*v6)->address(), "[::1]:" + std::to_string((*v6)->port()));
  }
}

}  // namespace
