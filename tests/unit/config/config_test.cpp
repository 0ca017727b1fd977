// Unit tests of the config loader: one test per validation rule (rule id and exact line:column),
// a full valid config, durations, defaults, files, and a seeded fuzz run that must never throw.
#include "config/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace revgate::config {
namespace {

using namespace std::chrono_literals;

// Inline YAML starts on the line after `R"(`, so the line numbers in a test read as in an editor:
// the leading newline is dropped here.
std::string_view strip_first_newline(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return yaml;
}

// Endpoint names resolve through this fake so that the tests never touch DNS.
LoadOptions offline() {
  LoadOptions options;
  options.resolver = [](const std::string& host) -> std::expected<std::string, std::string> {
    if (host == "backend.test") return "10.0.0.7";
    return std::unexpected("Name or service not known");
  };
  return options;
}

LoadResult load(std::string_view yaml) {
  return load_string(strip_first_newline(yaml), "test.yaml", offline());
}

std::vector<ConfigError> errors_of(std::string_view yaml) {
  LoadResult result = load(yaml);
  return result ? std::vector<ConfigError>{} : result.error();
}

std::string all_errors(const std::vector<ConfigError>& errors) {
  std::string text;
  for (const ConfigError& error : errors) text += "\n  " + error.to_string();
  return errors.empty() ? " (none)" : text;
}

// Passes when loading `yaml` fails with exactly one error, breaking `rule` at line:column.
testing::AssertionResult only_error(std::string_view rule, int line, int column,
                                    std::string_view yaml) {
  std::vector<ConfigError> errors = errors_of(yaml);
  if (errors.size() == 1 && errors[0].rule == rule && errors[0].line == line &&
      errors[0].column == column && errors[0].file == "test.yaml") {
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure() << "expected only test.yaml:" << line << ":" << column << " ["
                                     << rule << "], got:" << all_errors(errors);
}

// `yaml` with its one '@' replaced by `value`: a template for a table of bad values.
std::string fill(std::string_view yaml, std::string_view value) {
  std::string text(yaml);
  text.replace(text.find('@'), 1, value);
  return text;
}

Config must_load(std::string_view yaml) {
  LoadResult result = load(yaml);
  EXPECT_TRUE(result.has_value()) << "errors:" << (result ? "" : all_errors(result.error()));
  return result ? *result : Config{};
}

// SPEC.md section 3, without the `tls` block (its files must exist: see SpecExampleWithTls).
constexpr std::string_view kSpecExample = R"(
domain: example.com            # default "example.com" (Knative's default domain)
workers: 0                     # event-loop threads; 0 = one per CPU core
listeners:
  - name: http
    address: 0.0.0.0:8080
  - name: https
    address: 0.0.0.0:8443
admin:
  address: 127.0.0.1:9901     # /metrics, /healthz, /readyz, admin API; loopback by default
services:
  - name: hello
    namespace: default         # default "default"
    splitPolicy: smooth        # smooth (default, exact interleaved shares) | random
    revisions:                 # oldest first; the last is the latest
      - name: hello-00001
        endpoints: ["127.0.0.1:9001", "127.0.0.1:9002"]
      - name: hello-00002
        endpoints: ["127.0.0.1:9003"]
    traffic:                   # Knative TrafficTarget fields
      - revisionName: hello-00001
        percent: 90
      - revisionName: hello-00002
        percent: 10
        tag: canary            # also at canary-hello.default.example.com
      - latestRevision: true
        percent: 0
        tag: latest
domainMappings:
  - domain: www.example.org
    service: hello             # namespace: default unless given
  - domain: "*.apps.example.org"
    service: hello
  - domain: "*"                # optional catch-all for any other host
    service: hello
)";

// ---------------------------------------------------------------------------------------------
// Valid configs

TEST(ConfigLoad, SpecExampleLoadsWithEveryValue) {
  Config config = must_load(kSpecExample);
  EXPECT_EQ(config.source, "test.yaml");
  EXPECT_EQ(config.domain, "example.com");
  EXPECT_EQ(config.workers, 0);

  ASSERT_EQ(config.listeners.size(), 2u);
  EXPECT_EQ(config.listeners[0].name, "http");
  EXPECT_EQ(config.listeners[0].host, "0.0.0.0");
  EXPECT_EQ(config.listeners[0].port, 8080);
  EXPECT_EQ(config.listeners[0].pos.line, 4);
  EXPECT_EQ(config.listeners[0].pos.column, 5);
  EXPECT_EQ(config.listeners[1].name, "https");
  EXPECT_EQ(config.listeners[1].port, 8443);
  EXPECT_EQ(config.admin.host, "127.0.0.1");
  EXPECT_EQ(config.admin.port, 9901);

  ASSERT_EQ(config.services.size(), 1u);
  const Service& hello = config.services[0];
  EXPECT_EQ(hello.name, "hello");
  EXPECT_EQ(hello.namespace_name, "default");
  EXPECT_EQ(hello.split_policy, SplitPolicy::smooth);
  ASSERT_EQ(hello.revisions.size(), 2u);
  EXPECT_EQ(hello.revisions[0].name, "hello-00001");
  ASSERT_EQ(hello.revisions[0].endpoints.size(), 2u);
  EXPECT_EQ(hello.revisions[0].endpoints[0].host, "127.0.0.1");
  EXPECT_EQ(hello.revisions[0].endpoints[0].port, 9001);
  EXPECT_EQ(hello.revisions[0].endpoints[0].address, "127.0.0.1");
  EXPECT_EQ(hello.revisions[0].endpoints[1].port, 9002);
  EXPECT_EQ(hello.revisions[0].endpoints[1].pos.line, 16);
  EXPECT_EQ(hello.revisions[0].endpoints[1].pos.column, 39);
  EXPECT_EQ(hello.revisions[1].name, "hello-00002");
  EXPECT_EQ(hello.revisions[1].endpoints[0].port, 9003);

  ASSERT_EQ(hello.traffic.size(), 3u);
  EXPECT_EQ(hello.traffic[0].revision_name, "hello-00001");
  EXPECT_FALSE(hello.traffic[0].latest_revision);
  EXPECT_EQ(hello.traffic[0].percent, 90);
  EXPECT_EQ(hello.traffic[0].tag, "");
  EXPECT_EQ(hello.traffic[1].revision_name, "hello-00002");
  EXPECT_EQ(hello.traffic[1].percent, 10);
  EXPECT_EQ(hello.traffic[1].tag, "canary");
  EXPECT_EQ(hello.traffic[2].revision_name, "");
  EXPECT_TRUE(hello.traffic[2].latest_revision);
  EXPECT_EQ(hello.traffic[2].percent, 0);
  EXPECT_EQ(hello.traffic[2].tag, "latest");
  EXPECT_EQ(hello.traffic[2].pos.line, 25);

  ASSERT_EQ(config.domain_mappings.size(), 3u);
  EXPECT_EQ(config.domain_mappings[0].domain, "www.example.org");
  EXPECT_EQ(config.domain_mappings[0].service, "hello");
  EXPECT_EQ(config.domain_mappings[0].namespace_name, "default");
  EXPECT_EQ(config.domain_mappings[1].domain, "*.apps.example.org");
  EXPECT_EQ(config.domain_mappings[2].domain, "*");

  // Sections the example leaves out keep their defaults.
  EXPECT_EQ(config.limits.request_line_bytes, 16u * 1024);
  EXPECT_EQ(config.limits.request_headers_bytes, 60u * 1024);
  EXPECT_EQ(config.limits.request_header_count, 100u);
  EXPECT_EQ(config.limits.request_body_bytes, 0u);
  EXPECT_EQ(config.timeouts.request_headers, 30s);
  EXPECT_EQ(config.timeouts.idle, 300s);
  EXPECT_EQ(config.timeouts.upstream_connect, 5s);
  EXPECT_EQ(config.timeouts.upstream_response, 60s);
  EXPECT_EQ(config.timeouts.upstream_idle, 60s);
  EXPECT_EQ(config.timeouts.shutdown_grace, 10s);
  EXPECT_EQ(config.upstream.max_idle_per_endpoint, 64u);
}

TEST(ConfigLoad, MinimalConfigGetsEveryDefault) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
)");
  EXPECT_EQ(config.domain, "example.com");
  EXPECT_EQ(config.workers, 0);
  EXPECT_EQ(config.listeners[0].port, 0);  // any free port
  EXPECT_EQ(config.admin.host, "127.0.0.1");
  EXPECT_EQ(config.admin.port, 9901);
  EXPECT_TRUE(config.services.empty());
  EXPECT_TRUE(config.domain_mappings.empty());
}

