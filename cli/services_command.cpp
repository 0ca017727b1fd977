// `revgate services list|describe` and `revgate revisions list`: GET the Knative resources
// from the admin API (api/) and print them as a kubectl-style table, JSON or YAML.
#include "cli/services_command.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/emitter.h>
#include <yaml-cpp/emittermanip.h>
#include <CLI/CLI.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "api/api.h"
#include "api/resources.h"
#include "cli/admin_client.h"

namespace revgate::cli {

namespace json = boost::json;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // not found, admin unreachable or answering nonsense
constexpr int kExitUsage = 2;

constexpr std::string_view kServicesPath = "/apis/serving.knative.dev/v1/namespaces/{}/services";
constexpr std::string_view kRevisionsPath = "/apis/serving.knative.dev/v1/namespaces/{}/revisions";

// A failure already worded for the user, and the exit code it warrants.
struct Failure {
  int code = kExitFailed;
  std::string message;
};

// ---- reading JSON leniently: a missing field reads as empty ----

const json::value* field(const json::value& v, std::string_view path) {
  const json::value* cur = &v;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('.', start);
    if (end == std::string_view::npos) end = path.size();
    if (!cur->is_object()) return nullptr;
    cur = cur->as_object().if_contains(path.substr(start, end - start));
    if (cur == nullptr) return nullptr;
    start = end + 1;
  }
  return cur;
}

std::string text(const json::value& v, std::string_view path) {
  const json::value* f = field(v, path);
  return f != nullptr && f->is_string() ? std::string(f->as_string()) : std::string();
}

// Label and annotation keys hold dots: look them up as one key under `map_path`.
std::string map_entry(const json::value& v, std::string_view map_path, std::string_view key) {
  const json::value* map = field(v, map_path);
  if (map == nullptr || !map->is_object()) return {};
  const json::value* entry = map->as_object().if_contains(key);
  return entry != nullptr && entry->is_string() ? std::string(entry->as_string()) : std::string();
}

std::int64_t number(const json::value& v, std::string_view path) {
  const json::value* f = field(v, path);
  if (f == nullptr) return 0;
  if (f->is_int64()) return f->as_int64();
  if (f->is_uint64()) return static_cast<std::int64_t>(f->as_uint64());
  return 0;
}

const json::array& items(const json::value& list) {
  static const json::array kEmpty;
  const json::value* f = field(list, "items");
  return f != nullptr && f->is_array() ? f->as_array() : kEmpty;
}

bool condition_true(const json::value& object, std::string_view type) {
  const json::value* conditions = field(object, "status.conditions");
  if (conditions == nullptr || !conditions->is_array()) return false;
  for (const auto& c : conditions->as_array()) {
    if (text(c, "type") == type) return text(c, "status") == "True";
  }
  return false;
}

// ---- the admin API ----

class Admin {
 public:
  explicit Admin(AdminAddress address) : address_(std::move(address)) {}

  // The JSON body of a 200; a 404 Status becomes `not_found` (or the API's own message).
  std::expected<json::value, Failure> get(const std::string& target,
                                          const std::string& not_found = {}) const {
    auto response = http_get(address_, target);
    if (!response) return std::unexpected(Failure{kExitFailed, response.error()});
    boost::system::error_code ec;
    json::value body = json::parse(response->body, ec);
    const bool is_status = !ec && text(body, "kind") == "Status";
    if (response->status == 200 && !ec && body.is_object() && !is_status) return body;
    if (response->status == 404 && is_status && !not_found.empty()) {
      return std::unexpected(Failure{kExitFailed, not_found});
    }
    if (is_status && !text(body, "message").empty()) {
      return std::unexpected(Failure{
          kExitFailed, fmt::format("admin at {}: {}", address_.text(), text(body, "message"))});
    }
    std::string excerpt = response->body.substr(0, 80);
    std::replace(excerpt.begin(), excerpt.end(), '\n', ' ');
    return std::unexpected(Failure{
        kExitFailed,
        fmt::format("admin at {} answered {} to GET {}{}{} (no admin API there?)", address_.text(),
                    response->status, target, excerpt.empty() ? "" : ": ", excerpt)});
  }

