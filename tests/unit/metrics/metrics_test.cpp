// Unit tests of metrics/: buckets, shards and their merge, the destination catalog, and the
// Prometheus text (exact lines for a small input; promtool's verdict on a realistic one).
#include "metrics/metrics.h"
#include "metrics/prometheus_text.h"

#include <chrono>
#include <cmath>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <new>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

// Global allocation counter for the zero-allocation test: counts only while armed. The
// replacements stay out of line: inlined into callers, g++ 12 at -O2 takes their malloc/free
// for a mismatched new/delete pair (-Wmismatched-new-delete).
namespace {
bool g_count_allocations = false;
std::size_t g_allocations = 0;
}  // namespace

[[gnu::noinline]] void* operator new(std::size_t size) {
  if (g_count_allocations) ++g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete[](void* p) noexcept { operator delete(p); }
void operator delete[](void* p, std::size_t) noexcept { operator delete(p); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return operator new(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return operator new(size, tag);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { operator delete(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { operator delete(p); }

namespace revgate::metrics {
namespace {

constexpr std::size_t kInf = kEnvoyBuckets.size();  // index of the +Inf bucket

std::size_t bucket_of(double value) {
  Histogram h;
  h.observe(value);
  for (std::size_t i = 0; i < h.buckets.size(); ++i) {
    if (h.buckets[i] == 1) return i;
  }
  ADD_FAILURE() << "no bucket for " << value;
  return h.buckets.size();
}

// ---------------------------------------------------------------------------------------------
// Histogram

TEST(Histogram, ValueEqualToABoundFallsInThatBucket) {
  for (std::size_t i = 0; i < kEnvoyBuckets.size(); ++i) {
    EXPECT_EQ(bucket_of(kEnvoyBuckets[i]), i) << kEnvoyBuckets[i];
  }
}

TEST(Histogram, ValuesJustAroundBounds) {
  for (std::size_t i = 0; i < kEnvoyBuckets.size(); ++i) {
    const double bound = kEnvoyBuckets[i];
    EXPECT_EQ(bucket_of(std::nextafter(bound, 0.0)), i) << "just below " << bound;
    EXPECT_EQ(bucket_of(std::nextafter(bound, HUGE_VAL)), i + 1) << "just above " << bound;
  }
  EXPECT_EQ(bucket_of(0), 0u);
  EXPECT_EQ(bucket_of(0.7), 1u);
  EXPECT_EQ(bucket_of(1.5), 2u);
  EXPECT_EQ(bucket_of(3600001), kInf);
  EXPECT_EQ(bucket_of(1e300), kInf);
  EXPECT_EQ(bucket_of(HUGE_VAL), kInf);
}

TEST(Histogram, NegativeAndNanCountAsZero) {
  Histogram h;
  h.observe(-3);
  h.observe(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(h.buckets[0], 2u);
  EXPECT_EQ(h.count, 2u);
  EXPECT_EQ(h.sum, 0.0);
}

TEST(Histogram, SumCountAndMerge) {
  Histogram a;
  a.observe(1);
  a.observe(7.5);
  Histogram b;
  b.observe(7.5);
  b.observe(100000);
  EXPECT_EQ(a.count, 2u);
  EXPECT_DOUBLE_EQ(a.sum, 8.5);
  a.merge(b);
  EXPECT_EQ(a.count, 4u);
  EXPECT_DOUBLE_EQ(a.sum, 100016);
  EXPECT_EQ(a.buckets[1], 1u);   // le 1
  EXPECT_EQ(a.buckets[3], 2u);   // le 10
  EXPECT_EQ(a.buckets[13], 0u);  // le 30000
  EXPECT_EQ(a.buckets[15], 1u);  // le 300000
}

// ---------------------------------------------------------------------------------------------
// response_flags_string

TEST(ResponseFlags, NoneIsDash) { EXPECT_EQ(response_flags_string(kNoFlags), "-"); }

TEST(ResponseFlags, EachFlagsShortCode) {
  EXPECT_EQ(response_flags_string(kNoRoute), "NR");
  EXPECT_EQ(response_flags_string(kUpstreamConnectFailure), "UF");
  EXPECT_EQ(response_flags_string(kUpstreamConnectionTermination), "UC");
  EXPECT_EQ(response_flags_string(kNoHealthyUpstream), "UH");
  EXPECT_EQ(response_flags_string(kUpstreamRequestTimeout), "UT");
  EXPECT_EQ(response_flags_string(kDownstreamConnectionTermination), "DC");
  EXPECT_EQ(response_flags_string(kDownstreamProtocolError), "DPE");
  EXPECT_EQ(response_flags_string(kStreamIdleTimeout), "SI");
  EXPECT_EQ(response_flags_string(kUpstreamProtocolError), "UPE");
}

TEST(ResponseFlags, SeveralInEnvoysOrder) {
  EXPECT_EQ(response_flags_string(kUpstreamConnectFailure | kNoHealthyUpstream), "UH,UF");
  EXPECT_EQ(response_flags_string(kNoRoute | kUpstreamConnectionTermination), "UC,NR");
  EXPECT_EQ(response_flags_string(kAllResponseFlags), "UH,UT,UF,UC,NR,DC,SI,DPE,UPE");
}

TEST(ResponseFlags, UnknownBitsIgnored) {
  EXPECT_EQ(response_flags_string(1 << 12), "-");
  EXPECT_EQ(response_flags_string((1 << 12) | kUpstreamRequestTimeout), "UT");
}

// ---------------------------------------------------------------------------------------------
// DestinationCatalog

const Destination kHello{"hello.default.example.com", "hello", "default", "hello-00001"};
const Destination kHello2{"hello.default.example.com", "hello", "default", "hello-00002"};

TEST(DestinationCatalog, IdZeroIsUnknown) {
  DestinationCatalog catalog;
  const auto snapshot = catalog.snapshot();
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0], (Destination{"unknown", "unknown", "unknown", "unknown"}));
  EXPECT_EQ(catalog.intern(snapshot[0]), 0u);
}

TEST(DestinationCatalog, InternReturnsExistingId) {
  DestinationCatalog catalog;
  const auto a = catalog.intern(kHello);
  const auto b = catalog.intern(kHello2);
  EXPECT_EQ(a, 1u);
  EXPECT_EQ(b, 2u);
  EXPECT_EQ(catalog.intern(Destination(kHello)), a);
  EXPECT_EQ(catalog.intern(kHello2), b);
  const auto snapshot = catalog.snapshot();
  ASSERT_EQ(snapshot.size(), 3u);
  EXPECT_EQ(snapshot[a], kHello);
  EXPECT_EQ(snapshot[b], kHello2);
}

TEST(DestinationCatalog, FieldBoundariesMatter) {
  DestinationCatalog catalog;
  const auto a = catalog.intern({"ab", "c", "d", "e"});
  const auto b = catalog.intern({"a", "bc", "d", "e"});
  const auto c = catalog.intern({"a", "b", "cd", "e"});
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);
}

// ---------------------------------------------------------------------------------------------
// WorkerShard

RequestSample sample(std::uint32_t destination, std::uint16_t code, std::uint16_t flags = kNoFlags,
                     double ms = 1, std::uint64_t in = 0, std::uint64_t out = 0) {
  return RequestSample{destination, code, flags, ms, in, out};
}

const RequestSeries* find(const WorkerShard& shard, std::uint32_t destination, std::uint16_t code,
                          std::uint16_t flags = kNoFlags) {
  for (const auto& s : shard.series()) {
    if (s.destination == destination && s.response_code == code && s.response_flags == flags) {
      return &s;
    }
  }
  return nullptr;
}

TEST(WorkerShard, RecordCountsPerLabelSet) {
  WorkerShard shard;
  shard.record(sample(1, 200, kNoFlags, 3, 10, 1000));
  shard.record(sample(1, 200, kNoFlags, 30, 20, 3000));
  shard.record(sample(1, 502, kUpstreamConnectFailure, 2));
  shard.record(sample(7, 200));  // grows the destination index on demand
  shard.record(sample(0, 404, kNoRoute));
  ASSERT_EQ(shard.series().size(), 4u);

  const RequestSeries* ok = find(shard, 1, 200);
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->requests, 2u);
  EXPECT_EQ(ok->duration_ms.count, 2u);
  EXPECT_DOUBLE_EQ(ok->duration_ms.sum, 33);
  EXPECT_EQ(ok->duration_ms.buckets[2], 1u);  // 3 ms: le 5
  EXPECT_EQ(ok->duration_ms.buckets[5], 1u);  // 30 ms: le 50
  EXPECT_DOUBLE_EQ(ok->request_bytes.sum, 30);
  EXPECT_EQ(ok->request_bytes.count, 2u);
  EXPECT_DOUBLE_EQ(ok->response_bytes.sum, 4000);
  EXPECT_EQ(ok->response_bytes.buckets[9], 1u);   // 1000: le 1000
  EXPECT_EQ(ok->response_bytes.buckets[11], 1u);  // 3000: le 5000

  const RequestSeries* failed = find(shard, 1, 502, kUpstreamConnectFailure);
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->requests, 1u);
  ASSERT_NE(find(shard, 7, 200), nullptr);
  ASSERT_NE(find(shard, 0, 404, kNoRoute), nullptr);
}

TEST(WorkerShard, FlagsAreAPartOfTheLabelSet) {
  WorkerShard shard;
  shard.record(sample(1, 502, kUpstreamConnectFailure));
  shard.record(sample(1, 502, kUpstreamConnectionTermination));
  shard.record(sample(1, 502, kUpstreamConnectFailure | (1 << 13)));  // unknown bit dropped
  ASSERT_EQ(shard.series().size(), 2u);
  EXPECT_EQ(find(shard, 1, 502, kUpstreamConnectFailure)->requests, 2u);
  EXPECT_EQ(find(shard, 1, 502, kUpstreamConnectionTermination)->requests, 1u);
}

TEST(WorkerShard, Connections) {
  WorkerShard shard;
  shard.connection_opened(1);
  shard.connection_opened(1);
  shard.connection_opened(0);
  shard.connection_closed(1);
  ASSERT_EQ(shard.listeners().size(), 2u);
  EXPECT_EQ(shard.listeners()[0].accepted, 1u);
  EXPECT_EQ(shard.listeners()[0].open, 1);
  EXPECT_EQ(shard.listeners()[1].accepted, 2u);
  EXPECT_EQ(shard.listeners()[1].open, 1);
}

TEST(WorkerShard, MergeAddsUp) {
  WorkerShard a;
  a.record(sample(1, 200, kNoFlags, 4, 100, 200));
  a.record(sample(1, 200, kNoFlags, 40, 100, 200));
  a.record(sample(2, 404));  // only in a
  a.connection_opened(0);
  WorkerShard b;
  b.record(sample(1, 200, kNoFlags, 400, 1, 2));
  b.record(sample(3, 502, kUpstreamConnectFailure, 2));  // only in b
  b.record(sample(0, 404, kNoRoute));                    // only in b
  b.connection_opened(0);
  b.connection_opened(2);  // a listener a has not seen
  b.connection_closed(0);

  WorkerShard total;
  total.merge(a);
  total.merge(b);
  ASSERT_EQ(total.series().size(), 4u);
  const RequestSeries* ok = find(total, 1, 200);
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->requests, 3u);
  EXPECT_EQ(ok->duration_ms.count, 3u);
  EXPECT_DOUBLE_EQ(ok->duration_ms.sum, 444);
  EXPECT_EQ(ok->duration_ms.buckets[2], 1u);  // le 5
  EXPECT_EQ(ok->duration_ms.buckets[5], 1u);  // le 50
  EXPECT_EQ(ok->duration_ms.buckets[8], 1u);  // le 500
  EXPECT_DOUBLE_EQ(ok->request_bytes.sum, 201);
  EXPECT_DOUBLE_EQ(ok->response_bytes.sum, 402);
  EXPECT_EQ(find(total, 2, 404)->requests, 1u);
  EXPECT_EQ(find(total, 3, 502, kUpstreamConnectFailure)->requests, 1u);
  EXPECT_EQ(find(total, 0, 404, kNoRoute)->requests, 1u);

  ASSERT_EQ(total.listeners().size(), 3u);
  EXPECT_EQ(total.listeners()[0].accepted, 2u);
  EXPECT_EQ(total.listeners()[0].open, 1);
  EXPECT_EQ(total.listeners()[1].accepted, 0u);
  EXPECT_EQ(total.listeners()[2].accepted, 1u);
  EXPECT_EQ(total.listeners()[2].open, 1);

  // Merging into a shard that already holds figures adds to them.
  a.merge(b);
  EXPECT_EQ(find(a, 1, 200)->requests, 3u);
  EXPECT_EQ(a.series().size(), 4u);
  // Into itself: everything doubles.
  a.merge(a);
  EXPECT_EQ(find(a, 1, 200)->requests, 6u);
  EXPECT_EQ(find(a, 1, 200)->duration_ms.count, 6u);
  EXPECT_EQ(a.series().size(), 4u);
  EXPECT_EQ(a.listeners()[0].accepted, 4u);
}

TEST(WorkerShard, RecordDoesNotAllocateInSteadyState) {
  WorkerShard shard;
  const std::uint16_t codes[] = {200, 404, 502, 503};
  const std::uint16_t flags[] = {kNoFlags, kNoRoute, kUpstreamConnectFailure, kNoHealthyUpstream};
  auto record_all = [&](int round) {
    for (std::uint32_t d = 0; d < 50; ++d) {
      for (int c = 0; c < 4; ++c) {
        shard.record(sample(d * 3, codes[c], flags[c], round * 0.37, round * 11u, round * 977u));
      }
    }
    shard.connection_opened(round % 3);
    shard.connection_closed(round % 3);
  };
  record_all(0);  // every label set and listener seen once
  record_all(2);

  g_allocations = 0;
  g_count_allocations = true;
  for (int round = 1; round <= 200; ++round) record_all(round);
  g_count_allocations = false;
  EXPECT_EQ(g_allocations, 0u);
  EXPECT_EQ(find(shard, 3, 404, kNoRoute)->requests, 202u);

  // The counter does count.
  g_allocations = 0;
  g_count_allocations = true;
  // A direct call: unlike `delete new int`, the optimizer may not elide it.
  ::operator delete(::operator new(sizeof(int)));
  g_count_allocations = false;
  EXPECT_EQ(g_allocations, 1u);
}

// ---------------------------------------------------------------------------------------------
// render_prometheus

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

const std::string kHelloLabels =
    R"(reporter="source",destination_service="hello.default.example.com",)"
    R"(destination_service_name="hello",destination_service_namespace="default",)"
    R"(destination_version="hello-00001",destination_canonical_revision="hello-00001",)"
    R"(request_protocol="http",response_code="200",response_flags="-")";

TEST(RenderPrometheus, GrpcRequestsAreTheirOwnSeriesWithRequestProtocolGrpc) {
  DestinationCatalog catalog;
  ASSERT_EQ(catalog.intern(kHello), 1u);
  WorkerShard shard;
  shard.record(sample(1, 200, kNoFlags, 1, 0, 10));
  auto grpc = sample(1, 200, kNoFlags, 1, 0, 10);
  grpc.grpc = true;
  shard.record(grpc);
  shard.record(grpc);
  WorkerShard merged;
  merged.merge(shard);  // a scrape merges shards: the protocol must survive it
  const std::string text = render_prometheus(merged, catalog.snapshot(), ProcessView{});
  std::string grpc_labels = kHelloLabels;
  grpc_labels.replace(grpc_labels.find("\"http\""), 6, "\"grpc\"");
  EXPECT_TRUE(has_line(text, "istio_requests_total{" + kHelloLabels + "} 1")) << text;
  EXPECT_TRUE(has_line(text, "istio_requests_total{" + grpc_labels + "} 2")) << text;
}

TEST(RenderPrometheus, KnownLinesForASmallInput) {
  DestinationCatalog catalog;
  ASSERT_EQ(catalog.intern(kHello), 1u);
  WorkerShard shard;
  shard.record(sample(1, 200, kNoFlags, 7, 0, 1234));
  shard.record(sample(1, 200, kNoFlags, 0.5, 0, 1000));
  shard.record(sample(0, 404, kNoRoute, 0.25, 0, 9));
  ProcessView process;
  process.listener_names = {"http", "https"};
  process.traffic = {{"hello", "default", "hello-00001", "", 90},
                     {"hello", "default", "hello-00002", "canary", 10}};
  process.config_generation = 3;
  process.reloads_ok = 2;
  process.reloads_failed = 1;
  shard.connection_opened(1);
  shard.connection_opened(1);
  shard.connection_closed(1);

  const std::string text = render_prometheus(shard, catalog.snapshot(), process);
  const std::string& l = kHelloLabels;

  EXPECT_TRUE(has_line(text, "# TYPE istio_requests_total counter"));
  EXPECT_TRUE(has_line(text, "istio_requests_total{" + l + "} 2"));
  EXPECT_TRUE(has_line(
      text, R"(istio_requests_total{reporter="source",destination_service="unknown",)"
            R"(destination_service_name="unknown",destination_service_namespace="unknown",)"
            R"(destination_version="unknown",destination_canonical_revision="unknown",)"
            R"(request_protocol="http",response_code="404",response_flags="NR"} 1)"));

  const std::string d = "istio_request_duration_milliseconds";
  EXPECT_TRUE(has_line(text, "# TYPE " + d + " histogram"));
  EXPECT_TRUE(has_line(text, d + "_bucket{" + l + R"(,le="0.5"} 1)"));
  EXPECT_TRUE(has_line(text, d + "_bucket{" + l + R"(,le="5"} 1)"));
  EXPECT_TRUE(has_line(text, d + "_bucket{" + l + R"(,le="10"} 2)"));
  EXPECT_TRUE(has_line(text, d + "_bucket{" + l + R"(,le="3600000"} 2)"));
  EXPECT_TRUE(has_line(text, d + "_bucket{" + l + R"(,le="+Inf"} 2)"));
  EXPECT_TRUE(has_line(text, d + "_sum{" + l + "} 7.5"));
  EXPECT_TRUE(has_line(text, d + "_count{" + l + "} 2"));
  EXPECT_TRUE(has_line(text, "istio_request_bytes_bucket{" + l + R"(,le="0.5"} 2)"));
  EXPECT_TRUE(has_line(text, "istio_request_bytes_sum{" + l + "} 0"));
  EXPECT_TRUE(has_line(text, "istio_response_bytes_bucket{" + l + R"(,le="500"} 0)"));
  EXPECT_TRUE(has_line(text, "istio_response_bytes_bucket{" + l + R"(,le="1000"} 1)"));
  EXPECT_TRUE(has_line(text, "istio_response_bytes_bucket{" + l + R"(,le="2500"} 2)"));
  EXPECT_TRUE(has_line(text, "istio_response_bytes_sum{" + l + "} 2234"));
  EXPECT_TRUE(has_line(text, "istio_response_bytes_count{" + l + "} 2"));

  EXPECT_TRUE(has_line(text, "# TYPE revgate_downstream_connections_accepted_total counter"));
  EXPECT_TRUE(
      has_line(text, R"(revgate_downstream_connections_accepted_total{listener="http"} 0)"));
  EXPECT_TRUE(
      has_line(text, R"(revgate_downstream_connections_accepted_total{listener="https"} 2)"));
  EXPECT_TRUE(has_line(text, "# TYPE revgate_downstream_connections_open gauge"));
  EXPECT_TRUE(has_line(text, R"(revgate_downstream_connections_open{listener="http"} 0)"));
  EXPECT_TRUE(has_line(text, R"(revgate_downstream_connections_open{listener="https"} 1)"));
  EXPECT_TRUE(has_line(text, "# TYPE revgate_traffic_percent gauge"));
  EXPECT_TRUE(has_line(
      text,
      R"(revgate_traffic_percent{service="hello",namespace="default",revision="hello-00001",tag=""} 90)"));
  EXPECT_TRUE(has_line(
      text,
      R"(revgate_traffic_percent{service="hello",namespace="default",revision="hello-00002",tag="canary"} 10)"));
  EXPECT_TRUE(has_line(text, "# TYPE revgate_config_generation gauge"));
  EXPECT_TRUE(has_line(text, "revgate_config_generation 3"));
  EXPECT_TRUE(has_line(text, "# TYPE revgate_config_reloads_total counter"));
  EXPECT_TRUE(has_line(text, R"(revgate_config_reloads_total{result="success"} 2)"));
  EXPECT_TRUE(has_line(text, R"(revgate_config_reloads_total{result="failure"} 1)"));
  EXPECT_EQ(text.back(), '\n');
}

TEST(RenderPrometheus, BucketsAreCumulativeWithPlainDecimalBounds) {
  DestinationCatalog catalog;
  catalog.intern(kHello);
  WorkerShard shard;
  for (double v : {0.1, 0.5, 3.0, 10.0, 999.0, 3600000.0, 5e6}) shard.record(sample(1, 200, 0, v));
  const std::string text = render_prometheus(shard, catalog.snapshot(), {});

  const std::string prefix =
      "istio_request_duration_milliseconds_bucket{" + kHelloLabels + ",le=\"";
  const char* expected[][2] = {{"0.5", "2"},    {"1", "2"},       {"5", "3"},       {"10", "4"},
                               {"25", "4"},     {"50", "4"},      {"100", "4"},     {"250", "4"},
                               {"500", "4"},    {"1000", "5"},    {"2500", "5"},    {"5000", "5"},
                               {"10000", "5"},  {"30000", "5"},   {"60000", "5"},   {"300000", "5"},
                               {"600000", "5"}, {"1800000", "5"}, {"3600000", "6"}, {"+Inf", "7"}};
  std::vector<std::string> got;
  for (const auto& line : lines_of(text)) {
    if (line.starts_with(prefix)) got.push_back(line.substr(prefix.size()));
  }
  ASSERT_EQ(got.size(), std::size(expected));
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], std::string(expected[i][0]) + "\"} " + expected[i][1]);
  }
  EXPECT_TRUE(has_line(text, "istio_request_duration_milliseconds_count{" + kHelloLabels + "} 7"));
}

