// Fuzz target: any bytes as a request head, parsed by Beast's parser with the proxy's limits and
// routed through a fixed table. A parsed head must route without crashing, and any decision
// must be consistent (a revision of the matched service, with an endpoint).
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
  - name: other
    namespace: team
    splitPolicy: random
    revisions: [{name: other-1, endpoints: ["127.0.0.1:9004"]}]
domainMappings:
  - {domain: www.example.org, service: hello}
  - {domain: "*.apps.example.org", service: other, namespace: team}
)";

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
  const auto decision = router().route(view, size * 2654435761u);
  if (decision.revision != nullptr) {
    bool belongs = false;
    for (const auto& target : decision.service->targets) belongs |= target.revision == decision.revision;
    if (!belongs || decision.endpoint == nullptr || decision.target == nullptr) std::abort();
  } else if (decision.match != revgate::routing::MatchKind::none) {
    std::abort();
  }
  return 0;
}
