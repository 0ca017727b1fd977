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
#include "cli/admin_api.h"
#include "cli/admin_client.h"

namespace revgate::cli {

namespace json = boost::json;

namespace {

constexpr std::string_view kRevisionsPath = "/apis/serving.knative.dev/v1/namespaces/{}/revisions";

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
