// Route rules (routing::RouteRule, a service's `routes`) in the proxy: what they match on, read
// from a request head, and what a matched rule does to the request before it goes upstream
// (rewrite, request header edits), to the response (response header edits), or instead of
// proxying (redirect, directResponse). Shared by HTTP/1.1 sessions and HTTP/2 streams. Worker
// thread; the matching itself allocates nothing.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "proxy/http_headers.h"
#include "routing/route_table.h"

namespace revgate::proxy {

// routing::MatchFields over a request head; `authority` is the Host (or :authority) it was
// routed by. Views into the head: valid while it is unchanged.
class HeadFields final : public routing::MatchFields {
 public:
  HeadFields(const RequestHead& head, std::string_view authority);
  std::size_t header_values(std::string_view name, std::string_view* out,
                            std::size_t capacity) const override;

 private:
  const RequestHead& head_;
};

// The request target after the matched rule's rewrite.uri (after a prefix match only the
// prefix is replaced, else the whole path; the query stays); nullopt when it rewrites no uri.
std::optional<std::string> rewritten_target(const routing::Decision& decision,
                                            std::string_view target);

// The matched rule's changes to the request head, before it is written upstream: rewrite.uri
// (after a prefix match only the prefix is replaced, else the whole path; the query stays),
// rewrite.authority (the Host), then the request header operations (remove, set, add).
void apply_request_rule(RequestHead& head, const routing::Decision& decision);

// The matched rule's response header operations on an upstream response head.
void apply_response_rule(ResponseHead& head, const routing::Decision& decision);

// For a response head built field by field (HTTP/2 from an HTTP/2 upstream; `name` lowercase):
// whether the rule drops an upstream field (removed, or replaced by `set`), and the fields it
// adds after.
bool response_rule_drops(const routing::Decision& decision, std::string_view name);
template <class Add>
void add_response_rule_fields(const routing::Decision& decision, Add&& add) {
  if (decision.rule == nullptr) return;
  for (const auto& [name, value] : decision.rule->response_headers.set) add(name, value);
  for (const auto& [name, value] : decision.rule->response_headers.add) add(name, value);
}

// A redirect rule's Location: scheme (the rule's, else the request's), authority (the rule's,
// else the request's host), port (the rule's replaces the authority's), path (the rule's uri,
// else the request's), and the request's query.
void redirect_location(std::string& out, const routing::RouteRule& rule, bool https,
                       std::string_view host, std::string_view target);

}  // namespace revgate::proxy
