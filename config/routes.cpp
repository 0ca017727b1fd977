// `routes:` on a service: Istio's HTTPRoute fields (match, rewrite, redirect, directResponse,
// headers) and a Knative traffic list per rule. Types and shapes are checked here, regexes are
// compiled once (RE2) so that a bad one is reported with its position, not at the first request.
#include "config/routes.h"

#include <algorithm>
#include <array>
#include <string_view>

#include <fmt/format.h>
#include <re2/re2.h>

#include "config/values.h"

namespace revgate::config::detail {
namespace {

using namespace std::string_view_literals;

constexpr std::array kRouteKeys = {"name"sv,     "match"sv,          "traffic"sv, "rewrite"sv,
                                   "redirect"sv, "directResponse"sv, "headers"sv};
constexpr std::array kMatchKeys = {"name"sv,           "uri"sv,          "method"sv,
                                   "authority"sv,      "headers"sv,      "queryParams"sv,
                                   "withoutHeaders"sv, "ignoreUriCase"sv};
constexpr std::array kStringMatchKeys = {"exact"sv, "prefix"sv, "regex"sv};
constexpr std::array kRewriteKeys = {"uri"sv, "authority"sv};
constexpr std::array kRedirectKeys = {"uri"sv, "authority"sv, "scheme"sv, "port"sv,
                                      "redirectCode"sv};
constexpr std::array kDirectResponseKeys = {"status"sv, "body"sv};
constexpr std::array kBodyKeys = {"string"sv};
constexpr std::array kHeadersKeys = {"request"sv, "response"sv};
constexpr std::array kHeaderOperationKeys = {"set"sv, "add"sv, "remove"sv};

constexpr Section kRoute{"route rule", kRouteKeys};
constexpr Section kMatch{"route match", kMatchKeys};
constexpr Section kStringMatch{"string match", kStringMatchKeys};
constexpr Section kRewrite{"rewrite", kRewriteKeys};
constexpr Section kRedirect{"redirect", kRedirectKeys};
constexpr Section kDirectResponse{"directResponse", kDirectResponseKeys};
constexpr Section kBody{"directResponse body", kBodyKeys};
constexpr Section kHeaders{"headers", kHeadersKeys};
constexpr Section kHeaderOperations{"header operations", kHeaderOperationKeys};

constexpr std::array kRedirectCodes = {301, 302, 303, 307, 308};

// Fields a rule may not edit: the proxy owns the framing and the hop-by-hop fields, and the
// authority is `rewrite.authority`'s.
constexpr std::array kProtectedFields = {
    "host"sv,       "content-length"sv,   "transfer-encoding"sv,
    "connection"sv, "keep-alive"sv,       "upgrade"sv,
    "te"sv,         "proxy-connection"sv, "trailer"sv};

class RoutesReader {
 public:
  RoutesReader(Reader& reader, Service& service) : r_(reader), service_(service) {}

  void read(const Field& field) {
    std::size_t position = 0;
    for (YamlNode item : r_.read_list(field)) read_rule(item, position++);
  }

 private:
  void read_rule(YamlNode item, std::size_t position) {
    auto fields = r_.read_map(item, kRoute);
    if (!fields) return;
    RouteRule rule;
    rule.pos = fields->pos;
    if (const Field* field = fields->find("name")) rule.name = r_.read_string(*field).value_or("");
    who_ = rule.name.empty() ? fmt::format("routes[{}]", position)
                             : fmt::format("routes[{}] ({})", position, rule.name);
    if (const Field* field = fields->find("match")) {
      for (YamlNode entry : r_.read_list(*field)) {
        if (auto match = read_match(entry)) rule.match.push_back(std::move(*match));
      }
    }
    if (const Field* field = fields->find("traffic")) {
      rule.traffic = r_.read_traffic_list(*field, service_);
      for (const TrafficTarget& target : rule.traffic) {
        if (!target.tag.empty()) {
          r_.add(target.pos, "route-traffic",
                 fmt::format("{}: a rule's traffic takes no tag; tags belong to the service's "
                             "traffic (a tag names a revision for the whole service)",
                             who_));
        }
      }
    }
    if (const Field* field = fields->find("rewrite")) rule.rewrite = read_rewrite(*field);
    if (const Field* field = fields->find("redirect")) rule.redirect = read_redirect(*field);
    if (const Field* field = fields->find("directResponse")) {
      rule.direct_response = read_direct_response(*field);
    }
    if (const Field* field = fields->find("headers")) read_headers(*field, rule);
    check_actions(*fields);
    service_.routes.push_back(std::move(rule));
  }