TEST(RenderPrometheus, TlsHandshakesAreSummedAcrossShardsForTlsListenersOnly) {
  WorkerShard a, b;
  a.tls_handshake(1, WorkerShard::kTls13);
  b.tls_handshake(1, WorkerShard::kTls13);
  b.tls_handshake(1, WorkerShard::kTlsFailure);
  a.connection_opened(0);  // a plain listener: no handshake lines for it
  WorkerShard merged;
  merged.merge(a);
  merged.merge(b);
  ProcessView process;
  process.listener_names = {"http", "https"};
  const std::string text = render_prometheus(merged, {}, process);
  EXPECT_TRUE(has_line(
      text, R"(revgate_tls_handshakes_total{listener="https",result="success",protocol="TLSv1.3"} 2)"));
  EXPECT_TRUE(has_line(
      text, R"(revgate_tls_handshakes_total{listener="https",result="failure",protocol="-"} 1)"));
  EXPECT_TRUE(has_line(
      text, R"(revgate_tls_handshakes_total{listener="https",result="timeout",protocol="-"} 0)"));
  EXPECT_EQ(text.find(R"(revgate_tls_handshakes_total{listener="http",)"), std::string::npos);
}

TEST(RenderPrometheus, EscapesLabelValues) {
  DestinationCatalog catalog;
  const auto id = catalog.intern({"a\"b\\c\nd.example", "svc", "ns", "r\"1"});
  WorkerShard shard;
  shard.record(sample(id, 200));
  ProcessView process;
  process.listener_names = {"we\"ird\\name\n"};
  process.traffic = {{"s\\", "n\n", "r\"", "t", 100}};
  const std::string text = render_prometheus(shard, catalog.snapshot(), process);

  EXPECT_NE(text.find(R"(destination_service="a\"b\\c\nd.example",)"), std::string::npos);
  EXPECT_NE(text.find(R"(destination_version="r\"1",destination_canonical_revision="r\"1",)"),
            std::string::npos);
  EXPECT_TRUE(
      has_line(text, R"(revgate_downstream_connections_open{listener="we\"ird\\name\n"} 0)"));
  EXPECT_TRUE(has_line(
      text,
      R"(revgate_traffic_percent{service="s\\",namespace="n\n",revision="r\"",tag="t"} 100)"));
  // No raw line feed inside any sample: every line starts with a metric name or '#'.
  for (const auto& line : lines_of(text)) {
    EXPECT_TRUE(line.starts_with("istio_") || line.starts_with("revgate_") ||
                line.starts_with("# "))
        << line;
  }
}

TEST(RenderPrometheus, EveryFamilyHasHelpTypeAndContiguousSamples) {
  DestinationCatalog catalog;
  const auto a = catalog.intern(kHello);
  const auto b = catalog.intern(kHello2);
  WorkerShard shard;
  shard.record(sample(b, 200));
  shard.record(sample(a, 503, kNoHealthyUpstream));
  shard.record(sample(a, 200));
  ProcessView process;
  process.listener_names = {"http"};
  const std::string text = render_prometheus(shard, catalog.snapshot(), process);

  std::set<std::string> closed;  // families already left
  std::string current;
  bool help = false;
  bool type = false;
  for (const auto& line : lines_of(text)) {
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      if (name != current) {
        if (!current.empty()) closed.insert(current);
        EXPECT_FALSE(closed.contains(name)) << name << " appears twice";
        current = name;
        help = type = false;
      }
      (line[2] == 'H' ? help : type) = true;
      continue;
    }
    ASSERT_TRUE(help && type) << line;
    const std::string metric = line.substr(0, line.find_first_of("{ "));
    EXPECT_TRUE(metric == current || metric == current + "_bucket" || metric == current + "_sum" ||
                metric == current + "_count")
        << line << " under " << current;
  }
  for (const char* family :
       {"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes",
        "istio_response_bytes", "revgate_downstream_connections_accepted_total",
        "revgate_downstream_connections_open", "revgate_traffic_percent",
        "revgate_config_generation", "revgate_config_reloads_total"}) {
    EXPECT_TRUE(closed.contains(family) || current == family) << family;
  }

  // Series come out in a stable order: by destination, then code.
  const auto lines = lines_of(text);
  std::vector<std::string> counters;
  for (const auto& line : lines) {
    if (line.starts_with("istio_requests_total{")) counters.push_back(line);
  }
  ASSERT_EQ(counters.size(), 3u);
  EXPECT_NE(counters[0].find("hello-00001\",request_protocol=\"http\",response_code=\"200\""),
            std::string::npos);
  EXPECT_NE(counters[1].find("response_code=\"503\",response_flags=\"UH\""), std::string::npos);
  EXPECT_NE(counters[2].find("hello-00002"), std::string::npos);
}

