#include "config/values.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace revgate::config::detail {
namespace {

constexpr std::size_t kMaxLabel = 63;
constexpr std::size_t kMaxDnsName = 253;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

struct LabelRules {
  bool letter_first = false;      // DNS-1035
  bool case_insensitive = false;  // labels inside a host name, not Kubernetes names
  bool allow_underscore = false;
};

std::optional<std::string> label_problem(std::string_view s, LabelRules rules) {
  if (s.empty()) return "must not be empty";
  if (s.size() > kMaxLabel) {
    return fmt::format("is {} characters long; at most {} are allowed", s.size(), kMaxLabel);
  }
  for (char raw : s) {
    char c = rules.case_insensitive ? to_lower(raw) : raw;
    if (is_lower_alnum(c) || c == '-' || (rules.allow_underscore && c == '_')) continue;
    if (c >= 'A' && c <= 'Z') return "must be lowercase";
    if (static_cast<unsigned char>(raw) >= 0x80 || static_cast<unsigned char>(raw) < 0x20) {
      return "contains a non-ASCII or control character; only a-z, 0-9 and '-' are allowed";
    }
    return fmt::format("contains '{}'; only a-z, 0-9 and '-' are allowed", raw);
  }
  char first = rules.case_insensitive ? to_lower(s.front()) : s.front();
  char last = rules.case_insensitive ? to_lower(s.back()) : s.back();
  if (rules.letter_first && !(first >= 'a' && first <= 'z')) return "must start with a letter";
  if (!is_lower_alnum(first) && !(rules.allow_underscore && first == '_')) {
    return "must start with a letter or digit";
  }
  if (!is_lower_alnum(last) && !(rules.allow_underscore && last == '_')) {
    return "must end with a letter or digit";
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> dns1123_label_problem(std::string_view s) {
  return label_problem(s, {});
}

std::optional<std::string> dns1035_label_problem(std::string_view s) {
  return label_problem(s, {.letter_first = true});
}

std::optional<std::string> dns_name_problem(std::string_view s, bool allow_underscore) {
  if (s.empty()) return "must not be empty";
  if (s.size() > kMaxDnsName) {
    return fmt::format("is {} characters long; at most {} are allowed", s.size(), kMaxDnsName);
  }
  std::size_t start = 0;
  while (true) {
    std::size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty()) return "has an empty label (a leading, trailing or double '.')";
    if (auto problem = label_problem(
            label, {.case_insensitive = true, .allow_underscore = allow_underscore})) {
      return fmt::format("has a label '{}' that {}", label, *problem);
    }
    if (dot == std::string_view::npos) return std::nullopt;
    start = dot + 1;
  }
}

std::expected<HostPort, std::string> split_host_port(std::string_view s) {
  if (s.empty()) return std::unexpected("is empty; expected host:port");
  HostPort out;
  std::string_view port;
  if (s.front() == '[') {
    std::size_t close = s.find(']');
    if (close == std::string_view::npos) return std::unexpected("has '[' without ']'");
    out.host = std::string(s.substr(1, close - 1));
    out.bracketed = true;
    std::string_view rest = s.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return std::unexpected("needs ':port' after the bracketed IPv6 address");
    }
    port = rest.substr(1);
  } else {
    std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return std::unexpected("has no port; expected host:port");
    out.host = std::string(s.substr(0, colon));
    if (out.host.find(':') != std::string::npos) {
      return std::unexpected("has an IPv6 address without brackets; write it as [::1]:8080");
    }
    port = s.substr(colon + 1);
  }
  if (out.host.empty()) return std::unexpected("has no host; expected host:port");
  if (port.empty()) return std::unexpected("has no port; expected host:port");
  int value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  bool all_digits = std::all_of(port.begin(), port.end(), is_digit);
  if (!all_digits || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return std::unexpected(fmt::format("has port '{}'; a port is a number from 0 to 65535", port));
  }
  out.port = static_cast<std::uint16_t>(value);
  return out;
}

std::optional<std::string> numeric_ipv4(const std::string& s) {
  in_addr addr{};
  if (inet_pton(AF_INET, s.c_str(), &addr) != 1) return std::nullopt;
  // inet_pton takes only the canonical form (four decimal parts, no leading zeros), so `s` is
  // already what inet_ntop would print; skipping it saves a sprintf per endpoint at load.
  return s;
}

std::optional<std::string> numeric_ipv6(const std::string& s) {
  in6_addr addr{};
  if (inet_pton(AF_INET6, s.c_str(), &addr) != 1) return std::nullopt;
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, &addr, text, sizeof text);
  return std::string(text);
}

