// JSON and Envoy-text renderings of an access log Entry. Appends straight into `out` with
// std::to_chars and fixed-size stack buffers: no temporary strings, no locale, no lock.
#include "accesslog/format.h"

#include <charconv>
#include <cstddef>

namespace revgate::accesslog {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_uint(std::uint64_t value, std::string& out) {
  char digits[20];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, end);
}

void append_int(int value, std::string& out) {
  char digits[12];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, end);
}

void put_digits(unsigned value, char* out, int width) {
  for (int i = width - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

// Length of the well-formed UTF-8 sequence starting at s[i] (Unicode table 3-7: no overlongs,
// no surrogates, nothing above U+10FFFF), or 0 when the byte there does not start one.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u;
  };
  auto cont = [&](std::size_t k, unsigned lo = 0x80, unsigned hi = 0xbf) {
    unsigned b = byte(k);
    return i + k < s.size() && b >= lo && b <= hi;
  };
  unsigned lead = byte(0);
  if (lead >= 0xc2 && lead <= 0xdf) return cont(1) ? 2 : 0;
  if (lead == 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((lead >= 0xe1 && lead <= 0xec) || lead == 0xee || lead == 0xef) {
    return cont(1) && cont(2) ? 3 : 0;
  }
  if (lead == 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (lead == 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (lead >= 0xf1 && lead <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (lead == 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// A JSON string (RFC 8259) holding `s`; an empty `s` is null.
void append_json_string(std::string_view s, std::string& out) {
  if (s.empty()) {
    out += "null";
    return;
  }
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t run = i;
    while (run < s.size()) {
      auto c = static_cast<unsigned char>(s[run]);
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x7f) break;
      ++run;
    }
    out.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (std::size_t n = utf8_sequence_length(s, i)) {
        out.append(s.data() + i, n);
        i += n;
      } else {
        out += "\\ufffd";  // one replacement character per stray byte
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default: {  // other control characters and DEL
        const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        out.append(escaped, sizeof escaped);
      }
    }
    ++i;
  }
  out += '"';
}

// A text-format value: `-` when empty, control characters and DEL as \xHH, the rest as is.
void append_text_value(std::string_view s, std::string& out) {
  if (s.empty()) {
    out += '-';
    return;
  }
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t run = i;
    while (run < s.size()) {
      auto c = static_cast<unsigned char>(s[run]);
      if (c < 0x20 || c == 0x7f) break;
      ++run;
    }
    out.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    auto c = static_cast<unsigned char>(s[i]);
    const char escaped[] = {'\\', 'x', kHex[c >> 4], kHex[c & 0xf]};
    out.append(escaped, sizeof escaped);
    ++i;
  }
}

void append_quoted_text_value(std::string_view s, std::string& out) {
  out += '"';
  append_text_value(s, out);
  out += '"';
}

}  // namespace

void append_rfc3339(std::chrono::system_clock::time_point time, std::string& out) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(time);
  const auto day = floor<days>(ms);
  const year_month_day date{day};
  const hh_mm_ss clock{ms - day};
  int year = static_cast<int>(date.year());
  if (year < 0) year = 0;  // only a nonsense time point gets here; keep the layout
  if (year > 9999) year = 9999;
  char text[] = "0000-00-00T00:00:00.000Z";
  put_digits(static_cast<unsigned>(year), text, 4);
  put_digits(static_cast<unsigned>(date.month()), text + 5, 2);
  put_digits(static_cast<unsigned>(date.day()), text + 8, 2);
  put_digits(static_cast<unsigned>(clock.hours().count()), text + 11, 2);
  put_digits(static_cast<unsigned>(clock.minutes().count()), text + 14, 2);
  put_digits(static_cast<unsigned>(clock.seconds().count()), text + 17, 2);
  put_digits(static_cast<unsigned>(clock.subseconds().count()), text + 20, 3);
  out.append(text, sizeof text - 1);
}

void append_json(const Entry& entry, std::string& out) {
  out += "{\"start_time\":\"";
  append_rfc3339(entry.start_time, out);
  out += "\",\"method\":";
  append_json_string(entry.method, out);
  out += ",\"path\":";
  append_json_string(entry.path, out);
  out += ",\"protocol\":";
  append_json_string(entry.protocol, out);
  out += ",\"response_code\":";
  append_int(entry.response_code, out);
  out += ",\"response_flags\":";
  append_json_string(entry.response_flags.empty() ? "-" : entry.response_flags, out);
  out += ",\"bytes_received\":";
  append_uint(entry.bytes_received, out);
  out += ",\"bytes_sent\":";
  append_uint(entry.bytes_sent, out);
  out += ",\"duration\":";
  append_uint(entry.duration_ms, out);
  out += ",\"upstream_service_time\":";
  if (entry.upstream_service_time_ms) {
    append_uint(*entry.upstream_service_time_ms, out);
  } else {
    out += "null";
  }
  out += ",\"upstream_host\":";
  append_json_string(entry.upstream_host, out);
  out += ",\"x_forwarded_for\":";
  append_json_string(entry.x_forwarded_for, out);
  out += ",\"user_agent\":";
  append_json_string(entry.user_agent, out);
  out += ",\"request_id\":";
  append_json_string(entry.request_id, out);
  out += ",\"authority\":";
  append_json_string(entry.authority, out);
  out += ",\"service\":";
  append_json_string(entry.service, out);
  out += ",\"namespace\":";
  append_json_string(entry.namespace_name, out);
  out += ",\"revision\":";
  append_json_string(entry.revision, out);
  out += "}\n";
}

void append_text(const Entry& entry, std::string& out) {
  out += '[';
  append_rfc3339(entry.start_time, out);
  out += "] \"";
  append_text_value(entry.method, out);
  out += ' ';
  append_text_value(entry.path, out);
  out += ' ';
  append_text_value(entry.protocol, out);
  out += "\" ";
  append_int(entry.response_code, out);
  out += ' ';
  append_text_value(entry.response_flags, out);
  out += ' ';
  append_uint(entry.bytes_received, out);
  out += ' ';
  append_uint(entry.bytes_sent, out);
  out += ' ';
  append_uint(entry.duration_ms, out);
  out += ' ';
  if (entry.upstream_service_time_ms) {
    append_uint(*entry.upstream_service_time_ms, out);
  } else {
    out += '-';
  }
  out += ' ';
  append_quoted_text_value(entry.x_forwarded_for, out);
  out += ' ';
  append_quoted_text_value(entry.user_agent, out);
  out += ' ';
  append_quoted_text_value(entry.request_id, out);
  out += ' ';
  append_quoted_text_value(entry.authority, out);
  out += ' ';
  append_quoted_text_value(entry.upstream_host, out);
  out += '\n';
}

}  // namespace revgate::accesslog
