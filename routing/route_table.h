// The immutable route table compiled from a validated Config (SPEC.md section 4), and the
// per-worker Router that picks a revision and an endpoint for one request. A RouteTable is
// shared read-only by all threads; a Router belongs to exactly one worker thread. No I/O here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "routing/route_match.h"

namespace revgate::routing {

class RouteTable;

struct Endpoint {
  std::string address;  // numeric IP
  std::uint16_t port = 0;
  std::string authority;  // "host:port" as configured (for logs and the admin API)
  // Position in RouteTable::endpoints(), unique across the table: per-worker endpoint state (the
  // active request counts of LEAST_REQUEST) is indexed by it.
  std::uint32_t index = 0;
  const RouteTable* table = nullptr;  // the table it belongs to
};

struct Revision {
  std::string name;
  std::vector<Endpoint> endpoints;
  // Position in RouteTable::revisions(); per-worker state is indexed by it.
  std::uint32_t index = 0;
  std::uint32_t first_endpoint = 0;  // endpoints[i].index == first_endpoint + i
  // Endpoint choice: the revision's trafficPolicy, else its service's.
  config::LoadBalancer balancer = config::LoadBalancer::round_robin;
  std::optional<config::ConsistentHash> consistent_hash;
  // consistent_hash: (point, position in endpoints), sorted by point; kRingPointsPerEndpoint
  // points per endpoint, each at sticky_hash("authority#k") (ring hash, as Envoy's ring_hash).
  std::vector<std::pair<std::uint64_t, std::uint32_t>> ring;
};
inline constexpr std::uint32_t kRingPointsPerEndpoint = 160;

// One traffic target resolved to a revision (latestRevision resolved at compile time).
struct Target {
  const Revision* revision = nullptr;
  int percent = 0;
  std::string tag;  // empty when untagged
  // From a latestRevision target: the latest revision, or during a rollout one revision's
  // share of it (the admin API reports these as `latestRevision: true`).
  bool latest_revision = false;
};

// One of a service's `routes` (Istio HTTPRoute), compiled: its matchers, its own split when it
// has a traffic list, and what it does to the request and the response.
struct RouteRule {
  std::string name;            // as configured; may be empty
  std::uint32_t position = 0;  // in the service's routes
  config::SourcePos pos;       // where it is written
  RuleMatch match;
  // Per entry of match.any_of: its uri prefix when the uri condition is a prefix (a rewrite
  // then replaces only that), empty otherwise.
  std::vector<std::string> uri_prefixes;
  // Own traffic (empty: the service's), with its schedule and cumulative percents as a
  // Service's, and its slot among the Router's smooth cursors.
  std::vector<Target> targets;
  std::vector<std::uint16_t> schedule;
  std::vector<int> cumulative;
  std::uint32_t cursor = 0;
  std::optional<config::RouteRewrite> rewrite;
  std::optional<config::RouteRedirect> redirect;
  std::optional<config::DirectResponse> direct_response;
  config::HeaderOperations request_headers;
  config::HeaderOperations response_headers;

