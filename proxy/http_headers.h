// What the proxy does to heads (SPEC.md section 5), as writers of the head it sends on: one
// pass over the parsed fields drops the hop-by-hop ones (and those `Connection` names), adds
// the forwarding headers and the framing, and writes the result into one contiguous buffer.
// Beast parses; writing the head ourselves replaces Beast's serializer, whose nested buffer
// views cost a third of the proxy's user-space instructions per request (callgrind, measured).
// Pure functions; one worker thread at a time.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <optional>
#include <string_view>
#include <vector>

#include <boost/beast/http/message.hpp>

#include "proxy/header_arena.h"
#include "routing/route_table.h"

namespace revgate::proxy {

using RequestHead = boost::beast::http::header<true, Fields>;
using ResponseHead = boost::beast::http::header<false, Fields>;

// How a body is delimited on the wire.
enum class Framing : std::uint8_t {
  none,            // no body (HEAD responses, 204, 304, bodyless requests)
  content_length,  // Content-Length: n
  chunked,         // Transfer-Encoding: chunked
  until_close,     // the body ends with the connection (HTTP/1.0 clients only)
  upgrade,         // a 101: the connection becomes a tunnel (Connection: upgrade, Upgrade: ..)
};

struct ForwardedFor {
  std::string_view client_ip;       // appended to X-Forwarded-For
  std::string_view proto;           // "http" or "https": X-Forwarded-Proto
  std::string_view revision;        // Knative-Serving-Revision
  std::string_view namespace_name;  // Knative-Serving-Namespace
  std::string_view request_id;      // X-Request-Id, used only when the request has none
  // W3C traceparent, used only when the request has no valid one (an invalid one is dropped:
  // the trace restarts here, as Trace Context says). Empty: none added.
  std::string_view traceparent;
  // An Upgrade the service allows (a WebSocket handshake): sent on with `Connection: upgrade`.
  // Empty: Upgrade and Connection are dropped like every hop-by-hop field.
  std::string_view upgrade;
};

// The request head for the upstream: "METHOD target HTTP/1.1", the end-to-end fields as
// received, X-Forwarded-For (appended), X-Forwarded-Proto, X-Request-Id (kept when present),
// Knative-Serving-Revision/-Namespace (replacing any the client sent), traceparent when the
// request has no valid one, then the framing. tracestate, B3 and X-Cloud-Trace-Context pass
// through like any end-to-end field.
void write_request_head(std::string& out, const RequestHead& request, const ForwardedFor& forwarded,
                        Framing framing, std::uint64_t content_length);

// The response head for the client: "HTTP/1.1 code reason", the end-to-end fields as
// received, the framing, and `Connection: close` (or `keep-alive` for an HTTP/1.0 client that
// keeps the connection); with Framing::upgrade, `Connection: upgrade` and the upstream's
// `Upgrade` instead. With Framing::none a Content-Length from the upstream passes as is
// (a HEAD response describes the body it did not send). `extra_fields` ("Name: value\r\n"
// lines the proxy adds, such as x-envoy-upstream-service-time) go before the framing; the
// upstream's own x-envoy-upstream-service-time and X-Revgate-* fields are dropped.
void write_response_head(std::string& out, const ResponseHead& response, Framing framing,
                         std::uint64_t content_length, bool keep_alive, bool client_http10,
                         std::string_view extra_fields = {});

// An HTTP/2 header block in the making: names lowercased (RFC 9113 8.2.1) and values copied
// into one buffer, read back as views once complete (adding invalidates earlier views).
class HeaderBlock {
 public:
  void clear() {
    bytes_.clear();
    entries_.clear();
  }
  void add(std::string_view name, std::string_view value);
  std::size_t size() const { return entries_.size(); }
  std::string_view name(std::size_t i) const { return view(entries_[i].name, entries_[i].name_size); }
  std::string_view value(std::size_t i) const {
    return view(entries_[i].value, entries_[i].value_size);
  }

