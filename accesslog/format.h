// One access log line: the `Entry` a session fills at the end of a request (views and numbers,
// nothing to allocate), and its two renderings, JSON and Envoy's default text layout. Pure
// functions: any thread; they only append to `out` (growing it when its capacity runs out).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace revgate::accesslog {

// The fields of one request. Views must stay valid during the append_* call only. An empty view
// is "not set": `-` in text, null in JSON.
struct Entry {
  std::chrono::system_clock::time_point start_time;  // when the request's first byte arrived
  std::string_view method;                           // "GET"
  std::string_view path;                             // the request target as received
  std::string_view protocol;                         // "HTTP/1.1"
  int response_code = 0;                             // 0: no response was sent (Envoy's rule)
  std::string_view response_flags;                   // "UF,UC"; empty = none ("-")
  std::uint64_t bytes_received = 0;                  // request body bytes
  std::uint64_t bytes_sent = 0;                      // response body bytes
  std::uint64_t duration_ms = 0;                     // start to last byte sent
  // From request sent upstream to its response head; absent when no upstream answered.
  std::optional<std::uint64_t> upstream_service_time_ms;
  std::string_view upstream_host;  // "127.0.0.1:9001", "[::1]:9001"; empty = none
  std::string_view service;
  std::string_view namespace_name;
  std::string_view revision;
  std::string_view authority;        // Host
  std::string_view x_forwarded_for;  // as received from the client (before the proxy appends)
  std::string_view user_agent;
  std::string_view request_id;  // X-Request-Id, received or generated
};

// One JSON object and '\n'. Keys, in this order: start_time (RFC 3339 UTC with milliseconds),
// method, path, protocol, response_code, response_flags ("-" when none), bytes_received,
// bytes_sent, duration, upstream_service_time (milliseconds), upstream_host, x_forwarded_for,
// user_agent, request_id, authority, service, namespace, revision. Numbers are JSON numbers; an
// unset value is null. Strings are escaped per RFC 8259 (", \, control characters, DEL); bytes
// that are not valid UTF-8 become U+FFFD, so the line is always valid UTF-8 JSON.
void append_json(const Entry& entry, std::string& out);

// Envoy's default access log format, field for field:
//   [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
//   %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
//   %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//   "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n
// with `-` for every unset value. Values are written as they are, except control characters
// and DEL, written \xHH so that a line is always one line (Envoy's codecs never let them through).
void append_text(const Entry& entry, std::string& out);

// "2024-05-01T12:34:56.789Z": RFC 3339, UTC, milliseconds (rounded down). No lock, no tz lookup.
void append_rfc3339(std::chrono::system_clock::time_point time, std::string& out);

}  // namespace revgate::accesslog
