// Unit tests of api/: the Knative-shaped admin API answered from configs written inline.
#include "api/api.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "api/config_json.h"
#include "api/resources.h"
#include "config/config.h"
#include "routing/route_table.h"

namespace revgate::api {
namespace {

namespace json = boost::json;

constexpr const char* kYaml = R"(
domain: example.com
listeners:
  - name: http
    address: 127.0.0.1:8080
services:
  - name: hello
    revisions:
      - name: hello-00001
        endpoints: ["127.0.0.1:9001", "127.0.0.1:9002"]
      - name: hello-00002
        endpoints: ["127.0.0.1:9003"]
    traffic:
      - revisionName: hello-00001
        percent: 90
      - revisionName: hello-00002
        percent: 10
        tag: canary
      - latestRevision: true
        percent: 0
        tag: latest
  - name: shop
    namespace: prod
    splitPolicy: random
    revisions:
      - name: shop-a
        endpoints: ["[::1]:9100"]
      - name: shop-b
        endpoints: ["127.0.0.1:9101"]
domainMappings:
  - domain: www.example.org
    service: hello
  - domain: "*.apps.example.org"
    service: hello
  - domain: shop.example.net
    service: shop
    namespace: prod
)";

// 2026-11-29T03:04:05Z
const auto kLoadedAt = std::chrono::system_clock::time_point(std::chrono::seconds(1795921445));

Snapshot snapshot_of(const std::string& yaml, std::uint64_t generation = 1, bool https = false) {
  auto loaded = config::load_string(yaml, "test.yaml");
  if (!loaded) {
    std::string text;
    for (const auto& e : loaded.error()) text += e.to_string() + "\n";
    ADD_FAILURE() << text;
    return {};
  }
  Snapshot s;
  s.config = std::make_shared<const config::Config>(std::move(*loaded));
  s.table = routing::RouteTable::compile(*s.config, generation);
  s.generation = generation;
  s.loaded_at = kLoadedAt;
  s.https = https;
  return s;
}

class ApiTest : public ::testing::Test {
 protected:
  Snapshot snapshot_ = snapshot_of(kYaml, 3);

