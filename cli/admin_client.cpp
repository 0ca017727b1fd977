// One blocking GET over Beast: resolve, connect, write, read, each under one deadline, on a
// private io_context run to completion on the calling thread.
#include "cli/admin_client.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

#include <fmt/format.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "config/config.h"

namespace revgate::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::uint64_t kMaxBody = 1024ull * 1024 * 1024;  // a list of 100k services fits

bool all_digits(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

}  // namespace

std::string AdminAddress::text() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                             : fmt::format("{}:{}", host, port);
}

std::expected<AdminAddress, std::string> parse_admin_address(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return std::unexpected(
        fmt::format("admin address '{}' {}; expected HOST:PORT such as 127.0.0.1:9901", text, why));
  };
  std::string_view rest = text;
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  while (rest.ends_with('/')) rest.remove_suffix(1);
  AdminAddress address;
  std::string_view port;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("has no closing ']'");
    address.host = std::string(rest.substr(1, close - 1));
    if (rest.substr(close + 1).size() < 2 || rest[close + 1] != ':') return bad("has no port");
    port = rest.substr(close + 2);
  } else {
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("has no port");
    address.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
    if (address.host.find(':') != std::string::npos) return bad("needs brackets around IPv6");
  }
  if (address.host.empty()) address.host = "127.0.0.1";
  if (!all_digits(port) || port.size() > 5 || std::stoul(std::string(port)) == 0 ||
      std::stoul(std::string(port)) > 65535) {
    return bad("has no valid port (1-65535)");
  }
  address.port = std::string(port);
  return address;
}

std::expected<AdminAddress, std::string> admin_address_from_config(const std::string& path) {
  auto loaded = config::load_file(path);
  if (!loaded) {
    std::string text;
    for (const auto& error : loaded.error()) {
      if (!text.empty()) text += '\n';
      text += error.to_string();
    }
    return std::unexpected(text);
  }
  if (loaded->admin.port == 0) {
    return std::unexpected(
        fmt::format("{}: admin.address has port 0 (any free port); pass --admin HOST:PORT", path));
  }
  AdminAddress address;
  address.host = loaded->admin.host;
  if (address.host == "0.0.0.0") address.host = "127.0.0.1";
  if (address.host == "::") address.host = "::1";
  address.port = std::to_string(loaded->admin.port);
  return address;
}

std::expected<HttpResponse, std::string> http_get(const AdminAddress& address,
                                                  std::string_view target,
                                                  std::chrono::milliseconds timeout) {
  return http_request(address, "GET", target, {}, {}, timeout);
}

std::expected<HttpResponse, std::string> http_request(
    const AdminAddress& address, std::string_view method, std::string_view target,
    std::string_view content_type, std::string body, std::chrono::milliseconds timeout) {
  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  http::request<http::string_body> request;
  request.method_string(method);
  request.target(target);
  request.version(11);
  request.set(http::field::host, address.text());
  request.set(http::field::accept, "application/json");
  request.set(http::field::user_agent, "revgate-cli");
  if (!body.empty()) {
    request.set(http::field::content_type, content_type);
    request.body() = std::move(body);
  }
  request.prepare_payload();
  request.keep_alive(false);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxBody);
  beast::error_code failure;

  stream.expires_after(timeout);
  resolver.async_resolve(
      address.host, address.port, [&](beast::error_code ec, tcp::resolver::results_type results) {
        if (ec) {
          failure = ec;
          return;
        }
        stream.async_connect(results, [&](beast::error_code ec, const tcp::endpoint&) {
          if (ec) {
            failure = ec;
            return;
          }
          http::async_write(stream, request, [&](beast::error_code ec, std::size_t) {
            if (ec) {
              failure = ec;
              return;
            }
            http::async_read(stream, buffer, parser,
                             [&](beast::error_code ec, std::size_t) { failure = ec; });
          });
        });
      });
  // The resolver has no deadline of its own; the stream's covers connect, write and read.
  io.run_for(timeout + std::chrono::seconds(1));
  if (!io.stopped() && !failure) failure = beast::error::timeout;
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  if (failure) {
    return std::unexpected(
        fmt::format("cannot reach admin at {}: {}", address.text(), failure.message()));
  }
  auto response = parser.release();
  HttpResponse out;
  out.status = response.result_int();
  out.content_type = std::string(response[http::field::content_type]);
  out.body = std::move(response.body());
  return out;
}

}  // namespace revgate::cli
