// The revgate command line (SPEC.md section 2): run, demo, check, route, simulate, echo,
// version, and the admin API's clients services, revisions (cli/services_command.h) and
// traffic (cli/traffic_command.h).
// Exit codes: 0 ok, 1 invalid config, failed check or unreachable admin, 2 usage error.
#include <csignal>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "cli/services_command.h"
#include "cli/traffic_command.h"
#include "config/config.h"
#include "echo/echo_server.h"
#include "proxy/route_rules.h"
#include "proxy/server.h"
#include "routing/route_table.h"

#ifndef REVGATE_VERSION
#define REVGATE_VERSION "0.0.0"
#endif

namespace {

using namespace revgate;

constexpr int kExitOk = 0;
constexpr int kExitConfig = 1;
constexpr int kExitUsage = 2;

// Loads and validates; prints every error as "file:line:col: message [rule]".
std::optional<config::Config> load_or_report(const std::string& path) {
  auto loaded = config::load_file(path);
  if (loaded) return std::move(*loaded);
  for (const auto& error : loaded.error()) fmt::print(stderr, "{}\n", error.to_string());
  fmt::print(stderr, "{}: {} error(s); config not applied\n", path, loaded.error().size());
  return std::nullopt;
}

std::string describe_split(const routing::Service& service, const routing::Target* only,
                           const std::vector<routing::Target>* targets = nullptr) {
  if (only != nullptr) {
    return fmt::format("{} 100% (tag {})", only->revision->name, only->tag);
  }
  std::string out;
  for (const auto& target : targets != nullptr ? *targets : service.targets) {
    if (target.percent == 0) continue;
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {}%", target.revision->name, target.percent);
  }
  out += fmt::format(" ({})", config::to_string(service.split_policy));
  return out;
}

int run_server(config::Config config, const std::string& path) {
  auto server = proxy::Server::create(std::move(config), path);
  if (!server) {
    fmt::print(stderr, "revgate: {}\n", server.error());
    return kExitConfig;
  }
  return (*server)->run();
}

int cmd_run(const std::string& path) {
  auto config = load_or_report(path);
  if (!config) return kExitConfig;
  return run_server(std::move(*config), path);
}

int cmd_check(const std::string& path) {
  auto config = load_or_report(path);
  if (!config) return kExitConfig;
  auto table = routing::RouteTable::compile(*config);
  std::size_t revisions = 0;
  for (const auto& service : config->services) revisions += service.revisions.size();
  fmt::print("{}: OK ({} service(s), {} revision(s), {} domain mapping(s), {} listener(s))\n", path,
             config->services.size(), revisions, config->domain_mappings.size(),
             config->listeners.size());
  fmt::print("{:<48} {:<17} {:<28} {}\n", "HOST", "MATCH", "SERVICE", "ROUTE");
  for (const auto& route : table->host_routes()) {
    fmt::print("{:<48} {:<17} {:<28} {}\n", route.host, routing::to_string(route.match),
               route.service->namespace_name + "/" + route.service->name,
               describe_split(*route.service, route.target));
  }
  // Warnings (the config is valid): rules no request can reach.
  for (const auto& service : table->services()) {
    for (const auto& [rule, by] : routing::shadowed_rules(*service)) {
      fmt::print(stderr,
                 "{}:{}:{}: warning: service {}/{}: {} can never match: {} before it matches "
                 "every request it would [route-shadowed]\n",
                 path, rule->pos.line, rule->pos.column, service->namespace_name, service->name,
                 rule->label(), by->label());
    }
  }
  return kExitOk;
}

// Each rule up to the one that matched: why it did not (the first condition of each of its
// match entries that fails), or which entry matched.
void explain_rules(const routing::Service& service, const routing::Decision& decision,
                   const routing::MatchFields& request) {
  const char* label = "rules:    ";
  for (const routing::RouteRule& rule : service.rules) {
    std::string why;
    if (&rule == decision.rule) {
      why = rule.match.any_of.empty()
                ? "matched (no match list: every request)"
                : fmt::format("matched match[{}]{}", decision.matched,
                              rule.match.any_of[decision.matched].name.empty()
                                  ? ""
                                  : " (" + rule.match.any_of[decision.matched].name + ")");
    } else {
      for (std::size_t i = 0; i < rule.match.any_of.size(); ++i) {
        const auto* failed = rule.match.any_of[i].first_mismatch(request);
        if (!why.empty()) why += "; ";
        why += fmt::format("match[{}]: {}", i, failed != nullptr ? failed->describe() : "?");
      }
      why = "no (" + why + ")";
    }
    fmt::print("{}{}: {}\n", label, rule.label(), why);
    label = "          ";
    if (&rule == decision.rule) break;
  }
}

void print_header_operations(std::string_view what, const config::HeaderOperations& ops) {
  for (const auto& name : ops.remove) fmt::print("{} remove {}\n", what, name);
  for (const auto& [name, value] : ops.set) fmt::print("{} set {}: {}\n", what, name, value);
  for (const auto& [name, value] : ops.add) fmt::print("{} add {}: {}\n", what, name, value);
}

int cmd_route(const std::string& path, const std::string& host, const std::string& target_path,
              const std::string& method, const std::vector<std::string>& headers) {
  auto config = load_or_report(path);
  if (!config) return kExitConfig;
  std::string tag;
  std::vector<std::pair<std::string, std::string>> fields;  // lowercase name, value
  for (const auto& header : headers) {
    auto colon = header.find(':');
    if (colon == std::string::npos) {
      fmt::print(stderr, "--header wants NAME:VALUE, got '{}'\n", header);
      return kExitUsage;
    }
    std::string name = header.substr(0, colon);
    std::string value = header.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name == "knative-serving-tag") tag = value;
    fields.emplace_back(std::move(name), std::move(value));
  }
  routing::Router router(routing::RouteTable::compile(*config));
  routing::RequestView request;
  request.host = host;
  request.path = target_path;
  request.tag_header = tag;
  const auto match = router.table()->find_host(host);
  for (const auto& [name, value] : fields) {  // what a sticky service hashes on
    if (name == "cookie") request.cookie_header = value;
    if (match.service != nullptr && name == match.service->hash_header) request.hash_header = value;
  }
  const routing::ListedFields fields_view(method, target_path, host, fields);
  request.fields = &fields_view;
  auto decision = router.route(match, request, std::random_device{}());
  if (decision.service == nullptr) {
    fmt::print("host {}: no route (404, response flag NR)\n", host);
    return kExitConfig;
  }
  const auto& service = *decision.service;
  fmt::print("host:     {} ({})\n", host, routing::to_string(decision.match));
  fmt::print("service:  {}/{} ({})\n", service.namespace_name, service.name, service.host);
  if (!service.rules.empty()) explain_rules(service, decision, fields_view);
  if (const auto* rule = decision.rule; rule != nullptr && rule->answers_locally()) {
    if (rule->direct_response) {
      fmt::print("answer:   {} from the proxy ({} bytes of directResponse body)\n",
                 rule->direct_response->status, rule->direct_response->body.size());
    } else {
      std::string location;
      proxy::redirect_location(location, *rule, false, host, target_path);
      fmt::print("answer:   {} redirect to {} (http listener; https keeps https)\n",
                 rule->redirect->code, location);
    }
    return kExitOk;
  }
  if (!decision) {
    fmt::print("host {}: no revision to route to\n", host);
    return kExitConfig;
  }
  if (const auto* rule = decision.rule) {
    if (auto rewritten = proxy::rewritten_target(decision, target_path)) {
      fmt::print("rewrite:  path {}\n", *rewritten);
    }
    if (rule->rewrite && rule->rewrite->authority) {
      fmt::print("rewrite:  authority {}\n", *rule->rewrite->authority);
    }
    print_header_operations("request: ", rule->request_headers);
    print_header_operations("response:", rule->response_headers);
  }
  const bool own_traffic = decision.rule != nullptr && !decision.rule->targets.empty();
  if (decision.match == routing::MatchKind::tag_host ||
      (!tag.empty() && !decision.target->tag.empty() && decision.target->tag == tag)) {
    fmt::print("target:   tag {} -> {} (100%)\n", decision.target->tag, decision.revision->name);
  } else {
    fmt::print("split:    {}{}\n",
               describe_split(service, nullptr, own_traffic ? &decision.rule->targets : nullptr),
               own_traffic ? ", the rule's own traffic" : "");
    fmt::print("picked:   {} (one pick; `revgate simulate` shows the shares)\n",
               decision.revision->name);
  }
  fmt::print("endpoint: {}\n", decision.endpoint ? decision.endpoint->authority : "(none: 503 UH)");
  return kExitOk;
}

