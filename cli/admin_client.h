// A tiny synchronous HTTP/1.1 client for the admin listener, used by the CLI's `services`,
// `revisions` and `traffic` commands. Blocking; the calling (main) thread only. No Beast types
// here.
#pragma once

#include <chrono>
#include <expected>
#include <string>
#include <string_view>

namespace revgate::cli {

// Where the admin listener is: "127.0.0.1:9901", "[::1]:9901", "localhost:9901", ":9901"
// (loopback) or any of them after "http://".
struct AdminAddress {
  std::string host;  // without brackets
  std::string port;
  std::string text() const;  // "host:port" as shown in messages ("[::1]:9901")
};

inline constexpr std::string_view kDefaultAdminAddress = "127.0.0.1:9901";

std::expected<AdminAddress, std::string> parse_admin_address(std::string_view text);

// The admin address of a config file: its `admin.address`, with a wildcard bind address
// (0.0.0.0, ::) replaced by loopback. The error is one line per config error.
std::expected<AdminAddress, std::string> admin_address_from_config(const std::string& path);

struct HttpResponse {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

// One request (`content_type` and `body` sent when `body` is not empty); the error reads
// "cannot reach admin at ADDR: <reason>".
std::expected<HttpResponse, std::string> http_request(
    const AdminAddress& address, std::string_view method, std::string_view target,
    std::string_view content_type = {}, std::string body = {},
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

// GET `target`.
std::expected<HttpResponse, std::string> http_get(
    const AdminAddress& address, std::string_view target,
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace revgate::cli
