// A merge patch of a Service, checked the way Kubernetes and Knative check one: the media type,
// the JSON, the fields that may change (spec.traffic only: the rest is the config file's), the
// shape of each traffic target (strict: unknown fields are errors), then the traffic rules of
// config/traffic.h. Every refusal is a Kubernetes Status.
#include "api/patch.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "api/paths.h"
#include "api/resources.h"
#include "config/traffic.h"

namespace revgate::api {

namespace json = boost::json;

namespace {

constexpr std::size_t kMaxCauses = 20;  // a list of 1,000 bad targets need not be echoed whole

struct Cause {
  std::string reason;  // Kubernetes cause types: FieldValueInvalid, FieldValueForbidden, ...
  std::string field;   // "spec.traffic[1].percent"
  std::string message;
};

Response invalid(std::string_view service, std::vector<Cause> causes) {
  if (causes.size() > kMaxCauses) causes.resize(kMaxCauses);
  json::array list;
  std::string summary;
  for (const auto& cause : causes) {
    json::object c;
    c["reason"] = cause.reason;
    c["message"] = cause.message;
    c["field"] = cause.field;
    list.push_back(std::move(c));
    if (!summary.empty()) summary += ", ";
    summary += fmt::format("{}: {}", cause.field, cause.message);
  }
  if (causes.size() > 1) summary = "[" + summary + "]";
  json::object details;
  details["name"] = service;
  details["group"] = kServingGroup;
  details["kind"] = "Service";
  details["causes"] = std::move(list);
  return {422, status_object(
                   422, "Invalid",
                   fmt::format("Service.{} \"{}\" is invalid: {}", kServingGroup, service, summary),
                   std::move(details))};
}

// A JSON value as the YAML loader describes a value in its messages.
std::string describe(const json::value& value) {
  switch (value.kind()) {
    case json::kind::object:
      return "a map";
    case json::kind::array:
      return "a list";
    case json::kind::string:
      return fmt::format("the string '{}'", std::string_view(value.get_string()).substr(0, 60));
    case json::kind::null:
      return "nothing";
    case json::kind::double_:
      return fmt::format("{}", value.get_double());  // 12.5, not Boost's 1.25E1
    default:
      return json::serialize(value);
  }
}

// The media type without parameters, lowercase: "Application/Merge-Patch+JSON; charset=utf-8".
std::string media_type(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back()))) {
    type.remove_suffix(1);
  }
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.front()))) {
    type.remove_prefix(1);
  }
  std::string out(type);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Paths (dotted) where `patched` differs from `original`, outside `allowed`; the first few.
void changed_fields(const json::value& original, const json::value& patched,
                    const std::string& path, std::string_view allowed,
                    std::vector<std::string>& out) {
  if (path == allowed || out.size() >= kMaxCauses) return;
  if (original.is_object() && patched.is_object()) {
    const auto& a = original.get_object();
    const auto& b = patched.get_object();
    for (const auto& [key, value] : a) {
      const std::string child = path.empty() ? std::string(key) : path + "." + std::string(key);
      const json::value* other = b.if_contains(key);
      if (other == nullptr) {
        if (child != allowed) out.push_back(child);
      } else {
        changed_fields(value, *other, child, allowed, out);
      }
    }
    for (const auto& [key, value] : b) {
      const std::string child = path.empty() ? std::string(key) : path + "." + std::string(key);
      if (!a.contains(key) && child != allowed) out.push_back(child);
    }
    return;
  }
  if (original != patched) out.push_back(path);
}

struct FieldPath {
  std::size_t index;
  std::string operator()(std::string_view field) const {
    return fmt::format("spec.traffic[{}].{}", index, field);
  }
};

// One traffic target of the patched spec. False after adding causes.
bool read_target(const json::value& value, std::size_t index, config::TrafficTarget& target,
                 std::vector<Cause>& causes) {
  const FieldPath at{index};
  if (!value.is_object()) {
    causes.push_back(
        {"FieldValueTypeInvalid", fmt::format("spec.traffic[{}]", index),
         fmt::format("a traffic target must be a map, got {} [type]", describe(value))});
    return false;
  }
  bool ok = true;
  for (const auto& [key, field] : value.get_object()) {
    if (field.is_null()) continue;  // null is "left out", as Go's decoder reads it
    if (key == "tag" || key == "revisionName") {
      if (!field.is_string()) {
        causes.push_back({"FieldValueTypeInvalid", at(key),
                          fmt::format("{} must be a string, got {} [type]", std::string_view(key),
                                      describe(field))});
        ok = false;
      } else if (key == "tag") {
        target.tag = field.get_string();
      } else {
        target.revision_name = field.get_string();
      }
    } else if (key == "latestRevision") {
      if (!field.is_bool()) {
        causes.push_back(
            {"FieldValueTypeInvalid", at(key),
             fmt::format("latestRevision must be true or false, got {} [type]", describe(field))});
        ok = false;
      } else {
        target.latest_revision = field.get_bool();
      }
    } else if (key == "percent") {
      const bool integral = field.is_int64() || field.is_uint64();
      if (!integral) {
        causes.push_back({"FieldValueTypeInvalid", at(key),
                          config::percent_problem_message(describe(field)) + " [type]"});
        ok = false;
        continue;
      }
      // check_traffic judges the range; a value beyond int it could not even be given.
      const bool fits_int = field.is_int64() &&
                            field.get_int64() >= std::numeric_limits<int>::min() &&
                            field.get_int64() <= std::numeric_limits<int>::max();
      if (fits_int) {
        target.percent = static_cast<int>(field.get_int64());
      } else {
        causes.push_back(
            {"FieldValueInvalid", at(key),
             config::percent_problem_message(json::serialize(field)) + " [percent-range]"});
        ok = false;
      }
    } else if (key == "configurationName" || key == "url") {
      // Knative: a Service's traffic names revisions; url is status, never spec.
      causes.push_back({"FieldValueForbidden", at(key),
                        fmt::format("must not set the field {} in a Service's spec.traffic "
                                    "[target-kind]",
                                    std::string_view(key))});
      ok = false;
    } else {
      causes.push_back({"FieldValueInvalid", at(key),
                        fmt::format("unknown field \"{}\"; a traffic target has tag, revisionName, "
                                    "latestRevision and percent [unknown-key]",
                                    std::string_view(key))});
      ok = false;
    }
  }
  return ok;
}

