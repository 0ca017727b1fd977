// Unit tests of `routes:` on a service (Istio HTTPRoute fields): what loads, with every field
// read, and each error with its position, the rule's position and name, and its rule id.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "config/config.h"
#include "config_test_util.h"

namespace revgate::config {
namespace {

using namespace test_util;

// `@` is the routes list, indented as a service key.
constexpr std::string_view kService = R"(
listeners: [{name: web, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - {name: hello-1, endpoints: ["127.0.0.1:9001"]}
      - {name: hello-2, endpoints: ["127.0.0.1:9002"]}
    traffic:
      - {revisionName: hello-1, percent: 100}
    routes:
@
)";

RouteRule only_rule(std::string_view routes) {
  const auto config = must_load(fill(kService, routes));
  if (config.services.empty() || config.services[0].routes.size() != 1) return {};
  return config.services[0].routes[0];
}

TEST(Routes, NoneByDefault) {
  const auto config = must_load(R"(
listeners: [{name: web, address: "127.0.0.1:0"}]
services: [{name: hello, revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]}]
)");
  EXPECT_TRUE(config.services.at(0).routes.empty());
}

TEST(Routes, EveryMatchField) {
  const auto rule = only_rule(R"(      - name: canary
        match:
          - name: by-header
            uri: {prefix: /v2/}
            method: {exact: POST}
            authority: {regex: ".*\\.example\\.com"}
            headers: {X-Canary: {exact: "1"}, x-debug: {}}
            withoutHeaders: {x-internal: {}}
            queryParams: {user: {regex: "[a-z]+"}}
            ignoreUriCase: true
          - uri: {exact: /robots.txt}
        traffic: [{revisionName: hello-2, percent: 100}])");
  EXPECT_EQ(rule.name, "canary");
  ASSERT_EQ(rule.match.size(), 2u);
  const HttpMatch& m = rule.match[0];
  EXPECT_EQ(m.name, "by-header");
  ASSERT_TRUE(m.uri && m.method && m.authority);
  EXPECT_EQ(m.uri->kind, StringMatch::Kind::prefix);
  EXPECT_EQ(m.uri->value, "/v2/");
  EXPECT_EQ(m.method->kind, StringMatch::Kind::exact);
  EXPECT_EQ(m.authority->kind, StringMatch::Kind::regex);
  EXPECT_EQ(m.authority->value, ".*\\.example\\.com");
  ASSERT_EQ(m.headers.size(), 2u);
  EXPECT_EQ(m.headers[0].name, "x-canary") << "header names are lowercased";
  EXPECT_EQ(m.headers[1].match.kind, StringMatch::Kind::present);
  ASSERT_EQ(m.without_headers.size(), 1u);
  ASSERT_EQ(m.query_params.size(), 1u);
  EXPECT_EQ(m.query_params[0].name, "user");
  EXPECT_TRUE(m.ignore_uri_case);
  EXPECT_EQ(rule.match[1].uri->value, "/robots.txt");
  ASSERT_EQ(rule.traffic.size(), 1u);
  EXPECT_EQ(rule.traffic[0].revision_name, "hello-2");
}

TEST(Routes, ActionsAndHeaderEdits) {
  const auto config = must_load(fill(kService, R"(      - match: [{uri: {prefix: /old/}}]
        rewrite: {uri: /new/, authority: backend.internal}
        headers:
          request: {set: {X-Env: canary}, add: {x-via: revgate}, remove: [X-Debug]}
          response: {set: {cache-control: no-store}}
      - match: [{authority: {exact: old.example.com}}]
        redirect: {authority: new.example.com, scheme: https, port: 8443, uri: /home, redirectCode: 308}
      - match: [{uri: {exact: /robots.txt}}]
        directResponse: {status: 200, body: {string: "User-agent: *\nDisallow: /\n"}})"));
  const auto& routes = config.services.at(0).routes;
  ASSERT_EQ(routes.size(), 3u);
  ASSERT_TRUE(routes[0].rewrite);
  EXPECT_EQ(routes[0].rewrite->uri, "/new/");
  EXPECT_EQ(routes[0].rewrite->authority, "backend.internal");
  EXPECT_TRUE(routes[0].traffic.empty()) << "the service's traffic";
  ASSERT_EQ(routes[0].request_headers.set.size(), 1u);
  EXPECT_EQ(routes[0].request_headers.set[0].first, "x-env");
  EXPECT_EQ(routes[0].request_headers.set[0].second, "canary");
  EXPECT_EQ(routes[0].request_headers.add.at(0).first, "x-via");
  EXPECT_EQ(routes[0].request_headers.remove.at(0), "x-debug");
  EXPECT_EQ(routes[0].response_headers.set.at(0).second, "no-store");
  ASSERT_TRUE(routes[1].redirect);
  EXPECT_EQ(routes[1].redirect->authority, "new.example.com");
  EXPECT_EQ(routes[1].redirect->scheme, "https");
  EXPECT_EQ(routes[1].redirect->port, 8443);
  EXPECT_EQ(routes[1].redirect->uri, "/home");
  EXPECT_EQ(routes[1].redirect->code, 308);
  ASSERT_TRUE(routes[2].direct_response);
  EXPECT_EQ(routes[2].direct_response->status, 200);
  EXPECT_EQ(routes[2].direct_response->body, "User-agent: *\nDisallow: /\n");
  EXPECT_FALSE(routes[0].redirect || routes[0].direct_response);
}

TEST(Routes, RedirectDefaultsTo301) {
  EXPECT_EQ(only_rule("      - redirect: {uri: /elsewhere}").redirect->code, 301);
}

TEST(Routes, AnInvalidRegexIsReportedWhereItIs) {
  const auto error = only_error(fill(kService, "      - name: bad\n        match: [{uri: {regex: \"/a(\"}}]"));
  EXPECT_EQ(error.substr(0, 6), "11:31:") << error;
  EXPECT_NE(error.find("routes[0] (bad): uri regex '/a(' is not valid RE2: missing )"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("[route-regex]"), std::string::npos) << error;
}

TEST(Routes, AStringMatchTakesExactlyOneKind) {
  EXPECT_NE(only_error(fill(kService, "      - match: [{uri: {exact: /a, prefix: /b}}]"))
                .find("routes[0]: uri takes one of exact, prefix or regex, not exact and prefix "
                      "[route-match]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - match: [{uri: {}}]"))
                .find("routes[0]: uri needs one of exact, prefix or regex [route-match]"),
            std::string::npos)
      << "present ({}) is for headers and query parameters";
  EXPECT_NE(only_error(fill(kService, "      - match: [{uri: {suffix: /a}}]"))
                .find("unknown key 'suffix' in string match"),
            std::string::npos);
}

TEST(Routes, UnknownKeysSuggestTheRightOne) {
  EXPECT_NE(only_error(fill(kService, "      - match: [{uri: {prefix: /}}]\n        rewrte: {uri: /}"))
                .find("(did you mean 'rewrite'?)"),
            std::string::npos);
}

TEST(Routes, ARuleAnswersItselfOrRoutes) {
  EXPECT_NE(only_error(fill(kService, "      - redirect: {uri: /a}\n        directResponse: {status: 200}"))
                .find("redirect and directResponse exclude each other [route-action]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService,
                            "      - directResponse: {status: 404}\n        traffic: "
                            "[{revisionName: hello-1, percent: 100}]"))
                .find("directResponse answers the request itself; traffic would never be used "
                      "[route-action]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - redirect: {uri: /a}\n        rewrite: {uri: /b}"))
                .find("redirect answers the request itself; rewrite would never be used"),
            std::string::npos);
}

TEST(Routes, ARulesTrafficFollowsKnativesRules) {
  EXPECT_NE(only_error(fill(kService, "      - traffic: [{revisionName: hello-9, percent: 100}]"))
                .find("[revision-exists]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - traffic: [{revisionName: hello-1, percent: 60}]"))
                .find("[percent-sum]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService,
                            "      - traffic: [{revisionName: hello-1, percent: 100, tag: x}]"))
                .find("a rule's traffic takes no tag; tags belong to the service's traffic"),
            std::string::npos);
}

