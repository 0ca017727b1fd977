// The immutable route table compiled from a validated Config (SPEC.md section 4), and the
// per-worker Router that picks a revision and an endpoint for one request. A RouteTable is
// shared read-only by all threads; a Router belongs to exactly one worker thread. No I/O here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace revgate::routing {

struct Endpoint {
  std::string address;    // numeric IP
  std::uint16_t port = 0;
  std::string authority;  // "host:port" as configured (for logs and the admin API)
};

struct Revision {
  std::string name;
  std::vector<Endpoint> endpoints;
  std::uint32_t index = 0;  // position in RouteTable::revisions(); per-worker state is indexed by it
};

// One traffic target resolved to a revision (latestRevision resolved at compile time).
struct Target {
  const Revision* revision = nullptr;
  int percent = 0;
  std::string tag;  // empty when untagged
};

struct Service {
  std::string name;
  std::string namespace_name;
  std::string host;  // "{name}.{namespace}.{domain}": Istio's destination_service label
  config::SplitPolicy split_policy = config::SplitPolicy::smooth;
  std::vector<Target> targets;  // as configured (percent-0 targets included, for tags)
  // smooth: indices into `targets`, nginx's smooth weighted round robin over one whole cycle
  // (weights divided by their gcd), walked by a per-worker cursor.
  std::vector<std::uint16_t> schedule;
  // random: cumulative percents over `targets`; pick the first with entropy % 100 < cumulative.
  std::vector<int> cumulative;
  std::uint32_t index = 0;  // position in RouteTable::services()
};

// How the request's host matched (SPEC section 4, most specific first).
enum class MatchKind { none, exact_mapping, tag_host, service_host, wildcard_mapping, catch_all };
std::string_view to_string(MatchKind kind);

// What a request carries that routing looks at. Views into the caller's request.
struct RequestView {
  std::string_view host;        // raw Host header: any case, may carry ":port" and a trailing dot
  std::string_view path;        // request target (unused by routing so far; for `revgate route`)
  std::string_view tag_header;  // value of Knative-Serving-Tag, empty when absent
};

struct Decision {
  MatchKind match = MatchKind::none;  // none: no route (404, flag NR)
  const Service* service = nullptr;
  const Target* target = nullptr;  // the target that won (its tag, its percent)
  const Revision* revision = nullptr;
  const Endpoint* endpoint = nullptr;
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
  // Every routable host with where it goes, sorted by precedence then name.
  std::vector<HostRoute> host_routes() const;
  std::uint64_t generation() const { return generation_; }

 private:
  RouteTable() = default;
  struct Impl;
  std::shared_ptr<const Impl> impl_;
  std::vector<std::unique_ptr<Service>> services_;
  std::vector<std::unique_ptr<Revision>> revisions_;
  std::uint64_t generation_ = 0;
};

// Lowercase, drop ":port" and one trailing dot. Returns false (and leaves out untouched) when
// the host is empty or longer than a DNS name can be. `out` must hold 256 bytes.
bool normalize_host(std::string_view raw, char (&out)[256], std::size_t& out_len);

// Per-worker routing state: the current table plus the cursors of the smooth schedules and the
// endpoint round robin. Owned by one thread; never shared.
class Router {
 public:
  explicit Router(std::shared_ptr<const RouteTable> table);
  // Swap in a new table (after a reload); cursors restart.
  void reset(std::shared_ptr<const RouteTable> table);
  const std::shared_ptr<const RouteTable>& table() const { return table_; }

  // SPEC section 4. `entropy` feeds the random split (ignored by smooth).
  Decision route(const RequestView& request, std::uint64_t entropy);

 private:
  std::shared_ptr<const RouteTable> table_;
  std::vector<std::uint32_t> schedule_cursor_;  // per service
  std::vector<std::uint32_t> endpoint_cursor_;  // per revision
};

}  // namespace revgate::routing