 private:
  struct Entry {
    std::uint32_t name, name_size, value, value_size;
  };
  std::string_view view(std::uint32_t at, std::uint32_t size) const {
    return std::string_view(bytes_).substr(at, size);
  }
  std::string bytes_;
  std::vector<Entry> entries_;
};

// The response head for an HTTP/2 client from an HTTP/1.1 upstream's: `:status`, then the
// end-to-end fields as received (the same ones write_response_head keeps, but no
// connection-specific field at all, which HTTP/2 forbids). Content-Length passes as is. The
// caller adds the proxy's own fields (add_proxy_fields).
void write_h2_response_head(HeaderBlock& out, const ResponseHead& response);
// The request head for an HTTP/2 upstream (`protocol: h2c` or `h2`): :method, :scheme,
// :authority (the Host), :path, then the fields write_request_head would send (no Host, no
// connection-specific field; names lowercased), `content-length` when the length is known, and
// `te: trailers` when the client asked for trailers.
void write_h2_request_head(HeaderBlock& out, const RequestHead& request,
                           const ForwardedFor& forwarded, std::string_view scheme,
                           std::optional<std::uint64_t> content_length);
// x-envoy-upstream-service-time, X-Revgate-Revision, X-Revgate-Endpoint (any case): fields the
// proxy sets on responses, dropped when an upstream sends them.
bool is_proxy_response_field(std::string_view name);

// The trailer fields of a chunked response (the fields from index `first` on, which Beast's
// parser appends after the head's), for an HTTP/2 client; false when there are none.
bool write_h2_trailers(HeaderBlock& out, const ResponseHead& response, std::size_t first);

// The fields the proxy adds to a proxied response, one add(name, value) call each:
// x-envoy-upstream-service-time, the sticky Set-Cookie a new client gets (with Secure on
// https), and with debugHeaders X-Revgate-Revision and X-Revgate-Endpoint. The views passed
// live only for the call.
template <class Add>
void add_proxy_fields(const routing::Decision& decision, std::int64_t upstream_service_ms,
                      bool https, Add&& add) {
  char digits[20];
  const auto end = std::to_chars(digits, digits + sizeof digits,
                                 upstream_service_ms < 0 ? 0 : upstream_service_ms)
                       .ptr;
  add("x-envoy-upstream-service-time", std::string_view(digits, end - digits));
  if (decision.set_cookie) {
    // Sticky sessions by cookie: the client's next requests carry it to the same revision.
    char cookie[routing::kMaxSetCookieLength + 8];
    std::string_view value = routing::format_set_cookie(
        decision, reinterpret_cast<char(&)[routing::kMaxSetCookieLength]>(cookie));
    if (https) {
      std::memcpy(cookie + value.size(), "; Secure", 8);
      value = std::string_view(cookie, value.size() + 8);
    }
    add("Set-Cookie", value);
  }
  if (decision.service->debug_headers) {
    add("X-Revgate-Revision", decision.revision->name);
    add("X-Revgate-Endpoint", decision.endpoint->authority);
  }
}

// The same as "Name: value\r\n" lines for an HTTP/1.1 head (replacing `out`).
void write_proxy_fields(std::string& out, const routing::Decision& decision,
                        std::int64_t upstream_service_ms, bool https);

// Istio Gateway's httpsRedirect: "https://" + the host (normalized, without its port) + the
// port when not 443 + the target; false when the host is not a valid one.
bool https_redirect_location(std::string& out, std::string_view host, std::uint16_t port,
                             std::string_view target);

// RFC 9110 9.2.2: a request that may be sent again after a connection failed under it (an
// idempotent method, and no body that could be lost).
bool is_replayable(boost::beast::http::verb method, bool bodyless);

// A random (version 4) UUID from 128 random bits, formatted 8-4-4-4-12 in lowercase hex.
void format_uuid4(std::uint64_t high, std::uint64_t low, char (&out)[36]);

// "1a2b\r\n": the line that starts a chunk of `size` bytes; `out` must hold 18 bytes.
std::string_view chunk_size_line(std::size_t size, char (&out)[18]);

}  // namespace revgate::proxy