TEST(ConfigLoad, EveryOptionalSectionIsRead) {
  Config config = must_load(R"(
domain: Apps.Internal
workers: 4
listeners:
  - name: v6
    address: "[::]:8080"
admin: {address: "[::1]:0"}
limits: {requestLineBytes: 8192, requestHeadersBytes: 32768, requestHeaderCount: 50,
         requestBodyBytes: 1048576}
timeouts: {requestHeaders: 10s, idle: 2m, upstreamConnect: 250ms, upstreamResponse: 1m30s,
           upstreamIdle: 45, shutdownGrace: 1.5s}
upstream: {maxIdlePerEndpoint: 0}
services:
  - name: api
    namespace: prod
    splitPolicy: random
    revisions:
      - name: api-1
        endpoints: ["backend.test:8080", "[::1]:9000"]
domainMappings:
  - {domain: API.Example.COM, service: api, namespace: prod}
)");
  EXPECT_EQ(config.domain, "apps.internal");
  EXPECT_EQ(config.workers, 4);
  EXPECT_EQ(config.listeners[0].host, "::");
  EXPECT_EQ(config.listeners[0].port, 8080);
  EXPECT_EQ(config.admin.host, "::1");
  EXPECT_EQ(config.admin.port, 0);
  EXPECT_EQ(config.limits.request_line_bytes, 8192u);
  EXPECT_EQ(config.limits.request_headers_bytes, 32768u);
  EXPECT_EQ(config.limits.request_header_count, 50u);
  EXPECT_EQ(config.limits.request_body_bytes, 1048576u);
  EXPECT_EQ(config.timeouts.request_headers, 10s);
  EXPECT_EQ(config.timeouts.idle, 2min);
  EXPECT_EQ(config.timeouts.upstream_connect, 250ms);
  EXPECT_EQ(config.timeouts.upstream_response, 90s);
  EXPECT_EQ(config.timeouts.upstream_idle, 45s);
  EXPECT_EQ(config.timeouts.shutdown_grace, 1500ms);
  EXPECT_EQ(config.upstream.max_idle_per_endpoint, 0u);

  const Service& api = config.services.at(0);
  EXPECT_EQ(api.namespace_name, "prod");
  EXPECT_EQ(api.split_policy, SplitPolicy::random);
  const std::vector<Endpoint>& endpoints = api.revisions.at(0).endpoints;
  ASSERT_EQ(endpoints.size(), 2u);
  EXPECT_EQ(endpoints[0].host, "backend.test");
  EXPECT_EQ(endpoints[0].address, "10.0.0.7");  // resolved at load
  EXPECT_EQ(endpoints[1].host, "::1");          // without brackets
  EXPECT_EQ(endpoints[1].address, "::1");
  EXPECT_EQ(endpoints[1].port, 9000);
  EXPECT_EQ(config.domain_mappings.at(0).domain, "api.example.com");
  EXPECT_EQ(config.domain_mappings.at(0).namespace_name, "prod");
}