TEST(RenderPrometheus, UnknownDestinationWithoutCatalogAndIdsTheCatalogLacks) {
  WorkerShard shard;
  shard.record(sample(0, 400, kDownstreamProtocolError));
  shard.record(sample(5, 200));  // interned after this catalog copy was taken
  const std::string text = render_prometheus(shard, {}, {});
  EXPECT_NE(text.find(R"(destination_service="unknown")"), std::string::npos);
  EXPECT_NE(text.find(R"(response_code="400",response_flags="DPE")"), std::string::npos);
  EXPECT_EQ(text.find(R"(response_code="200")"), std::string::npos);
}

TEST(RenderPrometheus, RepeatedSplitBecomesOneSeries) {
  ProcessView process;
  process.traffic = {
      {"a", "ns", "a-1", "", 30}, {"a", "ns", "a-2", "", 40}, {"a", "ns", "a-1", "", 30}};
  const std::string text = render_prometheus(WorkerShard{}, {}, process);
  EXPECT_TRUE(has_line(
      text, R"(revgate_traffic_percent{service="a",namespace="ns",revision="a-1",tag=""} 60)"));
  EXPECT_TRUE(has_line(
      text, R"(revgate_traffic_percent{service="a",namespace="ns",revision="a-2",tag=""} 40)"));
  EXPECT_EQ(text.find(R"(revision="a-1",tag=""} 30)"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// promtool

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

CommandResult promtool_check(const std::string& text, const std::string& name) {
  const std::string dir = ::testing::TempDir();
  const std::string input = dir + "metrics_test_" + name + ".prom";
  const std::string output = dir + "metrics_test_" + name + ".out";
  std::ofstream(input, std::ios::binary) << text;
  const std::string command = "promtool check metrics < '" + input + "' > '" + output + "' 2>&1";
  const int raw = std::system(command.c_str());
  CommandResult result;
  result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream in(output, std::ios::binary);
  result.output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::remove(input.c_str());
  std::remove(output.c_str());
  return result;
}

// Two workers' traffic over ten destinations, listeners, upstreams and the process view.
struct RealisticScrape {
  std::vector<Destination> catalog;
  WorkerShard workers[2];
  WorkerShard merged;
  ProcessView process;
};

RealisticScrape realistic_scrape() {
  RealisticScrape scrape;
  DestinationCatalog catalog;
  std::vector<std::uint32_t> ids;
  for (const char* service : {"hello", "checkout", "search"}) {
    for (int r = 1; r <= 3; ++r) {
      const std::string name = service;
      ids.push_back(catalog.intern(
          {name + ".default.example.com", name, "default", name + "-0000" + std::to_string(r)}));
    }
  }
  ids.push_back(catalog.intern({"odd\"host\\.example.com", "odd", "team-a", "odd-1\n"}));

  auto& workers = scrape.workers;
  std::uint64_t n = 0;
  for (std::uint32_t id : ids) {
    for (int i = 0; i < 20; ++i, ++n) {
      WorkerShard& w = workers[n % 2];
      w.record(sample(id, 200, kNoFlags, 0.3 + i * 37.1, i * 100, i * 5000));
      if (i % 5 == 0) w.record(sample(id, 404, kNoFlags, 1.2, 0, 9));
      if (i % 7 == 0) w.record(sample(id, 502, kUpstreamConnectFailure, 3001, 10, 0));
      if (i % 9 == 0) {
        w.record(sample(id, 502, kUpstreamConnectionTermination | kUpstreamProtocolError, 90));
      }
    }
  }
  workers[0].record(sample(0, 404, kNoRoute, 0.1));
  workers[1].record(sample(0, 408, kStreamIdleTimeout, 10000));
  workers[1].record(sample(0, 400, kDownstreamProtocolError, 0.2));
  workers[0].connection_opened(0);
  workers[0].connection_opened(1);
  workers[1].connection_opened(1);
  workers[1].connection_closed(1);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto& up = workers[i % 2].upstream(ids[i]);
    up.opened = 3 + i;
    up.active = 1;
    up.idle = static_cast<std::int64_t>(i % 3);
    up.connect_failures = i % 2;
    up.retries = i % 4;
  }
  workers[0].request_started();

  auto& merged = scrape.merged;
  for (const auto& w : workers) merged.merge(w);
  auto& process = scrape.process;
  process.listener_names = {"http", "https", "admin"};
  process.traffic = {{"hello", "default", "hello-00003", "", 90},
                     {"hello", "default", "hello-00002", "canary", 10},
                     {"hello", "default", "hello-00001", "old", 0},
                     {"search", "default", "search-00003", "", 100}};
  process.config_generation = 4;
  process.reloads_ok = 3;
  process.reloads_failed = 1;
  process.certificate_reloads = {{"https", 2, 1}};
  process.process = read_process_stats();
  process.access_log_dropped_lines = 7;
  scrape.catalog = catalog.snapshot();
  return scrape;
}

std::string realistic_rendering() {
  const auto scrape = realistic_scrape();
  return render_prometheus(scrape.merged, scrape.catalog, scrape.process);
}

// The admin listener streams the text in pieces: the pieces, whatever their size, are the
// whole text, each ends at a line end, and each but the last is at least the size asked for.
TEST(PrometheusText, PiecesOfAnySizeMakeTheWholeTextEndingAtLineEnds) {
  const auto scrape = realistic_scrape();
  const std::string whole = render_prometheus(scrape.merged, scrape.catalog, scrape.process);
  ASSERT_GT(whole.size(), 100'000u);
  for (const std::size_t size : {std::size_t{1}, std::size_t{100}, std::size_t{4096},
                                 std::size_t{256 * 1024}}) {
    PrometheusText text(scrape.merged, scrape.catalog, scrape.process);
    std::string joined, piece;
    std::size_t pieces = 0;
    for (bool more = true; more;) {
      piece.clear();
      more = text.write_next(piece, size);
      ++pieces;
      ASSERT_FALSE(piece.empty()) << "piece " << pieces << " of size " << size;
      EXPECT_EQ(piece.back(), '\n') << "piece " << pieces << " of size " << size;
      if (more) EXPECT_GE(piece.size(), size);
      joined += piece;
    }
    EXPECT_EQ(joined, whole) << "pieces of " << size;
    if (size == 1) EXPECT_GT(pieces, 4 * scrape.merged.series().size()) << "series by series";
    EXPECT_FALSE(text.write_next(piece, size)) << "done stays done";
  }
}

// What a worker hands to a scrape (no lookup index) merges to the same figures as the shard.
TEST(PrometheusText, TheWorkersCopiesRenderAsTheirShards) {
  const auto scrape = realistic_scrape();
  WorkerShard from_copies;
  for (const auto& w : scrape.workers) from_copies.merge(w.counts());
  EXPECT_EQ(render_prometheus(from_copies, scrape.catalog, scrape.process),
            render_prometheus(scrape.merged, scrape.catalog, scrape.process));
}

TEST(RenderPrometheus, UpstreamConnectionsInFlightAndProcessFigures) {
  DestinationCatalog catalog;
  const auto hello = catalog.intern({"hello.default.example.com", "hello", "default", "hello-1"});
  catalog.intern({"idle.default.example.com", "idle", "default", "idle-1"});  // never used
  WorkerShard a, b;
  a.upstream(hello).opened = 2;
  a.upstream(hello).idle = 1;
  b.upstream(hello).opened = 1;
  b.upstream(hello).active = 1;
  b.upstream(hello).connect_failures = 4;
  a.upstream(hello).retries = 1;
  a.request_started();
  b.request_started();
  b.request_ended();
  WorkerShard merged;
  merged.merge(a);
  merged.merge(b);
  ProcessView process;
  process.process = read_process_stats();
  const auto text = render_prometheus(merged, catalog.snapshot(), process);
  const std::string labels = "{service=\"hello\",namespace=\"default\",revision=\"hello-1\"";
  for (const std::string& line :
       {std::string("revgate_requests_in_flight 1"),
        "revgate_upstream_connections" + labels + ",state=\"active\"} 1",
        "revgate_upstream_connections" + labels + ",state=\"idle\"} 1",
        "revgate_upstream_connections_opened_total" + labels + "} 3",
        "revgate_upstream_connect_failures_total" + labels + "} 4",
        "revgate_upstream_retries_total" + labels + "} 1"}) {
    EXPECT_NE(text.find("\n" + line + "\n"), std::string::npos) << line << "\n" << text;
  }
  EXPECT_EQ(text.find("revision=\"idle-1\""), std::string::npos) << "no series without activity";

  const ProcessStats stats = *process.process;
  EXPECT_GT(stats.resident_memory_bytes, 1u << 20);
  EXPECT_GE(stats.virtual_memory_bytes, stats.resident_memory_bytes);
  EXPECT_GE(stats.open_fds, 3u);  // stdin, stdout, stderr at least
  EXPECT_GT(stats.max_fds, stats.open_fds);
  const double now = std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  EXPECT_LT(std::abs(now - stats.start_time_seconds), 3600) << "started within the hour";
  EXPECT_GE(stats.cpu_seconds, 0.0);
  EXPECT_NE(text.find("\nprocess_open_fds "), std::string::npos);
  EXPECT_NE(text.find("\nprocess_start_time_seconds "), std::string::npos);
}

TEST(ResponseFlags, FormattedWithoutAllocatingLikeTheString) {
  char out[40];
  EXPECT_EQ(format_response_flags(kNoFlags, out), "");
  EXPECT_EQ(format_response_flags(kAllResponseFlags, out), response_flags_string(kAllResponseFlags));
  EXPECT_EQ(format_response_flags(kNoRoute, out), "NR");
}

bool have_promtool() { return std::system("command -v promtool > /dev/null 2>&1") == 0; }

TEST(RenderPrometheus, PromtoolAcceptsARealisticRendering) {
  if (!have_promtool()) GTEST_SKIP() << "promtool not installed";
  const std::string text = realistic_rendering();
  ASSERT_NE(text.find("response_flags=\"UC,UPE\""), std::string::npos);

  // Whole text: promtool's only remark may be its base-unit advice on Istio's milliseconds
  // histogram, which it reports with exit status 3 (lint problems); anything else fails.
  const std::string allowed =
      "istio_request_duration_milliseconds use base unit \"seconds\" instead of "
      "\"milliseconds\"\n";
  const CommandResult whole = promtool_check(text, "whole");
  EXPECT_TRUE((whole.status == 0 && whole.output.empty()) ||
              (whole.status == 3 && whole.output == allowed))
      << "exit status " << whole.status << ", output:\n"
      << whole.output;

  // Without that family: exit status 0 and not a word.
  std::string rest;
  for (const auto& line : lines_of(text)) {
    if (line.find("istio_request_duration_milliseconds") == std::string::npos) rest += line + "\n";
  }
  const CommandResult strict = promtool_check(rest, "strict");
  EXPECT_EQ(strict.status, 0) << strict.output;
  EXPECT_EQ(strict.output, "");

  // And the check does reject what it should: a counter without _total.
  const CommandResult bad =
      promtool_check("# HELP bad_requests x\n# TYPE bad_requests counter\nbad_requests 1\n", "bad");
  EXPECT_NE(bad.status, 0);
}

}  // namespace
}  // namespace revgate::metrics