  json::object get(std::string_view target, unsigned status = 200) {
    auto response = handle(snapshot_, "GET", target);
    EXPECT_EQ(response.status, status) << target << ": " << json::serialize(response.body);
    EXPECT_TRUE(response.body.is_object());
    return response.body.is_object() ? response.body.as_object() : json::object();
  }
};

const json::value& at(const json::value& v, std::string_view path) {
  // "a.b.0.c": object keys and array indices
  const json::value* cur = &v;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('.', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (cur->is_array()) {
      cur = &cur->as_array().at(std::stoul(std::string(part)));
    } else {
      cur = &cur->as_object().at(part);
    }
    start = end + 1;
  }
  return *cur;
}

std::string str(const json::value& v, std::string_view path) {
  return std::string(at(v, path).as_string());
}

// A label or annotation: its key holds dots, so it is looked up whole under `map`.
std::string entry(const json::value& v, std::string_view map, std::string_view key) {
  return std::string(at(v, map).as_object().at(key).as_string());
}

std::vector<std::string> names(const json::object& list) {
  std::vector<std::string> out;
  for (const auto& item : list.at("items").as_array()) out.push_back(str(item, "metadata.name"));
  return out;
}

TEST(ApiPaths, WhatBelongsToTheApi) {
  EXPECT_TRUE(is_api_path("/config"));
  EXPECT_TRUE(is_api_path("/apis"));
  EXPECT_TRUE(is_api_path("/apis/serving.knative.dev/v1/services"));
  EXPECT_FALSE(is_api_path("/metrics"));
  EXPECT_FALSE(is_api_path("/healthz"));
  EXPECT_FALSE(is_api_path("/apisx"));
  EXPECT_FALSE(is_api_path("/config/x"));
}

TEST(ApiTime, Rfc3339) { EXPECT_EQ(format_rfc3339(kLoadedAt), "2026-11-29T03:04:05Z"); }

TEST_F(ApiTest, ServiceListInANamespace) {
  auto list = get("/apis/serving.knative.dev/v1/namespaces/default/services");
  EXPECT_EQ(list.at("apiVersion"), "serving.knative.dev/v1");
  EXPECT_EQ(list.at("kind"), "ServiceList");
  EXPECT_EQ(str(list, "metadata.resourceVersion"), "3");
  EXPECT_EQ(names(list), std::vector<std::string>{"hello"});
}

TEST_F(ApiTest, ServiceObject) {
  json::value svc = get("/apis/serving.knative.dev/v1/namespaces/default/services/hello");
  EXPECT_EQ(str(svc, "apiVersion"), "serving.knative.dev/v1");
  EXPECT_EQ(str(svc, "kind"), "Service");
  EXPECT_EQ(str(svc, "metadata.name"), "hello");
  EXPECT_EQ(str(svc, "metadata.namespace"), "default");
  EXPECT_EQ(at(svc, "metadata.generation").to_number<int>(), 3);
  EXPECT_EQ(entry(svc, "metadata.annotations", "revgate.dev/splitPolicy"), "smooth");
  EXPECT_EQ(entry(svc, "metadata.annotations", "revgate.dev/loadBalancer"), "ROUND_ROBIN");

  // spec.traffic as configured, Knative's defaults applied
  const auto& spec = at(svc, "spec.traffic").as_array();
  ASSERT_EQ(spec.size(), 3u);
  EXPECT_EQ(json::serialize(spec[0]),
            R"({"revisionName":"hello-00001","latestRevision":false,"percent":90})");
  EXPECT_EQ(json::serialize(spec[1]),
            R"({"tag":"canary","revisionName":"hello-00002","latestRevision":false,"percent":10})");
  EXPECT_EQ(json::serialize(spec[2]), R"({"tag":"latest","latestRevision":true,"percent":0})");
  EXPECT_EQ(str(svc, "spec.template.metadata.name"), "hello-00002");

  EXPECT_EQ(at(svc, "status.observedGeneration").to_number<int>(), 3);
  EXPECT_EQ(str(svc, "status.url"), "http://hello.default.example.com");
  EXPECT_EQ(str(svc, "status.address.url"), "http://hello.default.example.com");
  EXPECT_EQ(str(svc, "status.latestCreatedRevisionName"), "hello-00002");
  EXPECT_EQ(str(svc, "status.latestReadyRevisionName"), "hello-00002");

  // status.traffic resolved to revisions, a URL per tag, latestRevision kept
  const auto& traffic = at(svc, "status.traffic").as_array();
  ASSERT_EQ(traffic.size(), 3u);
  EXPECT_EQ(json::serialize(traffic[0]),
            R"({"revisionName":"hello-00001","latestRevision":false,"percent":90})");
  EXPECT_EQ(json::serialize(traffic[1]),
            R"({"tag":"canary","revisionName":"hello-00002","latestRevision":false,"percent":10,)"
            R"("url":"http://canary-hello.default.example.com"})");
  EXPECT_EQ(json::serialize(traffic[2]),
            R"({"tag":"latest","revisionName":"hello-00002","latestRevision":true,"percent":0,)"
            R"("url":"http://latest-hello.default.example.com"})");

  const auto& conditions = at(svc, "status.conditions").as_array();
  std::vector<std::string> types;
  for (const auto& c : conditions) {
    types.push_back(str(c, "type"));
    EXPECT_EQ(str(c, "status"), "True");
    EXPECT_EQ(str(c, "lastTransitionTime"), "2026-11-29T03:04:05Z");
  }
  EXPECT_EQ(types, (std::vector<std::string>{"ConfigurationsReady", "Ready", "RoutesReady"}));
}

TEST_F(ApiTest, DefaultTrafficIsLatestRevisionHundredPercent) {
  json::value svc = get("/apis/serving.knative.dev/v1/namespaces/prod/services/shop");
  EXPECT_EQ(json::serialize(at(svc, "spec.traffic")), R"([{"latestRevision":true,"percent":100}])");
  EXPECT_EQ(json::serialize(at(svc, "status.traffic")),
            R"([{"revisionName":"shop-b","latestRevision":true,"percent":100}])");
  EXPECT_EQ(entry(svc, "metadata.annotations", "revgate.dev/splitPolicy"), "random");
  EXPECT_EQ(str(svc, "status.url"), "http://shop.prod.example.com");
}

TEST_F(ApiTest, HttpsWhenATlsListenerExists) {
  snapshot_ = snapshot_of(kYaml, 1, /*https=*/true);
  json::value svc = get("/apis/serving.knative.dev/v1/namespaces/default/services/hello");
  EXPECT_EQ(str(svc, "status.url"), "https://hello.default.example.com");
  EXPECT_EQ(str(svc, "status.traffic.1.url"), "https://canary-hello.default.example.com");
  EXPECT_EQ(str(svc, "status.address.url"), "http://hello.default.example.com");
}

TEST_F(ApiTest, EveryNamespace) {
  auto dash = get("/apis/serving.knative.dev/v1/namespaces/-/services");
  EXPECT_EQ(names(dash), (std::vector<std::string>{"hello", "shop"}));
  auto cluster = get("/apis/serving.knative.dev/v1/services");
  EXPECT_EQ(json::serialize(cluster), json::serialize(dash));
  auto prod = get("/apis/serving.knative.dev/v1/namespaces/prod/services");
  EXPECT_EQ(names(prod), std::vector<std::string>{"shop"});
  auto none = get("/apis/serving.knative.dev/v1/namespaces/nowhere/services");
  EXPECT_TRUE(none.at("items").as_array().empty());
  auto revisions = get("/apis/serving.knative.dev/v1/namespaces/-/revisions");
  EXPECT_EQ(names(revisions),
            (std::vector<std::string>{"hello-00001", "hello-00002", "shop-a", "shop-b"}));
  // a name under "-" finds the object wherever it is
  auto shop = get("/apis/serving.knative.dev/v1/namespaces/-/services/shop");
  EXPECT_EQ(str(shop, "metadata.namespace"), "prod");
}

TEST_F(ApiTest, Routes) {
  auto list = get("/apis/serving.knative.dev/v1/namespaces/default/routes");
  EXPECT_EQ(list.at("kind"), "RouteList");
  EXPECT_EQ(names(list), std::vector<std::string>{"hello"});
  json::value route = get("/apis/serving.knative.dev/v1/namespaces/default/routes/hello");
  EXPECT_EQ(str(route, "kind"), "Route");
  EXPECT_EQ(entry(route, "metadata.labels", "serving.knative.dev/service"), "hello");
  // a Service's latestRevision target names its Configuration in the Route
  EXPECT_EQ(json::serialize(at(route, "spec.traffic.2")),
            R"({"tag":"latest","configurationName":"hello","latestRevision":true,"percent":0})");
  EXPECT_EQ(str(route, "status.url"), "http://hello.default.example.com");
  EXPECT_EQ(str(route, "status.traffic.2.revisionName"), "hello-00002");
  std::vector<std::string> types;
  for (const auto& c : at(route, "status.conditions").as_array()) types.push_back(str(c, "type"));
  EXPECT_EQ(types, (std::vector<std::string>{"AllTrafficAssigned", "CertificateProvisioned",
                                             "IngressReady", "Ready"}));
  EXPECT_EQ(str(route, "status.conditions.1.reason"), "TLSNotEnabled");
}

TEST_F(ApiTest, Configurations) {
  auto list = get("/apis/serving.knative.dev/v1/namespaces/-/configurations");
  EXPECT_EQ(list.at("kind"), "ConfigurationList");
  EXPECT_EQ(names(list), (std::vector<std::string>{"hello", "shop"}));
  json::value cfg = get("/apis/serving.knative.dev/v1/namespaces/prod/configurations/shop");
  EXPECT_EQ(str(cfg, "kind"), "Configuration");
  EXPECT_EQ(str(cfg, "status.latestCreatedRevisionName"), "shop-b");
  EXPECT_EQ(str(cfg, "status.latestReadyRevisionName"), "shop-b");
  EXPECT_EQ(str(cfg, "status.conditions.0.type"), "Ready");
  EXPECT_EQ(str(cfg, "spec.template.metadata.name"), "shop-b");
  EXPECT_EQ(entry(cfg, "spec.template.metadata.annotations", "revgate.dev/endpoints"),
            "127.0.0.1:9101");
}

TEST_F(ApiTest, Revisions) {
  auto list = get("/apis/serving.knative.dev/v1/namespaces/default/revisions");
  EXPECT_EQ(list.at("kind"), "RevisionList");
  EXPECT_EQ(names(list), (std::vector<std::string>{"hello-00001", "hello-00002"}));
  json::value rev = get("/apis/serving.knative.dev/v1/namespaces/default/revisions/hello-00001");
  EXPECT_EQ(str(rev, "kind"), "Revision");
  EXPECT_EQ(entry(rev, "metadata.labels", "serving.knative.dev/service"), "hello");
  EXPECT_EQ(entry(rev, "metadata.labels", "serving.knative.dev/configuration"), "hello");
  EXPECT_EQ(entry(rev, "metadata.labels", "serving.knative.dev/configurationGeneration"), "1");
  EXPECT_EQ(entry(rev, "metadata.labels", "serving.knative.dev/routingState"), "active");
  EXPECT_EQ(entry(rev, "metadata.annotations", "revgate.dev/endpoints"),
            "127.0.0.1:9001,127.0.0.1:9002");
  EXPECT_EQ(at(rev, "status.actualReplicas").to_number<int>(), 2);
  EXPECT_EQ(str(rev, "status.conditions.1.type"), "Ready");
  EXPECT_EQ(str(rev, "status.conditions.1.status"), "True");

  json::value ipv6 = get("/apis/serving.knative.dev/v1/namespaces/prod/revisions/shop-a");
  EXPECT_EQ(entry(ipv6, "metadata.annotations", "revgate.dev/endpoints"), "[::1]:9100");
  // shop-a takes no traffic: latestRevision is shop-b
  EXPECT_EQ(entry(ipv6, "metadata.labels", "serving.knative.dev/routingState"), "reserve");
  EXPECT_EQ(entry(ipv6, "metadata.labels", "serving.knative.dev/configurationGeneration"), "1");
  json::value latest = get("/apis/serving.knative.dev/v1/namespaces/prod/revisions/shop-b");
  EXPECT_EQ(entry(latest, "metadata.labels", "serving.knative.dev/configurationGeneration"), "2");

  // a revision of another namespace is not found here
  get("/apis/serving.knative.dev/v1/namespaces/default/revisions/shop-a", 404);
}

TEST_F(ApiTest, LabelSelector) {
  auto shop =
      get("/apis/serving.knative.dev/v1/namespaces/-/revisions?labelSelector="
          "serving.knative.dev%2Fservice%3Dshop");
  EXPECT_EQ(names(shop), (std::vector<std::string>{"shop-a", "shop-b"}));
  auto active =
      get("/apis/serving.knative.dev/v1/revisions?labelSelector=serving.knative.dev/"
          "routingState!=reserve,serving.knative.dev/service");
  EXPECT_EQ(names(active), (std::vector<std::string>{"hello-00001", "hello-00002", "shop-b"}));
  auto bad = get("/apis/serving.knative.dev/v1/revisions?labelSelector=a%20in%20(b)", 400);
  EXPECT_EQ(bad.at("reason"), "BadRequest");
}

TEST_F(ApiTest, DomainMappings) {
  auto list = get("/apis/serving.knative.dev/v1beta1/namespaces/default/domainmappings");
  EXPECT_EQ(list.at("apiVersion"), "serving.knative.dev/v1beta1");
  EXPECT_EQ(list.at("kind"), "DomainMappingList");
  EXPECT_EQ(names(list), (std::vector<std::string>{"www.example.org", "*.apps.example.org"}));
  auto all = get("/apis/serving.knative.dev/v1beta1/namespaces/-/domainmappings");
  EXPECT_EQ(names(all).size(), 3u);

  json::value dm =
      get("/apis/serving.knative.dev/v1beta1/namespaces/prod/domainmappings/shop.example.net");
  EXPECT_EQ(str(dm, "kind"), "DomainMapping");
  EXPECT_EQ(json::serialize(at(dm, "spec.ref")),
            R"({"apiVersion":"serving.knative.dev/v1","kind":"Service","name":"shop",)"
            R"("namespace":"prod"})");
  EXPECT_EQ(str(dm, "status.url"), "http://shop.example.net");
  std::vector<std::string> types;
  for (const auto& c : at(dm, "status.conditions").as_array()) types.push_back(str(c, "type"));
  EXPECT_EQ(types, (std::vector<std::string>{"CertificateProvisioned", "DomainClaimed",
                                             "IngressReady", "Ready", "ReferenceResolved"}));
  // a wildcard's name percent-encoded
  json::value wildcard = get(
      "/apis/serving.knative.dev/v1beta1/namespaces/default/domainmappings/%2A.apps.example.org");
  EXPECT_EQ(str(wildcard, "metadata.name"), "*.apps.example.org");
  // DomainMapping is v1beta1 only
  get("/apis/serving.knative.dev/v1/namespaces/default/domainmappings", 404);
}

TEST_F(ApiTest, NotFoundIsAKubernetesStatus) {
  auto missing = get("/apis/serving.knative.dev/v1/namespaces/default/services/nope", 404);
  EXPECT_EQ(json::serialize(missing),
            R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)"
            R"("message":"services.serving.knative.dev \"nope\" not found","reason":"NotFound",)"
            R"("details":{"name":"nope","group":"serving.knative.dev","kind":"services"},)"
            R"("code":404})");
  for (const char* path :
       {"/apis/serving.knative.dev/v1/namespaces/default/widgets",
        "/apis/apps/v1/namespaces/default/deployments", "/apis/serving.knative.dev/v2/services",
        "/apis/serving.knative.dev/v1/namespaces/default/services/hello/status",
        "/apis/serving.knative.dev/v1/namespaces/default",
        "/apis/serving.knative.dev/v1/services/hello"}) {
    auto status = get(path, 404);
    EXPECT_EQ(json::serialize(status),
              R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)"
              R"("message":"the server could not find the requested resource",)"
              R"("reason":"NotFound","details":{},"code":404})")
        << path;
  }
}