TEST(ConfigLoad, OmittedOrEmptyTrafficMeansAllToLatest) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: omitted
    revisions: [{name: omitted-1, endpoints: ["127.0.0.1:9001"]}]
  - name: empty
    revisions: [{name: empty-1, endpoints: ["127.0.0.1:9002"]}]
    traffic: []
)");
  for (const Service& service : config.services) {
    ASSERT_EQ(service.traffic.size(), 1u) << service.name;
    EXPECT_TRUE(service.traffic[0].latest_revision);
    EXPECT_EQ(service.traffic[0].revision_name, "");
    EXPECT_EQ(service.traffic[0].percent, 100);
    EXPECT_EQ(service.traffic[0].tag, "");
    EXPECT_EQ(service.traffic[0].pos.line, 0);  // defaulted, not written
  }
}

TEST(ConfigLoad, SameServiceNameInTwoNamespacesIsFine) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - {name: hello, namespace: a, revisions: [{name: a-1, endpoints: ["127.0.0.1:1"]}]}
  - {name: hello, namespace: b, revisions: [{name: b-1, endpoints: ["127.0.0.1:2"]}]}
)");
  EXPECT_EQ(config.services.size(), 2u);
}

TEST(ConfigLoad, EmptyTagMeansUntagged) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
    traffic: [{revisionName: hello-1, percent: 100, tag: ""}]
)");
  EXPECT_EQ(config.services[0].traffic[0].tag, "");
}

TEST(ConfigLoad, NamedEndpointResolvesWithGetaddrinfo) {
  // The real resolver; "localhost" comes from /etc/hosts, no network needed.
  LoadResult result = load_string(R"(listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["localhost:9001"]}]
)",
                                  "real.yaml");
  ASSERT_TRUE(result.has_value()) << all_errors(result ? std::vector<ConfigError>{}
                                                       : result.error());
  const std::string& address = result->services[0].revisions[0].endpoints[0].address;
  EXPECT_TRUE(address == "127.0.0.1" || address == "::1") << address;
}

// ---------------------------------------------------------------------------------------------
// Durations

constexpr std::string_view kIdleTimeout = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
timeouts: {idle: @}
)";

TEST(ConfigDurations, AcceptedForms) {
  const std::pair<std::string_view, std::chrono::milliseconds> cases[] = {
      {"500ms", 500ms}, {"30s", 30s},     {"5m", 5min},   {"1h", 1h},       {"45", 45s},
      {"1m30s", 90s},   {"1.5s", 1500ms}, {"0.25m", 15s}, {"\"10s\"", 10s}, {"1h0m1ms", 3600001ms},
  };
  for (const auto& [text, expected] : cases) {
    Config config = must_load(fill(kIdleTimeout, text));
    EXPECT_EQ(config.timeouts.idle, expected) << text;
  }
}

