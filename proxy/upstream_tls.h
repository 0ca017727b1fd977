// TLS to https:// revision endpoints on a freshly connected upstream socket: the revision's
// client context, SNI and the verified name, and one log line that says why a handshake failed
// (a bad CA and a dead upstream must be told apart: there is no silent fallback to cleartext or
// to an unverified peer). Shared by HTTP/1.1 sessions and HTTP/2 streams. Worker thread only.
#pragma once

#include <boost/system/error_code.hpp>

#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace revgate::proxy {

// Puts TLS on `connection` for `target`; false (logged) when the context cannot prepare it.
// The caller then runs the client handshake on connection.stream.tls().
bool begin_upstream_tls(UpstreamConnection& connection, const UpstreamEndpoint& target,
                        const routing::Decision& decision);

void log_upstream_tls_failure(UpstreamConnection& connection, const UpstreamEndpoint& target,
                              const routing::Decision& decision, bool timed_out,
                              boost::system::error_code ec);

}  // namespace revgate::proxy