TEST_F(ApiTest, OnlyGetAndHead) {
  for (const char* target : {"/config", "/apis/serving.knative.dev/v1/namespaces/default/services",
                             "/apis/serving.knative.dev/v1/namespaces/default/services/hello"}) {
    EXPECT_EQ(handle(snapshot_, "HEAD", target).status, 200u) << target;
    for (const char* method : {"POST", "PUT", "PATCH", "DELETE"}) {
      auto response = handle(snapshot_, method, target);
      EXPECT_EQ(response.status, 405u) << method << " " << target;
      EXPECT_EQ(at(response.body, "reason"), "MethodNotAllowed");
      EXPECT_EQ(at(response.body, "code").to_number<int>(), 405);
      EXPECT_EQ(at(response.body, "kind"), "Status");
    }
  }
}

TEST_F(ApiTest, Discovery) {
  auto groups = get("/apis");
  EXPECT_EQ(groups.at("kind"), "APIGroupList");
  EXPECT_EQ(str(groups, "groups.0.name"), "serving.knative.dev");
  auto v1 = get("/apis/serving.knative.dev/v1");
  std::set<std::string> resources;
  for (const auto& r : v1.at("resources").as_array()) resources.insert(str(r, "name"));
  EXPECT_EQ(resources,
            (std::set<std::string>{"services", "routes", "configurations", "revisions"}));
  auto v1beta1 = get("/apis/serving.knative.dev/v1beta1");
  EXPECT_EQ(str(v1beta1, "resources.0.name"), "domainmappings");
}