TEST(Routes, ValuesAreChecked) {
  EXPECT_NE(only_error(fill(kService, "      - redirect: {redirectCode: 305}"))
                .find("redirectCode must be 301, 302, 303, 307 or 308, got 305 [route-redirect]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - redirect: {scheme: ftp}"))
                .find("redirect scheme must be http or https, got 'ftp' [route-redirect]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - rewrite: {uri: relative}"))
                .find("rewrite uri must be a path starting with '/'"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - rewrite: {uri: \"/a?b=1\"}"))
                .find("[route-rewrite]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - rewrite: {authority: \"a b\"}"))
                .find("authority must be a host or host:port, got 'a b' [route-rewrite]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - directResponse: {status: 700}"))
                .find("status must be an integer from 200 to 599, got '700' [range]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - directResponse: {body: {string: x}}"))
                .find("directResponse needs 'status' [required]"),
            std::string::npos);
}

TEST(Routes, AnAuthorityIsAHostOrHostPort) {
  for (std::string_view good : {"backend.internal", "backend.internal:8080", "10.0.0.1",
                                "10.0.0.1:80", "[::1]", "[::1]:8443", "svc_a.internal"}) {
    EXPECT_EQ(only_rule(fmt::format("      - rewrite: {{authority: \"{}\"}}", good))
                  .rewrite->authority,
              good);
  }
  for (std::string_view bad : {"a b", "host:port", "host:99999", "::1", "[nope]:80", "-a.b"}) {
    EXPECT_NE(only_error(fill(kService, fmt::format("      - rewrite: {{authority: \"{}\"}}", bad)))
                  .find("authority must be a host or host:port"),
              std::string::npos)
        << bad;
  }
}

TEST(Routes, HeaderEditsLeaveTheProxysFieldsAlone) {
  EXPECT_NE(only_error(fill(kService, "      - headers: {request: {set: {Host: x}}}"))
                .find("header 'host' is the proxy's to write; use rewrite.authority "
                      "[route-header-name]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - headers: {response: {remove: [content-length]}}"))
                .find("header 'content-length' is the proxy's to write [route-header-name]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - headers: {request: {add: {\"bad name\": x}}}"))
                .find("header name 'bad name' contains ' ' [route-header-name]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kService, "      - match: [{headers: {\"a:b\": {}}}]"))
                .find("[route-header-name]"),
            std::string::npos);
}

TEST(Routes, EveryErrorOfAFileInOnePass) {
  const auto result = load(fill(kService, R"(      - name: one
        match: [{uri: {regex: "("}}]
      - name: two
        redirect: {redirectCode: 300})"));
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 2u) << all_errors(result);
  EXPECT_NE(result.error()[0].message.find("routes[0] (one)"), std::string::npos);
  EXPECT_NE(result.error()[1].message.find("routes[1] (two)"), std::string::npos);
}

}  // namespace
}  // namespace revgate::config
