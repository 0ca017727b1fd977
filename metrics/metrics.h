// Request metrics with Istio's names (SPEC.md section 7). Each worker thread owns one
// WorkerShard and records into it without locks or atomics; a scrape copies every shard on its
// own thread (the proxy posts the copy to each worker), merges the copies and renders them
// (prometheus_text.h).
// The DestinationCatalog is the one shared piece: written on config load, read at scrape time.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace revgate::metrics {

// Envoy's response flags that revgate can set (a bit set; rendered "UF,UC" or "-", in Envoy's
// order of the short codes whatever the order of the bits).
enum ResponseFlag : std::uint16_t {
  kNoFlags = 0,
  kNoRoute = 1 << 0,                          // NR
  kUpstreamConnectFailure = 1 << 1,           // UF
  kUpstreamConnectionTermination = 1 << 2,    // UC
  kNoHealthyUpstream = 1 << 3,                // UH
  kUpstreamRequestTimeout = 1 << 4,           // UT
  kDownstreamConnectionTermination = 1 << 5,  // DC
  kDownstreamProtocolError = 1 << 6,          // DPE
  kStreamIdleTimeout = 1 << 7,                // SI (request head too slow: 408)
  kUpstreamProtocolError = 1 << 8,            // UPE
};
// Every flag above; other bits are dropped by WorkerShard::record.
inline constexpr std::uint16_t kAllResponseFlags = (1 << 9) - 1;
std::string response_flags_string(std::uint16_t flags);
// The same without allocating, into `out`; an empty view when no flag is set.
std::string_view format_response_flags(std::uint16_t flags, char (&out)[40]);

// The destination labels of one revision. Id 0 is always the unknown destination (requests
// no route took and local replies before routing), labelled "unknown" as Istio does.
struct Destination {
  std::string service_host;    // destination_service
  std::string service_name;    // destination_service_name
  std::string namespace_name;  // destination_service_namespace
  std::string revision;        // destination_version, destination_canonical_revision
  bool operator==(const Destination&) const = default;
};

class DestinationCatalog {
 public:
  DestinationCatalog();
  // Same labels, same id, across reloads. Called by the control plane (config load).
  std::uint32_t intern(const Destination& destination);
  std::vector<Destination> snapshot() const;

 private:
  mutable std::mutex mutex_;  // control plane only: never taken on the request path
  std::vector<Destination> destinations_;
  std::unordered_map<std::string, std::uint32_t> index_;  // encoded labels -> id
};

// Envoy's default histogram bucket bounds (upper bounds, +Inf implied after the last).
inline constexpr std::array<double, 19> kEnvoyBuckets = {
    0.5,  1,    5,     10,    25,    50,     100,    250,     500,    1000,
    2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000};

struct Histogram {
  std::array<std::uint64_t, kEnvoyBuckets.size() + 1> buckets{};  // non-cumulative; last = +Inf
  double sum = 0;
  std::uint64_t count = 0;
  void observe(double value);
  void merge(const Histogram& other);
};

// What one finished request contributes.
struct RequestSample {
  std::uint32_t destination = 0;  // DestinationCatalog id
  std::uint16_t response_code = 0;
  std::uint16_t response_flags = kNoFlags;
  double duration_ms = 0;
  std::uint64_t request_bytes = 0;   // body bytes received from the client
  std::uint64_t response_bytes = 0;  // body bytes sent to the client
  bool grpc = false;                 // request_protocol "grpc" (application/grpc), else "http"
};

// All series of one label set {destination, request_protocol, response_code, response_flags}.
struct RequestSeries {
  std::uint32_t destination = 0;
  std::uint16_t response_code = 0;
  std::uint16_t response_flags = 0;
  bool grpc = false;
  std::uint64_t requests = 0;
  Histogram duration_ms;
  Histogram request_bytes;
  Histogram response_bytes;
};

// One worker's counters. Owned by that worker's thread; copied (not shared) for a scrape.
class WorkerShard {
 public:
  void record(const RequestSample& sample);
  void connection_opened(std::uint32_t listener);
  void connection_closed(std::uint32_t listener);