TEST_F(ApiTest, ConfigHasEveryKeyWithDefaults) {
  auto cfg = get("/config");
  for (const char* key : {"domain", "workers", "listeners", "admin", "limits", "timeouts",
                          "upstream", "services", "domainMappings", "tracing"}) {
    EXPECT_TRUE(cfg.contains(key)) << key;
  }
  EXPECT_EQ(str(cfg, "admin.address"), "127.0.0.1:9901");
  EXPECT_EQ(at(cfg, "limits.requestLineBytes").to_number<int>(), 16384);
  EXPECT_EQ(at(cfg, "limits.requestHeadersBytes").to_number<int>(), 61440);
  EXPECT_EQ(at(cfg, "limits.requestHeaderCount").to_number<int>(), 100);
  EXPECT_EQ(at(cfg, "limits.requestBodyBytes").to_number<int>(), 0);
  EXPECT_EQ(str(cfg, "timeouts.requestHeaders"), "30s");
  EXPECT_EQ(str(cfg, "timeouts.idle"), "5m");
  EXPECT_EQ(str(cfg, "timeouts.upstreamConnect"), "5s");
  EXPECT_EQ(str(cfg, "timeouts.upstreamResponse"), "1m");
  EXPECT_EQ(str(cfg, "timeouts.shutdownGrace"), "10s");
  EXPECT_EQ(at(cfg, "upstream.maxIdlePerEndpoint").to_number<int>(), 64);
  EXPECT_EQ(at(cfg, "listeners.0.httpsRedirect"), false);
  EXPECT_EQ(str(cfg, "services.0.namespace"), "default");
  EXPECT_EQ(str(cfg, "services.0.splitPolicy"), "smooth");
  EXPECT_EQ(str(cfg, "services.0.loadBalancer"), "ROUND_ROBIN");
  EXPECT_EQ(at(cfg, "services.0.debugHeaders"), false);
  EXPECT_FALSE(at(cfg, "services.0").as_object().contains("hashOn"));
  EXPECT_FALSE(cfg.contains("accessLog"));  // off unless configured
  EXPECT_EQ(at(cfg, "tracing.sampleRate").as_double(), 0.01);
  EXPECT_EQ(str(cfg, "services.1.revisions.0.endpoints.0"), "[::1]:9100");
  EXPECT_EQ(json::serialize(at(cfg, "services.1.traffic")),
            R"([{"latestRevision":true,"percent":100}])");
  EXPECT_EQ(str(cfg, "domainMappings.0.namespace"), "default");
  // every service, revision, endpoint and mapping is mentioned
  const std::string text = json::serialize(cfg);
  for (const auto& service : snapshot_.config->services) {
    EXPECT_NE(text.find('"' + service.name + '"'), std::string::npos);
    for (const auto& revision : service.revisions) {
      EXPECT_NE(text.find('"' + revision.name + '"'), std::string::npos);
      for (const auto& endpoint : revision.endpoints) {
        EXPECT_NE(text.find('"' + endpoint_text(endpoint) + '"'), std::string::npos);
      }
    }
  }
  for (const auto& mapping : snapshot_.config->domain_mappings) {
    EXPECT_NE(text.find('"' + mapping.domain + '"'), std::string::npos);
  }
}