  bool answers_locally() const { return redirect.has_value() || direct_response.has_value(); }
  std::string label() const;  // "routes[2] (canary)"
};

// A rule that can never match: every request it matches, an earlier rule (`by`, the one that
// takes its first match entry) matches first. For `revgate check`.
struct ShadowedRule {
  const RouteRule* rule = nullptr;
  const RouteRule* by = nullptr;
};
struct Service;
std::vector<ShadowedRule> shadowed_rules(const Service& service);

// What a `splitPolicy: hash` service hashes (config `hashOn`); none for the other policies.
enum class HashKey { none, header, cookie, source_ip };

struct Service {
  std::string name;
  std::string namespace_name;
  std::string host;  // "{name}.{namespace}.{domain}": Istio's destination_service label
  config::SplitPolicy split_policy = config::SplitPolicy::smooth;
  // hash: the sticky key. header: the proxy puts the value of the field named `hash_header`
  // (lowercase) in RequestView::hash_header; cookie: routing reads the cookie `cookie_name` out
  // of RequestView::cookie_header, and a request without it gets a new one (Decision::set_cookie)
  // living `cookie_ttl_seconds` (0 = a session cookie); source_ip: RequestView::source_ip.
  HashKey hash_key = HashKey::none;
  std::string hash_header;
  std::string cookie_name;
  std::uint32_t cookie_ttl_seconds = 0;
  // Endpoint choice within each of this service's revisions.
  config::LoadBalancer load_balancer = config::LoadBalancer::round_robin;
  bool debug_headers = false;  // responses say which revision and endpoint served them
  // HTTP/1.1 Upgrade tokens (lowercase) a request may carry to a revision: `upgradeTypes`.
  std::vector<std::string> upgrade_types;
  std::vector<Target> targets;  // as configured (percent-0 targets included, for tags)
  // smooth: indices into `targets`, nginx's smooth weighted round robin over one whole cycle
  // (weights divided by their gcd), walked by a per-worker cursor.
  std::vector<std::uint16_t> schedule;
  // random and hash: cumulative percents over `targets`; pick the first target whose cumulative
  // percent exceeds the point (random: entropy % total; hash: the key's hash mapped to [0, total)).
  std::vector<int> cumulative;
  std::uint32_t index = 0;  // position in RouteTable::services()
  // `routes`, in order: the first whose match holds decides (RequestView::fields).
  std::vector<RouteRule> rules;
};

// How the request's host matched (SPEC section 4, most specific first).
enum class MatchKind { none, exact_mapping, tag_host, service_host, wildcard_mapping, catch_all };
std::string_view to_string(MatchKind kind);

// What a request carries that routing looks at. Views into the caller's request.
struct RequestView {
  std::string_view host;        // raw Host header: any case, may carry ":port" and a trailing dot
  std::string_view path;        // request target (unused by routing so far; for `revgate route`)
  std::string_view tag_header;  // value of Knative-Serving-Tag, empty when absent
  // Sticky keys of `splitPolicy: hash` services; empty = absent (an empty value counts as absent).
  std::string_view hash_header;    // value of the field named Service::hash_header
  std::string_view cookie_header;  // the raw Cookie header ("a=1; b=2")
  std::string_view source_ip;      // the client's address as text (the peer, not X-Forwarded-For)
  // What route rules match on (method, path, query, authority, headers); nullptr: the request
  // is routed as if the service had no rules.
  const MatchFields* fields = nullptr;
};

// A new sticky cookie's value: 16 lowercase hex digits of a 64-bit token.
inline constexpr std::size_t kCookieTokenLength = 16;

struct Decision {
  MatchKind match = MatchKind::none;  // none: no route (404, flag NR)
  const Service* service = nullptr;
  const Target* target = nullptr;  // the target that won (its tag, its percent)
  const Revision* revision = nullptr;
  const Endpoint* endpoint = nullptr;
  // The route rule that matched (nullptr: none, the service's traffic), and which entry of its
  // match list (match.any_of.size() when the rule has none). A rule that answers_locally()
  // leaves revision and endpoint unset.
  const RouteRule* rule = nullptr;
  std::size_t matched = 0;
  // hash split: the revision came from hashing the request's key (or the new cookie below);
  // false when a tag decided, or when the key was missing and the smooth schedule did.
  bool hashed = false;
  // Cookie mode, request without the cookie: the proxy answers with
  // `Set-Cookie: format_set_cookie(...)`. The revision was picked by hashing this very token, so
  // the client's next request, carrying it, lands on the same revision.
  bool set_cookie = false;
  std::array<char, kCookieTokenLength> new_cookie{};
  std::string_view new_cookie_value() const {
    return set_cookie ? std::string_view(new_cookie.data(), new_cookie.size()) : std::string_view();
  }
  explicit operator bool() const { return revision != nullptr; }
};

// One host the table answers, for `revgate check` and the admin API.
struct HostRoute {
  std::string host;
  MatchKind match = MatchKind::none;
  const Service* service = nullptr;
  const Target* target = nullptr;  // set for tag hosts
};

class RouteTable {
 public:
  // The config must have passed validation; compilation itself cannot fail. `generation`
  // counts loaded configs (1 for the first) and is reported by metrics and the admin API.
  static std::shared_ptr<const RouteTable> compile(const config::Config& config,
                                                   std::uint64_t generation = 1);

  // Host lookup only (no split): the service and, for a tag host, the target.
  struct HostMatch {
    MatchKind match = MatchKind::none;
    const Service* service = nullptr;
    const Target* target = nullptr;
  };
  HostMatch find_host(std::string_view raw_host) const;

  const std::vector<std::unique_ptr<Service>>& services() const { return services_; }
  const std::vector<std::unique_ptr<Revision>>& revisions() const { return revisions_; }
  // Every endpoint of every revision; endpoints()[e.index] == &e.
  const std::vector<const Endpoint*>& endpoints() const { return endpoints_; }
  // Every routable host with where it goes, sorted by precedence then name.
  std::vector<HostRoute> host_routes() const;
  std::uint64_t generation() const { return generation_; }
  // Smooth schedules with a per-worker cursor: every service's, then every rule's own.
  std::uint32_t split_count() const { return split_count_; }

