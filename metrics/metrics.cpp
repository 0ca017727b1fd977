// Per-worker request metrics (SPEC.md section 7); their text exposition is prometheus_text.cpp.
// WorkerShard is touched by its own worker only; the scrape renders merged copies on its own
// thread; DestinationCatalog is the control plane's, behind its own mutex.
#include "metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <numeric>
#include <tuple>
#include <utility>

#include <fmt/format.h>

namespace revgate::metrics {

namespace {

// Envoy's short codes for the flags revgate sets, in the order Envoy prints them
// (ResponseFlagUtils: the order of Envoy's ResponseFlag bits, not of ours).
struct FlagCode {
  std::uint16_t bit;
  std::string_view code;
};
constexpr std::array<FlagCode, 9> kFlagCodes = {{
    {kNoHealthyUpstream, "UH"},
    {kUpstreamRequestTimeout, "UT"},
    {kUpstreamConnectFailure, "UF"},
    {kUpstreamConnectionTermination, "UC"},
    {kNoRoute, "NR"},
    {kDownstreamConnectionTermination, "DC"},
    {kStreamIdleTimeout, "SI"},
    {kDownstreamProtocolError, "DPE"},
    {kUpstreamProtocolError, "UPE"},
}};

constexpr std::uint16_t kKnownFlags = [] {
  std::uint16_t all = 0;
  for (const auto& f : kFlagCodes) all |= f.bit;
  return all;
}();
static_assert(kKnownFlags == kAllResponseFlags, "every ResponseFlag needs its short code");

// Catalog key: the four labels, each prefixed by its length so no two label sets collide.
std::string catalog_key(const Destination& d) {
  std::string key;
  key.reserve(d.service_host.size() + d.service_name.size() + d.namespace_name.size() +
              d.revision.size() + 32);
  for (const std::string* part :
       {&d.service_host, &d.service_name, &d.namespace_name, &d.revision}) {
    const fmt::format_int digits(part->size());
    key.append(digits.data(), digits.size());
    key.push_back(':');
    key.append(*part);
  }
  return key;
}

}  // namespace

std::string_view format_response_flags(std::uint16_t flags, char (&out)[40]) {
  std::size_t n = 0;
  flags &= kKnownFlags;
  for (const auto& f : kFlagCodes) {
    if ((flags & f.bit) == 0) continue;
    if (n != 0) out[n++] = ',';
    f.code.copy(out + n, f.code.size());
    n += f.code.size();
  }
  return {out, n};
}

std::string response_flags_string(std::uint16_t flags) {
  char codes[40];
  const auto text = format_response_flags(flags, codes);
  return std::string(text.empty() ? std::string_view("-") : text);
}

// ---------------------------------------------------------------------------------------------
// DestinationCatalog

DestinationCatalog::DestinationCatalog() {
  destinations_.push_back({"unknown", "unknown", "unknown", "unknown"});
  index_.emplace(catalog_key(destinations_.front()), 0);
}

std::uint32_t DestinationCatalog::intern(const Destination& destination) {
  std::string key = catalog_key(destination);
  std::lock_guard lock(mutex_);
  const auto next = static_cast<std::uint32_t>(destinations_.size());
  const auto [it, inserted] = index_.try_emplace(std::move(key), next);
  if (inserted) destinations_.push_back(destination);
  return it->second;
}

std::vector<Destination> DestinationCatalog::snapshot() const {
  std::lock_guard lock(mutex_);
  return destinations_;
}

// ---------------------------------------------------------------------------------------------
// Histogram

void Histogram::observe(double value) {
  // Durations and sizes are never negative; a NaN or negative value (a clock gone backwards)
  // counts as 0 rather than poisoning the sum for the life of the process.
  if (!(value >= 0)) value = 0;
  // First bound >= value: a value equal to a bound belongs to that bucket (`le`).
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(kEnvoyBuckets.begin(), kEnvoyBuckets.end(), value) - kEnvoyBuckets.begin());
  ++buckets[bucket];
  sum += value;
  ++count;
}

void Histogram::merge(const Histogram& other) {
  for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
  sum += other.sum;
  count += other.count;
}

