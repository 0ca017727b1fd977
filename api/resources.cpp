// Knative Serving v1 objects from the config in force. Field names, nesting and key order
// follow Knative's Go types (as `kubectl get ksvc -o json` prints them); what revgate cannot
// know (containers, UIDs) is left out, and its endpoints go in an annotation.
#include "api/resources.h"

#include <ctime>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "api/config_json.h"

namespace revgate::api {

namespace json = boost::json;

namespace {

std::string endpoints_text(const config::Revision& revision) {
  std::string text;
  for (const auto& endpoint : revision.endpoints) {
    if (!text.empty()) text += ',';
    text += endpoint_text(endpoint);
  }
  return text;
}

json::object metadata(const Context& context, std::string_view name, std::string_view ns,
                      json::object labels = {}, json::object annotations = {}) {
  json::object meta;
  meta["name"] = name;
  meta["namespace"] = ns;
  meta["generation"] = context.generation();
  meta["creationTimestamp"] = context.timestamp();
  if (!labels.empty()) meta["labels"] = std::move(labels);
  if (!annotations.empty()) meta["annotations"] = std::move(annotations);
  return meta;
}

// A condition that holds. Knative leaves reason out when all is well; `reason`/`message` are
// for the informational ones (e.g. CertificateProvisioned without TLS).
json::object condition(const Context& context, std::string_view type, std::string_view reason = {},
                       std::string_view message = {}) {
  json::object c;
  c["type"] = type;
  c["status"] = "True";
  c["lastTransitionTime"] = context.timestamp();
  if (!reason.empty()) c["reason"] = reason;
  if (!message.empty()) c["message"] = message;
  return c;
}

// Knative keeps conditions sorted by type; callers list them that way.
json::array conditions(const Context& context, std::initializer_list<std::string_view> types) {
  json::array out;
  for (std::string_view type : types) out.push_back(condition(context, type));
  return out;
}

// Knative's Route (and the Service above it) while a rollout moves traffic: not yet where
// spec.traffic says, so Ready is Unknown, with the reason and how far it got.
json::object rolling_condition(const Context& context, std::string_view type,
                               const ServiceView& service) {
  json::object c =
      condition(context, type, "RolloutInProgress",
                fmt::format("a gradual rollout is moving traffic: {}", service.rollout));
  c["status"] = "Unknown";
  return c;
}

json::object ready_condition(const Context& context, std::string_view type,
                             const ServiceView& service) {
  return service.rollout.empty() ? condition(context, type)
                                 : rolling_condition(context, type, service);
}

json::object certificate_condition(const Context& context) {
  // Certificates come from the config, not from auto-TLS; without a TLS listener Knative's own
  // wording applies.
  return context.scheme() == "https" ? condition(context, "CertificateProvisioned")
                                     : condition(context, "CertificateProvisioned", "TLSNotEnabled",
                                                 "autoTLS is not enabled");
}

const std::string& latest_revision_name(const ServiceView& service) {
  static const std::string kNone;
  return service.config->revisions.empty() ? kNone : service.config->revisions.back().name;
}

std::string service_url(const Context& context, const ServiceView& service) {
  return fmt::format("{}://{}", context.scheme(), service.routed->host);
}

std::string tag_url(const Context& context, const ServiceView& service, std::string_view tag) {
  return fmt::format("{}://{}-{}", context.scheme(), tag, service.routed->host);
}

json::object address(std::string url) {
  json::object a;
  a["url"] = std::move(url);
  return a;
}

// The traffic block as configured (Knative's defaults applied: latestRevision is false next
// to a revisionName). In a Route, a latestRevision target names its Configuration.
json::array spec_traffic(const ServiceView& service, bool for_route) {
  json::array out;
  for (const auto& target : service.config->traffic) {
    json::object t;
    if (!target.tag.empty()) t["tag"] = target.tag;
    if (target.latest_revision) {
      if (for_route) t["configurationName"] = service.config->name;
    } else {
      t["revisionName"] = target.revision_name;
    }
    t["latestRevision"] = target.latest_revision;
    t["percent"] = target.percent;
    out.push_back(std::move(t));
  }
  return out;
}

// The traffic block as resolved: every target names its revision, tags carry their URL.
json::array status_traffic(const Context& context, const ServiceView& service) {
  json::array out;
  for (const auto& target : service.routed->targets) {
    json::object t;
    if (!target.tag.empty()) t["tag"] = target.tag;
    t["revisionName"] = target.revision != nullptr ? target.revision->name : std::string();
    t["latestRevision"] = target.latest_revision;
    t["percent"] = target.percent;
    if (!target.tag.empty()) t["url"] = tag_url(context, service, target.tag);
    out.push_back(std::move(t));
  }
  return out;
}

// What a Service and its Configuration stamp out: the latest revision, by name.
json::object template_object(const ServiceView& service) {
  json::object meta;
  meta["name"] = latest_revision_name(service);
  if (!service.config->revisions.empty()) {
    json::object annotations;
    annotations[kEndpointsAnnotation] = endpoints_text(service.config->revisions.back());
    meta["annotations"] = std::move(annotations);
  }
  json::object spec;
  spec["containerConcurrency"] = 0;
  json::object t;
  t["metadata"] = std::move(meta);
  t["spec"] = std::move(spec);
  return t;
}

json::object policy_annotations(const ServiceView& service) {
  json::object annotations;
  annotations[kLoadBalancerAnnotation] = config::to_string(service.config->load_balancer);
  annotations[kSplitPolicyAnnotation] = config::to_string(service.config->split_policy);
  return annotations;
}

json::object service_label(const ServiceView& service) {
  json::object labels;
  labels["serving.knative.dev/service"] = service.config->name;
  return labels;
}

json::object head(std::string_view api_version, std::string_view kind) {
  json::object o;
  o["apiVersion"] = api_version;
  o["kind"] = kind;
  return o;
}

}  // namespace

std::string format_rfc3339(std::chrono::system_clock::time_point time) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

Context::Context(const Snapshot& snapshot)
    : snapshot_(snapshot),
      table_(snapshot.table ? snapshot.table
                            : routing::RouteTable::compile(*snapshot.config, snapshot.generation)),
      timestamp_(format_rfc3339(snapshot.loaded_at)) {
  const auto& routed = table_->services();
  const auto& configured = snapshot.config->services;
  for (std::size_t i = 0; i < configured.size() && i < routed.size(); ++i) {
    std::string_view rollout;
    if (i < snapshot.rollouts.size()) rollout = snapshot.rollouts[i];
    services_.push_back({&configured[i], routed[i].get(), rollout});
  }
}

json::object service_object(const Context& context, const ServiceView& service) {
  json::object o = head(kServingV1, "Service");
  o["metadata"] = metadata(context, service.config->name, service.config->namespace_name, {},
                           policy_annotations(service));
  json::object spec;
  spec["template"] = template_object(service);
  spec["traffic"] = spec_traffic(service, false);
  o["spec"] = std::move(spec);
  json::object status;
  status["observedGeneration"] = context.generation();
  json::array service_conditions;
  service_conditions.push_back(condition(context, "ConfigurationsReady"));
  service_conditions.push_back(ready_condition(context, "Ready", service));
  service_conditions.push_back(ready_condition(context, "RoutesReady", service));
  status["conditions"] = std::move(service_conditions);
  status["latestReadyRevisionName"] = latest_revision_name(service);
  status["latestCreatedRevisionName"] = latest_revision_name(service);
  status["url"] = service_url(context, service);
  status["address"] = address("http://" + service.routed->host);
  status["traffic"] = status_traffic(context, service);
  o["status"] = std::move(status);
  return o;
}

json::object route_object(const Context& context, const ServiceView& service) {
  json::object o = head(kServingV1, "Route");
  o["metadata"] = metadata(context, service.config->name, service.config->namespace_name,
                           service_label(service), policy_annotations(service));
  json::object spec;
  spec["traffic"] = spec_traffic(service, true);
  o["spec"] = std::move(spec);
  json::object status;
  status["observedGeneration"] = context.generation();
  json::array conds;
  conds.push_back(condition(context, "AllTrafficAssigned"));
  conds.push_back(certificate_condition(context));
  conds.push_back(condition(context, "IngressReady"));
  conds.push_back(ready_condition(context, "Ready", service));
  status["conditions"] = std::move(conds);
  status["url"] = service_url(context, service);
  status["address"] = address("http://" + service.routed->host);
  status["traffic"] = status_traffic(context, service);
  o["status"] = std::move(status);
  return o;
}

json::object configuration_object(const Context& context, const ServiceView& service) {
  json::object o = head(kServingV1, "Configuration");
  o["metadata"] = metadata(context, service.config->name, service.config->namespace_name,
                           service_label(service));
  json::object spec;
  spec["template"] = template_object(service);
  o["spec"] = std::move(spec);
  json::object status;
  status["observedGeneration"] = context.generation();
  status["conditions"] = conditions(context, {"Ready"});
  status["latestCreatedRevisionName"] = latest_revision_name(service);
  status["latestReadyRevisionName"] = latest_revision_name(service);
  o["status"] = std::move(status);
  return o;
}

json::object revision_object(const Context& context, const ServiceView& service,
                             std::size_t index) {
  const config::Revision& revision = service.config->revisions.at(index);
  bool routed = false;
  for (const auto& target : service.routed->targets) {
    if (target.revision != nullptr && target.revision->name == revision.name) routed = true;
  }
  json::object labels;
  labels["serving.knative.dev/configuration"] = service.config->name;
  // The configuration's generation that stamped this revision out, if every revision listed
  // came from one update: its position in the list, counting from 1.
  labels["serving.knative.dev/configurationGeneration"] = std::to_string(index + 1);
  if (routed) labels["serving.knative.dev/route"] = service.config->name;
  labels["serving.knative.dev/routingState"] = routed ? "active" : "reserve";
  labels["serving.knative.dev/service"] = service.config->name;
  json::object annotations;
  annotations[kEndpointsAnnotation] = endpoints_text(revision);
  json::object o = head(kServingV1, "Revision");
  o["metadata"] = metadata(context, revision.name, service.config->namespace_name,
                           std::move(labels), std::move(annotations));
  json::object spec;
  spec["containerConcurrency"] = 0;
  o["spec"] = std::move(spec);
  json::object status;
  status["observedGeneration"] = context.generation();
  status["conditions"] = conditions(context, {"ContainerHealthy", "Ready", "ResourcesAvailable"});
  // Each endpoint is one running instance of the revision.
  status["actualReplicas"] = revision.endpoints.size();
  status["desiredReplicas"] = revision.endpoints.size();
  o["status"] = std::move(status);
  return o;
}

json::object domain_mapping_object(const Context& context, const config::DomainMapping& mapping) {
  json::object o = head(kServingV1beta1, "DomainMapping");
  o["metadata"] = metadata(context, mapping.domain, mapping.namespace_name);
  json::object ref;
  ref["apiVersion"] = kServingV1;
  ref["kind"] = "Service";
  ref["name"] = mapping.service;
  ref["namespace"] = mapping.namespace_name;
  json::object spec;
  spec["ref"] = std::move(ref);
  o["spec"] = std::move(spec);
  json::object status;
  status["observedGeneration"] = context.generation();
  json::array conds;
  conds.push_back(certificate_condition(context));
  conds.push_back(condition(context, "DomainClaimed"));
  conds.push_back(condition(context, "IngressReady"));
  conds.push_back(condition(context, "Ready"));
  conds.push_back(condition(context, "ReferenceResolved"));
  status["conditions"] = std::move(conds);
  const std::string url = fmt::format("{}://{}", context.scheme(), mapping.domain);
  status["url"] = url;
  status["address"] = address(url);
  o["status"] = std::move(status);
  return o;
}

json::object list_object(const Context& context, std::string_view api_version,
                         std::string_view kind, json::array items) {
  json::object o = head(api_version, kind);
  json::object meta;
  meta["resourceVersion"] = std::to_string(context.generation());
  o["metadata"] = std::move(meta);
  o["items"] = std::move(items);
  return o;
}

json::object status_object(unsigned code, std::string_view reason, std::string_view message,
                           json::object details) {
  json::object o;
  o["kind"] = "Status";
  o["apiVersion"] = "v1";
  o["metadata"] = json::object();
  o["status"] = "Failure";
  o["message"] = message;
  o["reason"] = reason;
  o["details"] = std::move(details);
  o["code"] = code;
  return o;
}

}  // namespace revgate::api