 private:
  AdminAddress address_;
};

// ---- output ----

// Columns padded to their widest cell, two spaces apart, the last one unpadded (kubectl).
void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(header.size());
  for (std::size_t i = 0; i < header.size(); ++i) widths[i] = header[i].size();
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  const auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      line += cells[i];
      if (i + 1 < cells.size()) line.append(widths[i] - cells[i].size() + 2, ' ');
    }
    fmt::print("{}\n", line);
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

// Strings that YAML would read as something else (numbers, booleans, null, timestamps) are
// quoted, so that the YAML means what the JSON says.
bool needs_quotes(std::string_view s) {
  if (s.empty()) return true;
  std::string lower(s);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (std::string_view word : {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
                                ".inf", "-.inf", "+.inf", ".nan"}) {
    if (lower == word) return true;
  }
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (digit(s[0])) return true;
  return s.size() > 1 && (s[0] == '-' || s[0] == '+' || s[0] == '.') && digit(s[1]);
}

void emit_yaml(YAML::Emitter& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::object:
      if (v.get_object().empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (const auto& [key, item] : v.get_object()) {
        out << YAML::Key;
        if (needs_quotes(key)) out << YAML::DoubleQuoted;
        out << std::string(key) << YAML::Value;
        emit_yaml(out, item);
      }
      out << YAML::EndMap;
      return;
    case json::kind::array:
      if (v.get_array().empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::BeginSeq;
      for (const auto& item : v.get_array()) emit_yaml(out, item);
      out << YAML::EndSeq;
      return;
    case json::kind::string: {
      const std::string s(v.get_string());
      if (needs_quotes(s)) out << YAML::DoubleQuoted;
      out << s;
      return;
    }
    case json::kind::int64:
      out << static_cast<long long>(v.get_int64());
      return;
    case json::kind::uint64:
      out << static_cast<unsigned long long>(v.get_uint64());
      return;
    case json::kind::double_:
      out << v.get_double();
      return;
    case json::kind::bool_:
      out << v.get_bool();
      return;
    case json::kind::null:
      out << YAML::Null;
      return;
  }
}

std::string to_yaml(const json::value& v) {
  YAML::Emitter out;
  emit_yaml(out, v);
  return std::string(out.c_str()) + "\n";
}

// "90% hello-00001, 10% hello-00002 (canary)": the targets that take traffic.
std::string traffic_summary(const json::value& service) {
  std::string out;
  const json::value* traffic = field(service, "status.traffic");
  if (traffic == nullptr || !traffic->is_array()) return "-";
  for (const auto& target : traffic->as_array()) {
    const auto percent = number(target, "percent");
    if (percent <= 0) continue;
    if (!out.empty()) out += ", ";
    out += fmt::format("{}% {}", percent, text(target, "revisionName"));
    if (const std::string tag = text(target, "tag"); !tag.empty()) out += fmt::format(" ({})", tag);
  }
  return out.empty() ? "-" : out;
}

std::string or_dash(std::string s) { return s.empty() ? "-" : s; }

// ---- the commands ----

std::expected<AdminAddress, Failure> resolve_admin(const std::string& admin,
                                                   const std::string& config_path) {
  if (!admin.empty() && !config_path.empty()) {
    return std::unexpected(Failure{kExitUsage, "--admin and -c are exclusive: pass one"});
  }
  auto address = !config_path.empty()
                     ? admin_address_from_config(config_path)
                     : parse_admin_address(admin.empty() ? kDefaultAdminAddress : admin);
  if (!address) {
    // A config that does not load is the config's failure (1); a bad --admin is usage (2).
    return std::unexpected(
        Failure{config_path.empty() ? kExitUsage : kExitFailed, address.error()});
  }
  return *address;
}

std::string where(const std::string& ns) {
  return ns == "-" ? std::string("any namespace") : fmt::format("namespace \"{}\"", ns);
}

std::expected<int, Failure> services_list(const Admin& admin, const std::string& ns) {
  auto list = admin.get(fmt::format(kServicesPath, ns));
  if (!list) return std::unexpected(list.error());
  if (items(*list).empty()) {
    fmt::print(stderr, "No services found in {}.\n", where(ns));
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& service : items(*list)) {
    rows.push_back({text(service, "metadata.name"), text(service, "metadata.namespace"),
                    or_dash(text(service, "status.url")),
                    or_dash(text(service, "status.latestReadyRevisionName")),
                    traffic_summary(service)});
  }
  print_table({"SERVICE", "NAMESPACE", "URL", "LATEST READY", "TRAFFIC"}, rows);
  return kExitOk;
}

std::expected<int, Failure> services_describe(const Admin& admin, const std::string& name,
                                              const std::string& ns, const std::string& format) {
  auto service = admin.get(fmt::format(kServicesPath, ns) + "/" + name,
                           fmt::format("service \"{}\" not found in {}", name, where(ns)));
  if (!service) return std::unexpected(service.error());
  fmt::print("{}", format == "json" ? api::to_pretty_json(*service) : to_yaml(*service));
  return kExitOk;
}

std::expected<int, Failure> revisions_list(const Admin& admin, const std::string& ns,
                                           const std::string& service_name) {
  // Traffic and tags live in the services' status; the revisions carry their endpoints.
  std::vector<json::value> services;
  std::string revisions_target = fmt::format(kRevisionsPath, ns);
  if (!service_name.empty()) {
    auto service =
        admin.get(fmt::format(kServicesPath, ns) + "/" + service_name,
                  fmt::format("service \"{}\" not found in {}", service_name, where(ns)));
    if (!service) return std::unexpected(service.error());
    services.push_back(std::move(*service));
    revisions_target += "?labelSelector=serving.knative.dev%2Fservice%3D" + service_name;
  } else {
    auto list = admin.get(fmt::format(kServicesPath, ns));
    if (!list) return std::unexpected(list.error());
    for (const auto& s : items(*list)) services.push_back(s);
  }
  auto revisions = admin.get(revisions_target);
  if (!revisions) return std::unexpected(revisions.error());
  if (items(*revisions).empty()) {
    fmt::print(stderr, "No revisions found in {}.\n", where(ns));
    return kExitOk;
  }
  struct Share {
    std::int64_t percent = 0;
    std::vector<std::string> tags;
  };
  std::map<std::string, Share> shares;  // "namespace/revision" -> traffic
  for (const auto& service : services) {
    const json::value* traffic = field(service, "status.traffic");
    if (traffic == nullptr || !traffic->is_array()) continue;
    for (const auto& target : traffic->as_array()) {
      Share& share =
          shares[text(service, "metadata.namespace") + "/" + text(target, "revisionName")];
      share.percent += number(target, "percent");
      if (std::string tag = text(target, "tag"); !tag.empty()) share.tags.push_back(tag);
    }
  }
  // Newest first within each service, as gcloud and kn list them; services in API order.
  std::vector<std::vector<std::string>> rows;
  const auto& all = items(*revisions);
  std::size_t group_start = 0;
  for (std::size_t i = 0; i <= all.size(); ++i) {
    const bool boundary =
        i == all.size() ||
        (i > group_start &&
         (map_entry(all[i], "metadata.labels", "serving.knative.dev/service") !=
              map_entry(all[group_start], "metadata.labels", "serving.knative.dev/service") ||
          text(all[i], "metadata.namespace") != text(all[group_start], "metadata.namespace")));
    if (!boundary) continue;
    for (std::size_t j = i; j-- > group_start;) {
      const auto& revision = all[j];
      const std::string ns_name = text(revision, "metadata.namespace");
      const std::string name = text(revision, "metadata.name");
      const auto it = shares.find(ns_name + "/" + name);
      std::string tags;
      if (it != shares.end()) {
        for (const auto& tag : it->second.tags) tags += (tags.empty() ? "" : ",") + tag;
      }
      std::string endpoints =
          map_entry(revision, "metadata.annotations", api::kEndpointsAnnotation);
      rows.push_back(
          {name, or_dash(map_entry(revision, "metadata.labels", "serving.knative.dev/service")),
           ns_name, fmt::format("{}%", it != shares.end() ? it->second.percent : 0), or_dash(tags),
           condition_true(revision, "Ready") ? "True" : "False", or_dash(endpoints)});
    }
    group_start = i;
  }
  print_table({"REVISION", "SERVICE", "NAMESPACE", "TRAFFIC", "TAGS", "READY", "ENDPOINTS"}, rows);
  return kExitOk;
}

}  // namespace

