// Request path -> resource builder, as the Kubernetes API server lays its paths out:
//   /apis/{group}/{version}/namespaces/{ns}/{resource}[/{name}]   ({ns} "-" = every namespace)
//   /apis/{group}/{version}/{resource}                             (every namespace)
//   /apis, /apis/{group}, /apis/{group}/{version}                  (discovery)
// Unknown paths and objects are 404, other methods 405, both with a Status body.
#include "api/api.h"

#include <array>
#include <cctype>
#include <optional>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include "api/config_json.h"
#include "api/paths.h"
#include "api/resources.h"

namespace revgate::api {

namespace json = boost::json;

namespace {

enum class Kind { service, route, configuration, revision, domain_mapping };

struct ResourceInfo {
  Kind kind;
  std::string_view version;  // "v1" or "v1beta1"
  std::string_view plural;   // the path segment: "services"
  std::string_view singular;
  std::string_view kind_name;  // "Service"
  std::array<std::string_view, 2> short_names;
};

constexpr std::array kResources = {
    ResourceInfo{Kind::service, "v1", "services", "service", "Service", {"ksvc", "kservice"}},
    ResourceInfo{Kind::route, "v1", "routes", "route", "Route", {"rt", ""}},
    ResourceInfo{Kind::configuration,
                 "v1",
                 "configurations",
                 "configuration",
                 "Configuration",
                 {"config", "cfg"}},
    ResourceInfo{Kind::revision, "v1", "revisions", "revision", "Revision", {"rev", ""}},
    ResourceInfo{Kind::domain_mapping,
                 "v1beta1",
                 "domainmappings",
                 "domainmapping",
                 "DomainMapping",
                 {"dm", ""}},
};

const ResourceInfo* find_resource(std::string_view version, std::string_view plural) {
  for (const auto& info : kResources) {
    if (info.version == version && info.plural == plural) return &info;
  }
  return nullptr;
}

bool known_version(std::string_view version) { return version == "v1" || version == "v1beta1"; }

std::string api_version_of(std::string_view version) {
  return fmt::format("{}/{}", kServingGroup, version);
}

Response not_found() {
  return {404, status_object(404, "NotFound", "the server could not find the requested resource")};
}

Response object_not_found(const ResourceInfo& info, std::string_view name) {
  json::object details;
  details["name"] = name;
  details["group"] = kServingGroup;
  details["kind"] = info.plural;
  return {404,
          status_object(404, "NotFound",
                        fmt::format("{}.{} \"{}\" not found", info.plural, kServingGroup, name),
                        std::move(details))};
}

Response method_not_allowed() {
  return {405, status_object(405, "MethodNotAllowed",
                             "the server does not allow this method on the requested resource")};
}

Response bad_request(std::string_view message) {
  return {400, status_object(400, "BadRequest", message)};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoded (and '+' as space in a query); a malformed escape is kept as written.
std::string percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      int hi = hex_value(text[i + 1]);
      int lo = hex_value(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plus_is_space && c == '+') ? ' ' : c;
  }
  return out;
}

}  // namespace

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> segments;
  std::size_t start = 1;  // after the leading '/'
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    segments.push_back(percent_decode(path.substr(start, end - start), false));
    start = end + 1;
  }
  if (!segments.empty() && segments.back().empty()) segments.pop_back();  // one trailing '/'
  return segments;
}