  // Istio: a rule either routes (traffic, rewrite), redirects, or answers itself.
  void check_actions(const Fields& fields) {
    const Field* redirect = fields.find("redirect");
    const Field* direct = fields.find("directResponse");
    const Field* routing = fields.find("traffic");
    if (routing == nullptr) routing = fields.find("rewrite");
    if (redirect != nullptr && direct != nullptr) {
      r_.add(direct->key_pos, "route-action",
             fmt::format("{}: redirect and directResponse exclude each other", who_));
    }
    const Field* local = redirect != nullptr ? redirect : direct;
    if (local != nullptr && routing != nullptr) {
      r_.add(routing->key_pos, "route-action",
             fmt::format("{}: {} answers the request itself; {} would never be used", who_,
                         local->name, routing->name));
    }
  }

  std::optional<HttpMatch> read_match(YamlNode node) {
    auto fields = r_.read_map(node, kMatch);
    if (!fields) return std::nullopt;
    HttpMatch match;
    match.pos = fields->pos;
    if (const Field* field = fields->find("name")) match.name = r_.read_string(*field).value_or("");
    if (const Field* field = fields->find("ignoreUriCase")) {
      match.ignore_uri_case = r_.read_bool(*field).value_or(false);
    }
    if (const Field* field = fields->find("uri")) match.uri = read_string_match(*field, false);
    if (const Field* field = fields->find("method")) {
      match.method = read_string_match(*field, false);
    }
    if (const Field* field = fields->find("authority")) {
      match.authority = read_string_match(*field, false);
    }
    if (const Field* field = fields->find("headers")) match.headers = read_named(*field, true);
    if (const Field* field = fields->find("withoutHeaders")) {
      match.without_headers = read_named(*field, true);
    }
    if (const Field* field = fields->find("queryParams")) {
      match.query_params = read_named(*field, false);
    }
    return match;
  }

  // {exact: X} | {prefix: X} | {regex: X}; `{}` (present) where `allow_present`.
  std::optional<StringMatch> read_string_match(const Field& field, bool allow_present) {
    auto fields = r_.read_map(field.value, kStringMatch);
    if (!fields) return std::nullopt;
    StringMatch match;
    match.pos = field.value_pos;
    if (fields->entries.empty()) {
      if (allow_present) return match;  // Kind::present
      r_.add(field.value_pos, "route-match",
             fmt::format("{}: {} needs one of exact, prefix or regex", who_, field.name));
      return std::nullopt;
    }
    if (fields->entries.size() > 1) {
      r_.add(fields->entries[1].key_pos, "route-match",
             fmt::format("{}: {} takes one of exact, prefix or regex, not {} and {}", who_,
                         field.name, fields->entries[0].name, fields->entries[1].name));
      return std::nullopt;
    }
    const Field& only = fields->entries.front();
    auto value = r_.read_string(only);
    if (!value) return std::nullopt;
    match.value = std::move(*value);
    match.pos = only.value_pos;
    if (only.name == "exact") {
      match.kind = StringMatch::Kind::exact;
    } else if (only.name == "prefix") {
      match.kind = StringMatch::Kind::prefix;
    } else {
      match.kind = StringMatch::Kind::regex;
      RE2::Options options;
      options.set_log_errors(false);
      RE2 regex(match.value, options);
      if (!regex.ok()) {
        r_.add(only.value_pos, "route-regex",
               fmt::format("{}: {} regex {} is not valid RE2: {}", who_, field.name,
                           quote(match.value), regex.error()));
        return std::nullopt;
      }
    }
    return match;
  }

