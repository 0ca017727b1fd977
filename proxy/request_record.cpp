#include "proxy/request_record.h"

#include "accesslog/writer.h"

namespace revgate::proxy {

namespace http = boost::beast::http;

namespace {

void log_request(accesslog::WorkerLog& log, Worker& worker, const RequestRecord& record) {
  accesslog::Entry entry;
  // The wall-clock start from one clock read now, not a system_clock read per request start.
  entry.start_time = std::chrono::system_clock::now() -
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(record.elapsed);
  const bool routed = record.decision != nullptr && *record.decision;
  if (const RequestHead* request = record.request) {
    entry.method = request->method_string();
    entry.path = request->target();
    entry.protocol = record.protocol;
    if (auto it = request->find(http::field::user_agent); it != request->end()) {
      entry.user_agent = it->value();
    }
    if (auto it = request->find("x-forwarded-for"); it != request->end()) {
      entry.x_forwarded_for = it->value();
    }
    if (auto it = request->find("x-request-id"); it != request->end()) {
      entry.request_id = it->value();
    } else if (record.request_id != nullptr) {
      // Routed requests made theirs when the upstream head was written; a local reply gets
      // one now, so every line has an id (as Envoy's do).
      if (!routed) {
        auto& rng = worker.rng();
        format_uuid4(rng.next(), rng.next(), *record.request_id);
      }
      entry.request_id = std::string_view(*record.request_id, sizeof *record.request_id);
    }
    entry.authority = record.authority;
    if (entry.authority.empty()) {
      // Refused before routing (a framing error, say): the Host it carried all the same.
      if (auto it = request->find(http::field::host); it != request->end()) {
        entry.authority = it->value();
      }
    }
  }
  entry.response_code = static_cast<int>(record.status);
  char flags[40];
  entry.response_flags = metrics::format_response_flags(record.flags, flags);
  entry.bytes_received = record.request_bytes;
  entry.bytes_sent = record.response_bytes;
  entry.duration_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(record.elapsed).count());
  if (record.upstream_service_ms >= 0) {
    entry.upstream_service_time_ms = static_cast<std::uint64_t>(record.upstream_service_ms);
  }
  if (routed) {
    const auto& decision = *record.decision;
    entry.service = decision.service->name;
    entry.namespace_name = decision.service->namespace_name;
    entry.revision = decision.revision->name;
    if (decision.endpoint != nullptr) entry.upstream_host = decision.endpoint->authority;
  }
  log.append(entry);
}

}  // namespace

void record_request(Worker& worker, const Snapshot& snapshot, const RequestRecord& record) {
  metrics::RequestSample sample;
  if (record.decision != nullptr && record.decision->revision != nullptr) {
    sample.destination = snapshot.destination_ids[record.decision->revision->index];
  }
  sample.response_code = static_cast<std::uint16_t>(record.status);
  sample.response_flags = record.flags;
  sample.duration_ms = std::chrono::duration<double, std::milli>(record.elapsed).count();
  sample.request_bytes = record.request_bytes;
  sample.response_bytes = record.response_bytes;
  sample.grpc = record.grpc;
  worker.shard().record(sample);
  if (auto* log = worker.access_log()) log_request(*log, worker, record);
}

}  // namespace revgate::proxy
