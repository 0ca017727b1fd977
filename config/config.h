// The revgate configuration as plain structs (SPEC.md section 3), and the loader that turns a
// YAML file into them, validating the whole file in one pass. Immutable once loaded; any thread
// may read a loaded Config. No Asio, no Beast, no OpenSSL here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace revgate::config {

// Where a value stood in the YAML source; 1-based, {0, 0} when the value was defaulted.
struct SourcePos {
  int line = 0;
  int column = 0;
  friend bool operator==(const SourcePos&, const SourcePos&) = default;
};

// "host:port" as written, and the numeric address it resolved to when the config was loaded.
// Written "https://host:port", the proxy connects to it with TLS; "http://host:port" and plain
// "host:port" are cleartext.
struct Endpoint {
  std::string host;  // as written: "127.0.0.1", "::1" (without brackets) or a DNS name
  std::uint16_t port = 0;
  std::string address;  // numeric IPv4/IPv6 address (a name is resolved at load)
  SourcePos pos;
  bool tls = false;  // "https://"
};

// A revision's `tls:` block: how the proxy connects to its https:// endpoints (Istio's
// DestinationRule tls.mode SIMPLE, or MUTUAL with cert_file/key_file). The server certificate is
// always verified. Paths are resolved like every config path (see CertificateFiles).
struct UpstreamTls {
  std::string ca_file;      // empty = the system trust store
  std::string server_name;  // SNI and the name verified; empty = the endpoint's host
  std::string cert_file;    // client certificate (PEM, chain allowed); with key_file, or neither
  std::string key_file;
  SourcePos pos;
};

// How requests reach a revision's endpoints (`protocol:`, Knative's port names).
enum class UpstreamProtocol {
  http1,  // HTTP/1.1, pooled keep-alive connections (the default)
  h2c,    // HTTP/2 with prior knowledge over cleartext endpoints
  h2,     // HTTP/2 over TLS (https:// endpoints), ALPN h2
};
std::string_view to_string(UpstreamProtocol protocol);  // "http1", "h2c", "h2"

// `loadBalancer:` endpoint choice within a revision (Istio's loadBalancer.simple names).
enum class LoadBalancer {
  round_robin,    // ROUND_ROBIN, the default
  least_request,  // LEAST_REQUEST: power of two choices on this worker's active requests
  random,         // RANDOM
};
std::string_view to_string(LoadBalancer balancer);  // "ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"

// Istio DestinationRule's loadBalancer.consistentHash: a request's key hashed onto a ring of the
// revision's endpoints, so that one key keeps its endpoint and an endpoint added or removed
// moves about 1/N of the keys.
struct ConsistentHash {
  enum class Key { header, source_ip, query_param };
  Key key = Key::header;
  std::string name;  // httpHeaderName (lowercase) or httpQueryParameterName
};

// `trafficPolicy.loadBalancer`: `simple`, or `consistentHash` in its place.
struct LoadBalancerSettings {
  LoadBalancer simple = LoadBalancer::round_robin;
  std::optional<ConsistentHash> consistent_hash;
  SourcePos pos;
};

struct Revision {
  std::string name;
  std::vector<Endpoint> endpoints;
  SourcePos pos;
  std::optional<UpstreamTls> tls;  // only when some endpoint is https://
  UpstreamProtocol protocol = UpstreamProtocol::http1;
  // `trafficPolicy.loadBalancer` on the revision: replaces the service's for its endpoints.
  std::optional<LoadBalancerSettings> load_balancer;
};

// Knative's TrafficTarget: exactly one of revision_name / latest_revision is set in a loaded
// config. In an *effective* config (traffic/rollout.h expands a rollout in progress) a target may
// have both: a share of a latestRevision target pinned to one revision while it rolls out.
struct TrafficTarget {
  std::string revision_name;  // empty when latest_revision
  bool latest_revision = false;
  int percent = 0;
  std::string tag;  // empty when untagged
  SourcePos pos;
  friend bool operator==(const TrafficTarget& a, const TrafficTarget& b) {
    return a.revision_name == b.revision_name && a.latest_revision == b.latest_revision &&
           a.percent == b.percent && a.tag == b.tag;  // positions are not part of the value
  }
};

// How a service's requests are split across its revisions (`splitPolicy`).
enum class SplitPolicy {
  smooth,  // nginx's smooth weighted round robin (exact interleaved shares), the default
  random,  // Envoy's rule: a random point against the cumulative percents
  hash,    // sticky: a hash of the request's `hashOn` key against the cumulative percents
};
std::string_view to_string(SplitPolicy policy);  // "smooth", "random", "hash"

// `hashOn:` of a `splitPolicy: hash` service: what the sticky key is (Istio's DestinationRule
// consistentHash httpHeaderName / httpCookie / useSourceIp). Exactly one kind.
struct HashOn {
  enum class Kind { header, cookie, source_ip };
  Kind kind = Kind::header;
  std::string header;       // header: the field name, lowercase
  std::string cookie_name;  // cookie: the cookie's name (an RFC 6265 token)
  // cookie: Max-Age of the cookie the proxy sets when the request has none (whole seconds);
  // 0 (ttl left out) = a session cookie, without Max-Age.
  std::chrono::seconds cookie_ttl{0};
  SourcePos pos;
};