TEST(ConfigDurations, RejectedForms) {
  for (std::string_view text :
       {"0", "0s", "-5s", "10x", "1.5", "s", "5 minutes", "1us", "0.5ms", "9999h", "ten"}) {
    EXPECT_TRUE(only_error("duration", 2, 18, fill(kIdleTimeout, text))) << text;
  }
  EXPECT_TRUE(only_error("type", 2, 18, fill(kIdleTimeout, "[1s]")));
  // The value is named once, then what is wrong with it.
  const auto errors = errors_of(fill(kIdleTimeout, "ten"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "idle 'ten' is not a duration such as 500ms, 30s, 5m or 1h");
}

// ---------------------------------------------------------------------------------------------
// One test per rule: the rule id and the exact line:column of the offending key or value.

TEST(ConfigRules, YamlSyntax) {
  EXPECT_TRUE(only_error("yaml-syntax", 2, 1, R"(
listeners: [{name: http, address: "127.0.0.1:0"}
workers: 2
)"));  // where the parser noticed the unclosed [
}

TEST(ConfigRules, SecondYamlDocument) {
  EXPECT_TRUE(only_error("yaml-syntax", 2, 1, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
---
workers: 2
)"));
}

TEST(ConfigRules, StrayCommaIsASyntaxErrorNotAHang) {
  // yaml-cpp 0.7's LoadAll loops forever on this (jbeder/yaml-cpp#1040).
  EXPECT_TRUE(only_error("yaml-syntax", 2, 1, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
,
)"));
  EXPECT_TRUE(only_error("yaml-syntax", 1, 1, ",x"));
}

TEST(ConfigRules, Type) {
  EXPECT_TRUE(only_error("type", 1, 10, R"(
workers: many
listeners: [{name: http, address: "127.0.0.1:0"}]
)"));
  // A quoted number is a string, as in Kubernetes.
  EXPECT_TRUE(only_error("type", 3, 23, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
limits:
  requestHeaderCount: "50"
)"));
  EXPECT_TRUE(only_error("type", 2, 3, R"(
listeners:
  name: http
)"));
}

TEST(ConfigRules, UnknownKey) {
  std::vector<ConfigError> errors = errors_of(R"(
listeners:
  - name: http
    address: "127.0.0.1:0"
    tsl: {}
)");
  ASSERT_EQ(errors.size(), 1u) << all_errors(errors);
  EXPECT_EQ(errors[0].rule, "unknown-key");
  EXPECT_EQ(errors[0].line, 4);
  EXPECT_EQ(errors[0].column, 5);
  EXPECT_NE(errors[0].message.find("'tsl'"), std::string::npos) << errors[0].message;
  EXPECT_NE(errors[0].message.find("did you mean 'tls'?"), std::string::npos) << errors[0].message;
  EXPECT_NE(errors[0].message.find("name, address"), std::string::npos) << errors[0].message;
}

TEST(ConfigRules, UnknownKeySuggestsTheClosestKey) {
  std::vector<ConfigError> errors = errors_of(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
    traffic: [{latestRevision: true, percnt: 100}]
)");
  // The misspelt percent counts as 0, so the sum is wrong too.
  ASSERT_EQ(errors.size(), 2u) << all_errors(errors);
  EXPECT_EQ(errors[0].rule, "percent-sum");
  EXPECT_EQ(errors[1].rule, "unknown-key");
  EXPECT_EQ(errors[1].line, 5);
  EXPECT_EQ(errors[1].column, 38);
  EXPECT_NE(errors[1].message.find("did you mean 'percent'?"), std::string::npos)
      << errors[1].message;
}

TEST(ConfigRules, DuplicateKey) {
  EXPECT_TRUE(only_error("duplicate-key", 3, 1, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
workers: 1
workers: 2
)"));
}

TEST(ConfigRules, Required) {
  EXPECT_TRUE(only_error("required", 2, 5, R"(
listeners:
  - name: http
  - address: "127.0.0.1:0"
    name: other
)"));
}

TEST(ConfigRules, Range) {
  EXPECT_TRUE(only_error("range", 1, 10, R"(
workers: -1
listeners: [{name: http, address: "127.0.0.1:0"}]
)"));
  EXPECT_TRUE(only_error("range", 2, 28, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
limits: {requestLineBytes: 0}
)"));
}

TEST(ConfigRules, Domain) {
  EXPECT_TRUE(only_error("domain", 1, 9, R"(
domain: my_domain.com
listeners: [{name: http, address: "127.0.0.1:0"}]
)"));
}

TEST(ConfigRules, Address) {
  EXPECT_TRUE(only_error("address", 3, 14, R"(
listeners:
  - name: http
    address: localhost:8080
)"));
  EXPECT_TRUE(only_error("address", 3, 12, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
admin:
  address: "127.0.0.1:70000"
)"));
  EXPECT_TRUE(only_error("address", 1, 35, R"(
listeners: [{name: http, address: "::1:8080"}]
)"));
}

TEST(ConfigRules, ListenersRequired) {
  EXPECT_TRUE(only_error("listeners-required", 1, 1, R"(
workers: 2
)"));
  EXPECT_TRUE(only_error("listeners-required", 2, 1, R"(
workers: 2
listeners: []
)"));
}

TEST(ConfigRules, ListenerNameUnique) {
  EXPECT_TRUE(only_error("listener-name-unique", 3, 12, R"(
listeners:
  - {name: http, address: "127.0.0.1:0"}
  - {name: http, address: "127.0.0.1:0"}
)"));
}

TEST(ConfigRules, Name) {
  EXPECT_TRUE(only_error("name", 3, 11, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: Hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
)"));
  EXPECT_TRUE(only_error("name", 4, 16, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    namespace: team-
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
)"));
}

TEST(ConfigRules, ServiceUnique) {
  EXPECT_TRUE(only_error("service-unique", 5, 11, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
  - name: hello
    namespace: default
    revisions: [{name: hello-2, endpoints: ["127.0.0.1:9002"]}]
)"));
}

TEST(ConfigRules, RevisionUnique) {
  EXPECT_TRUE(only_error("revision-unique", 7, 24, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: a
    revisions: [{name: rev-1, endpoints: ["127.0.0.1:9001"]}]
  - name: b
    namespace: other
    revisions: [{name: rev-1, endpoints: ["127.0.0.1:9002"]}]
)"));
}

TEST(ConfigRules, RevisionsRequired) {
  EXPECT_TRUE(only_error("revisions-required", 4, 5, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: []
)"));
}

TEST(ConfigRules, SplitPolicy) {
  EXPECT_TRUE(only_error("split-policy", 4, 18, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    splitPolicy: round-robin
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
)"));
}

// One revision with one endpoint, "@" standing for the endpoint under test (line 6, column 21).
constexpr std::string_view kOneEndpoint = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
        endpoints: ["@"]
)";

TEST(ConfigRules, Endpoint) {
  EXPECT_TRUE(only_error("endpoint", 8, 13, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
        endpoints:
          - 127.0.0.1:9001
          - 127.0.0.1:0
)"));
  for (const char* endpoint :
       {"127.0.0.1", "::1:80", "[::1]", "999.0.0.1:80", "a..b:80", "[nope]:80", "127.0.0.1:http"}) {
    EXPECT_TRUE(only_error("endpoint", 6, 21, fill(kOneEndpoint, endpoint))) << endpoint;
  }
}

TEST(ConfigRules, EndpointResolve) {
  EXPECT_TRUE(only_error("endpoint-resolve", 6, 40, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
        endpoints: ["backend.test:80", "nowhere.test:80"]
)"));
}

TEST(ConfigRules, EndpointsRequired) {
  EXPECT_TRUE(only_error("endpoints-required", 5, 9, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
)"));
}

TEST(ConfigRules, PercentRange) {
  EXPECT_TRUE(only_error("percent-range", 7, 18, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
    traffic:
      - revisionName: hello-1
        percent: 101
)"));
  EXPECT_TRUE(only_error("percent-range", 5, 48, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
    traffic: [{revisionName: hello-1, percent: 99.5}]
)"));
}

TEST(ConfigRules, PercentSum) {
  EXPECT_TRUE(only_error("percent-sum", 7, 5, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - {name: hello-1, endpoints: ["127.0.0.1:9001"]}
      - {name: hello-2, endpoints: ["127.0.0.1:9002"]}
    traffic:
      - {revisionName: hello-1, percent: 90}
      - {revisionName: hello-2, percent: 20}
)"));
}

TEST(ConfigRules, TargetKind) {
  // Both: reported at latestRevision.
  EXPECT_TRUE(only_error("target-kind", 7, 9, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
    traffic:
      - revisionName: hello-1
        latestRevision: true
        percent: 100
)"));
  // Neither: reported at the target.
  EXPECT_TRUE(only_error("target-kind", 6, 9, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
    traffic:
      - percent: 100
        latestRevision: false
)"));
}

TEST(ConfigRules, RevisionExists) {
  EXPECT_TRUE(only_error("revision-exists", 5, 30, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
    traffic: [{revisionName: hello-9, percent: 100}]
)"));
}

TEST(ConfigRules, TagName) {
  EXPECT_TRUE(only_error("tag-name", 6, 51, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
    traffic:
      - {latestRevision: true, percent: 100, tag: 1st}
)"));
}

TEST(ConfigRules, TagUnique) {
  EXPECT_TRUE(only_error("tag-unique", 7, 49, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
    traffic:
      - {revisionName: hello-1, percent: 100, tag: canary}
      - {latestRevision: true, percent: 0, tag: canary}
)"));
}

TEST(ConfigRules, MappingDomain) {
  constexpr std::string_view kOneMapping = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services: [{name: hello, revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]}]
domainMappings:
  - domain: "@"
    service: hello
)";
  for (const char* domain : {"www.*.org", "*example.org", "**", "bad_host.org", "*."}) {
    EXPECT_TRUE(only_error("mapping-domain", 4, 13, fill(kOneMapping, domain))) << domain;
  }
}

TEST(ConfigRules, MappingUnique) {
  EXPECT_TRUE(only_error("mapping-unique", 5, 14, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services: [{name: hello, revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]}]
domainMappings:
  - {domain: www.example.org, service: hello}
  - {domain: WWW.Example.org, service: hello}
)"));
}

TEST(ConfigRules, MappingService) {
  EXPECT_TRUE(only_error("mapping-service", 5, 14, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services: [{name: hello, revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]}]
domainMappings:
  - domain: www.example.org
    service: helo
)"));
  // Right name, wrong namespace: the message says where the service is.
  std::vector<ConfigError> errors = errors_of(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services: [{name: hello, namespace: prod, revisions: [{name: h-1, endpoints: ["127.0.0.1:1"]}]}]
domainMappings: [{domain: www.example.org, service: hello}]
)");
  ASSERT_EQ(errors.size(), 1u) << all_errors(errors);
  EXPECT_EQ(errors[0].rule, "mapping-service");
  EXPECT_NE(errors[0].message.find("namespace 'prod'"), std::string::npos) << errors[0].message;
}

// ---------------------------------------------------------------------------------------------
// TLS (issue 3). Only readability of certificate files is checked here, so /dev/null stands in
// for a readable file; their contents are tls/'s business (tests/unit/tls).

TEST(ConfigTls, ListenerTlsIsReadWithDefaults) {
  Config config = must_load(R"(
listeners:
  - name: http
    address: "127.0.0.1:0"
    httpsRedirect: true
  - name: https
    address: "127.0.0.1:0"
    tls:
      certificates:
        - {certFile: /dev/null, keyFile: /dev/null}
  - name: strict
    address: "127.0.0.1:0"
    tls:
      certificates:
        - {certFile: /dev/null, keyFile: /dev/null}
        - certFile: /dev/null
          keyFile: /dev/null
      minVersion: "1.3"
      requireSni: true
      handshakeTimeout: 2500ms
)");
  ASSERT_EQ(config.listeners.size(), 3u);
  EXPECT_FALSE(config.listeners[0].tls.has_value());
  EXPECT_TRUE(config.listeners[0].https_redirect);
  const Listener& https = config.listeners[1];
  ASSERT_TRUE(https.tls.has_value());
  EXPECT_FALSE(https.https_redirect);
  ASSERT_EQ(https.tls->certificates.size(), 1u);
  EXPECT_EQ(https.tls->certificates[0].cert_file, "/dev/null");
  EXPECT_EQ(https.tls->certificates[0].key_file, "/dev/null");
  EXPECT_EQ(https.tls->certificates[0].pos.line, 9);
  EXPECT_EQ(https.tls->certificates[0].pos.column, 11);
  EXPECT_EQ(https.tls->min_version, TlsVersion::tls12);
  EXPECT_FALSE(https.tls->require_sni);
  EXPECT_EQ(https.tls->handshake_timeout, 10s);
  const Listener& strict = config.listeners[2];
  ASSERT_TRUE(strict.tls.has_value());
  EXPECT_EQ(strict.tls->certificates.size(), 2u);
  EXPECT_EQ(strict.tls->min_version, TlsVersion::tls13);
  EXPECT_TRUE(strict.tls->require_sni);
  EXPECT_EQ(strict.tls->handshake_timeout, 2500ms);
}

TEST(ConfigTls, MinVersionQuotedOrNot) {
  Config config = must_load(R"(
listeners:
  - {name: a, address: "127.0.0.1:0", tls: {certificates: [{certFile: /dev/null, keyFile: /dev/null}], minVersion: 1.3}}
  - {name: b, address: "127.0.0.1:0", tls: {certificates: [{certFile: /dev/null, keyFile: /dev/null}], minVersion: "1.2"}}
)");
  EXPECT_EQ(config.listeners[0].tls->min_version, TlsVersion::tls13);
  EXPECT_EQ(config.listeners[1].tls->min_version, TlsVersion::tls12);
}

TEST(ConfigTls, EmptyTlsKeyMeansCleartext) {
  Config config = must_load(R"(
listeners:
  - name: http
    address: "127.0.0.1:0"
    tls:
)");
  EXPECT_FALSE(config.listeners[0].tls.has_value());
}

TEST(ConfigTls, EndpointSchemes) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
        endpoints: ["127.0.0.1:9001", "http://127.0.0.1:9002", "https://backend.test:8443",
                    "HTTPS://[::1]:443"]
)");
  const std::vector<Endpoint>& endpoints = config.services[0].revisions[0].endpoints;
  ASSERT_EQ(endpoints.size(), 4u);
  EXPECT_FALSE(endpoints[0].tls);
  EXPECT_FALSE(endpoints[1].tls);
  EXPECT_EQ(endpoints[1].port, 9002);
  EXPECT_TRUE(endpoints[2].tls);
  EXPECT_EQ(endpoints[2].host, "backend.test");
  EXPECT_EQ(endpoints[2].address, "10.0.0.7");
  EXPECT_EQ(endpoints[2].port, 8443);
  EXPECT_TRUE(endpoints[3].tls);
  EXPECT_EQ(endpoints[3].host, "::1");
  EXPECT_FALSE(config.services[0].revisions[0].tls.has_value());  // system store, host as SNI
}

TEST(ConfigTls, RevisionTlsIsRead) {
  Config config = must_load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
        endpoints: ["https://127.0.0.1:9001"]
        tls:
          caFile: /dev/null
          serverName: Hello.Internal
          certFile: /dev/null
          keyFile: /dev/null
      - name: hello-2
        endpoints: ["https://127.0.0.1:9002"]
        tls: {serverName: 10.0.0.1}
)");
  const Revision& one = config.services[0].revisions[0];
  ASSERT_TRUE(one.tls.has_value());
  EXPECT_EQ(one.tls->ca_file, "/dev/null");
  EXPECT_EQ(one.tls->server_name, "hello.internal");
  EXPECT_EQ(one.tls->cert_file, "/dev/null");
  EXPECT_EQ(one.tls->key_file, "/dev/null");
  EXPECT_EQ(one.tls->pos.line, 8);
  const Revision& two = config.services[0].revisions[1];
  ASSERT_TRUE(two.tls.has_value());
  EXPECT_EQ(two.tls->ca_file, "");
  EXPECT_EQ(two.tls->server_name, "10.0.0.1");
  EXPECT_EQ(two.tls->cert_file, "");
}

TEST(ConfigRules, CertificatesRequired) {
  EXPECT_TRUE(only_error("certificates-required", 4, 10, R"(
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls: {minVersion: "1.2"}
)"));
  EXPECT_TRUE(only_error("certificates-required", 5, 7, R"(
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls:
      certificates: []
)"));
}

TEST(ConfigRules, CertificateNeedsBothFiles) {
  EXPECT_TRUE(only_error("required", 6, 11, R"(
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls:
      certificates:
        - certFile: /dev/null
)"));
}

TEST(ConfigRules, MinVersion) {
  constexpr std::string_view kMinVersion = R"(
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls:
      certificates: [{certFile: /dev/null, keyFile: /dev/null}]
      minVersion: @
)";
  for (const char* version : {"\"1.1\"", "1.0", "\"TLSv1.3\"", "1.20", "2"}) {
    EXPECT_TRUE(only_error("min-version", 6, 19, fill(kMinVersion, version))) << version;
  }
}

TEST(ConfigRules, HandshakeTimeoutIsADuration) {
  EXPECT_TRUE(only_error("duration", 6, 25, R"(
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls:
      certificates: [{certFile: /dev/null, keyFile: /dev/null}]
      handshakeTimeout: 0s
)"));
}

TEST(ConfigRules, UnknownKeyInTls) {
  EXPECT_TRUE(only_error("unknown-key", 6, 7, R"(
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls:
      certificates: [{certFile: /dev/null, keyFile: /dev/null}]
      ciphers: ALL
)"));
}

TEST(ConfigRules, TlsFile) {
  constexpr std::string_view kCertFile = R"(
listeners:
  - name: https
    address: "127.0.0.1:0"
    tls:
      certificates:
        - certFile: @
          keyFile: /dev/null
)";
  for (const char* path : {"/nonexistent/site.crt", "/", "\"\""}) {
    EXPECT_TRUE(only_error("tls-file", 6, 21, fill(kCertFile, path))) << path;
  }
  std::vector<ConfigError> errors = errors_of(fill(kCertFile, "/nonexistent/site.crt"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message,
            "certFile '/nonexistent/site.crt' cannot be read: No such file or directory");
  // The same rule for a revision's files.
  EXPECT_TRUE(only_error("tls-file", 7, 23, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
        endpoints: ["https://127.0.0.1:9001"]
        tls: {caFile: /nonexistent/ca.pem}
)"));
}

TEST(ConfigRules, HttpsRedirect) {
  // No TLS listener to redirect to.
  EXPECT_TRUE(only_error("https-redirect", 4, 20, R"(
listeners:
  - name: http
    address: "127.0.0.1:0"
    httpsRedirect: true
)"));
  // On the TLS listener itself.
  EXPECT_TRUE(only_error("https-redirect", 4, 20, R"(
listeners:
  - name: https
    address: "127.0.0.1:0"
    httpsRedirect: true
    tls: {certificates: [{certFile: /dev/null, keyFile: /dev/null}]}
)"));
  EXPECT_TRUE(only_error("type", 4, 20, R"(
listeners:
  - name: http
    address: "127.0.0.1:0"
    httpsRedirect: yes
)"));
}

TEST(ConfigRules, EndpointScheme) {
  for (const char* endpoint : {"ftp://127.0.0.1:21", "https://127.0.0.1:443/", "https://127.0.0.1",
                               "://127.0.0.1:80", "https://127.0.0.1:0"}) {
    EXPECT_TRUE(only_error("endpoint", 6, 21, fill(kOneEndpoint, endpoint))) << endpoint;
  }
}

TEST(ConfigRules, UpstreamTlsUnused) {
  EXPECT_TRUE(only_error("upstream-tls-unused", 7, 9, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
        endpoints: ["127.0.0.1:9001", "http://127.0.0.1:9002"]
        tls: {caFile: /dev/null}
)"));
}

TEST(ConfigRules, ClientCertPair) {
  EXPECT_TRUE(only_error("client-cert-pair", 8, 11, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
        endpoints: ["https://127.0.0.1:9001"]
        tls:
          keyFile: /dev/null
)"));
}

TEST(ConfigRules, ServerName) {
  EXPECT_TRUE(only_error("server-name", 7, 27, R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - name: hello-1
        endpoints: ["https://127.0.0.1:9001"]
        tls: {serverName: "bad_name.test"}
)"));
}

// ---------------------------------------------------------------------------------------------
// The whole file in one pass

TEST(ConfigLoad, ReportsEveryMistakeInSourceOrder) {
  // domainMappings comes before services on purpose: errors still come out in source order.
  std::vector<ConfigError> errors = errors_of(R"(
workers: lots
domainMappings:
  - {domain: www.example.org, service: nope}
listeners:
  - {name: http, address: "127.0.0.1:80800"}
timeouts: {idle: 5 minutes}
services:
  - name: hello
    revisions:
      - {name: hello-1, endpoints: ["127.0.0.1:9001"]}
    traffic:
      - {revisionName: hello-1, percent: 50, tag: Canary}
      - {revisionName: hello-2, percent: 40}
)");
  std::vector<std::tuple<std::string, int, int>> found;
  for (const ConfigError& error : errors) found.emplace_back(error.rule, error.line, error.column);
  std::vector<std::tuple<std::string, int, int>> expected = {
      {"type", 1, 10},              // workers: lots
      {"mapping-service", 3, 40},   // no service 'nope'
      {"address", 5, 27},           // port 80800
      {"duration", 6, 18},          // "5 minutes"
      {"percent-sum", 11, 5},       // 50 + 40
      {"tag-name", 12, 51},         // uppercase tag
      {"revision-exists", 13, 24},  // hello-2 is not a revision of hello
  };
  EXPECT_EQ(found, expected) << all_errors(errors);
  for (const ConfigError& error : errors) EXPECT_EQ(error.file, "test.yaml");
}

TEST(ConfigLoad, ErrorToString) {
  ConfigError positioned{
      .file = "a.yaml", .line = 3, .column = 7, .rule = "percent-sum", .message = "sum is 90"};
  EXPECT_EQ(positioned.to_string(), "a.yaml:3:7: sum is 90 [percent-sum]");
  ConfigError file_level{
      .file = "a.yaml", .line = 0, .column = 0, .rule = "file", .message = "cannot read"};
  EXPECT_EQ(file_level.to_string(), "a.yaml: cannot read [file]");
}

// ---------------------------------------------------------------------------------------------
// Files

TEST(ConfigFile, MissingFileIsOneFileError) {
  LoadResult result = load_file("/nonexistent/revgate.yaml");
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 1u);
  const ConfigError& error = result.error()[0];
  EXPECT_EQ(error.rule, "file");
  EXPECT_EQ(error.line, 0);
  EXPECT_EQ(error.column, 0);
  EXPECT_EQ(error.to_string(),
            "/nonexistent/revgate.yaml: cannot read the config file: No such file or directory "
            "[file]");
}

class ConfigFileInTempDir : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "revgate-config-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, std::string_view text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(ConfigFileInTempDir, LoadsARealFile) {
  std::string path = write("revgate.yaml", strip_first_newline(kSpecExample));
  LoadResult result = load_file(path, offline());
  ASSERT_TRUE(result.has_value()) << all_errors(result ? std::vector<ConfigError>{}
                                                       : result.error());
  EXPECT_EQ(result->source, path);
  EXPECT_EQ(result->services.at(0).traffic.size(), 3u);
}

TEST_F(ConfigFileInTempDir, SpecExampleWithTlsResolvesRelativePathsAgainstTheConfigDirectory) {
  std::filesystem::create_directory(dir_ / "certs");
  write("certs/example.com.crt", "not parsed by config/");
  write("certs/example.com.key", "not parsed by config/");
  std::string yaml(strip_first_newline(kSpecExample));
  const std::string https = "    address: 0.0.0.0:8443\n";
  yaml.insert(yaml.find(https) + https.size(),
              "    tls:\n"
              "      certificates:\n"
              "        - certFile: certs/example.com.crt\n"
              "          keyFile: certs/example.com.key\n"
              "      minVersion: \"1.2\"\n");
  std::string path = write("revgate.yaml", yaml);
  LoadResult result = load_file(path, offline());
  ASSERT_TRUE(result.has_value()) << all_errors(result ? std::vector<ConfigError>{}
                                                       : result.error());
  const Listener& listener = result->listeners.at(1);
  ASSERT_TRUE(listener.tls.has_value());
  EXPECT_EQ(listener.tls->certificates.at(0).cert_file, (dir_ / "certs/example.com.crt").string());
  EXPECT_EQ(listener.tls->certificates.at(0).key_file, (dir_ / "certs/example.com.key").string());

  // A missing relative file names both the written and the resolved path.
  std::filesystem::remove(dir_ / "certs/example.com.key");
  result = load_file(path, offline());
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 1u);
  EXPECT_EQ(result.error()[0].rule, "tls-file");
  EXPECT_EQ(result.error()[0].line, 11);
  EXPECT_EQ(result.error()[0].column, 20);
  EXPECT_NE(result.error()[0].message.find("'certs/example.com.key' (" +
                                           (dir_ / "certs/example.com.key").string() + ")"),
            std::string::npos)
      << result.error()[0].message;
}

TEST_F(ConfigFileInTempDir, ErrorsNameTheFile) {
  std::string path = write("bad.yaml",
                           "listeners: [{name: http, address: \"127.0.0.1:0\"}]\n"
                           "workers: -3\n");
  LoadResult result = load_file(path);
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 1u);
  EXPECT_EQ(result.error()[0].to_string().rfind(path + ":2:10: ", 0), 0u)
      << result.error()[0].to_string();
}

TEST_F(ConfigFileInTempDir, DirectoryIsAFileError) {
  LoadResult result = load_file(dir_.string());
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 1u);
  EXPECT_EQ(result.error()[0].rule, "file");
}

// ---------------------------------------------------------------------------------------------
// Robustness: mutated and truncated configs return errors, never throw or crash.

// splitmix64: tiny and identical on every platform, unlike std:: distributions.
struct Rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n == 0 ? 0 : next() % n; }
};

std::string mutate(std::string text, Rng& rng) {
  static constexpr std::string_view kNoise = ":-[]{}\"'&*!|>#%@`,?\t\n 0a.9Z\\";
  int edits = 1 + int(rng.below(4));
  for (int i = 0; i < edits && !text.empty(); ++i) {
    std::size_t at = rng.below(text.size());
    switch (rng.below(6)) {
      case 0:  // truncate
        text.resize(at);
        break;
      case 1:  // flip a character to YAML punctuation
        text[at] = kNoise[rng.below(kNoise.size())];
        break;
      case 2:  // insert punctuation
        text.insert(at, 1, kNoise[rng.below(kNoise.size())]);
        break;
      case 3:  // delete a run
        text.erase(at, 1 + rng.below(12));
        break;
      case 4: {  // duplicate a line
        std::size_t start = text.rfind('\n', at);
        start = start == std::string::npos ? 0 : start + 1;
        std::size_t end = text.find('\n', at);
        end = end == std::string::npos ? text.size() : end + 1;
        text.insert(start, text.substr(start, end - start));
        break;
      }
      default:  // any byte at all
        text[at] = static_cast<char>(rng.below(256));
        break;
    }
  }
  return text;
}

TEST(ConfigFuzz, MutatedConfigsNeverThrow) {
  // REVGATE_FUZZ_ITERATIONS runs a longer soak by hand; the default keeps the suite fast.
  const char* env = std::getenv("REVGATE_FUZZ_ITERATIONS");
  const int iterations = env != nullptr ? std::atoi(env) : 500;
  Rng rng{20240601};
  const std::string base(strip_first_newline(kSpecExample));
  int loaded = 0;
  for (int i = 0; i < iterations; ++i) {
    std::string variant = mutate(base, rng);
    LoadResult result;
    ASSERT_NO_THROW(result = load_string(variant, "fuzz.yaml", offline())) << variant;
    if (result) {
      ++loaded;
      continue;
    }
    ASSERT_FALSE(result.error().empty()) << variant;
    for (const ConfigError& error : result.error()) {
      EXPECT_EQ(error.file, "fuzz.yaml");
      EXPECT_FALSE(error.rule.empty());
      EXPECT_NE(error.rule, "internal") << error.to_string() << "\n" << variant;
      EXPECT_GE(error.line, 1) << error.to_string();
      EXPECT_GE(error.column, 1) << error.to_string();
      EXPECT_EQ(error.to_string().find('\n'), std::string::npos) << error.to_string();
    }
  }
  // Some mutations land in comments or values that stay valid; most must not.
  EXPECT_GT(loaded, 0);
  EXPECT_LT(loaded, iterations);
}

}  // namespace
}  // namespace revgate::config
