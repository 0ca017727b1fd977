// The text exposition of a scrape (SPEC.md section 7), piece by piece: see prometheus_text.h.
#include "metrics/prometheus_text.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <numeric>
#include <tuple>
#include <utility>

#include <fmt/format.h>

namespace revgate::metrics {

namespace {

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

constexpr std::string_view kRequests = "istio_requests_total";

struct HistogramFamily {
  std::string_view name;
  std::string_view help;
  Histogram RequestSeries::*member;
};
constexpr std::array<HistogramFamily, 3> kHistograms = {{
    {"istio_request_duration_milliseconds", "Duration of requests, in milliseconds.",
     &RequestSeries::duration_ms},
    {"istio_request_bytes", "Request body sizes received from clients, in bytes.",
     &RequestSeries::request_bytes},
    {"istio_response_bytes", "Response body sizes sent to clients, in bytes.",
     &RequestSeries::response_bytes},
}};

}  // namespace

PrometheusText::PrometheusText(const WorkerShard& merged, const std::vector<Destination>& catalog,
                               const ProcessView& process)
    : merged_(merged), catalog_(catalog), process_(process) {
  // A destination id the catalog copy does not know yet (interned after the copy was taken) is
  // left out of this scrape: its counts are kept and appear, complete, in the next one.
  const std::vector<RequestSeries>& all = merged.series();
  order_.reserve(all.size());
  for (std::uint32_t i = 0; i < all.size(); ++i) {
    if (all[i].destination < catalog.size() || all[i].destination == 0) order_.push_back(i);
  }
  std::sort(order_.begin(), order_.end(), [&](std::uint32_t a, std::uint32_t b) {
    const RequestSeries& x = all[a];
    const RequestSeries& y = all[b];
    return std::tie(x.destination, x.grpc, x.response_code, x.response_flags) <
           std::tie(y.destination, y.grpc, y.response_code, y.response_flags);
  });

  // Consecutive series share a destination and protocol, whose escaped labels are written once
  // and copied for its other codes.
  label_spans_.resize(order_.size());
  Span destination_labels;
  std::uint64_t labelled = UINT64_MAX;  // destination * 2 + grpc
  for (std::size_t k = 0; k < order_.size(); ++k) {
    const RequestSeries& s = all[order_[k]];
    const std::size_t begin = labels_.size();
    const std::uint64_t key = std::uint64_t(s.destination) * 2 + (s.grpc ? 1 : 0);
    if (key == labelled) {
      labels_.append(labels_, destination_labels.begin, destination_labels.size);
    } else {
      const Destination& d =
          s.destination < catalog.size() ? catalog[s.destination] : unknown_destination();
      labels_.append("reporter=\"source\",destination_service=\"");
      append_escaped(labels_, d.service_host);
      labels_.append("\",destination_service_name=\"");
      append_escaped(labels_, d.service_name);
      labels_.append("\",destination_service_namespace=\"");
      append_escaped(labels_, d.namespace_name);
      labels_.append("\",destination_version=\"");
      append_escaped(labels_, d.revision);
      labels_.append("\",destination_canonical_revision=\"");
      append_escaped(labels_, d.revision);
      labels_.append(s.grpc ? "\",request_protocol=\"grpc\",response_code=\""
                            : "\",request_protocol=\"http\",response_code=\"");
      destination_labels = {begin, labels_.size() - begin};
      labelled = key;
    }
    append_uint(labels_, s.response_code);
    labels_.append("\",response_flags=\"");
    append_flags(labels_, s.response_flags);
    labels_.push_back('"');
    label_spans_[k] = {begin, labels_.size() - begin};
  }

  // Per series: one counter line and 22 lines for each histogram, each holding the label
  // block plus a name, an `le` and a number.
  constexpr std::size_t kLinesPerSeries = 1 + 3 * (kEnvoyBuckets.size() + 3);
  estimated_size_ = 8192 + labels_.size() * kLinesPerSeries + order_.size() * kLinesPerSeries * 64;
  for (const auto& name : process.listener_names) estimated_size_ += 2 * (name.size() + 80);
  for (const auto& split : process.traffic) {
    estimated_size_ += split.service.size() + split.namespace_name.size() +
                       split.revision.size() + split.tag.size() + 80;
  }
}

void PrometheusText::write_request_line(std::string& out, std::size_t k) const {
  const Span block = label_spans_[k];
  out.append(kRequests);
  out.push_back('{');
  out.append(labels_, block.begin, block.size);
  out.append("} ");
  append_uint(out, merged_.series()[order_[k]].requests);
  out.push_back('\n');
}

void PrometheusText::write_histogram(std::string& out, std::size_t family, std::size_t k) const {
  const HistogramFamily& f = kHistograms[family];
  const Histogram& h = merged_.series()[order_[k]].*f.member;
  const Span block = label_spans_[k];
  const auto& le = le_values();
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < h.buckets.size(); ++b) {
    cumulative += h.buckets[b];
    out.append(f.name);
    out.append("_bucket{");
    out.append(labels_, block.begin, block.size);
    out.append(",le=\"");
    out.append(le[b]);
    out.append("\"} ");
    append_uint(out, cumulative);
    out.push_back('\n');
  }
  out.append(f.name);
  out.append("_sum{");
  out.append(labels_, block.begin, block.size);
  out.append("} ");
  append_double(out, h.sum);
  out.push_back('\n');
  out.append(f.name);
  out.append("_count{");
  out.append(labels_, block.begin, block.size);
  out.append("} ");
  append_uint(out, h.count);
  out.push_back('\n');
}

bool PrometheusText::write_next(std::string& out, std::size_t until_size) {
  while (out.size() < until_size) {
    switch (stage_) {
      case Stage::start:
        append_family_header(out, kRequests, "counter",
                             "Requests completed, by destination revision, response code and "
                             "Envoy response flags.");
        stage_ = Stage::requests;
        break;
      case Stage::requests:
        if (next_ < order_.size()) {
          write_request_line(out, next_++);
          break;
        }
        stage_ = Stage::histograms;
        family_ = 0;
        next_ = 0;
        append_family_header(out, kHistograms[0].name, "histogram", kHistograms[0].help);
        break;
      case Stage::histograms:
        if (next_ < order_.size()) {
          write_histogram(out, family_, next_++);
          break;
        }
        next_ = 0;
        if (++family_ < kHistograms.size()) {
          append_family_header(out, kHistograms[family_].name, "histogram",
                               kHistograms[family_].help);
        } else {
          stage_ = Stage::rest;
        }
        break;
      case Stage::rest:
        write_rest(out);  // a few lines per listener, service and revision: one piece
        stage_ = Stage::done;
        return false;
      case Stage::done:
        return false;
    }
  }
  return stage_ != Stage::done;
}

// Everything after the request families: listeners, TLS, the configured split, upstream
// connections and the process's own figures.
void PrometheusText::write_rest(std::string& out) const {
  const WorkerShard& merged = merged_;
  const std::vector<Destination>& catalog = catalog_;
  const ProcessView& process = process_;
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

std::string render_prometheus(const WorkerShard& merged, const std::vector<Destination>& catalog,
                              const ProcessView& process) {
  PrometheusText text(merged, catalog, process);
  std::string out;
  out.reserve(text.estimated_size());
  while (text.write_next(out, SIZE_MAX)) {
  }
  return out;
}

}  // namespace revgate::metrics