TEST(ApiConfig, RoundTripsThroughTheLoader) {
  const char* yaml = R"(
domain: Corp.Example.COM
workers: 2
listeners:
  - name: http
    address: "[::]:8080"
admin:
  address: 0.0.0.0:9999
limits: {requestBodyBytes: 1048576, requestHeaderCount: 50}
timeouts: {idle: 1500ms, upstreamResponse: 2h, upstreamIdle: 90s, drainDelay: 5s}
upstream: {maxIdlePerEndpoint: 3}
services:
  - name: a
    namespace: team
    revisions:
      - {name: a-1, endpoints: ["10.0.0.1:80", "https://10.0.0.2:443"]}
    traffic:
      - {latestRevision: true, percent: 100, tag: now}
  - name: b
    splitPolicy: hash
    hashOn: {cookie: {name: session, ttl: 1h}}
    loadBalancer: LEAST_REQUEST
    debugHeaders: true
    rolloutDuration: 10m
    revisions:
      - {name: b-1, endpoints: ["10.0.0.3:80"]}
  - name: c
    splitPolicy: hash
    hashOn: {header: X-User}
    revisions:
      - {name: c-1, endpoints: ["10.0.0.4:80"]}
  - name: d
    splitPolicy: hash
    hashOn: {sourceIp: true}
    loadBalancer: RANDOM
    revisions:
      - {name: d-1, endpoints: ["10.0.0.5:80"]}
domainMappings:
  - {domain: "*", service: a, namespace: team}
accessLog: {path: stderr, format: json}
tracing: {sampleRate: 0.25}
)";
  Snapshot first = snapshot_of(yaml);
  auto json_text = json::serialize(handle(first, "GET", "/config").body);
  auto again = config::load_string(json_text, "roundtrip.json");
  ASSERT_TRUE(again) << json_text << "\n" << again.error().front().to_string();
  // the same config, so the same JSON
  EXPECT_EQ(json::serialize(config_to_json(*again)), json_text);
  EXPECT_EQ(str(json::parse(json_text), "timeouts.idle"), "1500ms");
  EXPECT_EQ(str(json::parse(json_text), "timeouts.upstreamResponse"), "2h");
  EXPECT_EQ(str(json::parse(json_text), "timeouts.upstreamIdle"), "90s");
  EXPECT_EQ(str(json::parse(json_text), "domain"), "corp.example.com");
  EXPECT_EQ(str(json::parse(json_text), "listeners.0.address"), "[::]:8080");
  EXPECT_EQ(str(json::parse(json_text), "services.0.revisions.0.endpoints.1"),
            "https://10.0.0.2:443");
  EXPECT_EQ(json::serialize(at(json::parse(json_text), "services.1.hashOn")),
            R"({"cookie":{"name":"session","ttl":"1h"}})");
  EXPECT_EQ(str(json::parse(json_text), "services.1.loadBalancer"), "LEAST_REQUEST");
  EXPECT_EQ(json::serialize(at(json::parse(json_text), "services.2.hashOn")),
            R"({"header":"x-user"})");
  EXPECT_EQ(json::serialize(at(json::parse(json_text), "services.3.hashOn")),
            R"({"sourceIp":true})");
  EXPECT_EQ(json::serialize(at(json::parse(json_text), "accessLog")),
            R"({"path":"stderr","format":"json"})");
  EXPECT_EQ(at(json::parse(json_text), "tracing.sampleRate").as_double(), 0.25);
  EXPECT_EQ(str(json::parse(json_text), "timeouts.drainDelay"), "5s");
  EXPECT_EQ(str(json::parse(json_text), "services.1.rolloutDuration"), "10m");
  EXPECT_EQ(str(json::parse(json_text), "services.0.rolloutDuration"), "0s");  // off
  EXPECT_EQ(again->services.at(0).rollout_duration, std::chrono::milliseconds(0));
  EXPECT_EQ(again->services.at(1).rollout_duration, std::chrono::minutes(10));
  EXPECT_EQ(again->timeouts.drain_delay, std::chrono::seconds(5));
  // Beside "test.yaml", the source of the first load; written out, so it stays there.
  EXPECT_EQ(str(json::parse(json_text), "stateFile"), "test.state.json");
  EXPECT_EQ(again->state_file, "test.state.json");
}

