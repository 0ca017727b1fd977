// Unit tests of the HTTP/2 config keys: a listener's `h2c` and `alpn`,
// `limits.maxConcurrentStreams`, and a revision's `protocol` (http1, h2c, h2).
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config_test_util.h"

namespace revgate::config {
namespace {

using namespace test_util;

constexpr std::string_view kListener = R"(
listeners: [{name: web, address: "127.0.0.1:0", @}]
services: [{name: hello, revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]}]
)";

constexpr std::string_view kTlsListener = R"(
listeners:
  - {name: web, address: "127.0.0.1:0", tls: {certificates: [{certFile: /dev/null, keyFile: /dev/null}]}, @}
services: [{name: hello, revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]}]
)";

constexpr std::string_view kRevision = R"(
listeners: [{name: web, address: "127.0.0.1:0"}]
services:
  - name: hello
    revisions:
      - {name: hello-1, endpoints: [@]}
)";

TEST(ListenerH2c, OffByDefaultOnWhenAsked) {
  EXPECT_FALSE(must_load(fill(kListener, "httpsRedirect: false")).listeners.at(0).h2c);
  EXPECT_TRUE(must_load(fill(kListener, "h2c: true")).listeners.at(0).h2c);
}

TEST(ListenerH2c, NotOnATlsListener) {
  EXPECT_EQ(only_error(fill(kTlsListener, "h2c: true")).substr(0, 6), "2:112:")
      << "the value's position: " << only_error(fill(kTlsListener, "h2c: true"));
  EXPECT_NE(only_error(fill(kTlsListener, "h2c: true")).find("[h2c-cleartext]"),
            std::string::npos);
}

TEST(ListenerAlpn, H2FirstByDefaultAndNarrowable) {
  EXPECT_EQ(must_load(fill(kTlsListener, "alpn: [h2, http/1.1]")).listeners.at(0).alpn,
            (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(must_load(fill(kTlsListener, "alpn: [http/1.1]")).listeners.at(0).alpn,
            std::vector<std::string>{"http/1.1"});
  const auto config = must_load(fill(kListener, "h2c: false"));
  EXPECT_EQ(config.listeners.at(0).alpn, (std::vector<std::string>{"h2", "http/1.1"}));
}

TEST(ListenerAlpn, RefusedValues) {
  EXPECT_NE(only_error(fill(kTlsListener, "alpn: [h3]")).find("got 'h3' [alpn-protocol]"),
            std::string::npos)
      << only_error(fill(kTlsListener, "alpn: [h3]"));
  EXPECT_NE(only_error(fill(kTlsListener, "alpn: [h2, h2]")).find("listed twice [alpn-protocol]"),
            std::string::npos);
  EXPECT_NE(only_error(fill(kTlsListener, "alpn: []")).find("[alpn-protocol]"), std::string::npos);
  EXPECT_NE(only_error(fill(kListener, "alpn: [h2]")).find("[alpn-needs-tls]"), std::string::npos);
}

TEST(MaxConcurrentStreams, DefaultAndRange) {
  const std::string base(strip_first_newline(fill(kListener, "h2c: true")));
  EXPECT_EQ(must_load(base).limits.max_concurrent_streams, 100u);
  EXPECT_EQ(must_load(base + "limits: {maxConcurrentStreams: 250}\n").limits.max_concurrent_streams,
            250u);
  EXPECT_EQ(only_error(base + "limits: {maxConcurrentStreams: 0}\n"),
            "3:32: maxConcurrentStreams must be an integer from 1 to 2147483647, got '0' [range]");
  EXPECT_FALSE(load(base + "limits: {maxConcurrentStreams: 2147483648}\n").has_value());
}

TEST(RevisionProtocol, Http1ByDefault) {
  EXPECT_EQ(must_load(fill(kRevision, "\"127.0.0.1:9001\"")).services.at(0).revisions.at(0).protocol,
            UpstreamProtocol::http1);
}

std::string with_protocol(std::string_view endpoints, std::string_view protocol) {
  std::string yaml(kRevision);
  yaml.replace(yaml.find("@]}"), 3, std::string(endpoints) + "], protocol: " + std::string(protocol) + "}");
  return yaml;
}

TEST(RevisionProtocol, H2cForCleartextH2ForHttps) {
  EXPECT_EQ(must_load(with_protocol("\"127.0.0.1:9001\"", "h2c")).services[0].revisions[0].protocol,
            UpstreamProtocol::h2c);
  EXPECT_EQ(must_load(with_protocol("\"127.0.0.1:9001\"", "http1")).services[0].revisions[0].protocol,
            UpstreamProtocol::http1);
  EXPECT_EQ(must_load(with_protocol("\"https://127.0.0.1:9443\"", "h2")).services[0].revisions[0].protocol,
            UpstreamProtocol::h2);
  EXPECT_EQ(to_string(UpstreamProtocol::h2c), "h2c");
}

TEST(RevisionProtocol, RefusedValuesNameTheRevisionAndEndpoint) {
  EXPECT_EQ(only_error(with_protocol("\"127.0.0.1:9001\"", "http2")),
            "5:66: protocol must be http1, h2c (HTTP/2 over cleartext) or h2 (HTTP/2 over TLS), "
            "got 'http2' [upstream-protocol]");
  EXPECT_EQ(only_error(with_protocol("\"https://127.0.0.1:9443\"", "h2c")),
            "5:74: revision 'hello-1' has protocol h2c (cleartext HTTP/2) but endpoint "
            "'127.0.0.1:9443' is https://; use h2 for HTTP/2 over TLS [upstream-protocol]");
  EXPECT_EQ(only_error(with_protocol("\"127.0.0.1:9001\"", "h2")),
            "5:66: revision 'hello-1' has protocol h2 (HTTP/2 over TLS) but endpoint "
            "'127.0.0.1:9001' is not https://; use h2c for cleartext [upstream-protocol]");
}

}  // namespace
}  // namespace revgate::config