  // The figures without the lookup index (a few flat copies, no allocation per destination):
  // what the worker hands to a scrape, whose merge builds its own index. Only to merge from:
  // recording into it would not find its label sets.
  WorkerShard counts() const;
  // Add another shard's figures into this one (scrape time).
  void merge(const WorkerShard& other);

  const std::vector<RequestSeries>& series() const { return series_; }
  struct ListenerStats {
    std::uint64_t accepted = 0;
    std::int64_t open = 0;
    // TLS handshakes on a TLS listener, by outcome (indexed by TlsHandshake).
    std::array<std::uint64_t, 4> tls_handshakes{};
  };
  enum TlsHandshake : std::uint8_t { kTls12, kTls13, kTlsFailure, kTlsTimeout };
  void tls_handshake(std::uint32_t listener, TlsHandshake outcome);
  const std::vector<ListenerStats>& listeners() const { return listeners_; }

  // Requests whose head was read and whose metrics are not recorded yet.
  void request_started() { ++requests_in_flight_; }
  void request_ended() { --requests_in_flight_; }
  std::int64_t requests_in_flight() const { return requests_in_flight_; }

  // Upstream connections by destination (revision), kept by the worker's session and pool.
  struct UpstreamStats {
    std::int64_t active = 0;  // carrying a request
    std::int64_t idle = 0;    // in the pool
    std::uint64_t opened = 0;
    std::uint64_t connect_failures = 0;  // connect or TLS handshake failed or timed out
    std::uint64_t retries = 0;           // requests sent again on a new connection
    bool operator==(const UpstreamStats&) const = default;
  };
  UpstreamStats& upstream(std::uint32_t destination) {
    if (destination >= upstreams_.size()) upstreams_.resize(destination + 1);
    return upstreams_[destination];
  }
  const std::vector<UpstreamStats>& upstreams() const { return upstreams_; }

 private:
  RequestSeries& find_or_add(std::uint32_t destination, std::uint16_t code, std::uint16_t flags,
                             bool grpc);
  // Indexed by destination id: positions in series_ of that destination's label sets, so the
  // lookup scans the few codes one destination has seen, not every series.
  std::vector<std::vector<std::uint32_t>> by_destination_;
  std::vector<RequestSeries> series_;
  std::vector<ListenerStats> listeners_;
  std::vector<UpstreamStats> upstreams_;  // by destination id
  std::int64_t requests_in_flight_ = 0;
};

// Process-wide figures the scrape adds beside the shards.
struct ConfiguredSplit {
  std::string service, namespace_name, revision, tag;
  int percent = 0;
};
// A service with a rolloutDuration: 1 while a rollout moves its traffic, else 0.
struct RolloutGauge {
  std::string service, namespace_name;
  bool in_progress = false;
};
struct CertificateReloads {
  std::string listener;
  std::uint64_t ok = 0, failed = 0;
};
// The process's own figures, as Prometheus client libraries export them (process_*).
struct ProcessStats {
  double cpu_seconds = 0;
  std::uint64_t resident_memory_bytes = 0;
  std::uint64_t virtual_memory_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};
// Reads /proc/self; on failure the fields it could not read stay 0.
ProcessStats read_process_stats();

struct ProcessView {
  std::vector<std::string> listener_names;              // index = listener id used by WorkerShard
  std::vector<CertificateReloads> certificate_reloads;  // TLS listeners only
  std::vector<ConfiguredSplit> traffic;                 // revgate_traffic_percent
  std::uint64_t config_generation = 0;
  std::uint64_t reloads_ok = 0;
  std::uint64_t reloads_failed = 0;
  std::optional<ProcessStats> process;  // process_* families, when given
  std::uint64_t access_log_dropped_lines = 0;
  std::vector<RolloutGauge> rollouts;  // revgate_rollout_in_progress
  bool draining = false;               // revgate_draining: SIGTERM received
};

}  // namespace revgate::metrics
