#include "cli/traffic_command.h"

#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "cli/admin_api.h"
#include "cli/traffic_update.h"

namespace revgate::cli {

namespace json = boost::json;

namespace {

std::vector<TrafficEntry> spec_traffic(const json::value& service) {
  std::vector<TrafficEntry> out;
  const json::value* traffic = field(service, "spec.traffic");
  if (traffic == nullptr || !traffic->is_array()) return out;
  for (const auto& target : traffic->as_array()) {
    const json::value* latest = field(target, "latestRevision");
    const bool is_latest = latest != nullptr && latest->is_bool() && latest->as_bool();
    out.push_back({is_latest ? std::string(kLatest) : text(target, "revisionName"),
                   static_cast<int>(number(target, "percent")), text(target, "tag")});
  }
  return out;
}

json::value traffic_patch(const std::vector<TrafficEntry>& traffic) {
  json::array list;
  for (const auto& entry : traffic) {
    json::object target;
    if (!entry.tag.empty()) target["tag"] = entry.tag;
    if (entry.key == kLatest) {
      target["latestRevision"] = true;
    } else {
      target["revisionName"] = entry.key;
    }
    if (entry.percent != 0) target["percent"] = entry.percent;  // Knative omits a 0
    list.push_back(std::move(target));
  }
  json::object spec;
  spec["traffic"] = std::move(list);
  json::object patch;
  patch["spec"] = std::move(spec);
  return patch;
}

// The table gcloud prints after update-traffic: the traffic as resolved, tags with their URLs.
void print_traffic(const json::value& service) {
  fmt::print("Traffic of service {}/{} ({}):\n", text(service, "metadata.namespace"),
             text(service, "metadata.name"), text(service, "status.url"));
  std::vector<std::vector<std::string>> rows;
  const json::value* traffic = field(service, "status.traffic");
  if (traffic != nullptr && traffic->is_array()) {
    for (const auto& target : traffic->as_array()) {
      const json::value* latest = field(target, "latestRevision");
      std::string revision = text(target, "revisionName");
      if (latest != nullptr && latest->is_bool() && latest->as_bool()) {
        revision = fmt::format("{} ({})", kLatest, revision);
      }
      const std::string tag = text(target, "tag");
      const std::string url = text(target, "url");
      rows.push_back({fmt::format("{}%", number(target, "percent")), revision,
                      tag.empty() ? "-" : tag, url.empty() ? "-" : url});
    }
  }
  print_table({"PERCENT", "REVISION", "TAG", "URL"}, rows);
}

}  // namespace

struct TrafficCommand::State {
  CLI::App* command = nullptr;
  std::string service;
  std::string ns = "default";
  std::string admin;
  std::string config_path;
  std::string to_revisions;
  std::string to_tags;
  bool to_latest = false;
  std::string set_tags;
  std::string update_tags;
  std::string remove_tags;
  bool clear_tags = false;
};

TrafficCommand::TrafficCommand(CLI::App& app) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.command =
      app.add_subcommand("traffic",
                         "Change a service's traffic split at run time (gcloud run services "
                         "update-traffic), over the admin API");
  auto* c = s.command;
  c->add_option("SERVICE", s.service, "Service name")->required();
  c->add_option("-n,--namespace", s.ns, "Namespace")->capture_default_str();
  c->add_option("--admin", s.admin, "Admin listener HOST:PORT (default 127.0.0.1:9901)");
  c->add_option("-c,--config", s.config_path, "Take the admin address from this config");
  auto* to_revisions = c->add_option(
      "--to-revisions", s.to_revisions,
      "REV=PCT,... percents for these revisions (LATEST: the latest revision); the others that "
      "serve share the rest as they did");
  auto* to_tags = c->add_option("--to-tags", s.to_tags,
                                "TAG=PCT,... percents for the revisions these tags are on");
  auto* to_latest = c->add_flag("--to-latest", s.to_latest, "100% to the latest revision");
  to_revisions->excludes(to_tags)->excludes(to_latest);
  to_tags->excludes(to_latest);
  auto* set_tags = c->add_option("--set-tags", s.set_tags,
                                 "TAG=REV,... these tags (REV may be LATEST), and no others");
  auto* update_tags =
      c->add_option("--update-tags", s.update_tags, "TAG=REV,... add or move these tags");
  auto* remove_tags = c->add_option("--remove-tags", s.remove_tags, "TAG,... remove these tags");
  auto* clear_tags = c->add_flag("--clear-tags", s.clear_tags, "Remove every tag");
  set_tags->excludes(update_tags)->excludes(remove_tags)->excludes(clear_tags);
  clear_tags->excludes(update_tags)->excludes(remove_tags);
}

TrafficCommand::~TrafficCommand() = default;

std::optional<int> TrafficCommand::run() const {
  const State& s = *state_;
  if (!*s.command) return std::nullopt;
  const auto fail = [](const Failure& failure) {
    std::fflush(stdout);
    fmt::print(stderr, "revgate: {}\n", failure.message);
    return failure.code;
  };
  const auto usage = [&](const std::string& option, const std::string& error) {
    return fail({kExitUsage, fmt::format("{}: {}", option, error)});
  };
  TrafficFlags flags;
  flags.to_latest = s.to_latest;
  flags.clear_tags = s.clear_tags;
  if (!s.to_revisions.empty()) {
    auto parsed = parse_percentages(s.to_revisions);
    if (!parsed) return usage("--to-revisions", parsed.error());
    flags.to_revisions = std::move(*parsed);
  }
  if (!s.to_tags.empty()) {
    auto parsed = parse_percentages(s.to_tags);
    if (!parsed) return usage("--to-tags", parsed.error());
    flags.to_tags = std::move(*parsed);
  }
  for (const auto& [option, text, pairs] :
       {std::tuple("--set-tags", &s.set_tags, &flags.set_tags),
        std::tuple("--update-tags", &s.update_tags, &flags.update_tags)}) {
    if (text->empty()) continue;
    auto parsed = parse_pairs(*text);
    if (!parsed) return usage(option, parsed.error());
    *pairs = std::move(*parsed);
  }
  if (!s.remove_tags.empty()) {
    std::string_view rest = s.remove_tags;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      if (comma != 0) flags.remove_tags.emplace_back(rest.substr(0, comma));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  const bool traffic_change =
      flags.to_latest || !flags.to_revisions.empty() || !flags.to_tags.empty();
  const bool tag_change = flags.clear_tags || !flags.set_tags.empty() ||
                          !flags.update_tags.empty() || !flags.remove_tags.empty();
  if (!traffic_change && !tag_change) {
    return fail({kExitUsage,
                 "nothing to change: give one of --to-revisions, --to-tags, --to-latest, "
                 "--set-tags, --update-tags, --remove-tags, --clear-tags"});
  }

  auto address = resolve_admin(s.admin, s.config_path);
  if (!address) return fail(address.error());
  Admin admin(*address);
  const std::string path = fmt::format(kServicesPath, s.ns) + "/" + s.service;
  auto service =
      admin.get(path, fmt::format("service \"{}\" not found in {}", s.service, where(s.ns)));
  if (!service) return fail(service.error());
  auto traffic = update_traffic(spec_traffic(*service), flags, s.service);
  if (!traffic) return fail({kExitFailed, traffic.error()});
  auto updated = admin.merge_patch(path, traffic_patch(*traffic));
  if (!updated) return fail(updated.error());
  print_traffic(*updated);
  return kExitOk;
}

}  // namespace revgate::cli