TEST(ApiConfig, RouteRulesRoundTrip) {
  auto loaded = config::load_string(R"(listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: a
    revisions:
      - {name: a-1, endpoints: ["10.0.0.1:80"]}
      - {name: a-2, endpoints: ["10.0.0.2:80"]}
    routes:
      - name: canary
        match:
          - {name: m, uri: {prefix: /v2/}, method: {exact: GET}, authority: {regex: "a.*"},
             headers: {x-canary: {exact: "1"}, x-debug: {}}, withoutHeaders: {x-internal: {}},
             queryParams: {u: {regex: "[a-z]+"}}, ignoreUriCase: true}
        traffic: [{revisionName: a-2, percent: 100}]
        rewrite: {uri: /, authority: b.internal}
        headers: {request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}, response: {remove: [x-d]}}
      - {match: [{uri: {exact: /r}}], redirect: {uri: /s, authority: x.example, scheme: https, port: 8443, redirectCode: 307}}
      - {directResponse: {status: 204, body: {string: ""}}}
)",
                                    "<routes>");
  ASSERT_TRUE(loaded) << loaded.error().front().to_string();
  const json::value dumped = config_to_json(*loaded);
  EXPECT_EQ(json::serialize(at(dumped, "services.0.routes.0.match.0.headers")),
            R"({"x-canary":{"exact":"1"},"x-debug":{}})");
  EXPECT_EQ(json::serialize(at(dumped, "services.0.routes.1.redirect")),
            R"({"uri":"/s","authority":"x.example","scheme":"https","port":8443,"redirectCode":307})");
  auto again = config::load_string(json::serialize(dumped), "<routes>");
  ASSERT_TRUE(again) << again.error().front().to_string();
  EXPECT_EQ(json::serialize(config_to_json(*again)), json::serialize(dumped))
      << "/config loads back as the same config";
  EXPECT_EQ(again->services.at(0).routes.size(), 3u);
}