  // headers / withoutHeaders / queryParams: a map of name -> StringMatch.
  std::vector<NamedMatch> read_named(const Field& field, bool header_names) {
    std::vector<NamedMatch> out;
    auto fields = read_open_map(field);
    if (!fields) return out;
    for (const Field& entry : fields->entries) {
      std::string name(entry.name);
      if (header_names) {
        if (auto problem = token_problem(name)) {
          r_.add(entry.key_pos, "route-header-name",
                 fmt::format("{}: header name {} {}", who_, quote(name), *problem));
          continue;
        }
        name = lowercase(std::move(name));
      }
      if (auto match = read_string_match(entry, /*allow_present=*/true)) {
        out.push_back(NamedMatch{std::move(name), std::move(*match)});
      }
    }
    return out;
  }

  // A map whose keys are the user's (header names, parameters).
  std::optional<Fields> read_open_map(const Field& field) {
    const std::string noun = fmt::format("{}: {}", who_, field.name);
    return r_.read_map(field.value, Section{noun, {}, /*any_key=*/true});
  }

  std::optional<RouteRewrite> read_rewrite(const Field& field) {
    auto fields = r_.read_map(field.value, kRewrite);
    if (!fields) return std::nullopt;
    RouteRewrite rewrite;
    if (const Field* uri = fields->find("uri")) {
      if (auto value = read_path(*uri, "route-rewrite")) rewrite.uri = std::move(*value);
    }
    if (const Field* authority = fields->find("authority")) {
      if (auto value = read_authority(*authority, "route-rewrite")) {
        rewrite.authority = std::move(*value);
      }
    }
    if (!rewrite.uri && !rewrite.authority) {
      r_.add(field.value_pos, "route-rewrite",
             fmt::format("{}: rewrite needs uri or authority", who_));
      return std::nullopt;
    }
    return rewrite;
  }

  std::optional<RouteRedirect> read_redirect(const Field& field) {
    auto fields = r_.read_map(field.value, kRedirect);
    if (!fields) return std::nullopt;
    RouteRedirect redirect;
    if (const Field* uri = fields->find("uri")) redirect.uri = read_path(*uri, "route-redirect");
    if (const Field* authority = fields->find("authority")) {
      redirect.authority = read_authority(*authority, "route-redirect");
    }
    if (const Field* scheme = fields->find("scheme")) {
      if (auto value = r_.read_string(*scheme)) {
        if (*value == "http" || *value == "https") {
          redirect.scheme = std::move(*value);
        } else {
          r_.add(scheme->value_pos, "route-redirect",
                 fmt::format("{}: redirect scheme must be http or https, got {}", who_,
                             quote(*value)));
        }
      }
    }
    if (const Field* port = fields->find("port")) {
      if (auto value = r_.read_int(*port, 1, 65535)) redirect.port = std::uint16_t(*value);
    }
    if (const Field* code = fields->find("redirectCode")) {
      if (auto value = r_.read_int(*code, 300, 399)) {
        if (std::find(kRedirectCodes.begin(), kRedirectCodes.end(), *value) ==
            kRedirectCodes.end()) {
          r_.add(code->value_pos, "route-redirect",
                 fmt::format("{}: redirectCode must be 301, 302, 303, 307 or 308, got {}", who_,
                             *value));
        } else {
          redirect.code = int(*value);
        }
      }
    }
    return redirect;
  }

  std::optional<DirectResponse> read_direct_response(const Field& field) {
    auto fields = r_.read_map(field.value, kDirectResponse);
    if (!fields) return std::nullopt;
    DirectResponse response;
    if (const Field* status = r_.require(*fields, "status", kDirectResponse)) {
      if (auto value = r_.read_int(*status, 200, 599)) response.status = int(*value);
    }
    if (const Field* body = fields->find("body")) {
      if (auto body_fields = r_.read_map(body->value, kBody)) {
        if (const Field* text = r_.require(*body_fields, "string", kBody)) {
          response.body = r_.read_string(*text).value_or("");
        }
      }
    }
    return response;
  }

  void read_headers(const Field& field, RouteRule& rule) {
    auto fields = r_.read_map(field.value, kHeaders);
    if (!fields) return;
    if (const Field* request = fields->find("request")) {
      rule.request_headers = read_operations(*request);
    }
    if (const Field* response = fields->find("response")) {
      rule.response_headers = read_operations(*response);
    }
  }

