#include "proxy/route_rules.h"

#include <algorithm>

namespace revgate::proxy {

namespace http = boost::beast::http;

namespace {

// "/a/b?x=1" -> ("/a/b", "?x=1")
std::pair<std::string_view, std::string_view> split_target(std::string_view target) {
  const std::size_t q = std::min(target.find('?'), target.size());
  return {target.substr(0, q), target.substr(q)};
}

// "host:port", "[::1]:port" or "host" -> the host part.
std::string_view without_port(std::string_view authority) {
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    return close == std::string_view::npos ? authority : authority.substr(0, close + 1);
  }
  return authority.substr(0, std::min(authority.find(':'), authority.size()));
}

template <class Head>
void apply_operations(Head& head, const config::HeaderOperations& ops) {
  for (const std::string& name : ops.remove) head.erase(name);
  for (const auto& [name, value] : ops.set) head.set(name, value);
  for (const auto& [name, value] : ops.add) head.insert(name, value);
}

}  // namespace

HeadFields::HeadFields(const RequestHead& head, std::string_view authority) : head_(head) {
  method = head.method_string();
  std::tie(path, query) = split_target(head.target());
  if (!query.empty()) query.remove_prefix(1);  // the '?'
  this->authority = authority;
}

std::size_t HeadFields::header_values(std::string_view name, std::string_view* out,
                                      std::size_t capacity) const {
  std::size_t count = 0;
  for (auto [it, end] = head_.equal_range(name); it != end; ++it) {
    if (count < capacity) out[count] = it->value();
    ++count;
  }
  return count;
}

std::optional<std::string> rewritten_target(const routing::Decision& decision,
                                            std::string_view target) {
  const routing::RouteRule* rule = decision.rule;
  if (rule == nullptr || !rule->rewrite || !rule->rewrite->uri) return std::nullopt;
  const auto [path, query] = split_target(target);
  const std::string_view prefix = decision.matched < rule->uri_prefixes.size()
                                      ? std::string_view(rule->uri_prefixes[decision.matched])
                                      : std::string_view();
  std::string rewritten = *rule->rewrite->uri;
  if (!prefix.empty()) rewritten += path.substr(std::min(prefix.size(), path.size()));
  rewritten += query;
  return rewritten;
}

void apply_request_rule(RequestHead& head, const routing::Decision& decision) {
  const routing::RouteRule* rule = decision.rule;
  if (rule == nullptr) return;
  if (auto target = rewritten_target(decision, head.target())) head.target(*target);
  if (rule->rewrite && rule->rewrite->authority) {
    head.set(http::field::host, *rule->rewrite->authority);
  }
  apply_operations(head, rule->request_headers);
}

void apply_response_rule(ResponseHead& head, const routing::Decision& decision) {
  if (decision.rule != nullptr) apply_operations(head, decision.rule->response_headers);
}

bool response_rule_drops(const routing::Decision& decision, std::string_view name) {
  if (decision.rule == nullptr) return false;
  const auto& ops = decision.rule->response_headers;
  // HTTP/2 field names are lowercase (nghttp2 refuses others), as the rule's are.
  const auto same = [name](std::string_view other) { return name == other; };
  return std::any_of(ops.remove.begin(), ops.remove.end(), same) ||
         std::any_of(ops.set.begin(), ops.set.end(),
                     [&](const auto& field) { return same(field.first); });
}

void redirect_location(std::string& out, const routing::RouteRule& rule, bool https,
                       std::string_view host, std::string_view target) {
  const config::RouteRedirect& redirect = *rule.redirect;
  const auto [path, query] = split_target(target);
  out.clear();
  out += redirect.scheme ? std::string_view(*redirect.scheme) : (https ? "https" : "http");
  out += "://";
  const std::string_view authority = redirect.authority ? std::string_view(*redirect.authority) : host;
  if (redirect.port) {
    out += without_port(authority);
    out += ':';
    out += std::to_string(*redirect.port);
  } else {
    out += authority;
  }
  out += redirect.uri ? std::string_view(*redirect.uri) : path;
  out += query;
}

}  // namespace revgate::proxy
