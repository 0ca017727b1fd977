// Fuzz target: any bytes as what an HTTP/2 client sends on an h2c connection, fed to the real
// H2Connection (nghttp2's server session, H2Stream's request handling, routing, the upstream
// phases) on a worker driven on this thread, with a real loopback backend behind it. After
// each input, invariants a user would notice if broken:
//   - every request that reaches the backend is a well-formed HTTP/1.1 request with one Host
//     (nothing malformed gets through), and the connection ends once the client goes;
//   - nothing leaks: the connection and its streams are destroyed, no request stays counted in
//     flight, no listener connection stays open, no upstream connection stays active.
// One revision is HTTP/1.1 (answers plain, or chunked with trailers for "/trailers"); one is
// `protocol: h2c` to a closed port (the HTTP/2 upstream's connect-failure path).
#include <array>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <fmt/format.h>

#include "config/config.h"
#include "proxy/control_plane.h"
#include "proxy/h2_connection.h"
#include "proxy/worker.h"

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "broken invariant: %s\n", what);
  std::abort();
}

// An HTTP/1.1 revision: parses every request it gets (a malformed one is a broken invariant)
// and answers it.
class Backend {
 public:
  Backend(asio::io_context& io, tcp::acceptor::native_handle_type bound)
      : acceptor_(io, tcp::v4(), bound) {
    accept();
  }

 private:
  struct Connection : std::enable_shared_from_this<Connection> {
    explicit Connection(tcp::socket s) : socket(std::move(s)) {}
    tcp::socket socket;
    std::string in;
    std::string out;
    char buffer[16 * 1024];
    void read() {
      socket.async_read_some(asio::buffer(buffer), [self = shared_from_this()](
                                                       boost::system::error_code ec, std::size_t n) {
        if (ec) return;
        self->in.append(self->buffer, n);
        self->answer();
      });
    }
    void answer() {
      while (!in.empty()) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(1 << 20);
        parser.body_limit(boost::none);
        parser.eager(true);
        boost::system::error_code ec;
        const auto used = parser.put(asio::buffer(in), ec);
        if (ec == http::error::need_more) break;
        check(!ec, "a request that reached the backend parses as HTTP/1.1");
        if (!parser.is_done()) break;  // the rest of the body is still coming
        const auto& request = parser.get();
        check(request.count(http::field::host) == 1, "a proxied request has exactly one Host");
        in.erase(0, used);
        out += request.target().find("trailers") != std::string_view::npos
                   ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n"
                   : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      }
      if (out.empty()) return read();
      asio::async_write(socket, asio::buffer(out),
                        [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                          self->out.clear();
                          if (!ec) self->read();
                        });
    }
  };
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) return;
      std::make_shared<Connection>(std::move(socket))->read();
      accept();
    });
  }
  tcp::acceptor acceptor_;
};

struct Harness {
  asio::io_context control_io;
  std::unique_ptr<revgate::proxy::ControlPlane> control;
  std::unique_ptr<revgate::proxy::Worker> worker;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<tcp::acceptor> front;
  std::shared_ptr<revgate::proxy::ListenerSpec> listener;

  Harness() {
    // The config names the backend's port, and the backend runs on the worker's context, which
    // needs the config: bind first, hand the socket to the backend once the worker exists. A
    // port bound and closed again is the h2c revision's dead endpoint.
    asio::io_context binding;
    tcp::acceptor bound(binding, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto backend_port = bound.local_endpoint().port();
    tcp::acceptor dead(binding, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto dead_port = dead.local_endpoint().port();
    dead.close();
    auto config = revgate::config::load_string(fmt::format(R"(
listeners: [{{name: fuzz, address: "127.0.0.1:0", h2c: true}}]
limits: {{maxConcurrentStreams: 16, requestHeadersBytes: 8192, requestHeaderCount: 32}}
services:
  - name: hello
    debugHeaders: true
    revisions:
      - {{name: hello-1, endpoints: ["127.0.0.1:{}"]}}
      - {{name: hello-2, endpoints: ["127.0.0.1:{}"], protocol: h2c}}
    traffic:
      - {{revisionName: hello-1, percent: 80}}
      - {{revisionName: hello-2, percent: 20, tag: h2}}
)",
                                                              backend_port, dead_port),
                                                  "<fuzz>");
    check(config.has_value(), "the fuzz config loads");
    control = std::make_unique<revgate::proxy::ControlPlane>(control_io, "");
    auto snapshot = control->start(std::move(*config));
    check(snapshot.has_value(), "the fuzz snapshot builds");
    worker = std::make_unique<revgate::proxy::Worker>(0, *snapshot);
    backend = std::make_unique<Backend>(worker->io(), bound.release());
    front = std::make_unique<tcp::acceptor>(
        worker->io(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    listener = std::make_shared<revgate::proxy::ListenerSpec>();
    listener->name = "fuzz";
    listener->h2c = true;
  }

  // Runs the worker's handlers (on this thread) until nothing has happened for 2 ms (loopback
  // answers within that; the replay runs thousands of inputs, so every idle ms counts).
  void run_until_quiet() {
    for (int quiet = 0; quiet < 2;) {
      quiet = worker->io().run_for(std::chrono::milliseconds(1)) == 0 ? quiet + 1 : 0;
      worker->io().restart();
    }
  }

  void one(std::string_view input) {
    auto& io = worker->io();
    tcp::socket client(io);
    client.connect(front->local_endpoint());
    revgate::proxy::Socket server(io);
    front->accept(server);
    // The client reads and drops what the proxy sends, so the proxy's writes never block.
    auto sink = std::make_shared<std::array<char, 16 * 1024>>();
    std::function<void()> drain = [&client, sink, &drain] {
      client.async_read_some(asio::buffer(*sink),
                             [&drain](boost::system::error_code ec, std::size_t) {
                               if (!ec) drain();
                             });
    };
    drain();
    worker->shard().connection_opened(listener->id);  // as the accepting Session would
    std::weak_ptr<revgate::proxy::H2Connection> alive;
    {
      auto connection = std::make_shared<revgate::proxy::H2Connection>(
          *worker, revgate::proxy::Stream(std::move(server)), listener, "127.0.0.1");
      alive = connection;
      connection->start(input);  // the input as the bytes a Session read before handing over
    }
    run_until_quiet();
    boost::system::error_code ignored;
    client.close(ignored);  // the client goes: everything must end
    for (int i = 0; i < 2000 && !alive.expired(); ++i) {
      io.run_for(std::chrono::milliseconds(1));
      io.restart();
    }
    check(alive.expired(), "the connection ends once its client has gone");
    run_until_quiet();
    const auto& shard = worker->shard();
    check(shard.requests_in_flight() == 0, "no request stays in flight");
    check(shard.listeners().at(listener->id).open == 0, "no downstream connection stays open");
    for (const auto& upstream : shard.upstreams()) {
      check(upstream.active == 0, "no upstream connection stays active once requests ended");
    }
  }
};

Harness& harness() {
  static Harness instance;
  return instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  harness().one(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