namespace {

std::optional<std::string> query_parameter(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    std::size_t eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq), true) == name) {
      return eq == std::string_view::npos ? std::string()
                                          : percent_decode(pair.substr(eq + 1), true);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

// ---- label selectors: "k=v", "k==v", "k!=v", "k", "!k", comma-separated (all must hold) ----

struct Requirement {
  enum class Op { equals, not_equals, exists, not_exists } op;
  std::string key;
  std::string value;
};

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::optional<std::vector<Requirement>> parse_selector(std::string_view text, std::string& error) {
  std::vector<Requirement> requirements;
  if (trim(text).empty()) return requirements;
  while (true) {
    std::size_t comma = text.find(',');
    std::string part = trim(text.substr(0, comma));
    Requirement r{};
    if (std::size_t ne = part.find("!="); ne != std::string::npos) {
      r = {Requirement::Op::not_equals, trim(part.substr(0, ne)), trim(part.substr(ne + 2))};
    } else if (std::size_t eq = part.find('='); eq != std::string::npos) {
      std::size_t value_at = part.compare(eq, 2, "==") == 0 ? eq + 2 : eq + 1;
      r = {Requirement::Op::equals, trim(part.substr(0, eq)), trim(part.substr(value_at))};
    } else if (part.starts_with('!')) {
      r = {Requirement::Op::not_exists, trim(part.substr(1)), {}};
    } else {
      r = {Requirement::Op::exists, part, {}};
    }
    if (r.key.empty() || r.key.find_first_of("=!() ") != std::string::npos ||
        r.value.find_first_of("=!(), ") != std::string::npos) {
      error = fmt::format("unable to parse requirement: \"{}\" (supported: k=v, k==v, k!=v, k, !k)",
                          part);
      return std::nullopt;
    }
    requirements.push_back(std::move(r));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return requirements;
}

bool matches(const json::object& item, const std::vector<Requirement>& requirements) {
  const json::object* labels = nullptr;
  if (const auto* meta = item.if_contains("metadata"); meta && meta->is_object()) {
    if (const auto* l = meta->as_object().if_contains("labels"); l && l->is_object()) {
      labels = &l->as_object();
    }
  }
  for (const auto& r : requirements) {
    const json::value* value = labels ? labels->if_contains(r.key) : nullptr;
    const bool has = value != nullptr && value->is_string();
    const bool equal = has && value->as_string() == r.value;
    switch (r.op) {
      case Requirement::Op::equals:
        if (!equal) return false;
        break;
      case Requirement::Op::not_equals:
        if (equal) return false;
        break;
      case Requirement::Op::exists:
        if (!has) return false;
        break;
      case Requirement::Op::not_exists:
        if (has) return false;
        break;
    }
  }
  return true;
}

// ---- collections ----

bool in_namespace(std::string_view ns, std::string_view wanted) {
  return wanted == "-" || wanted.empty() || ns == wanted;
}

// Every object of `info` in namespace `ns` ("-" or "" = all), in config order; only those named
// `name` when it is not empty.
std::vector<json::object> collect(const Context& context, const ResourceInfo& info,
                                  std::string_view ns, std::string_view name) {
  std::vector<json::object> items;
  if (info.kind == Kind::domain_mapping) {
    for (const auto& mapping : context.config().domain_mappings) {
      if (!in_namespace(mapping.namespace_name, ns)) continue;
      if (!name.empty() && mapping.domain != name) continue;
      items.push_back(domain_mapping_object(context, mapping));
    }
    return items;
  }
  for (const auto& service : context.services()) {
    if (!in_namespace(service.config->namespace_name, ns)) continue;
    if (info.kind == Kind::revision) {
      for (std::size_t i = 0; i < service.config->revisions.size(); ++i) {
        if (!name.empty() && service.config->revisions[i].name != name) continue;
        items.push_back(revision_object(context, service, i));
      }
      continue;
    }
    if (!name.empty() && service.config->name != name) continue;
    switch (info.kind) {
      case Kind::service:
        items.push_back(service_object(context, service));
        break;
      case Kind::route:
        items.push_back(route_object(context, service));
        break;
      case Kind::configuration:
        items.push_back(configuration_object(context, service));
        break;
      default:
        break;
    }
  }
  return items;
}

Response resource_request(const Snapshot& snapshot, const ResourceInfo& info, std::string_view ns,
                          std::optional<std::string_view> name, std::string_view query) {
  Context context(snapshot);
  if (name) {
    auto items = collect(context, info, ns, *name);
    if (items.empty()) return object_not_found(info, *name);
    return {200, std::move(items.front())};
  }
  std::vector<Requirement> selector;
  if (auto text = query_parameter(query, "labelSelector")) {
    std::string error;
    auto parsed = parse_selector(*text, error);
    if (!parsed) return bad_request(error);
    selector = std::move(*parsed);
  }
  json::array items;
  for (auto& item : collect(context, info, ns, {})) {
    if (matches(item, selector)) items.push_back(std::move(item));
  }
  return {200, list_object(context, api_version_of(info.version),
                           fmt::format("{}List", info.kind_name), std::move(items))};
}

// ---- discovery ----

json::object group_version(std::string_view version) {
  json::object o;
  o["groupVersion"] = api_version_of(version);
  o["version"] = version;
  return o;
}

json::object api_group() {
  json::object group;
  group["name"] = kServingGroup;
  json::array versions;
  versions.push_back(group_version("v1"));
  versions.push_back(group_version("v1beta1"));
  group["versions"] = std::move(versions);
  group["preferredVersion"] = group_version("v1");
  return group;
}

json::object api_resource_list(std::string_view version) {
  json::object o;
  o["kind"] = "APIResourceList";
  o["apiVersion"] = "v1";
  o["groupVersion"] = api_version_of(version);
  json::array resources;
  for (const auto& info : kResources) {
    if (info.version != version) continue;
    json::object r;
    r["name"] = info.plural;
    r["singularName"] = info.singular;
    r["namespaced"] = true;
    r["kind"] = info.kind_name;
    r["verbs"] = json::array{"get", "list"};
    json::array short_names;
    for (std::string_view s : info.short_names) {
      if (!s.empty()) short_names.push_back(json::value(s));
    }
    r["shortNames"] = std::move(short_names);
    r["categories"] = json::array{"all", "knative", "serving"};
    resources.push_back(std::move(r));
  }
  o["resources"] = std::move(resources);
  return o;
}

Response discovery(const std::vector<std::string>& segments) {
  // segments[0] == "apis"
  if (segments.size() == 1) {
    json::object o;
    o["kind"] = "APIGroupList";
    o["apiVersion"] = "v1";
    o["groups"] = json::array{api_group()};
    return {200, std::move(o)};
  }
  if (segments.size() == 2) {
    json::object o;
    o["kind"] = "APIGroup";
    o["apiVersion"] = "v1";
    for (auto& [key, value] : api_group()) o[key] = std::move(value);
    return {200, std::move(o)};
  }
  return {200, api_resource_list(segments[2])};
}

void pretty(const json::value& value, std::string& out, int indent) {
  const auto newline = [&](int depth) {
    out += '\n';
    out.append(static_cast<std::size_t>(depth) * 2, ' ');
  };
  switch (value.kind()) {
    case json::kind::object: {
      const auto& object = value.get_object();
      if (object.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (const auto& [key, item] : object) {
        if (!first) out += ',';
        first = false;
        newline(indent + 1);
        out += json::serialize(json::string_view(key));
        out += ": ";
        pretty(item, out, indent + 1);
      }
      newline(indent);
      out += '}';
      return;
    }
    case json::kind::array: {
      const auto& array = value.get_array();
      if (array.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const auto& item : array) {
        if (!first) out += ',';
        first = false;
        newline(indent + 1);
        pretty(item, out, indent + 1);
      }
      newline(indent);
      out += ']';
      return;
    }
    default:
      out += json::serialize(value);
  }
}

}  // namespace

bool is_api_path(std::string_view path) {
  return path == "/config" || path == "/apis" || path.starts_with("/apis/");
}

Response handle(const Snapshot& snapshot, std::string_view method, std::string_view target) {
  const std::size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  const bool read = method == "GET" || method == "HEAD";

  if (path == "/config") {
    if (!read) return method_not_allowed();
    return {200, config_to_json(*snapshot.config)};
  }
  if (!is_api_path(path)) return not_found();
  const auto segments = split_path(path);
  const auto n = segments.size();
  // segments: apis, group, version, ...
  if (n >= 2 && segments[1] != kServingGroup) return not_found();
  if (n >= 3 && !known_version(segments[2])) return not_found();
  if (n <= 3) return read ? discovery(segments) : method_not_allowed();

  const std::string& version = segments[2];
  std::string_view ns = "-";
  std::size_t at = 3;
  if (segments[3] == "namespaces") {
    if (n < 6) return not_found();  // a namespace object itself is not served
    ns = segments[4];
    at = 5;
  }
  const ResourceInfo* info = find_resource(version, segments[at]);
  if (info == nullptr) return not_found();
  std::optional<std::string_view> name;
  if (n == at + 2) {
    if (at == 3) return not_found();  // a name needs a namespace, as in Kubernetes
    name = segments[at + 1];
  } else if (n != at + 1) {
    return not_found();  // sub-resources (status, ...) are not served
  }
  if (!read) return method_not_allowed();
  return resource_request(snapshot, *info, ns, name, query);
}

std::string to_pretty_json(const json::value& value) {
  std::string out;
  pretty(value, out, 0);
  out += '\n';
  return out;
}

}  // namespace revgate::api
