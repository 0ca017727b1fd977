// Fuzz target: any bytes as a request head, parsed by Beast's parser with the proxy's limits and
// routed through a fixed table with route rules (every match kind, local answers, a rule's own
// traffic) and a consistent hash. A parsed head must route without crashing, and any decision
// must be consistent: a rule that answers picks no revision; otherwise a revision of the rule's
// own traffic or the service's, with an endpoint.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "config/config.h"
#include "routing/route_table.h"

namespace {

namespace http = boost::beast::http;

constexpr std::string_view kConfig = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - {name: hello-1, endpoints: ["127.0.0.1:9001", "127.0.0.1:9002"]}
      - {name: hello-2, endpoints: ["127.0.0.1:9003"]}
    traffic:
      - {revisionName: hello-1, percent: 90}
      - {revisionName: hello-2, percent: 10, tag: canary}
    routes:
      - match: [{uri: {exact: /robots.txt}}]
        directResponse: {status: 200, body: {string: "no"}}
      - match: [{headers: {x-canary: {regex: "[0-9]+"}}, withoutHeaders: {x-internal: {}}},
                {queryParams: {beta: {prefix: y}}, method: {exact: POST}}]
        traffic: [{revisionName: hello-2, percent: 100}]
      - match: [{authority: {regex: "old\\..*"}}]
        redirect: {authority: new.example.org}
      - match: [{uri: {prefix: /API/}, ignoreUriCase: true}]
        rewrite: {uri: /}
  - name: other
    namespace: team
    splitPolicy: random
    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
    revisions: [{name: other-1, endpoints: ["127.0.0.1:9004", "127.0.0.1:9005"]}]
domainMappings:
  - {domain: www.example.org, service: hello}
  - {domain: "*.apps.example.org", service: other, namespace: team}
)";

// The route rules' view of the parsed head.
class Fields final : public revgate::routing::MatchFields {
 public:
  explicit Fields(const http::request<http::empty_body>& request) : request_(request) {
    method = request.method_string();
    const std::string_view target = request.target();
    const auto q = std::min(target.find('?'), target.size());
    path = target.substr(0, q);
    query = q < target.size() ? target.substr(q + 1) : std::string_view();
  }
  std::size_t header_values(std::string_view name, std::string_view* out,
                            std::size_t capacity) const override {
    std::size_t count = 0;
    for (auto [it, end] = request_.equal_range(name); it != end; ++it) {
      if (count < capacity) out[count] = it->value();
      ++count;
    }
    return count;
  }

 private:
  const http::request<http::empty_body>& request_;
};

revgate::routing::Router& router() {
  static revgate::routing::Router instance = [] {
    auto config = revgate::config::load_string(kConfig, "fuzz-table.yaml");
    if (!config) std::abort();
    return revgate::routing::Router(revgate::routing::RouteTable::compile(*config));
  }();
  return instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  http::request_parser<http::empty_body> parser;
  parser.header_limit(60 * 1024);
  boost::system::error_code ec;
  parser.put(boost::asio::const_buffer(data, size), ec);
  if (!parser.is_header_done()) return 0;
  const auto& request = parser.get();
  revgate::routing::RequestView view;
  if (auto host = request.find(http::field::host); host != request.end()) view.host = host->value();
  view.path = request.target();
  if (auto tag = request.find("knative-serving-tag"); tag != request.end()) {
    view.tag_header = tag->value();
  }
  Fields fields(request);
  fields.authority = view.host;
  view.fields = &fields;
  const auto decision = router().route(view, size * 2654435761u);
  if (decision.rule != nullptr && decision.rule->answers_locally()) {
    if (decision.revision != nullptr || decision.endpoint != nullptr) std::abort();
  } else if (decision.revision != nullptr) {
    bool belongs = false;
    for (const auto& target : decision.service->targets) belongs |= target.revision == decision.revision;
    if (decision.rule != nullptr) {
      for (const auto& target : decision.rule->targets) belongs |= target.revision == decision.revision;
    }
    if (!belongs || decision.endpoint == nullptr || decision.target == nullptr) std::abort();
  } else if (decision.match != revgate::routing::MatchKind::none) {
    std::abort();
  }
  return 0;
}
