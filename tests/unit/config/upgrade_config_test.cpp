// Unit tests of the config keys for HTTP/1.1 upgrades: a service's `upgradeTypes` (default
// [websocket], tokens compared without case, h2c refused) and `timeouts.tunnelIdle`.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config_test_util.h"

namespace revgate::config {
namespace {

using namespace std::chrono_literals;
using namespace test_util;

constexpr std::string_view kUpgrades = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: hello
    upgradeTypes: @
    revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]
)";

constexpr std::string_view kPlain = R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services: [{name: hello, revisions: [{name: hello-1, endpoints: ["127.0.0.1:9001"]}]}]
)";

TEST(UpgradeTypes, WebSocketByDefault) {
  EXPECT_EQ(must_load(kPlain).services.at(0).upgrade_types, std::vector<std::string>{"websocket"});
}

TEST(UpgradeTypes, ListedTokensLowercaseAndOnce) {
  EXPECT_EQ(must_load(fill(kUpgrades, "[WebSocket, CONNECT-UDP, websocket, foo/2]"))
                .services.at(0)
                .upgrade_types,
            (std::vector<std::string>{"websocket", "connect-udp", "foo/2"}));
  EXPECT_TRUE(must_load(fill(kUpgrades, "[]")).services.at(0).upgrade_types.empty());
  EXPECT_TRUE(must_load(fill(kUpgrades, "~")).services.at(0).upgrade_types.empty())
      << "an empty key allows none, like []";
}

TEST(UpgradeTypes, RefusedValues) {
  EXPECT_EQ(only_error(fill(kUpgrades, "[web socket]")),
            "4:20: upgrade type 'web socket' is not an HTTP token (such as websocket) "
            "[upgrade-type]");
  EXPECT_EQ(only_error(fill(kUpgrades, "[websocket, H2C]")),
            "4:31: upgrade type \"h2c\" cannot be proxied: HTTP/2 goes to a revision over its own "
            "connection, never as an Upgrade of an HTTP/1.1 one [upgrade-type]");
  EXPECT_EQ(only_error(fill(kUpgrades, "websocket")),
            "4:19: upgradeTypes must be a list, got 'websocket' [type]");
  EXPECT_NE(only_error(fill(kUpgrades, "[{a: 1}]")).find("[type]"), std::string::npos);
}

TEST(TunnelIdle, AnHourByDefaultAndSettable) {
  EXPECT_EQ(must_load(kPlain).timeouts.tunnel_idle, 1h);
  std::string yaml(strip_first_newline(kPlain));
  yaml += "timeouts: {tunnelIdle: 90s}\n";
  EXPECT_EQ(must_load(yaml).timeouts.tunnel_idle, 90s);
  std::string zero(strip_first_newline(kPlain));
  zero += "timeouts: {tunnelIdle: 0s}\n";
  EXPECT_NE(only_error(zero).find("[duration]"), std::string::npos) << "a timeout of 0 would fire";
}

}  // namespace
}  // namespace revgate::config