  HeaderOperations read_operations(const Field& field) {
    HeaderOperations ops;
    auto fields = r_.read_map(field.value, kHeaderOperations);
    if (!fields) return ops;
    for (std::string_view verb : {"set"sv, "add"sv}) {
      const Field* list = fields->find(verb);
      if (list == nullptr) continue;
      auto entries = read_open_map(*list);
      if (!entries) continue;
      for (const Field& entry : entries->entries) {
        auto name = editable_name(entry.name, entry.key_pos);
        auto value = r_.read_string(entry);
        if (!name || !value) continue;
        (verb == "set" ? ops.set : ops.add).emplace_back(std::move(*name), std::move(*value));
      }
    }
    if (const Field* remove = fields->find("remove")) {
      for (YamlNode item : r_.read_list(*remove)) {
        if (!item.is_scalar()) {
          r_.add(item.pos(), "type",
                 fmt::format("{}: remove lists header names, got {}", who_, describe(item)));
          continue;
        }
        if (auto name = editable_name(item.scalar(), item.pos())) {
          ops.remove.push_back(std::move(*name));
        }
      }
    }
    return ops;
  }

  std::optional<std::string> editable_name(std::string_view raw, SourcePos pos) {
    if (auto problem = token_problem(raw)) {
      r_.add(pos, "route-header-name",
             fmt::format("{}: header name {} {}", who_, quote(raw), *problem));
      return std::nullopt;
    }
    std::string name = lowercase(std::string(raw));
    if (std::find(kProtectedFields.begin(), kProtectedFields.end(), name) !=
        kProtectedFields.end()) {
      r_.add(pos, "route-header-name",
             fmt::format("{}: header {} is the proxy's to write{}", who_, quote(name),
                         name == "host" ? "; use rewrite.authority" : ""));
      return std::nullopt;
    }
    return name;
  }

  // A path for rewrite.uri and redirect.uri: starts with '/', no query, fragment or whitespace.
  std::optional<std::string> read_path(const Field& field, std::string_view rule) {
    auto value = r_.read_string(field);
    if (!value) return std::nullopt;
    const bool bad_char = std::any_of(value->begin(), value->end(), [](char c) {
      return c == '?' || c == '#' || static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
    });
    if (!value->starts_with('/') || bad_char) {
      r_.add(field.value_pos, rule,
             fmt::format("{}: {} uri must be a path starting with '/' (no query, fragment or "
                         "spaces), got {}",
                         who_, rule == "route-rewrite" ? "rewrite" : "redirect", quote(*value)));
      return std::nullopt;
    }
    return value;
  }

  // "host" or "host:port" (a DNS name or an IP literal, IPv6 in brackets), as a Host header
  // carries it: the config's own host and host:port parsers decide.
  std::optional<std::string> read_authority(const Field& field, std::string_view rule) {
    auto value = r_.read_string(field);
    if (!value) return std::nullopt;
    const bool bracketed_only = value->starts_with('[') && value->ends_with(']');
    const bool has_port = !bracketed_only && value->find(':') != std::string::npos;
    std::string host = bracketed_only ? value->substr(1, value->size() - 2) : *value;
    bool ok = !bracketed_only || numeric_ipv6(host).has_value();
    if (has_port) {
      auto split = split_host_port(*value);
      ok = split.has_value();
      if (ok) host = split->host;
      if (ok && split->bracketed) ok = numeric_ipv6(host).has_value();
    }
    if (ok && !bracketed_only && !(has_port && value->starts_with('['))) {
      ok = numeric_ipv4(host).has_value() || !dns_name_problem(host, /*allow_underscore=*/true);
    }
    if (!ok) {
      r_.add(field.value_pos, rule,
             fmt::format("{}: authority must be a host or host:port, got {}", who_,
                         quote(*value)));
      return std::nullopt;
    }
    return value;
  }

  Reader& r_;
  Service& service_;
  std::string who_;  // "routes[2] (canary)": how messages name the rule being read
};

}  // namespace

void read_routes(Reader& reader, const Field& field, Service& service) {
  RoutesReader(reader, service).read(field);
}

}  // namespace revgate::config::detail
