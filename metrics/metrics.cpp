// Per-worker request metrics and their Prometheus text exposition (SPEC.md section 7).
// WorkerShard is touched by its own worker only; render_prometheus runs on the scrape's thread
// over merged copies; DestinationCatalog is the control plane's, behind its own mutex.
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

using Out = std::back_insert_iterator<std::string>;

// The response_flags label value: "UF,UC", or "-" when none.
void append_flags(std::string& out, std::uint16_t flags) {
  char codes[40];
  const auto text = format_response_flags(flags, codes);
  out.append(text.empty() ? std::string_view("-") : text);
}

void append_escaped(std::string& out, std::string_view value);

// `service="..",namespace="..",revision=".."`: the labels of revgate's per-revision families.
void append_revision_labels(std::string& out, std::string_view service,
                            std::string_view namespace_name, std::string_view revision) {
  out.append("service=\"");
  append_escaped(out, service);
  out.append("\",namespace=\"");
  append_escaped(out, namespace_name);
  out.append("\",revision=\"");
  append_escaped(out, revision);
  out.push_back('"');
}

// Label value escaping of the text format: backslash, double quote and line feed.
void append_escaped(std::string& out, std::string_view value) {
  std::size_t start = 0;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c != '\\' && c != '"' && c != '\n') continue;
    out.append(value.substr(start, i - start));
    out.push_back('\\');
    out.push_back(c == '\n' ? 'n' : c);
    start = i + 1;
  }
  out.append(value.substr(start));
}

void append_uint(std::string& out, std::uint64_t value) {
  const fmt::format_int digits(value);
  out.append(digits.data(), digits.size());
}

void append_int(std::string& out, std::int64_t value) {
  const fmt::format_int digits(value);
  out.append(digits.data(), digits.size());
}

// Shortest round-trip form ("12", "0.25", "1e+20"); the text format's spelling of the specials.
void append_double(std::string& out, double value) {
  if (std::isnan(value)) {
    out.append("NaN");
  } else if (std::isinf(value)) {
    out.append(value > 0 ? "+Inf" : "-Inf");
  } else {
    fmt::format_to(Out(out), "{}", value);
  }
}