struct AdminCommands::State {
  CLI::App* services = nullptr;
  CLI::App* services_list = nullptr;
  CLI::App* services_describe = nullptr;
  CLI::App* revisions = nullptr;
  CLI::App* revisions_list = nullptr;
  std::string admin;
  std::string config_path;
  std::string list_namespace = "-";
  std::string describe_namespace = "default";
  std::string name;
  std::string format = "yaml";
  std::string service;
};

AdminCommands::AdminCommands(CLI::App& app) : state_(std::make_unique<State>()) {
  State& s = *state_;
  const auto connection_options = [&s](CLI::App* command) {
    command->add_option("--admin", s.admin,
                        fmt::format("Admin listener HOST:PORT (default {})", kDefaultAdminAddress));
    command->add_option("-c,--config", s.config_path, "Take the admin address from this config");
  };
  s.services = app.add_subcommand("services", "List or describe services (over the admin API)");
  s.services->require_subcommand(1);
  s.services_list = s.services->add_subcommand("list", "A table of services and their traffic");
  connection_options(s.services_list);
  s.services_list
      ->add_option("-n,--namespace", s.list_namespace, "Namespace, or - for every namespace")
      ->capture_default_str();
  s.services_describe = s.services->add_subcommand("describe", "One service as YAML or JSON");
  s.services_describe->add_option("NAME", s.name, "Service name")->required();
  connection_options(s.services_describe);
  s.services_describe->add_option("-n,--namespace", s.describe_namespace, "Namespace")
      ->capture_default_str();
  s.services_describe->add_option("--format", s.format, "Output format")
      ->check(CLI::IsMember({"yaml", "json"}))
      ->capture_default_str();

  s.revisions = app.add_subcommand("revisions", "List revisions (over the admin API)");
  s.revisions->require_subcommand(1);
  s.revisions_list = s.revisions->add_subcommand("list", "A table of revisions");
  connection_options(s.revisions_list);
  s.revisions_list
      ->add_option("-n,--namespace", s.list_namespace, "Namespace, or - for every namespace")
      ->capture_default_str();
  s.revisions_list->add_option("--service", s.service, "Only this service's revisions");
}

AdminCommands::~AdminCommands() = default;

std::optional<int> AdminCommands::run() const {
  const State& s = *state_;
  if (!*s.services && !*s.revisions) return std::nullopt;
  auto address = resolve_admin(s.admin, s.config_path);
  std::expected<int, Failure> result;
  if (!address) {
    result = std::unexpected(address.error());
  } else {
    Admin admin(*address);
    if (*s.services_list) {
      result = services_list(admin, s.list_namespace);
    } else if (*s.services_describe) {
      const std::string ns = s.describe_namespace.empty() ? "default" : s.describe_namespace;
      result = services_describe(admin, s.name, ns, s.format);
    } else {
      result = revisions_list(admin, s.list_namespace, s.service);
    }
  }
  if (result) return *result;
  std::fflush(stdout);
  fmt::print(stderr, "revgate: {}\n", result.error().message);
  return result.error().code;
}

}  // namespace revgate::cli