// ---------------------------------------------------------------------------------------------
// WorkerShard

RequestSeries& WorkerShard::find_or_add(std::uint32_t destination, std::uint16_t code,
                                        std::uint16_t flags, bool grpc) {
  if (destination >= by_destination_.size()) by_destination_.resize(destination + 1);
  auto& positions = by_destination_[destination];
  for (const std::uint32_t position : positions) {
    RequestSeries& s = series_[position];
    if (s.response_code == code && s.response_flags == flags && s.grpc == grpc) return s;
  }
  positions.push_back(static_cast<std::uint32_t>(series_.size()));
  RequestSeries& s = series_.emplace_back();
  s.destination = destination;
  s.response_code = code;
  s.response_flags = flags;
  s.grpc = grpc;
  return s;
}

void WorkerShard::record(const RequestSample& sample) {
  // Unknown bits would render like no bit at all and split one label set in two: drop them.
  RequestSeries& s =
      find_or_add(sample.destination, sample.response_code, sample.response_flags & kKnownFlags,
                  sample.grpc);
  ++s.requests;
  s.duration_ms.observe(sample.duration_ms);
  s.request_bytes.observe(static_cast<double>(sample.request_bytes));
  s.response_bytes.observe(static_cast<double>(sample.response_bytes));
}

void WorkerShard::connection_opened(std::uint32_t listener) {
  if (listener >= listeners_.size()) listeners_.resize(listener + 1);
  ++listeners_[listener].accepted;
  ++listeners_[listener].open;
}

void WorkerShard::tls_handshake(std::uint32_t listener, TlsHandshake outcome) {
  if (listener >= listeners_.size()) listeners_.resize(listener + 1);
  ++listeners_[listener].tls_handshakes[outcome];
}

void WorkerShard::connection_closed(std::uint32_t listener) {
  if (listener >= listeners_.size()) listeners_.resize(listener + 1);
  --listeners_[listener].open;
}

WorkerShard WorkerShard::counts() const {
  WorkerShard copy;
  copy.series_ = series_;
  copy.listeners_ = listeners_;
  copy.upstreams_ = upstreams_;
  copy.requests_in_flight_ = requests_in_flight_;
  return copy;
}

void WorkerShard::merge(const WorkerShard& other) {
  // By index and with the count taken first, so merging a shard into itself stays defined.
  const std::size_t n = other.series_.size();
  if (series_.capacity() < n) series_.reserve(n);  // the usual case: merging into an empty copy
  for (std::size_t i = 0; i < n; ++i) {
    const RequestSeries& theirs = other.series_[i];
    // Only adds a series when other is not *this, so `theirs` stays valid.
    RequestSeries& ours =
        find_or_add(theirs.destination, theirs.response_code, theirs.response_flags, theirs.grpc);
    ours.requests += theirs.requests;
    ours.duration_ms.merge(theirs.duration_ms);
    ours.request_bytes.merge(theirs.request_bytes);
    ours.response_bytes.merge(theirs.response_bytes);
  }
  requests_in_flight_ += other.requests_in_flight_;
  if (other.upstreams_.size() > upstreams_.size()) upstreams_.resize(other.upstreams_.size());
  for (std::size_t i = 0; i < other.upstreams_.size(); ++i) {
    const UpstreamStats& theirs = other.upstreams_[i];
    UpstreamStats& ours = upstreams_[i];
    ours.active += theirs.active;
    ours.idle += theirs.idle;
    ours.opened += theirs.opened;
    ours.connect_failures += theirs.connect_failures;
    ours.retries += theirs.retries;
  }
  if (other.listeners_.size() > listeners_.size()) listeners_.resize(other.listeners_.size());
  for (std::size_t i = 0; i < other.listeners_.size(); ++i) {
    listeners_[i].accepted += other.listeners_[i].accepted;
    listeners_[i].open += other.listeners_[i].open;
    for (std::size_t k = 0; k < listeners_[i].tls_handshakes.size(); ++k) {
      listeners_[i].tls_handshakes[k] += other.listeners_[i].tls_handshakes[k];
    }
  }
}

}  // namespace revgate::metrics