bool looks_like_ipv4(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return is_digit(c) || c == '.'; });
}

std::expected<std::chrono::milliseconds, std::string> parse_duration(std::string_view s,
                                                                     bool allow_zero) {
  using Ns = unsigned __int128;  // wide enough that "99999h" cannot overflow mid-parse
  constexpr Ns kNsPerMs = 1'000'000;
  constexpr Ns kMaxNs = Ns{365} * 24 * 3600 * 1'000'000'000;  // a year is "forever" enough
  if (s.empty()) return std::unexpected("is empty");
  if (s.front() == '-') {
    return std::unexpected(allow_zero ? "must not be negative" : "must be greater than zero");
  }
  if (s.front() == '+') s.remove_prefix(1);

  Ns total = 0;
  std::size_t i = 0;
  bool bare = std::all_of(s.begin(), s.end(), is_digit) && !s.empty();
  while (i < s.size()) {
    std::size_t number_start = i;
    Ns whole = 0;
    while (i < s.size() && is_digit(s[i])) {
      whole = whole * 10 + static_cast<unsigned>(s[i] - '0');
      if (whole > kMaxNs) return std::unexpected("is longer than a year");
      ++i;
    }
    Ns fraction = 0;
    Ns fraction_scale = 1;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && is_digit(s[i])) {
        if (fraction_scale < Ns{1'000'000'000'000}) {  // digits past picoseconds cannot matter
          fraction = fraction * 10 + static_cast<unsigned>(s[i] - '0');
          fraction_scale *= 10;
        }
        ++i;
      }
    }
    std::string_view number = s.substr(number_start, i - number_start);
    if (number.empty() || number == ".") {
      return std::unexpected("is not a duration such as 500ms, 30s, 5m or 1h");
    }
    std::size_t unit_start = i;
    while (i < s.size() && !is_digit(s[i]) && s[i] != '.') ++i;
    std::string_view unit = s.substr(unit_start, i - unit_start);
    Ns unit_ns = 0;
    if (unit.empty() && bare) {
      unit_ns = 1'000'000'000;  // a bare integer counts seconds
    } else if (unit.empty()) {
      return std::unexpected(
          fmt::format("has a number '{}' without a unit (use ms, s, m or h)", number));
    } else if (unit == "ms") {
      unit_ns = 1'000'000;
    } else if (unit == "s") {
      unit_ns = 1'000'000'000;
    } else if (unit == "m") {
      unit_ns = Ns{60} * 1'000'000'000;
    } else if (unit == "h") {
      unit_ns = Ns{3600} * 1'000'000'000;
    } else {
      return std::unexpected(fmt::format("has an unknown unit '{}' (use ms, s, m or h)", unit));
    }
    total += whole * unit_ns + fraction * unit_ns / fraction_scale;
    if (total > kMaxNs) return std::unexpected("is longer than a year");
  }
  if (total == 0 && !allow_zero) return std::unexpected("must be greater than zero");
  if (total % kNsPerMs != 0) {
    return std::unexpected("is not a whole number of milliseconds (the resolution is 1ms)");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(total / kNsPerMs));
}

std::expected<std::int64_t, IntError> parse_int(std::string_view s) {
  std::string_view digits = s;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  std::string_view unsigned_part = digits;
  if (!unsigned_part.empty() && unsigned_part.front() == '-') unsigned_part.remove_prefix(1);
  if (unsigned_part.empty() || !std::all_of(unsigned_part.begin(), unsigned_part.end(), is_digit)) {
    return std::unexpected(IntError::not_an_integer);
  }
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) return std::unexpected(IntError::out_of_range);
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    return std::unexpected(IntError::not_an_integer);
  }
  return value;
}

bool looks_like_number(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  double value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string quote(std::string_view text) {
  constexpr std::size_t kMaxQuoted = 60;
  std::string out = "'";
  for (char c : text.substr(0, kMaxQuoted)) {
    if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  if (text.size() > kMaxQuoted) out += "...";
  return out + "'";
}

}  // namespace revgate::config::detail