int cmd_simulate(const std::string& path, const std::string& host, const std::string& tag,
                 std::uint64_t n, std::uint64_t seed) {
  auto config = load_or_report(path);
  if (!config) return kExitConfig;
  routing::Router router(routing::RouteTable::compile(*config));
  std::mt19937_64 entropy(seed);
  std::map<std::string, std::uint64_t> counts;
  const routing::Service* service = nullptr;
  // A hash service sees a new user per pick: a random key (as header value and client address;
  // cookie mode gets no cookie, so each pick draws a new one), so the shares show the weights.
  const auto found = router.table()->find_host(host);
  const bool new_user_per_pick =
      found.service != nullptr && found.service->split_policy == config::SplitPolicy::hash;
  char key[16];
  for (std::uint64_t i = 0; i < n; ++i) {
    routing::RequestView request;
    request.host = host;
    request.path = "/";
    request.tag_header = tag;
    if (new_user_per_pick) {
      std::uint64_t bits = entropy();
      for (char& c : key) {
        c = "0123456789abcdef"[bits & 0xF];
        bits >>= 4;
      }
      request.hash_header = request.source_ip = std::string_view(key, sizeof key);
    }
    auto decision = router.route(request, entropy());
    if (!decision) {
      fmt::print("host {}: no route (404, response flag NR)\n", host);
      return kExitConfig;
    }
    service = decision.service;
    ++counts[decision.revision->name];
  }
  fmt::print("{} picks for host {} (service {}/{}, {} split{})\n", n, host, service->namespace_name,
             service->name, config::to_string(service->split_policy),
             new_user_per_pick ? ", a random key per pick" : "");
  fmt::print("{:<32} {:>10} {:>9} {:>11}\n", "REVISION", "PICKS", "SHARE", "CONFIGURED");
  for (const auto& [revision, count] : counts) {
    int configured = 0;
    for (const auto& target : service->targets) {
      if (target.revision->name == revision) configured += target.percent;
    }
    fmt::print("{:<32} {:>10} {:>8.3f}% {:>10}%\n", revision, count,
               n ? 100.0 * static_cast<double>(count) / static_cast<double>(n) : 0.0, configured);
  }
  return kExitOk;
}