std::string traffic_field_path(const config::TrafficProblem& problem) {
  if (problem.field == config::TrafficField::list) return "spec.traffic";
  if (problem.field == config::TrafficField::target) {
    return fmt::format("spec.traffic[{}]", problem.index);
  }
  return FieldPath{problem.index}(config::to_string(problem.field));
}

}  // namespace

json::value merge_patch(json::value target, const json::value& patch) {
  if (!patch.is_object()) return patch;
  if (!target.is_object()) target = json::object();
  auto& object = target.get_object();
  for (const auto& [key, value] : patch.get_object()) {
    if (value.is_null()) {
      object.erase(key);
      continue;
    }
    json::value current;
    if (auto* existing = object.if_contains(key)) current = std::move(*existing);
    object[key] = merge_patch(std::move(current), value);
  }
  return target;
}

std::expected<TrafficPatch, Response> plan_traffic_patch(const Snapshot& snapshot,
                                                         std::string_view target,
                                                         std::string_view content_type,
                                                         std::string_view body) {
  const auto path = target.substr(0, target.find('?'));
  const auto segments = split_path(path);
  const auto not_found = [] {
    return std::unexpected(Response{
        404, status_object(404, "NotFound", "the server could not find the requested resource")});
  };
  // apis/serving.knative.dev/{version}/namespaces/{ns}/{resource}/{name}
  if (segments.size() != 7 || segments[0] != "apis" || segments[1] != kServingGroup ||
      segments[3] != "namespaces") {
    return not_found();
  }
  if (segments[2] != "v1" || segments[5] != "services") {
    return std::unexpected(
        Response{405, status_object(405, "MethodNotAllowed",
                                    "only a v1 Service's traffic can be patched: PATCH "
                                    "/apis/serving.knative.dev/v1/namespaces/NS/services/NAME")});
  }
  const std::string& ns = segments[4];
  const std::string& name = segments[6];
  if (ns == "-") {
    return std::unexpected(Response{
        400, status_object(400, "BadRequest", "a namespace is required to patch a service")});
  }
  const std::string type = media_type(content_type);
  if (type != kMergePatchType) {
    return std::unexpected(Response{
        415, status_object(415, "UnsupportedMediaType",
                           fmt::format("the body of the request was in an unknown format ({}); "
                                       "accepted media types include: {}",
                                       type.empty() ? "no Content-Type" : type, kMergePatchType))});
  }
  Context context(snapshot);
  const ServiceView* service = nullptr;
  std::size_t index = 0;
  for (const auto& view : context.services()) {
    if (view.config->namespace_name == ns && view.config->name == name) {
      service = &view;
      break;
    }
    ++index;
  }
  boost::system::error_code ec;
  json::value patch = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec) {
    return std::unexpected(Response{
        400, status_object(400, "BadRequest",
                           fmt::format("the request body is not valid JSON: {}", ec.message()))});
  }
  if (service == nullptr) {
    json::object details;
    details["name"] = name;
    details["group"] = kServingGroup;
    details["kind"] = "services";
    return std::unexpected(Response{
        404, status_object(404, "NotFound",
                           fmt::format("services.{} \"{}\" not found", kServingGroup, name),
                           std::move(details))});
  }

  const json::value original = service_object(context, *service);
  const json::value patched = merge_patch(original, patch);
  std::vector<Cause> causes;
  std::vector<std::string> changed;
  changed_fields(original, patched, "", "spec.traffic", changed);
  for (const auto& field : changed) {
    causes.push_back({"FieldValueForbidden", field.empty() ? "<root>" : field,
                      "cannot be changed at run time: only spec.traffic can (the rest is the "
                      "config file's) [immutable]"});
  }
  if (!causes.empty()) return std::unexpected(invalid(name, std::move(causes)));

  TrafficPatch result;
  result.service_index = index;
  const json::value* traffic = nullptr;
  if (const auto* spec = patched.get_object().if_contains("spec"); spec && spec->is_object()) {
    traffic = spec->get_object().if_contains("traffic");
  }
  if (traffic != nullptr && !traffic->is_null()) {  // left out or null: Knative's default
    if (!traffic->is_array()) {
      causes.push_back({"FieldValueTypeInvalid", "spec.traffic",
                        fmt::format("traffic must be a list, got {} [type]", describe(*traffic))});
      return std::unexpected(invalid(name, std::move(causes)));
    }
    const auto& list = traffic->get_array();
    bool readable = true;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto& next = result.traffic.emplace_back();
      if (!read_target(list[i], i, next, causes)) readable = false;
    }
    if (!readable) return std::unexpected(invalid(name, std::move(causes)));
  }
  for (const auto& problem : config::check_traffic(*service->config, result.traffic)) {
    causes.push_back(
        {problem.field == config::TrafficField::target ? "FieldValueRequired" : "FieldValueInvalid",
         traffic_field_path(problem), fmt::format("{} [{}]", problem.message, problem.rule)});
  }
  if (!causes.empty()) return std::unexpected(invalid(name, std::move(causes)));
  return result;
}

}  // namespace revgate::api
