// What the proxy does to heads (SPEC.md section 5), as writers of the head it sends on: one
// pass over the parsed fields drops the hop-by-hop ones (and those `Connection` names), adds
// the forwarding headers and the framing, and writes the result into one contiguous buffer.
// Beast parses; writing the head ourselves replaces Beast's serializer, whose nested buffer
// views cost a third of the proxy's user-space instructions per request (callgrind, measured).
// Pure functions; one worker thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>

#include "proxy/header_arena.h"

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

// A random (version 4) UUID from 128 random bits, formatted 8-4-4-4-12 in lowercase hex.
void format_uuid4(std::uint64_t high, std::uint64_t low, char (&out)[36]);

// "1a2b\r\n": the line that starts a chunk of `size` bytes; `out` must hold 18 bytes.
std::string_view chunk_size_line(std::size_t size, char (&out)[18]);

}  // namespace revgate::proxy