int cmd_echo(echo::EchoOptions options, const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    fmt::print(stderr, "--listen wants HOST:PORT, got '{}'\n", listen);
    return kExitUsage;
  }
  options.host = listen.substr(0, colon);
  try {
    options.port = static_cast<std::uint16_t>(std::stoul(listen.substr(colon + 1)));
  } catch (const std::exception&) {
    fmt::print(stderr, "--listen wants HOST:PORT, got '{}'\n", listen);
    return kExitUsage;
  }
  auto server = echo::EchoServer::create(options);
  if (!server) {
    fmt::print(stderr, "revgate: {}\n", server.error());
    return kExitConfig;
  }
  fmt::print(stderr, "echo {} listening on {}\n", options.name, (*server)->address());
  // Stop on SIGINT/SIGTERM: the signal wait runs here, the server on its own threads.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  (*server)->start();
  int received = 0;
  sigwait(&signals, &received);
  (*server)->stop();
  return kExitOk;
}

int cmd_demo(const std::string& address, std::uint16_t port, std::uint16_t admin_port) {
  // Two revisions served in-process by echo backends on free loopback ports.
  std::vector<std::unique_ptr<echo::EchoServer>> backends;
  for (const char* name : {"hello-00001", "hello-00002"}) {
    echo::EchoOptions options;
    options.name = name;
    auto backend = echo::EchoServer::create(options);
    if (!backend) {
      fmt::print(stderr, "revgate demo: {}\n", backend.error());
      return kExitConfig;
    }
    (*backend)->start();
    backends.push_back(std::move(*backend));
  }
  const std::string yaml =
      fmt::format(R"(workers: 0
listeners:
  - name: http
    address: "{0}:{1}"
    h2c: true
admin:
  address: "127.0.0.1:{2}"
services:
  - name: hello
    revisions:
      - name: hello-00001
        endpoints: ["{3}"]
      - name: hello-00002
        endpoints: ["{4}"]
    traffic:
      - revisionName: hello-00001
        percent: 90
      - revisionName: hello-00002
        percent: 10
        tag: canary
      - latestRevision: true
        percent: 0
        tag: latest
domainMappings:
  - domain: "*"
    service: hello
)",
                  address, port, admin_port, backends[0]->address(), backends[1]->address());
  auto config = config::load_string(yaml, "<demo>");
  if (!config) {
    for (const auto& error : config.error()) fmt::print(stderr, "{}\n", error.to_string());
    return kExitConfig;
  }
  auto server = proxy::Server::create(std::move(*config), "");
  if (!server) {
    fmt::print(stderr, "revgate demo: {}\n", server.error());
    return kExitConfig;
  }
  const auto bound = (*server)->bound_addresses();
  const auto http_port = bound.front().port;
  const auto metrics_port = bound.back().port;
  const std::string base =
      fmt::format("http://{}:{}", address == "0.0.0.0" ? "127.0.0.1" : address, http_port);
  fmt::print(
      "revgate demo: service 'hello' (namespace default) on {base}\n"
      "  revision hello-00001  90%           backend {a}\n"
      "  revision hello-00002  10%, tag canary backend {b}\n"
      "\nTry:\n"
      "  # 20 requests: about 18 from hello-00001, 2 from hello-00002 (per request, not per "
      "connection)\n"
      "  for i in $(seq 20); do curl -s -o /dev/null -w '%header{{x-revision}}\\n' {base}/; done "
      "| sort | uniq -c\n"
      "  # the service host, as Knative names it\n"
      "  curl -s {base}/ -H 'Host: hello.default.example.com'\n"
      "  # the tagged canary: its own host, or the Knative-Serving-Tag header\n"
      "  curl -s {base}/ -H 'Host: canary-hello.default.example.com'\n"
      "  curl -s {base}/ -H 'Knative-Serving-Tag: canary'\n"
      "  # HTTP/2 with prior knowledge on the same port\n"
      "  curl -s --http2-prior-knowledge -o /dev/null -w '%{{http_version}} %header{{x-revision}}\\n' "
      "{base}/\n"
      "  # what was served, in Istio's metric names\n"
      "  curl -s http://127.0.0.1:{m}/metrics | grep '^istio_requests_total'\n"
      "\nCtrl-C stops the demo.\n",
      fmt::arg("base", base), fmt::arg("a", backends[0]->address()),
      fmt::arg("b", backends[1]->address()), fmt::arg("m", metrics_port));
  std::fflush(stdout);
  const int code = (*server)->run();
  for (auto& backend : backends) backend->stop();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"revgate: a front-end proxy that splits traffic across revisions"};
  app.set_help_all_flag("--help-all", "Help for every command");
  app.require_subcommand(0, 1);

  std::string config_path;
  app.add_option("-c,--config", config_path, "Config file (with no command: run it)");

  auto* run = app.add_subcommand("run", "Serve with a config file (the default command)");
  run->add_option("-c,--config", config_path, "Config file")->required();

  auto* demo = app.add_subcommand("demo", "Built-in revisions and a 90/10 split; no config needed");
  std::string demo_address = "127.0.0.1";
  std::uint16_t demo_port = 8080;
  std::uint16_t demo_admin_port = 9901;
  demo->add_option("--port", demo_port, "Proxy port")->capture_default_str();
  demo->add_option("--address", demo_address, "Proxy address")->capture_default_str();
  demo->add_option("--admin-port", demo_admin_port, "Admin port (0 = any free port)")
      ->capture_default_str();

  auto* check = app.add_subcommand("check", "Validate a config and print its route table");
  check->add_option("-c,--config", config_path, "Config file")->required();

  auto* route = app.add_subcommand("route", "Explain where one request would go (no network)");
  std::string host;
  std::string path = "/";
  std::string method = "GET";
  std::vector<std::string> headers;
  route->add_option("-c,--config", config_path, "Config file")->required();
  route->add_option("--host", host, "Host header")->required();
  route->add_option("--path", path, "Request path")->capture_default_str();
  route->add_option("--header", headers, "Request header NAME:VALUE (repeatable)");
  route->add_option("--method", method, "Request method")->capture_default_str();

  auto* simulate = app.add_subcommand("simulate", "Run the real picker N times, print the shares");
  std::uint64_t picks = 100000;
  std::uint64_t seed = 1;
  std::string tag;
  simulate->add_option("-c,--config", config_path, "Config file")->required();
  simulate->add_option("--host", host, "Host header")->required();
  simulate->add_option("-n", picks, "Number of picks")->capture_default_str();
  simulate->add_option("--tag", tag, "Knative-Serving-Tag header value");
  simulate->add_option("--seed", seed, "Entropy seed (random split)")->capture_default_str();

  auto* echo_cmd = app.add_subcommand("echo", "A demo revision backend that echoes requests");
  echo::EchoOptions echo_options;
  std::string listen = "127.0.0.1:9001";
  echo_cmd->add_option("--name", echo_options.name, "Revision name")->required();
  echo_cmd->add_option("--listen", listen, "HOST:PORT (port 0 = any)")->capture_default_str();
  echo_cmd->add_option("--delay-ms", echo_options.delay_ms, "Delay before every answer");
  auto* delay_p50 = echo_cmd->add_option("--delay-p50-ms", echo_options.delay_p50_ms,
                                         "Random delay: median (ms, log-normal)");
  auto* delay_p99 = echo_cmd->add_option("--delay-p99-ms", echo_options.delay_p99_ms,
                                         "Random delay: 99th percentile (ms, >= the median)");
  delay_p50->needs(delay_p99)->excludes("--delay-ms");
  delay_p99->needs(delay_p50)->excludes("--delay-ms");
  echo_cmd->add_option("--seed", echo_options.seed,
                       "PRNG seed of error rate and delay (0 = random)");
  echo_cmd->add_option("--error-rate", echo_options.error_rate, "Fraction answered 500 (0..1)")
      ->check(CLI::Range(0.0, 1.0));
  echo_cmd->add_option("--threads", echo_options.threads, "Threads")->capture_default_str();
  auto* tls_cert = echo_cmd->add_option("--tls-cert", echo_options.tls_cert_file,
                                        "TLS on the port: certificate chain (PEM)");
  auto* tls_key = echo_cmd->add_option("--tls-key", echo_options.tls_key_file,
                                       "TLS on the port: private key (PEM)");
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);

  cli::AdminCommands admin_commands(app);    // services list|describe, revisions list
  cli::TrafficCommand traffic_command(app);  // traffic SERVICE --to-revisions ...
  auto* version = app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  if (*version) {
    fmt::print("revgate {}\n", REVGATE_VERSION);
    return kExitOk;
  }
  if (auto code = admin_commands.run()) return *code;
  if (auto code = traffic_command.run()) return *code;
  if (*demo) return cmd_demo(demo_address, demo_port, demo_admin_port);
  if (*check) return cmd_check(config_path);
  if (*route) return cmd_route(config_path, host, path, method, headers);
  if (*simulate) return cmd_simulate(config_path, host, tag, picks, seed);
  if (*echo_cmd) return cmd_echo(echo_options, listen);
  if (*run || !config_path.empty()) return cmd_run(config_path);
  fmt::print(stderr, "{}", app.help());
  return kExitUsage;
}
