// The end of every request, whatever its protocol: one metrics sample into the worker's shard
// and, when access logging is on, one access-log line. HTTP/1.1 sessions and HTTP/2 streams
// fill a RequestRecord from their own state and call record_request() once per request.
// Worker thread only.
#pragma once

#include <cstdint>
#include <string_view>

#include "proxy/http_headers.h"
#include "proxy/worker.h"

namespace revgate::proxy {

struct RequestRecord {
  const RequestHead* request = nullptr;  // null: refused before a head was parsed
  std::string_view protocol;             // "HTTP/1.1", "HTTP/1.0", "HTTP/2"
  std::string_view authority;            // the Host (or :authority) routing saw; may be empty
  const routing::Decision* decision = nullptr;
  // The X-Request-Id the proxy made for a routed request (sent upstream); for a request refused
  // before routing that carries none, record_request() makes one here so every line has an id.
  char (*request_id)[36] = nullptr;
  unsigned status = 0;
  std::uint16_t flags = 0;
  std::uint64_t request_bytes = 0;   // body bytes from the client
  std::uint64_t response_bytes = 0;  // body bytes to the client
  Clock::duration elapsed{};
  std::int64_t upstream_service_ms = -1;  // -1: no upstream answered
  bool grpc = false;                      // metrics' request_protocol: grpc, else http
};

void record_request(Worker& worker, const Snapshot& snapshot, const RequestRecord& record);

}  // namespace revgate::proxy