// ---- route rules (`routes:` on a service; Istio's HTTPRoute names and meanings) ----

// Istio StringMatch: one of exact, prefix, regex (RE2, the whole value); `{}` is present.
struct StringMatch {
  enum class Kind { exact, prefix, regex, present };
  Kind kind = Kind::present;
  std::string value;
  SourcePos pos;
};

// A header (name lowercase) or query parameter condition.
struct NamedMatch {
  std::string name;
  StringMatch match;
};

// One HTTPMatchRequest: every field given must hold.
struct HttpMatch {
  std::string name;
  std::optional<StringMatch> uri;  // the path without the query
  std::optional<StringMatch> method;
  std::optional<StringMatch> authority;
  std::vector<NamedMatch> headers;
  std::vector<NamedMatch> query_params;
  std::vector<NamedMatch> without_headers;
  bool ignore_uri_case = false;
  SourcePos pos;
};

// Header edits (Istio's Headers.HeaderOperations): names lowercase.
struct HeaderOperations {
  std::vector<std::pair<std::string, std::string>> set;  // replaces every field of the name
  std::vector<std::pair<std::string, std::string>> add;  // appends a field
  std::vector<std::string> remove;
  bool empty() const { return set.empty() && add.empty() && remove.empty(); }
};

struct RouteRewrite {
  std::optional<std::string> uri;        // after a prefix match, replaces only the prefix
  std::optional<std::string> authority;  // the Host / :authority sent to the revision
};

struct RouteRedirect {
  std::optional<std::string> uri;  // replaces the path (the query is kept)
  std::optional<std::string> authority;
  std::optional<std::string> scheme;  // http or https
  std::optional<std::uint16_t> port;
  int code = 301;  // 301, 302, 303, 307 or 308
};

struct DirectResponse {
  int status = 200;
  std::string body;
};

struct RouteRule {
  std::string name;  // optional; errors and `revgate route` name the rule by it and position
  SourcePos pos;
  std::vector<HttpMatch> match;        // any entry (OR); empty: every request
  std::vector<TrafficTarget> traffic;  // empty: the service's traffic
  std::optional<RouteRewrite> rewrite;
  std::optional<RouteRedirect> redirect;
  std::optional<DirectResponse> direct_response;
  HeaderOperations request_headers;
  HeaderOperations response_headers;
};

struct Service {
  std::string name;
  std::string namespace_name = "default";
  SplitPolicy split_policy = SplitPolicy::smooth;
  std::optional<HashOn> hash_on;  // set exactly when split_policy is hash
  LoadBalancer load_balancer = LoadBalancer::round_robin;
  // `trafficPolicy.loadBalancer.consistentHash` (the flat `loadBalancer` cannot say it).
  std::optional<ConsistentHash> consistent_hash;
  std::vector<Revision> revisions;  // oldest first; the last is the latest
  // Never empty after loading: omitted or [] becomes [{latestRevision: true, percent: 100}].
  std::vector<TrafficTarget> traffic;
  SourcePos pos;
  // `debugHeaders: true`: responses carry X-Revgate-Revision and X-Revgate-Endpoint.
  bool debug_headers = false;
  // `rolloutDuration` (Knative's serving.knative.dev/rollout-duration): when a reload adds a
  // revision, the latestRevision targets' shares move to it in steps over this long. 0 = at once.
  std::chrono::milliseconds rollout_duration{0};
  // `upgradeTypes` (Envoy's upgrade_configs): the HTTP/1.1 Upgrade tokens this service's
  // requests may carry through to a revision, lowercase. [] allows none.
  std::vector<std::string> upgrade_types{"websocket"};
  // `routes`: ordered, first match wins; a request no rule matches follows `traffic`.
  std::vector<RouteRule> routes;
};

struct DomainMapping {
  std::string domain;  // lowercase: "www.example.org", "*.example.org" or "*"
  std::string service;
  std::string namespace_name = "default";
  SourcePos pos;
};

// A certificate and its private key, PEM. `cert_file` may hold the chain after the leaf; it is
// sent whole. A relative path in the YAML is resolved against the directory of the config file
// (of the source name for load_string), so these hold the path to open. Both files were readable
// when the config was loaded; their contents are checked by tls/, not here.
struct CertificateFiles {
  std::string cert_file;
  std::string key_file;
  SourcePos pos;
};

enum class TlsVersion { tls12, tls13 };