void append_family_header(std::string& out, std::string_view name, std::string_view type,
                          std::string_view help) {
  fmt::format_to(Out(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// The `le` label values, printed once: plain decimals for every bound ("3600000", not
// "3.6e+06"), then "+Inf".
const std::array<std::string, kEnvoyBuckets.size() + 1>& le_values() {
  static const auto values = [] {
    std::array<std::string, kEnvoyBuckets.size() + 1> v;
    for (std::size_t i = 0; i < kEnvoyBuckets.size(); ++i)
      v[i] = fmt::format("{}", kEnvoyBuckets[i]);
    v.back() = "+Inf";
    return v;
  }();
  return values;
}

const Destination& unknown_destination() {
  static const Destination unknown{"unknown", "unknown", "unknown", "unknown"};
  return unknown;
}

// Catalog key: the four labels, each prefixed by its length so no two label sets collide.
std::string catalog_key(const Destination& d) {
  std::string key;
  key.reserve(d.service_host.size() + d.service_name.size() + d.namespace_name.size() +
              d.revision.size() + 32);
  for (const std::string* part :
       {&d.service_host, &d.service_name, &d.namespace_name, &d.revision}) {
    append_uint(key, part->size());
    key.push_back(':');
    key.append(*part);
  }
  return key;
}

struct HistogramFamily {
  std::string_view name;
  std::string_view help;
  Histogram RequestSeries::*member;
};

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
  std::string out;
  append_flags(out, flags);
  return out;
}

// ---------------------------------------------------------------------------------------------
// DestinationCatalog

DestinationCatalog::DestinationCatalog() {
  destinations_.push_back(unknown_destination());
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
                                        std::uint16_t flags) {
  if (destination >= by_destination_.size()) by_destination_.resize(destination + 1);
  auto& positions = by_destination_[destination];
  for (const std::uint32_t position : positions) {
    RequestSeries& s = series_[position];
    if (s.response_code == code && s.response_flags == flags) return s;
  }
  positions.push_back(static_cast<std::uint32_t>(series_.size()));
  RequestSeries& s = series_.emplace_back();
  s.destination = destination;
  s.response_code = code;
  s.response_flags = flags;
  return s;
}

void WorkerShard::record(const RequestSample& sample) {
  // Unknown bits would render like no bit at all and split one label set in two: drop them.
  RequestSeries& s =
      find_or_add(sample.destination, sample.response_code, sample.response_flags & kKnownFlags);
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

void WorkerShard::merge(const WorkerShard& other) {
  // By index and with the count taken first, so merging a shard into itself stays defined.
  const std::size_t n = other.series_.size();
  if (series_.capacity() < n) series_.reserve(n);  // the usual case: merging into an empty copy
  if (by_destination_.size() < other.by_destination_.size()) {
    by_destination_.resize(other.by_destination_.size());
  }
  for (std::size_t i = 0; i < n; ++i) {
    const RequestSeries& theirs = other.series_[i];
    // Only adds a series when other is not *this, so `theirs` stays valid.
    RequestSeries& ours =
        find_or_add(theirs.destination, theirs.response_code, theirs.response_flags);
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

// ---------------------------------------------------------------------------------------------
// render_prometheus

std::string render_prometheus(const WorkerShard& merged, const std::vector<Destination>& catalog,
                              const ProcessView& process) {
  std::string out;
  render_prometheus_to(out, merged, catalog, process);
  return out;
}

void render_prometheus_to(std::string& out, const WorkerShard& merged,
                          const std::vector<Destination>& catalog, const ProcessView& process) {
  static constexpr std::string_view kRequests = "istio_requests_total";
  static constexpr std::array<HistogramFamily, 3> kHistograms = {{
      {"istio_request_duration_milliseconds", "Duration of requests, in milliseconds.",
       &RequestSeries::duration_ms},
      {"istio_request_bytes", "Request body sizes received from clients, in bytes.",
       &RequestSeries::request_bytes},
      {"istio_response_bytes", "Response body sizes sent to clients, in bytes.",
       &RequestSeries::response_bytes},
  }};
  const auto& le = le_values();

  // Series in a stable order (destination, code, flags). A destination id the catalog copy does
  // not know yet (interned after the copy was taken) is left out of this scrape: its counts
  // are kept and appear, complete, in the next one.
  const std::vector<RequestSeries>& all = merged.series();
  std::vector<std::uint32_t> order;
  order.reserve(all.size());
  for (std::uint32_t i = 0; i < all.size(); ++i) {
    if (all[i].destination < catalog.size() || all[i].destination == 0) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    const RequestSeries& x = all[a];
    const RequestSeries& y = all[b];
    return std::tie(x.destination, x.response_code, x.response_flags) <
           std::tie(y.destination, y.response_code, y.response_flags);
  });

  auto destination_of = [&](const RequestSeries& s) -> const Destination& {
    return s.destination < catalog.size() ? catalog[s.destination] : unknown_destination();
  };

  // One reservation for the whole text: per series, one counter line and 22 lines for each
  // histogram, each holding the label block plus a name, an `le` and a number.
  constexpr std::size_t kLinesPerSeries = 1 + 3 * (kEnvoyBuckets.size() + 3);
  std::size_t estimate = 8192;
  for (const std::uint32_t i : order) {
    const Destination& d = destination_of(all[i]);
    const std::size_t label_bytes = 220 + d.service_host.size() + d.service_name.size() +
                                    d.namespace_name.size() + 2 * d.revision.size();
    estimate += kLinesPerSeries * (label_bytes + 64);
  }
  for (const auto& name : process.listener_names) estimate += 2 * (name.size() + 80);
  for (const auto& split : process.traffic) {
    estimate += split.service.size() + split.namespace_name.size() + split.revision.size() +
                split.tag.size() + 80;
  }
  out.clear();
  out.reserve(estimate);

  // The counter family writes every series' label block; the histograms copy each block from
  // there (the text itself is the only scratch space). Consecutive series share a destination,
  // whose escaped labels are written once and copied for its other codes.
  struct Span {
    std::size_t begin = 0;
    std::size_t size = 0;
  };
  std::vector<Span> label_blocks(order.size());
  append_family_header(out, kRequests, "counter",
                       "Requests completed, by destination revision, response code and Envoy "
                       "response flags.");
  Span destination_labels;
  std::uint32_t labelled_destination = UINT32_MAX;
  for (std::size_t k = 0; k < order.size(); ++k) {
    const RequestSeries& s = all[order[k]];
    out.append(kRequests);
    out.push_back('{');
    const std::size_t begin = out.size();
    if (s.destination == labelled_destination) {
      out.append(out, destination_labels.begin, destination_labels.size);
    } else {
      const Destination& d = destination_of(s);
      out.append("reporter=\"source\",destination_service=\"");
      append_escaped(out, d.service_host);
      out.append("\",destination_service_name=\"");
      append_escaped(out, d.service_name);
      out.append("\",destination_service_namespace=\"");
      append_escaped(out, d.namespace_name);
      out.append("\",destination_version=\"");
      append_escaped(out, d.revision);
      out.append("\",destination_canonical_revision=\"");
      append_escaped(out, d.revision);
      out.append("\",request_protocol=\"http\",response_code=\"");
      destination_labels = {begin, out.size() - begin};
      labelled_destination = s.destination;
    }
    append_uint(out, s.response_code);
    out.append("\",response_flags=\"");
    append_flags(out, s.response_flags);
    out.push_back('"');
    label_blocks[k] = {begin, out.size() - begin};
    out.append("} ");
    append_uint(out, s.requests);
    out.push_back('\n');
  }

  for (const HistogramFamily& family : kHistograms) {
    append_family_header(out, family.name, "histogram", family.help);
    for (std::size_t k = 0; k < order.size(); ++k) {
      const Histogram& h = all[order[k]].*family.member;
      const Span block = label_blocks[k];
      std::uint64_t cumulative = 0;
      for (std::size_t b = 0; b < h.buckets.size(); ++b) {
        cumulative += h.buckets[b];
        out.append(family.name);
        out.append("_bucket{");
        out.append(out, block.begin, block.size);
        out.append(",le=\"");
        out.append(le[b]);
        out.append("\"} ");
        append_uint(out, cumulative);
        out.push_back('\n');
      }
      out.append(family.name);
      out.append("_sum{");
      out.append(out, block.begin, block.size);
      out.append("} ");
      append_double(out, h.sum);
      out.push_back('\n');
      out.append(family.name);
      out.append("_count{");
      out.append(out, block.begin, block.size);
      out.append("} ");
      append_uint(out, h.count);
      out.push_back('\n');
    }
  }

  // Listeners: one line per configured listener, zero until a worker has seen a connection.
  const auto& stats = merged.listeners();
  auto listener_family = [&](std::string_view name, std::string_view type, std::string_view help,
                             auto value_of) {
    append_family_header(out, name, type, help);
    for (std::size_t i = 0; i < process.listener_names.size(); ++i) {
      const WorkerShard::ListenerStats st =
          i < stats.size() ? stats[i] : WorkerShard::ListenerStats{};
      out.append(name);
      out.append("{listener=\"");
      append_escaped(out, process.listener_names[i]);
      out.append("\"} ");
      value_of(st);
      out.push_back('\n');
    }
  };
  listener_family("revgate_downstream_connections_accepted_total", "counter",
                  "Downstream connections accepted, by listener.",
                  [&](const WorkerShard::ListenerStats& st) { append_uint(out, st.accepted); });
  listener_family("revgate_downstream_connections_open", "gauge",
                  "Downstream connections currently open, by listener.",
                  [&](const WorkerShard::ListenerStats& st) { append_int(out, st.open); });

  // TLS handshakes, for the listeners that saw any: result and negotiated protocol.
  {
    static constexpr std::string_view kHandshakes = "revgate_tls_handshakes_total";
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kOutcomes = {
        {{"success", "TLSv1.2"}, {"success", "TLSv1.3"}, {"failure", "-"}, {"timeout", "-"}}};
    append_family_header(out, kHandshakes, "counter",
                         "TLS handshakes on TLS listeners, by result and negotiated protocol.");
    for (std::size_t i = 0; i < process.listener_names.size() && i < stats.size(); ++i) {
      const auto& counts = stats[i].tls_handshakes;
      if (counts == decltype(stats[i].tls_handshakes){}) continue;
      for (std::size_t k = 0; k < kOutcomes.size(); ++k) {
        out.append(kHandshakes);
        out.append("{listener=\"");
        append_escaped(out, process.listener_names[i]);
        out.append("\",result=\"");
        out.append(kOutcomes[k].first);
        out.append("\",protocol=\"");
        out.append(kOutcomes[k].second);
        out.append("\"} ");
        append_uint(out, counts[k]);
        out.push_back('\n');
      }
    }
  }

  // Certificate reloads (SIGHUP or changed files), by TLS listener and result.
  {
    static constexpr std::string_view kReloads = "revgate_tls_certificate_reloads_total";
    append_family_header(out, kReloads, "counter",
                         "Certificate reloads of TLS listeners, by result (a failed reload keeps "
                         "the certificates in force).");
    for (const auto& listener : process.certificate_reloads) {
      for (auto [result, count] :
           {std::pair{"success", listener.ok}, {"failure", listener.failed}}) {
        out.append(kReloads);
        out.append("{listener=\"");
        append_escaped(out, listener.listener);
        out.append("\",result=\"");
        out.append(result);
        out.append("\"} ");
        append_uint(out, count);
        out.push_back('\n');
      }
    }
  }

  // Configured split. A label set listed twice (one revision named by two untagged targets)
  // becomes one series with the summed percent: the text format allows no duplicate series.
  {
    static constexpr std::string_view kTraffic = "revgate_traffic_percent";
    append_family_header(out, kTraffic, "gauge",
                         "Configured percent of a service's traffic sent to a revision, by "
                         "traffic tag (empty when untagged).");
    const auto& traffic = process.traffic;
    auto key = [&](std::size_t i) {
      const ConfiguredSplit& t = traffic[i];
      return std::tie(t.namespace_name, t.service, t.revision, t.tag);
    };
    std::vector<std::uint32_t> by_labels(traffic.size());
    std::iota(by_labels.begin(), by_labels.end(), 0u);
    std::sort(by_labels.begin(), by_labels.end(),
              [&](std::uint32_t a, std::uint32_t b) { return key(a) < key(b); });
    for (std::size_t k = 0; k < by_labels.size();) {
      const ConfiguredSplit& t = traffic[by_labels[k]];
      std::int64_t percent = 0;
      std::size_t j = k;
      for (; j < by_labels.size() && key(by_labels[j]) == key(by_labels[k]); ++j) {
        percent += traffic[by_labels[j]].percent;
      }
      k = j;
      out.append(kTraffic);
      out.push_back('{');
      append_revision_labels(out, t.service, t.namespace_name, t.revision);
      out.append(",tag=\"");
      append_escaped(out, t.tag);
      out.append("\"} ");
      append_int(out, percent);
      out.push_back('\n');
    }
  }

  append_family_header(out, "revgate_requests_in_flight", "gauge",
                       "Requests being served: head read, response not finished.");
  fmt::format_to(Out(out), "revgate_requests_in_flight {}\n", merged.requests_in_flight());

  // Upstream connections by revision, for the destinations that ever had one.
  {
    const auto& upstreams = merged.upstreams();
    std::vector<std::uint32_t> seen;
    for (std::uint32_t id = 1; id < upstreams.size() && id < catalog.size(); ++id) {
      if (upstreams[id] != WorkerShard::UpstreamStats{}) seen.push_back(id);
    }
    auto labels = [&](std::uint32_t id) {
      const Destination& d = catalog[id];
      out.push_back('{');
      append_revision_labels(out, d.service_name, d.namespace_name, d.revision);
    };
    append_family_header(out, "revgate_upstream_connections", "gauge",
                         "Upstream connections open, by revision and state (active: carrying a "
                         "request; idle: pooled).");
    for (std::uint32_t id : seen) {
      for (auto [state, count] :
           {std::pair{"active", upstreams[id].active}, std::pair{"idle", upstreams[id].idle}}) {
        out.append("revgate_upstream_connections");
        labels(id);
        out.append(",state=\"");
        out.append(state);
        out.append("\"} ");
        append_int(out, count);
        out.push_back('\n');
      }
    }
    const std::array<
        std::tuple<std::string_view, std::string_view, std::uint64_t WorkerShard::UpstreamStats::*>,
        3>
        counters = {{
            {"revgate_upstream_connections_opened_total",
             "Upstream connections opened, by revision.", &WorkerShard::UpstreamStats::opened},
            {"revgate_upstream_connect_failures_total",
             "Upstream connections that failed to connect (TCP or TLS), by revision.",
             &WorkerShard::UpstreamStats::connect_failures},
            {"revgate_upstream_retries_total",
             "Requests sent again on a new upstream connection after the reused one failed, by "
             "revision.",
             &WorkerShard::UpstreamStats::retries},
        }};
    for (const auto& [name, help, member] : counters) {
      append_family_header(out, name, "counter", help);
      for (std::uint32_t id : seen) {
        out.append(name);
        labels(id);
        out.append("} ");
        append_uint(out, upstreams[id].*member);
        out.push_back('\n');
      }
    }
  }

  append_family_header(out, "revgate_access_log_dropped_lines_total", "counter",
                       "Access log lines dropped because the log's writer fell behind.");
  fmt::format_to(Out(out), "revgate_access_log_dropped_lines_total {}\n",
                 process.access_log_dropped_lines);

  if (process.process) {
    const ProcessStats& p = *process.process;
    fmt::format_to(
        Out(out),
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total {}\n"
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes {}\n"
        "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
        "# TYPE process_virtual_memory_bytes gauge\n"
        "process_virtual_memory_bytes {}\n"
        "# HELP process_open_fds Number of open file descriptors.\n"
        "# TYPE process_open_fds gauge\n"
        "process_open_fds {}\n"
        "# HELP process_max_fds Maximum number of open file descriptors.\n"
        "# TYPE process_max_fds gauge\n"
        "process_max_fds {}\n"
        "# HELP process_start_time_seconds Start time of the process since unix epoch in "
        "seconds.\n"
        "# TYPE process_start_time_seconds gauge\n"
        "process_start_time_seconds {}\n",
        p.cpu_seconds, p.resident_memory_bytes, p.virtual_memory_bytes, p.open_fds, p.max_fds,
        p.start_time_seconds);
  }

  append_family_header(out, "revgate_config_generation", "gauge",
                       "Generation of the configuration in use.");
  fmt::format_to(Out(out), "revgate_config_generation {}\n", process.config_generation);
  append_family_header(out, "revgate_config_reloads_total", "counter",
                       "Configuration reloads, by result.");
  fmt::format_to(Out(out),
                 "revgate_config_reloads_total{{result=\"success\"}} {}\n"
                 "revgate_config_reloads_total{{result=\"failure\"}} {}\n",
                 process.reloads_ok, process.reloads_failed);
  append_family_header(out, "revgate_draining", "gauge",
                       "1 once the process is shutting down (SIGTERM): /readyz answers 503.");
  fmt::format_to(Out(out), "revgate_draining {}\n", process.draining ? 1 : 0);
  if (!process.rollouts.empty()) {
    append_family_header(out, "revgate_rollout_in_progress", "gauge",
                         "1 while a gradual rollout (rolloutDuration) moves a service's traffic.");
    for (const auto& rollout : process.rollouts) {
      out.append("revgate_rollout_in_progress{service=\"");
      append_escaped(out, rollout.service);
      out.append("\",namespace=\"");
      append_escaped(out, rollout.namespace_name);
      fmt::format_to(Out(out), "\"}} {}\n", rollout.in_progress ? 1 : 0);
    }
  }
}

}  // namespace revgate::metrics
