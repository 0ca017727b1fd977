// The one error type of the data plane (ARCHITECTURE.md "Errors"): what went wrong, and the
// single mapping from it to a status code, an Envoy response flag and a message.
// Plain values; any thread.
#pragma once

#include <cstdint>
#include <string_view>

#include "metrics/metrics.h"

namespace revgate::proxy {

enum class ErrorKind : std::uint8_t {
  bad_request,            // malformed request, smuggling attempt (400)
  request_line_too_long,  // 414
  headers_too_large,      // 431
  body_too_large,         // 413
  request_timeout,        // head not received in time (408)
  no_route,               // no host matched (404 NR)
  upstream_connect,       // connect failed or timed out (502 UF)
  upstream_reset,         // upstream closed/reset before a full response head (502 UC)
  upstream_protocol,      // upstream sent something that is not HTTP (502 UPE)
  upstream_timeout,       // no response head in time (504 UT)
  no_healthy_upstream,    // revision without endpoints (503 UH)
  upgrade_refused,        // an Upgrade the service's upgradeTypes do not list (403, as Envoy)
};

struct ErrorReply {
  unsigned status;
  std::uint16_t flags;    // metrics::ResponseFlag bits
  std::string_view body;  // plain-text body, ends with a newline
  bool close;             // the stream is unusable: answer with Connection: close
};

constexpr ErrorReply reply_for(ErrorKind kind) {
  using namespace revgate::metrics;
  switch (kind) {
    case ErrorKind::bad_request:
      return {400, kDownstreamProtocolError, "bad request\n", true};
    case ErrorKind::request_line_too_long:
      return {414, kDownstreamProtocolError, "request line too long\n", true};
    case ErrorKind::headers_too_large:
      return {431, kDownstreamProtocolError, "request header fields too large\n", true};
    case ErrorKind::body_too_large:
      return {413, kDownstreamProtocolError, "payload too large\n", true};
    case ErrorKind::request_timeout:
      return {408, kStreamIdleTimeout, "request timeout\n", true};
    case ErrorKind::no_route:
      return {404, kNoRoute, "no route for this host\n", false};
    case ErrorKind::upstream_connect:
      return {502, kUpstreamConnectFailure, "upstream connect error\n", false};
    case ErrorKind::upstream_reset:
      return {502, kUpstreamConnectionTermination, "upstream connection closed before a response\n",
              false};
    case ErrorKind::upstream_protocol:
      return {502, kUpstreamProtocolError, "upstream sent an invalid response\n", false};
    case ErrorKind::upstream_timeout:
      return {504, kUpstreamRequestTimeout, "upstream request timeout\n", false};
    case ErrorKind::no_healthy_upstream:
      return {503, kNoHealthyUpstream, "no healthy upstream\n", false};
    case ErrorKind::upgrade_refused:
      return {403, kNoFlags, "upgrade not allowed for this service\n", false};
  }
  return {500, kNoFlags, "internal error\n", true};
}

}  // namespace revgate::proxy
