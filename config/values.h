// Pure parsers for the config's scalar forms: DNS labels and names, host:port, durations and
// integers, and the quoting of a user's text in messages. Private to config/ (the loader and the
// traffic rules); no YAML, no state, any thread. Each parser returns the value or a message that
// completes "... : <message>".
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace revgate::config::detail {

// Why `s` is not a DNS-1123 label (Kubernetes names: [a-z0-9-], alphanumeric at both ends,
// at most 63), or nullopt when it is one.
std::optional<std::string> dns1123_label_problem(std::string_view s);

// Same for a DNS-1035 label (Knative tags: like DNS-1123 but must start with a letter).
std::optional<std::string> dns1035_label_problem(std::string_view s);

// Same for a DNS name: dot-separated DNS-1123 labels, case-insensitive, at most 253 characters.
// `allow_underscore` admits '_' in labels, which resolvers accept (Docker service names).
std::optional<std::string> dns_name_problem(std::string_view s, bool allow_underscore = false);

// "host:port" split in two; an IPv6 host is written in brackets and returned without them.
struct HostPort {
  std::string host;
  bool bracketed = false;  // the host was written as "[...]"
  std::uint16_t port = 0;
};
std::expected<HostPort, std::string> split_host_port(std::string_view s);

// The canonical text of a numeric IPv4 (resp. IPv6) address, or nullopt if `s` is not one.
std::optional<std::string> numeric_ipv4(const std::string& s);
std::optional<std::string> numeric_ipv6(const std::string& s);

// True when `s` is only digits and dots: meant as an IPv4 address, never to be resolved.
bool looks_like_ipv4(std::string_view s);

// Envoy/Go style durations: "500ms", "30s", "5m", "1h", "1m30s", "1.5s", or a bare integer of
// seconds. Millisecond resolution; must be > 0, or >= 0 with `allow_zero` ("0", "0s", "0ms").
std::expected<std::chrono::milliseconds, std::string> parse_duration(std::string_view s,
                                                                     bool allow_zero = false);

// A decimal integer with an optional sign, nothing else (no "0x", "1e3", "1_000").
enum class IntError { not_an_integer, out_of_range };
std::expected<std::int64_t, IntError> parse_int(std::string_view s);

// True when `s` reads as a number but not an integer ("1.5", "-2e3"): worth a kinder message.
bool looks_like_number(std::string_view s);

// A user's text inside a message: in single quotes, control characters escaped ("\n",
// "\x01"), cut after 60 characters with "...", so that one error stays on one readable line.
std::string quote(std::string_view text);

}  // namespace revgate::config::detail
