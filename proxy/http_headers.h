// Header rewriting of the proxy (SPEC.md section 5): hop-by-hop removal both ways and the
// headers added upstream. Pure functions over Beast fields; used by one worker thread at a time.
#pragma once

#include <cstdint>
#include <string_view>

#include "proxy/header_arena.h"

namespace revgate::proxy {

// Removes `Connection` and every header it names, `Keep-Alive`, `Proxy-Connection`, `TE`,
// `Trailer`, `Transfer-Encoding` and `Upgrade`. Framing is re-added by the caller.
void strip_hop_by_hop(Fields& fields);

struct ForwardedFor {
  std::string_view client_ip;       // appended to X-Forwarded-For
  std::string_view proto;           // "http" or "https": X-Forwarded-Proto
  std::string_view revision;        // Knative-Serving-Revision
  std::string_view namespace_name;  // Knative-Serving-Namespace
};

// Adds the upstream headers; `request_id` is used when the request carries no X-Request-Id.
void add_forwarding_headers(Fields& fields, const ForwardedFor& forwarded,
                            std::string_view request_id);

// A random (version 4) UUID from 128 random bits, formatted 8-4-4-4-12 in lowercase hex.
void format_uuid4(std::uint64_t high, std::uint64_t low, char (&out)[36]);

}  // namespace revgate::proxy