TEST(ApiConfig, DefaultsRoundTripAndAConfigWithoutAFileHasNoStateFile) {
  auto loaded = config::load_string(R"(listeners: [{name: http, address: "127.0.0.1:0"}]
services: [{name: a, revisions: [{name: a-1, endpoints: ["10.0.0.1:80"]}]}]
)",
                                    "<demo>");
  ASSERT_TRUE(loaded) << loaded.error().front().to_string();
  const json::value dumped = config_to_json(*loaded);
  EXPECT_FALSE(dumped.as_object().contains("stateFile"));
  EXPECT_EQ(str(dumped, "timeouts.drainDelay"), "0s");
  auto again = config::load_string(json::serialize(dumped), "<demo>");
  ASSERT_TRUE(again) << again.error().front().to_string();
  EXPECT_EQ(json::serialize(config_to_json(*again)), json::serialize(dumped));
  EXPECT_EQ(again->state_file, "");
  EXPECT_EQ(duration_text(std::chrono::milliseconds(0)), "0s");
  EXPECT_EQ(duration_text(std::chrono::milliseconds(1500)), "1500ms");
}

TEST(ApiJson, PrettyTextParsesBack) {
  Snapshot s = snapshot_of(kYaml);
  auto body = handle(s, "GET", "/apis/serving.knative.dev/v1/services").body;
  const std::string text = to_pretty_json(body);
  EXPECT_EQ(json::serialize(json::parse(text)), json::serialize(body));
  EXPECT_EQ(text.substr(0, 38), "{\n  \"apiVersion\": \"serving.knative.dev");
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(to_pretty_json(json::object()), "{}\n");
}

TEST(ApiSnapshot, WithoutATableOneIsCompiled) {
  Snapshot s = snapshot_of(kYaml, 7);
  s.table.reset();
  auto response =
      handle(s, "GET", "/apis/serving.knative.dev/v1/namespaces/default/services/hello");
  ASSERT_EQ(response.status, 200u);
  EXPECT_EQ(str(response.body, "status.traffic.2.revisionName"), "hello-00002");
  EXPECT_EQ(at(response.body, "status.observedGeneration").to_number<int>(), 7);
}

}  // namespace
}  // namespace revgate::api