// A listener's `tls:` block.
struct ListenerTls {
  // At least one. SNI picks among them; the first is the default for no or an unknown name.
  std::vector<CertificateFiles> certificates;
  TlsVersion min_version = TlsVersion::tls12;  // "1.2" or "1.3"; 1.3 is always the maximum
  bool require_sni = false;                    // no or unknown SNI: refuse with unrecognized_name
  std::chrono::milliseconds handshake_timeout{10'000};
  SourcePos pos;
};

struct Listener {
  std::string name;
  std::string host;        // numeric address to bind ("0.0.0.0", "127.0.0.1", "::")
  std::uint16_t port = 0;  // 0 = any free port
  SourcePos pos;
  std::optional<ListenerTls> tls;  // absent = cleartext HTTP
  // Cleartext listeners only: answer every request with a 301 to https. Needs a TLS listener.
  bool https_redirect = false;
  // Cleartext listeners only: a connection that opens with the HTTP/2 preface (prior
  // knowledge) speaks HTTP/2; the others HTTP/1.1 as always.
  bool h2c = false;
  // TLS listeners only: the ALPN protocols offered, in preference order ("h2", "http/1.1").
  std::vector<std::string> alpn = {"h2", "http/1.1"};
  SourcePos alpn_pos;
};

struct Admin {
  std::string host = "127.0.0.1";
  std::uint16_t port = 9901;  // 0 = any free port
};

// Request limits (SPEC section 5); exceeding one gets the status named beside it.
struct Limits {
  std::size_t request_line_bytes = 16 * 1024;     // 414
  std::size_t request_headers_bytes = 60 * 1024;  // 431 (request line + all header lines)
  std::size_t request_header_count = 100;         // 431
  std::uint64_t request_body_bytes = 0;           // 413; 0 = unlimited
  std::uint32_t max_concurrent_streams = 100;     // HTTP/2: streams open at once per connection
};

struct Timeouts {
  std::chrono::milliseconds request_headers{30'000};    // 408 when the head has not arrived
  std::chrono::milliseconds idle{300'000};              // downstream keep-alive idle close
  std::chrono::milliseconds upstream_connect{5'000};    // 502 UF
  std::chrono::milliseconds upstream_response{60'000};  // 504 UT: no response head in time
  std::chrono::milliseconds upstream_idle{60'000};      // pooled idle upstream connection close
  std::chrono::milliseconds shutdown_grace{10'000};     // SIGTERM: requests in flight may finish
  // SIGTERM: /readyz answers 503 at once; listeners keep accepting this long (so that a load
  // balancer sees the 503 and stops sending) before they close. 0 = close at once.
  std::chrono::milliseconds drain_delay{0};
  // An upgraded connection (a WebSocket) with no byte either way for this long is closed
  // (HAProxy's `timeout tunnel`).
  std::chrono::milliseconds tunnel_idle{3'600'000};
};

struct Upstream {
  std::size_t max_idle_per_endpoint = 64;  // idle pooled connections kept per endpoint per worker
};

enum class AccessLogFormat { json, text };

// `accessLog:` (absent = no access log): one line per request, Envoy's default text layout or
// JSON. `path` is "stdout", "stderr" or a file path, a relative one resolved against the config
// file's directory (like CertificateFiles); the file need not exist, its directory must.
struct AccessLog {
  std::string path;
  AccessLogFormat format = AccessLogFormat::text;  // Envoy's default
  SourcePos pos;
};

// `tracing:`: W3C trace context. A request without `traceparent` gets one, sampled with this
// probability (0..1).
struct Tracing {
  double sample_rate = 0.01;
};

struct Config {
  std::string source;  // file path (or a name such as "<demo>") used in messages
  std::string domain = "example.com";
  int workers = 0;  // 0 = one per CPU core
  std::vector<Listener> listeners;
  Admin admin;
  Limits limits;
  Timeouts timeouts;
  Upstream upstream;
  std::vector<Service> services;
  std::vector<DomainMapping> domain_mappings;
  std::optional<AccessLog> access_log;  // absent = off
  Tracing tracing;
  // `stateFile`: where runtime traffic changes (admin API PATCH) and rollouts in progress are
  // kept across restarts. Resolved like every config path; left out, it is the config file's
  // name with the extension replaced by ".state.json", next to it ("revgate.yaml" ->
  // "revgate.state.json"). Empty for a config that has no file (load_string of "<demo>").
  std::string state_file;
};

// One validation failure. `rule` is a short stable identifier of the broken rule
// (e.g. "percent-sum"), so tests and users can tell failures apart.
struct ConfigError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string rule;
  std::string message;
  // "file:line:col: message [rule]"
  std::string to_string() const;
};

using LoadResult = std::expected<Config, std::vector<ConfigError>>;

// Turns an endpoint's DNS name into a numeric address, or says why it cannot (the message
// completes "cannot resolve 'name': ..."). Called on the loading thread only.
using Resolver = std::function<std::expected<std::string, std::string>(const std::string& host)>;

struct LoadOptions {
  Resolver resolver;  // empty = getaddrinfo, first result; tests pass a fake to stay offline
};

// Parse and validate; on failure every error found is returned, in source order.
LoadResult load_file(const std::string& path);
LoadResult load_string(std::string_view yaml, const std::string& source_name);
LoadResult load_file(const std::string& path, const LoadOptions& options);
LoadResult load_string(std::string_view yaml, const std::string& source_name,
                       const LoadOptions& options);

}  // namespace revgate::config