 private:
  RouteTable() = default;
  struct Impl;
  std::shared_ptr<const Impl> impl_;
  std::vector<std::unique_ptr<Service>> services_;
  std::vector<std::unique_ptr<Revision>> revisions_;
  std::vector<const Endpoint*> endpoints_;
  std::uint64_t generation_ = 0;
  std::uint32_t split_count_ = 0;
};

// Lowercase, drop ":port" and one trailing dot. Returns false (and leaves out untouched) when
// the host is empty or longer than a DNS name can be. `out` must hold 256 bytes.
bool normalize_host(std::string_view raw, char (&out)[256], std::size_t& out_len);

// The sticky hash of a key (header value, cookie value, client address): FNV-1a 64 with a
// murmur3 finalizer. Fixed forever: a key must land on the same revision in every worker, every
// process and every build (std::hash promises none of that).
std::uint64_t sticky_hash(std::string_view key) noexcept;

// The value of cookie `name` in a Cookie header ("a=1; b=2"), the first when repeated; empty when
// absent. Names compare case-sensitively (RFC 6265). No allocation.
std::string_view find_cookie(std::string_view cookie_header, std::string_view name) noexcept;

// The Set-Cookie value for decision.new_cookie: "NAME=TOKEN; Max-Age=TTL; Path=/; HttpOnly"
// (no Max-Age for a session cookie), written into `out`; empty when the decision sets no cookie.
inline constexpr std::size_t kMaxSetCookieLength = 160;
std::string_view format_set_cookie(const Decision& decision, char (&out)[kMaxSetCookieLength]);

// Per-worker routing state: the current table plus the cursors of the smooth schedules and the
// endpoint round robin, and the active request count of each endpoint (LEAST_REQUEST). Owned by
// one thread; never shared.
class Router {
 public:
  explicit Router(std::shared_ptr<const RouteTable> table);
  // Swap in a new table (after a reload); cursors restart and active counts restart at zero.
  void reset(std::shared_ptr<const RouteTable> table);
  const std::shared_ptr<const RouteTable>& table() const { return table_; }

  // SPEC section 4. `entropy` (a fresh random 64-bit value per request) feeds the random split,
  // the RANDOM and LEAST_REQUEST endpoint choices and new sticky cookies; ignored otherwise.
  Decision route(const RequestView& request, std::uint64_t entropy);
  // The same after the caller's own table()->find_host(request.host): lets the proxy learn the
  // service first, then capture the header it hashes on (Service::hash_header) before routing.
  // A match from another table routes nowhere.
  Decision route(const RouteTable::HostMatch& match, const RequestView& request,
                 std::uint64_t entropy);

  // LEAST_REQUEST bookkeeping, for every request whatever the service's policy: call
  // request_started(*decision.endpoint) when the request is sent to that endpoint (each retry on
  // a new connection to the same endpoint is the same request: once), and request_finished with
  // the same endpoint exactly once when its response ends or the attempt fails. An endpoint that
  // is not of this router's current table (the request started before a reset()) is ignored, and
  // counts never go below zero, so a reload cannot corrupt them.
  void request_started(const Endpoint& endpoint) noexcept;
  void request_finished(const Endpoint& endpoint) noexcept;
  std::uint32_t active_requests(const Endpoint& endpoint) const noexcept;  // 0 when not ours

 private:
  bool owns(const Endpoint& endpoint) const noexcept;
  const Endpoint* pick_endpoint(const Revision& revision, const RequestView& request,
                                std::uint64_t entropy);
  // The weighted pick over one split (the service's, or its matched rule's).
  const Target* pick_target(const Service& service, const std::vector<Target>& targets,
                            const std::vector<std::uint16_t>& schedule,
                            const std::vector<int>& cumulative, std::uint32_t cursor,
                            const RequestView& request, std::uint64_t entropy, Decision& decision);

  std::shared_ptr<const RouteTable> table_;
  std::vector<std::uint32_t> schedule_cursor_;  // per split: services, then rules with traffic
  std::vector<std::uint32_t> endpoint_cursor_;  // per revision
  std::vector<std::uint32_t> active_;           // per endpoint (Endpoint::index)
};

}  // namespace revgate::routing
