// The YAML loader: walks the document once in a fixed order, fills Config and collects every
// ConfigError on the way, then sorts them into source order. Runs on the loading thread only
// (main thread at start and on reload); it never throws, whatever the input.
#include "config/config.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "config/reader.h"
#include "config/routes.h"
#include "config/traffic_policy.h"
#include "config/traffic.h"
#include "config/values.h"
#include "config/yaml_document.h"

namespace revgate::config {
namespace {

using namespace std::string_view_literals;
using detail::quote;
using detail::YamlDocument;
using detail::YamlKind;
using detail::YamlNode;
using detail::Field;
using detail::Fields;
using detail::Section;
using detail::kNoMax;
using detail::describe;
using detail::is_string_typed;
using detail::lowercase;
using detail::token_problem;



constexpr std::array kTopKeys = {"domain"sv,         "workers"sv,   "listeners"sv, "admin"sv,
                                 "limits"sv,         "timeouts"sv,  "upstream"sv,  "services"sv,
                                 "domainMappings"sv, "accessLog"sv, "tracing"sv,   "stateFile"sv};
constexpr std::array kAccessLogKeys = {"path"sv, "format"sv};
constexpr std::array kTracingKeys = {"sampleRate"sv};
constexpr std::array kListenerKeys = {"name"sv, "address"sv, "tls"sv, "httpsRedirect"sv, "h2c"sv,
                                     "alpn"sv};
constexpr std::array kListenerTlsKeys = {"certificates"sv, "minVersion"sv, "requireSni"sv,
                                         "handshakeTimeout"sv};
constexpr std::array kCertificateKeys = {"certFile"sv, "keyFile"sv};
constexpr std::array kAdminKeys = {"address"sv};
constexpr std::array kLimitsKeys = {"requestLineBytes"sv, "requestHeadersBytes"sv,
                                    "requestHeaderCount"sv, "requestBodyBytes"sv,
                                    "maxConcurrentStreams"sv};
constexpr std::array kTimeoutsKeys = {"requestHeaders"sv,   "idle"sv,         "upstreamConnect"sv,
                                      "upstreamResponse"sv, "upstreamIdle"sv, "shutdownGrace"sv,
                                      "drainDelay"sv,       "tunnelIdle"sv};
constexpr std::array kUpstreamKeys = {"maxIdlePerEndpoint"sv};
constexpr std::array kServiceKeys = {"name"sv,           "namespace"sv,    "splitPolicy"sv,
                                     "revisions"sv,      "traffic"sv,      "hashOn"sv,
                                     "loadBalancer"sv,   "debugHeaders"sv, "rolloutDuration"sv,
                                     "upgradeTypes"sv,   "routes"sv,       "trafficPolicy"sv};
constexpr std::array kHashOnKeys = {"header"sv, "cookie"sv, "sourceIp"sv};
constexpr std::array kHashCookieKeys = {"name"sv, "ttl"sv};
constexpr std::array kRevisionKeys = {"name"sv, "endpoints"sv, "tls"sv, "protocol"sv,
                                      "trafficPolicy"sv};
constexpr std::array kUpstreamTlsKeys = {"caFile"sv, "serverName"sv, "certFile"sv, "keyFile"sv};
constexpr std::array kMappingKeys = {"domain"sv, "service"sv, "namespace"sv};

constexpr Section kTop{"the config file", kTopKeys};
constexpr Section kListener{"listener", kListenerKeys};
constexpr Section kListenerTls{"listener tls", kListenerTlsKeys};
constexpr Section kCertificate{"certificate", kCertificateKeys};
constexpr Section kAdmin{"admin", kAdminKeys};
constexpr Section kLimits{"limits", kLimitsKeys};
constexpr Section kTimeouts{"timeouts", kTimeoutsKeys};
constexpr Section kUpstream{"upstream", kUpstreamKeys};
constexpr Section kService{"service", kServiceKeys};
constexpr Section kHashOn{"hashOn", kHashOnKeys};
constexpr Section kHashCookie{"hashOn cookie", kHashCookieKeys};
constexpr Section kRevision{"revision", kRevisionKeys};
constexpr Section kUpstreamTls{"revision tls", kUpstreamTlsKeys};
constexpr Section kMapping{"domain mapping", kMappingKeys};
constexpr Section kAccessLog{"accessLog", kAccessLogKeys};
constexpr Section kTracing{"tracing", kTracingKeys};

constexpr std::int64_t kMaxWorkers = 1024;  // a typo such as 80000 should not spawn threads


std::expected<std::string, std::string> resolve_with_getaddrinfo(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &raw);
  if (rc != 0) {
    return std::unexpected(rc == EAI_SYSTEM ? std::string(std::strerror(errno))
                                            : std::string(::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(raw, &::freeaddrinfo);
  if (list == nullptr) return std::unexpected("no address found");
  char text[NI_MAXHOST] = {};
  rc =
      ::getnameinfo(list->ai_addr, list->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST);
  if (rc != 0) return std::unexpected(std::string(::gai_strerror(rc)));
  return std::string(text);
}


class Loader : detail::Reader {
 public:
  Loader(std::string file, Resolver resolver)
      : Reader(std::move(file)),
        base_dir_(std::filesystem::path(file_).parent_path()),
        resolver_(std::move(resolver)) {}

  LoadResult load(std::string_view yaml) {
    try {
      load_document(yaml);
    } catch (const std::exception& e) {
      // A bug of ours, not the user's; still reported as an error rather than thrown.
      add({}, "internal", fmt::format("internal error while loading: {}", e.what()));
    }
    std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
      return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    if (!errors_.empty()) return std::unexpected(std::move(errors_));
    return std::move(config_);
  }

 private:
  void load_document(std::string_view yaml) {
    auto document = YamlDocument::parse(yaml);
    if (!document) {
      add(document.error().pos, "yaml-syntax", std::move(document.error().message));
      return;
    }
    // Reported, and the first document still validated: one pass finds every mistake.
    if (SourcePos second = document->second_document(); second.line > 0) {
      add(second, "yaml-syntax", "a config file holds one YAML document; this is a second one");
    }
    config_.source = file_;
    YamlNode root = document->root();
    if (root.is_null()) {
      Fields empty;
      empty.pos = {1, 1};
      read_config(empty);  // an empty file: every default, no listener
      return;
    }
    if (auto top = read_map(root, kTop)) read_config(*top);
  }

  void read_config(const Fields& top) {
    if (const Field* field = top.find("domain")) {
      if (auto domain = read_string(*field)) {
        config_.domain = lowercase(*domain);
        if (auto problem = detail::dns_name_problem(config_.domain)) {
          add(field->value_pos, "domain",
              fmt::format("domain {} is not a valid DNS name: it {}", quote(*domain), *problem));
        }
      }
    }
    if (const Field* field = top.find("workers")) {
      if (auto workers = read_int(*field, 0, kMaxWorkers)) config_.workers = int(*workers);
    }
    read_listeners(top);
    if (auto admin = read_section(top, "admin", kAdmin)) {
      if (const Field* field = admin->find("address")) {
        if (auto address = read_bind_address(*field, "admin address")) {
          config_.admin.host = address->host;
          config_.admin.port = address->port;
        }
      }
    }
    if (auto limits = read_section(top, "limits", kLimits)) read_limits(*limits);
    if (auto timeouts = read_section(top, "timeouts", kTimeouts)) read_timeouts(*timeouts);
    if (auto upstream = read_section(top, "upstream", kUpstream)) {
      if (const Field* field = upstream->find("maxIdlePerEndpoint")) {
        if (auto value = read_int(*field, 0, kNoMax)) {
          config_.upstream.max_idle_per_endpoint = std::size_t(*value);
        }
      }
    }
    if (auto access_log = read_section(top, "accessLog", kAccessLog)) read_access_log(*access_log);
    if (auto tracing = read_section(top, "tracing", kTracing)) {
      if (const Field* field = tracing->find("sampleRate")) {
        if (auto rate = read_number(*field, 0, 1, "sample-rate")) {
          config_.tracing.sample_rate = *rate;
        }
      }
    }
    read_state_file(top);
    // Services before mappings, whatever the key order in the file: mappings refer to services.
    if (const Field* field = top.find("services")) {
      for (YamlNode item : read_list(*field)) read_service(item);
    }
    if (const Field* field = top.find("domainMappings")) {
      index_services();
      for (YamlNode item : read_list(*field)) read_mapping(item);
    }
  }

  // ---- access log ----

  void read_access_log(const Fields& fields) {
    AccessLog log;
    log.pos = fields.pos;
    if (const Field* field = require(fields, "path", kAccessLog)) {
      log.path = read_access_log_path(*field).value_or("");
    }
    if (const Field* field = fields.find("format")) {
      if (auto value = read_string(*field)) {
        if (*value == "json") {
          log.format = AccessLogFormat::json;
        } else if (*value == "text") {
          log.format = AccessLogFormat::text;
        } else {
          add(field->value_pos, "access-log-format",
              fmt::format("accessLog format must be json or text, got {}", quote(*value)));
        }
      }
    }
    config_.access_log = std::move(log);
  }

  // "stdout", "stderr", or a file resolved like read_file_path's. The file is created when the
  // log opens; its directory must exist now, so that a typo is reported with its position.
  std::optional<std::string> read_access_log_path(const Field& field) {
    auto text = read_string(field);
    if (!text) return std::nullopt;
    if (text->empty()) {
      add(field.value_pos, "access-log-path",
          "accessLog path must not be empty; use stdout, stderr or a file path");
      return std::nullopt;
    }
    if (*text == "stdout" || *text == "stderr") return *text;
    return resolve_new_file(field, *text, "accessLog path", "access-log-path");
  }

  // `stateFile`, a file that revgate writes: resolved and checked like the access log's.
  // Left out, it sits beside the config file ("revgate.yaml" -> "revgate.state.json"); a config
  // without a file ("<demo>") has none.
  void read_state_file(const Fields& top) {
    if (const Field* field = top.find("stateFile")) {
      auto text = read_string(*field);
      if (!text) return;
      if (text->empty()) {
        add(field->value_pos, "state-file",
            "stateFile must not be empty; leave it out for a file beside the config file");
        return;
      }
      config_.state_file = resolve_new_file(*field, *text, "stateFile", "state-file").value_or("");
      return;
    }
    if (file_.empty() || file_.starts_with('<')) return;
    config_.state_file =
        std::filesystem::path(file_).replace_extension(".state.json").lexically_normal().string();
  }

  // A file to be created or rewritten later: relative to the config file's directory, not a
  // directory, in a directory that exists. The path, or nullopt after reporting `rule`.
  std::optional<std::string> resolve_new_file(const Field& field, const std::string& text,
                                              std::string_view what, std::string_view rule) {
    std::filesystem::path path(text);
    if (path.is_relative() && !base_dir_.empty()) path = base_dir_ / path;
    std::string resolved = path.lexically_normal().string();
    std::string shown =
        resolved == text ? quote(text) : fmt::format("{} ({})", quote(text), resolved);
    std::error_code ec;
    if (std::filesystem::is_directory(resolved, ec)) {
      add(field.value_pos, rule,
          fmt::format("{} {} is a directory; name a file in it", what, shown));
      return std::nullopt;
    }
    std::filesystem::path dir = std::filesystem::path(resolved).parent_path();
    if (dir.empty()) dir = ".";
    if (!std::filesystem::is_directory(dir, ec)) {
      add(field.value_pos, rule,
          fmt::format("{} {}: directory {} does not exist", what, shown, quote(dir.string())));
      return std::nullopt;
    }
    return resolved;
  }

  // ---- listeners, admin, limits, timeouts ----

  void read_listeners(const Fields& top) {
    const Field* field = top.find_key("listeners");
    constexpr auto kHint =
        "at least one listener is required, e.g. listeners: [{name: http, "
        "address: 0.0.0.0:8080}]";
    if (field == nullptr) {
      add(top.pos, "listeners-required", kHint);
      return;
    }
    if (field->value.is_null() || (field->value.is_sequence() && field->value.size() == 0)) {
      add(field->key_pos, "listeners-required", kHint);
      return;
    }
    std::map<std::string, SourcePos> seen;
    std::vector<SourcePos> redirect_pos;  // parallel to config_.listeners
    for (YamlNode item : read_list(*field)) {
      auto fields = read_map(item, kListener);
      if (!fields) continue;
      Listener listener;
      listener.pos = fields->pos;
      SourcePos redirect;
      if (const Field* name = require(*fields, "name", kListener)) {
        if (auto value = read_string(*name)) {
          listener.name = *value;
          check_name(*value, name->value_pos, "listener name");
          if (auto [it, fresh] = seen.emplace(*value, name->value_pos); !fresh) {
            add(name->value_pos, "listener-name-unique",
                fmt::format("listener name {} is already used at line {}", quote(*value),
                            it->second.line));
          }
        }
      }
      if (const Field* address = require(*fields, "address", kListener)) {
        if (auto value = read_bind_address(*address, "listener address")) {
          listener.host = value->host;
          listener.port = value->port;
        }
      }
      if (const Field* tls = fields->find("tls")) listener.tls = read_listener_tls(*tls);
      if (const Field* flag = fields->find("httpsRedirect")) {
        if (auto value = read_bool(*flag)) {
          listener.https_redirect = *value;
          redirect = flag->value_pos;
        }
      }
      read_listener_http2(*fields, listener);
      config_.listeners.push_back(std::move(listener));
      redirect_pos.push_back(redirect);
    }
    check_https_redirects(redirect_pos);
  }

  // h2c (cleartext HTTP/2 with prior knowledge) and alpn (what TLS offers): each belongs to one
  // kind of listener.
  void read_listener_http2(const Fields& fields, Listener& listener) {
    if (const Field* flag = fields.find("h2c")) {
      if (auto value = read_bool(*flag)) {
        listener.h2c = *value;
        if (*value && listener.tls) {
          add(flag->value_pos, "h2c-cleartext",
              fmt::format("listener {} has tls; h2c is HTTP/2 without TLS (a TLS listener "
                          "offers h2 by ALPN: see alpn)",
                          quote(listener.name)));
        }
      }
    }
    const Field* alpn = fields.find("alpn");
    if (alpn == nullptr) return;
    listener.alpn_pos = alpn->value_pos;
    if (!listener.tls) {
      add(alpn->key_pos, "alpn-needs-tls",
          fmt::format("listener {} has no tls; alpn is negotiated in the TLS handshake (for "
                      "cleartext HTTP/2 use h2c: true)",
                      quote(listener.name)));
    }
    listener.alpn.clear();
    for (YamlNode item : read_list(*alpn)) {
      const std::string_view value = item.is_scalar() ? item.scalar() : std::string_view();
      if (value != "h2" && value != "http/1.1") {
        add(item.pos(), "alpn-protocol",
            fmt::format("ALPN protocol must be h2 or http/1.1, got {}",
                        item.is_scalar() ? quote(value) : describe(item)));
      } else if (std::find(listener.alpn.begin(), listener.alpn.end(), value) !=
                 listener.alpn.end()) {
        add(item.pos(), "alpn-protocol", fmt::format("ALPN protocol {} is listed twice", value));
      } else {
        listener.alpn.emplace_back(value);
      }
    }
    if (listener.alpn.empty()) {
      add(alpn->value_pos, "alpn-protocol", "alpn must list h2, http/1.1 or both");
    }
  }

  // A redirect to https needs somewhere to go, and makes no sense on the https side itself.
  void check_https_redirects(const std::vector<SourcePos>& redirect_pos) {
    bool any_tls = std::any_of(config_.listeners.begin(), config_.listeners.end(),
                               [](const Listener& l) { return l.tls.has_value(); });
    for (std::size_t i = 0; i < config_.listeners.size(); ++i) {
      const Listener& listener = config_.listeners[i];
      if (!listener.https_redirect) continue;
      if (listener.tls) {
        add(redirect_pos[i], "https-redirect",
            fmt::format("listener {} has tls; httpsRedirect is for cleartext listeners",
                        quote(listener.name)));
      } else if (!any_tls) {
        add(redirect_pos[i], "https-redirect",
            fmt::format("listener {} redirects to https, but no listener has tls",
                        quote(listener.name)));
      }
    }
  }

  ListenerTls read_listener_tls(const Field& field) {
    ListenerTls tls;
    tls.pos = field.value_pos;
    auto fields = read_map(field.value, kListenerTls);
    if (!fields) return tls;
    const Field* list = fields->find_key("certificates");
    if (list == nullptr || list->value.is_null() ||
        (list->value.is_sequence() && list->value.size() == 0)) {
      add(list != nullptr ? list->key_pos : fields->pos, "certificates-required",
          "a listener's tls needs at least one certificate, e.g. certificates: "
          "[{certFile: site.crt, keyFile: site.key}]");
    } else {
      for (YamlNode item : read_list(*list)) {
        auto cert_fields = read_map(item, kCertificate);
        if (!cert_fields) continue;
        CertificateFiles files;
        files.pos = cert_fields->pos;
        if (const Field* f = require(*cert_fields, "certFile", kCertificate)) {
          files.cert_file = read_file_path(*f).value_or("");
        }
        if (const Field* f = require(*cert_fields, "keyFile", kCertificate)) {
          files.key_file = read_file_path(*f).value_or("");
        }
        tls.certificates.push_back(std::move(files));
      }
    }
    if (const Field* f = fields->find("minVersion")) {
      // Quoted or not: an unquoted 1.2 is the scalar "1.2" too.
      if (auto value = read_string(*f)) {
        if (*value == "1.2") {
          tls.min_version = TlsVersion::tls12;
        } else if (*value == "1.3") {
          tls.min_version = TlsVersion::tls13;
        } else {
          add(f->value_pos, "min-version",
              fmt::format("minVersion must be \"1.2\" or \"1.3\", got {}", quote(*value)));
        }
      }
    }
    if (const Field* f = fields->find("requireSni")) {
      if (auto value = read_bool(*f)) tls.require_sni = *value;
    }
    if (const Field* f = fields->find("handshakeTimeout")) {
      if (auto value = read_duration(*f)) tls.handshake_timeout = *value;
    }
    return tls;
  }

  // A certificate, key or CA file: resolved against the config file's directory and readable
  // now, so that a typo is reported with its position rather than at the first handshake.
  std::optional<std::string> read_file_path(const Field& field) {
    auto text = read_string(field);
    if (!text) return std::nullopt;
    if (text->empty()) {
      add(field.value_pos, "tls-file", fmt::format("{} must not be empty", field.name));
      return std::nullopt;
    }
    std::filesystem::path path(*text);
    if (path.is_relative() && !base_dir_.empty()) path = base_dir_ / path;
    std::string resolved = path.lexically_normal().string();
    std::string shown =
        resolved == *text ? quote(*text) : fmt::format("{} ({})", quote(*text), resolved);
    std::error_code ec;
    if (std::filesystem::is_directory(resolved, ec)) {
      add(field.value_pos, "tls-file",
          fmt::format("{} {} cannot be read: it is a directory", field.name, shown));
      return std::nullopt;
    }
    int fd = ::open(resolved.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      add(field.value_pos, "tls-file",
          fmt::format("{} {} cannot be read: {}", field.name, shown, std::strerror(errno)));
      return std::nullopt;
    }
    ::close(fd);
    return resolved;
  }

  // A numeric address to bind: names are not resolved here, the proxy binds exactly this.
  std::optional<detail::HostPort> read_bind_address(const Field& field, std::string_view what) {
    auto text = read_string(field);
    if (!text) return std::nullopt;
    auto address = detail::split_host_port(*text);
    if (!address) {
      add(field.value_pos, "address", fmt::format("{} {} {}", what, quote(*text), address.error()));
      return std::nullopt;
    }
    auto numeric = address->bracketed ? detail::numeric_ipv6(address->host)
                                      : detail::numeric_ipv4(address->host);
    if (!numeric) {
      add(field.value_pos, "address",
          fmt::format("{} {}: the host must be a numeric IPv4 address or a bracketed IPv6 "
                      "address such as 0.0.0.0, 127.0.0.1 or [::]",
                      what, quote(*text)));
      return std::nullopt;
    }
    address->host = *numeric;
    return *address;
  }

  void read_limits(const Fields& fields) {
    Limits& limits = config_.limits;
    if (const Field* f = fields.find("requestLineBytes")) {
      if (auto v = read_int(*f, 1, kNoMax)) limits.request_line_bytes = std::size_t(*v);
    }
    if (const Field* f = fields.find("requestHeadersBytes")) {
      if (auto v = read_int(*f, 1, kNoMax)) limits.request_headers_bytes = std::size_t(*v);
    }
    if (const Field* f = fields.find("requestHeaderCount")) {
      if (auto v = read_int(*f, 1, kNoMax)) limits.request_header_count = std::size_t(*v);
    }
    if (const Field* f = fields.find("requestBodyBytes")) {
      if (auto v = read_int(*f, 0, kNoMax)) limits.request_body_bytes = std::uint64_t(*v);
    }
    if (const Field* f = fields.find("maxConcurrentStreams")) {
      // RFC 9113 6.5.2: a 31-bit value; Envoy's own ceiling is 2^31 - 1 too.
      if (auto v = read_int(*f, 1, 2147483647)) limits.max_concurrent_streams = std::uint32_t(*v);
    }
  }

  void read_timeouts(const Fields& fields) {
    Timeouts& timeouts = config_.timeouts;
    struct Timeout {
      std::string_view key;
      std::chrono::milliseconds* target;
      bool allow_zero;  // a delay may be none; a timeout of 0 would fire at once
    };
    const Timeout targets[] = {
        {"requestHeaders", &timeouts.request_headers, false},
        {"idle", &timeouts.idle, false},
        {"upstreamConnect", &timeouts.upstream_connect, false},
        {"upstreamResponse", &timeouts.upstream_response, false},
        {"upstreamIdle", &timeouts.upstream_idle, false},
        {"shutdownGrace", &timeouts.shutdown_grace, false},
        {"drainDelay", &timeouts.drain_delay, true},
        {"tunnelIdle", &timeouts.tunnel_idle, false},
    };
    for (const auto& [key, target, allow_zero] : targets) {
      if (const Field* field = fields.find(key)) {
        if (auto value = read_duration(*field, allow_zero)) *target = *value;
      }
    }
  }

  // ---- services ----

  void read_service(YamlNode item) {
    auto fields = read_map(item, kService);
    if (!fields) return;
    Service service;
    service.pos = fields->pos;
    bool name_ok = false;
    SourcePos name_pos = fields->pos;
    if (const Field* field = require(*fields, "name", kService)) {
      if (auto value = read_string(*field)) {
        service.name = *value;
        name_pos = field->value_pos;
        name_ok = check_name(*value, name_pos, "service name");
      }
    }
    bool namespace_ok = true;
    if (const Field* field = fields->find("namespace")) {
      namespace_ok = false;
      if (auto value = read_string(*field)) {
        service.namespace_name = *value;
        namespace_ok = check_name(*value, field->value_pos, "namespace");
      }
    }
    if (name_ok && namespace_ok) {
      std::string key = service.namespace_name + '/' + service.name;
      if (auto [it, fresh] = services_seen_.emplace(std::move(key), name_pos); !fresh) {
        add(name_pos, "service-unique",
            fmt::format("service {} is already defined in namespace {} at line {}",
                        quote(service.name), quote(service.namespace_name), it->second.line));
      }
    }
    read_routing_policy(*fields, service);
    if (const Field* field = fields->find("debugHeaders")) {
      if (auto value = read_bool(*field)) service.debug_headers = *value;
    }
    if (const Field* field = fields->find("rolloutDuration")) {
      if (auto value = read_duration(*field, /*allow_zero=*/true)) {
        if (value->count() != 0 && *value < std::chrono::seconds(1)) {
          add(field->value_pos, "rollout-duration",
              fmt::format("rolloutDuration {} is too short: a rollout takes at least 1s (0 turns "
                          "rollouts off)",
                          quote(field->value.scalar())));
        } else {
          service.rollout_duration = *value;
        }
      }
    }
    if (const Field* field = fields->find_key("upgradeTypes")) read_upgrade_types(*field, service);
    read_revisions(*fields, service);
    if (const Field* field = fields->find("traffic");
        field != nullptr && !(field->value.is_sequence() && field->value.size() == 0)) {
      service.traffic = read_traffic_list(*field, service);
    } else {
      service.traffic = expand_default_traffic({});
    }
    if (const Field* field = fields->find("routes")) detail::read_routes(*this, *field, service);
    config_.services.push_back(std::move(service));
  }

  // upgradeTypes: HTTP/1.1 Upgrade tokens (RFC 9110 7.8), compared without case.
  void read_upgrade_types(const Field& field, Service& service) {
    service.upgrade_types.clear();
    if (field.value.is_null()) return;
    for (YamlNode item : read_list(field)) {
      if (!item.is_scalar()) {
        add(item.pos(), "type",
            fmt::format("an upgrade type must be a string such as websocket, got {}",
                        describe(item)));
        continue;
      }
      std::string token = lowercase(std::string(item.scalar()));
      const bool is_token = !token.empty() && std::all_of(token.begin(), token.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               std::string_view("!#$%&'*+-.^_`|~/").find(c) != std::string_view::npos;
      });
      if (!is_token) {
        add(item.pos(), "upgrade-type",
            fmt::format("upgrade type {} is not an HTTP token (such as websocket)",
                        quote(item.scalar())));
      } else if (token == "h2c") {
        add(item.pos(), "upgrade-type",
            "upgrade type \"h2c\" cannot be proxied: HTTP/2 goes to a revision over its own "
            "connection, never as an Upgrade of an HTTP/1.1 one");
      } else if (std::find(service.upgrade_types.begin(), service.upgrade_types.end(), token) ==
                 service.upgrade_types.end()) {
        service.upgrade_types.push_back(std::move(token));
      }
    }
  }

  // splitPolicy, hashOn and loadBalancer (README "Routing"). hashOn goes with splitPolicy: hash
  // and with nothing else.
  void read_routing_policy(const Fields& fields, Service& service) {
    bool policy_known = true;
    const Field* policy = fields.find("splitPolicy");
    if (policy != nullptr) {
      policy_known = false;
      if (auto value = read_string(*policy)) {
        if (*value == "smooth" || *value == "random" || *value == "hash") {
          service.split_policy = *value == "smooth"   ? SplitPolicy::smooth
                                 : *value == "random" ? SplitPolicy::random
                                                      : SplitPolicy::hash;
          policy_known = true;
        } else {
          add(policy->value_pos, "split-policy",
              fmt::format("splitPolicy must be smooth, random or hash, got {}", quote(*value)));
        }
      }
    }
    const Field* hash_on = fields.find("hashOn");
    if (hash_on != nullptr) {
      std::optional<HashOn> value = read_hash_on(*hash_on);
      if (policy_known && service.split_policy != SplitPolicy::hash) {
        add(hash_on->key_pos, "hash-on-unused",
            fmt::format("service {} has hashOn but splitPolicy {}; hashOn goes with "
                        "splitPolicy: hash",
                        quote(service.name), to_string(service.split_policy)));
      } else {
        service.hash_on = std::move(value);
      }
    } else if (policy_known && service.split_policy == SplitPolicy::hash) {
      const Field* empty = fields.find_key("hashOn");
      add(empty != nullptr ? empty->key_pos : policy->value_pos, "hash-on-required",
          fmt::format("service {} has splitPolicy: hash and needs hashOn: {{header: NAME}}, "
                      "{{cookie: {{name: NAME, ttl: 3600s}}}} or {{sourceIp: true}}",
                      quote(service.name)));
    }
    const Field* flat = fields.find("loadBalancer");
    if (flat != nullptr) {
      if (auto value = detail::read_simple_load_balancer(*this, *flat)) {
        service.load_balancer = *value;
      }
    }
    if (const Field* field = fields.find("trafficPolicy")) {
      if (flat != nullptr) {
        add(field->key_pos, "load-balancer",
            fmt::format("service {} has both loadBalancer and trafficPolicy; loadBalancer is "
                        "the short form of trafficPolicy.loadBalancer.simple: keep one",
                        quote(service.name)));
      } else if (auto settings = detail::read_traffic_policy(*this, *field)) {
        service.load_balancer = settings->simple;
        service.consistent_hash = std::move(settings->consistent_hash);
      }
    }
  }

  // nullopt after reporting why the block cannot be used.
  std::optional<HashOn> read_hash_on(const Field& field) {
    auto fields = read_map(field.value, kHashOn);
    if (!fields) return std::nullopt;
    HashOn hash_on;
    hash_on.pos = field.value_pos;
    bool ok = true;
    std::vector<const Field*> chosen;  // in source order
    for (const Field& entry : fields->entries) {
      if (entry.value.is_null()) continue;  // `key:` means "not this one"
      if (entry.name == "header") {
        chosen.push_back(&entry);
        hash_on.kind = HashOn::Kind::header;
        if (auto value = read_string(entry)) {
          hash_on.header = lowercase(*value);
          if (auto problem = token_problem(*value)) {
            add(entry.value_pos, "hash-header",
                fmt::format("hashOn header {} is not an HTTP header name: it {}", quote(*value),
                            *problem));
            ok = false;
          }
        } else {
          ok = false;
        }
      } else if (entry.name == "cookie") {
        chosen.push_back(&entry);
        hash_on.kind = HashOn::Kind::cookie;
        if (!read_hash_cookie(entry, hash_on)) ok = false;
      } else if (entry.name == "sourceIp") {
        if (auto value = read_bool(entry)) {
          if (*value) {
            chosen.push_back(&entry);
            hash_on.kind = HashOn::Kind::source_ip;
          }
        } else {
          ok = false;
        }
      }
    }
    if (chosen.size() > 1) {
      add(chosen[1]->key_pos, "hash-on-kind",
          fmt::format("hashOn has one of header, cookie or sourceIp: true, not both {} and {}",
                      quote(chosen[0]->name), quote(chosen[1]->name)));
      return std::nullopt;
    }
    if (chosen.empty()) {
      // A map whose keys were refused (unknown, duplicate) has its errors already.
      if (ok && fields->entries.size() == field.value.size()) {
        add(fields->pos, "hash-on-kind",
            "hashOn needs one of header: NAME, cookie: {name: NAME} or sourceIp: true");
      }
      return std::nullopt;
    }
    if (!ok) return std::nullopt;
    return hash_on;
  }

  // `cookie: {name: NAME, ttl: 3600s}`; false after reporting a problem.
  bool read_hash_cookie(const Field& field, HashOn& hash_on) {
    auto fields = read_map(field.value, kHashCookie);
    if (!fields) return false;
    bool ok = true;
    if (const Field* name = require(*fields, "name", kHashCookie)) {
      if (auto value = read_string(*name)) {
        hash_on.cookie_name = *value;
        constexpr std::size_t kMaxCookieName = 64;  // keeps Set-Cookie in a fixed buffer
        auto problem = token_problem(*value);
        if (!problem && value->size() > kMaxCookieName) {
          problem = fmt::format("is {} characters long; at most {} are allowed", value->size(),
                                kMaxCookieName);
        }
        if (problem) {
          add(name->value_pos, "cookie-name",
              fmt::format("cookie name {} is not a cookie name: it {}", quote(*value), *problem));
          ok = false;
        }
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (const Field* ttl = fields->find("ttl")) {
      if (auto value = read_duration(*ttl)) {
        if (value->count() % 1000 != 0) {
          add(ttl->value_pos, "cookie-ttl",
              fmt::format("cookie ttl {} is not a whole number of seconds (Max-Age counts "
                          "seconds; leave ttl out for a session cookie)",
                          quote(ttl->value.scalar())));
          ok = false;
        } else {
          hash_on.cookie_ttl = std::chrono::duration_cast<std::chrono::seconds>(*value);
        }
      } else {
        ok = false;
      }
    }
    return ok;
  }

  void read_revisions(const Fields& fields, Service& service) {
    const Field* field = fields.find_key("revisions");
    bool empty = field == nullptr || field->value.is_null() ||
                 (field->value.is_sequence() && field->value.size() == 0);
    if (empty) {
      add(field != nullptr ? field->key_pos : fields.pos, "revisions-required",
          fmt::format("service {} needs at least one revision", quote(service.name)));
      return;
    }
    for (YamlNode item : read_list(*field)) {
      auto revision_fields = read_map(item, kRevision);
      if (!revision_fields) continue;
      service.revisions.push_back(read_revision(*revision_fields, service.name));
    }
  }

  Revision read_revision(const Fields& fields, const std::string& service_name) {
    Revision revision;
    revision.pos = fields.pos;
    if (const Field* field = require(fields, "name", kRevision)) {
      if (auto value = read_string(*field)) {
        revision.name = *value;
        check_name(*value, field->value_pos, "revision name");
        auto [it, fresh] =
            revisions_seen_.emplace(*value, std::pair(field->value_pos, service_name));
        if (!fresh) {
          add(field->value_pos, "revision-unique",
              fmt::format("revision name {} is already used at line {} (service {}); revision "
                          "names are unique in the whole file",
                          quote(*value), it->second.first.line, quote(it->second.second)));
        }
      }
    }
    const Field* field = fields.find_key("endpoints");
    bool empty = field == nullptr || field->value.is_null() ||
                 (field->value.is_sequence() && field->value.size() == 0);
    if (empty) {
      add(field != nullptr ? field->key_pos : fields.pos, "endpoints-required",
          fmt::format("revision {} needs at least one endpoint (host:port)", quote(revision.name)));
      return revision;
    }
    bool endpoints_known = field->value.is_sequence();
    for (YamlNode item : read_list(*field)) {
      if (auto endpoint = read_endpoint(item)) {
        revision.endpoints.push_back(std::move(*endpoint));
      } else {
        endpoints_known = false;
      }
    }
    if (const Field* tls = fields.find("tls")) {
      revision.tls = read_upstream_tls(*tls);
      bool any_https = std::any_of(revision.endpoints.begin(), revision.endpoints.end(),
                                   [](const Endpoint& e) { return e.tls; });
      // Only when every endpoint was readable: a broken https:// one has its own error.
      if (endpoints_known && !any_https) {
        add(tls->key_pos, "upstream-tls-unused",
            fmt::format("revision {} has a tls block but no https:// endpoint; write its "
                        "endpoints as https://host:port",
                        quote(revision.name)));
      }
    }
    if (const Field* protocol = fields.find("protocol")) {
      read_revision_protocol(*protocol, revision, endpoints_known);
    }
    if (const Field* policy = fields.find("trafficPolicy")) {
      revision.load_balancer = detail::read_traffic_policy(*this, *policy);
    }
    return revision;
  }

  static std::string authority(const Endpoint& endpoint) {
    return fmt::format("'{}:{}'", endpoint.host, endpoint.port);
  }

  // `protocol:` http1 (the default), h2c for cleartext endpoints, h2 for https:// ones.
  void read_revision_protocol(const Field& field, Revision& revision, bool endpoints_known) {
    auto value = read_string(field);
    if (!value) return;
    if (*value == "http1") {
      revision.protocol = UpstreamProtocol::http1;
    } else if (*value == "h2c") {
      revision.protocol = UpstreamProtocol::h2c;
    } else if (*value == "h2") {
      revision.protocol = UpstreamProtocol::h2;
    } else {
      return add(field.value_pos, "upstream-protocol",
                 fmt::format("protocol must be http1, h2c (HTTP/2 over cleartext) or h2 (HTTP/2 "
                             "over TLS), got {}",
                             quote(*value)));
    }
    if (!endpoints_known || revision.protocol == UpstreamProtocol::http1) return;
    const bool want_tls = revision.protocol == UpstreamProtocol::h2;
    for (const Endpoint& endpoint : revision.endpoints) {
      if (endpoint.tls == want_tls) continue;
      return add(field.value_pos, "upstream-protocol",
                 want_tls ? fmt::format("revision {} has protocol h2 (HTTP/2 over TLS) but "
                                        "endpoint {} is not https://; use h2c for cleartext",
                                        quote(revision.name), authority(endpoint))
                          : fmt::format("revision {} has protocol h2c (cleartext HTTP/2) but "
                                        "endpoint {} is https://; use h2 for HTTP/2 over TLS",
                                        quote(revision.name), authority(endpoint)));
    }
  }

  UpstreamTls read_upstream_tls(const Field& field) {
    UpstreamTls tls;
    tls.pos = field.value_pos;
    auto fields = read_map(field.value, kUpstreamTls);
    if (!fields) return tls;
    if (const Field* f = fields->find("caFile")) tls.ca_file = read_file_path(*f).value_or("");
    if (const Field* f = fields->find("serverName")) {
      if (auto value = read_string(*f)) {
        tls.server_name = lowercase(*value);
        bool numeric =
            detail::numeric_ipv4(tls.server_name) || detail::numeric_ipv6(tls.server_name);
        auto problem = detail::dns_name_problem(tls.server_name);
        if (!numeric && problem) {
          add(f->value_pos, "server-name",
              fmt::format("serverName {} is not a DNS name or an IP address: it {}", quote(*value),
                          *problem));
        }
      }
    }
    const Field* cert = fields->find("certFile");
    const Field* key = fields->find("keyFile");
    if (cert != nullptr) tls.cert_file = read_file_path(*cert).value_or("");
    if (key != nullptr) tls.key_file = read_file_path(*key).value_or("");
    if ((cert == nullptr) != (key == nullptr)) {
      const Field* present = cert != nullptr ? cert : key;
      add(present->key_pos, "client-cert-pair",
          fmt::format("{} needs {}: a client certificate comes with its key", present->name,
                      cert != nullptr ? "keyFile" : "certFile"));
    }
    return tls;
  }

  std::optional<Endpoint> read_endpoint(YamlNode node) {
    SourcePos pos = node.pos();
    if (!node.is_scalar()) {
      add(pos, "type",
          fmt::format("an endpoint must be a string host:port, got {}", describe(node)));
      return std::nullopt;
    }
    std::string_view text = node.scalar();
    std::string_view rest = text;
    bool tls = false;
    if (std::size_t sep = rest.find("://"); sep != std::string_view::npos) {
      std::string scheme = lowercase(std::string(rest.substr(0, sep)));
      if (scheme != "http" && scheme != "https") {
        add(pos, "endpoint",
            fmt::format("endpoint {} has scheme {}; use http://, https:// or plain host:port",
                        quote(text), quote(scheme)));
        return std::nullopt;
      }
      tls = scheme == "https";
      rest.remove_prefix(sep + 3);
      if (rest.find('/') != std::string_view::npos) {
        add(pos, "endpoint",
            fmt::format("endpoint {} has a path; an endpoint is {}://host:port", quote(text),
                        scheme));
        return std::nullopt;
      }
    }
    auto host_port = detail::split_host_port(rest);
    if (!host_port) {
      add(pos, "endpoint", fmt::format("endpoint {} {}", quote(text), host_port.error()));
      return std::nullopt;
    }
    if (host_port->port == 0) {
      add(pos, "endpoint",
          fmt::format("endpoint {} has port 0; an endpoint port is 1 to 65535", quote(text)));
      return std::nullopt;
    }
    Endpoint endpoint;
    endpoint.host = host_port->host;
    endpoint.port = host_port->port;
    endpoint.pos = pos;
    endpoint.tls = tls;
    if (host_port->bracketed || detail::looks_like_ipv4(host_port->host)) {
      auto numeric = host_port->bracketed ? detail::numeric_ipv6(host_port->host)
                                          : detail::numeric_ipv4(host_port->host);
      if (!numeric) {
        add(pos, "endpoint",
            fmt::format("endpoint {}: {} is not a valid {} address", quote(text),
                        quote(host_port->host), host_port->bracketed ? "IPv6" : "IPv4"));
        return std::nullopt;
      }
      endpoint.address = *numeric;
      return endpoint;
    }
    if (auto problem = detail::dns_name_problem(host_port->host, /*allow_underscore=*/true)) {
      add(pos, "endpoint",
          fmt::format("endpoint {}: host {} is not an IP address or a valid DNS name: it {}",
                      quote(text), quote(host_port->host), *problem));
      return std::nullopt;
    }
    auto address = resolve(host_port->host);
    if (!address) {
      add(pos, "endpoint-resolve",
          fmt::format("endpoint {}: cannot resolve {}: {}", quote(text), quote(host_port->host),
                      address.error()));
      return std::nullopt;
    }
    endpoint.address = *address;
    return endpoint;
  }

  std::expected<std::string, std::string> resolve(const std::string& host) {
    auto it = resolved_.find(host);
    if (it == resolved_.end()) {
      it = resolved_.emplace(host, resolver_ ? resolver_(host) : resolve_with_getaddrinfo(host))
               .first;
    }
    return it->second;
  }


  // ---- domain mappings ----

  void read_mapping(YamlNode item) {
    auto fields = read_map(item, kMapping);
    if (!fields) return;
    DomainMapping mapping;
    mapping.pos = fields->pos;
    if (const Field* field = require(*fields, "domain", kMapping)) {
      if (auto value = read_string(*field)) {
        mapping.domain = lowercase(*value);
        if (auto problem = mapping_domain_problem(mapping.domain)) {
          add(field->value_pos, "mapping-domain",
              fmt::format("domain {} {}", quote(*value), *problem));
        } else if (auto [it, fresh] = domains_seen_.emplace(mapping.domain, field->value_pos);
                   !fresh) {
          add(field->value_pos, "mapping-unique",
              fmt::format("domain {} is already mapped at line {}; a domain maps to one service",
                          quote(*value), it->second.line));
        }
      }
    }
    bool namespace_ok = true;
    if (const Field* field = fields->find("namespace")) {
      namespace_ok = false;
      if (auto value = read_string(*field)) {
        mapping.namespace_name = *value;
        namespace_ok = check_name(*value, field->value_pos, "namespace");
      }
    }
    if (const Field* field = require(*fields, "service", kMapping)) {
      if (auto value = read_string(*field)) {
        mapping.service = *value;
        if (namespace_ok) check_mapped_service(mapping, field->value_pos);
      }
    }
    config_.domain_mappings.push_back(std::move(mapping));
  }

  static std::optional<std::string> mapping_domain_problem(const std::string& domain) {
    if (domain == "*") return std::nullopt;
    std::string_view name = domain;
    if (name.starts_with("*.")) name.remove_prefix(2);
    if (name.find('*') != std::string_view::npos) {
      return "has a misplaced '*'; a wildcard is '*.' followed by a domain, or '*' alone";
    }
    if (auto problem = detail::dns_name_problem(name)) {
      return fmt::format("is not a valid DNS name: it {}", *problem);
    }
    return std::nullopt;
  }

  // services_by_name_, once every service is read (mappings refer to them).
  void index_services() {
    services_by_name_.reserve(config_.services.size());
    for (std::size_t i = 0; i < config_.services.size(); ++i) {
      services_by_name_.emplace_back(config_.services[i].name, i);
    }
    std::sort(services_by_name_.begin(), services_by_name_.end());
  }

  // A binary search by name, then the few services of that name (one per namespace, unless the
  // file has errors): a mapping costs O(log n), not a scan of every service.
  void check_mapped_service(const DomainMapping& mapping, SourcePos pos) {
    using Entry = std::pair<std::string_view, std::size_t>;
    auto [first, last] = std::ranges::equal_range(
        services_by_name_, std::string_view(mapping.service), {}, &Entry::first);
    for (auto it = first; it != last; ++it) {
      if (config_.services[it->second].namespace_name == mapping.namespace_name) return;
    }
    std::string hint;
    if (first != last) {
      const std::string& elsewhere = config_.services[first->second].namespace_name;
      hint = fmt::format(" (it exists in namespace {}; add namespace: {})", quote(elsewhere),
                         elsewhere);
    }
    add(pos, "mapping-service",
        fmt::format("domain mapping to service {} in namespace {}: no such service{}",
                    quote(mapping.service), quote(mapping.namespace_name), hint));
  }


  std::filesystem::path base_dir_;  // relative certificate paths start here
  Resolver resolver_;
  Config config_;
  std::map<std::string, std::expected<std::string, std::string>> resolved_;
  std::unordered_map<std::string, SourcePos> services_seen_;  // "namespace/name" (valid labels)
  // Every service (whatever its errors, so that a mapping to it is not a second error) by name,
  // then file order; views into config_.services, complete before the first mapping is read.
  std::vector<std::pair<std::string_view, std::size_t>> services_by_name_;
  // revision name -> where it is first defined, and in which service
  std::unordered_map<std::string, std::pair<SourcePos, std::string>> revisions_seen_;
  std::unordered_map<std::string, SourcePos> domains_seen_;
};

LoadResult file_error(const std::string& path, std::string message) {
  ConfigError error;  // line 0: the error is about the file, not a place in it
  error.file = path;
  error.rule = "file";
  error.message = std::move(message);
  return std::unexpected(std::vector<ConfigError>{std::move(error)});
}

}  // namespace

std::string_view to_string(SplitPolicy policy) {
  switch (policy) {
    case SplitPolicy::smooth:
      return "smooth";
    case SplitPolicy::random:
      return "random";
    case SplitPolicy::hash:
      return "hash";
  }
  return "smooth";
}

std::string_view to_string(LoadBalancer balancer) {
  switch (balancer) {
    case LoadBalancer::round_robin:
      return "ROUND_ROBIN";
    case LoadBalancer::least_request:
      return "LEAST_REQUEST";
    case LoadBalancer::random:
      return "RANDOM";
  }
  return "ROUND_ROBIN";
}

std::string_view to_string(UpstreamProtocol protocol) {
  switch (protocol) {
    case UpstreamProtocol::h2c:
      return "h2c";
    case UpstreamProtocol::h2:
      return "h2";
    case UpstreamProtocol::http1:
      break;
  }
  return "http1";
}

std::string ConfigError::to_string() const {
  if (line <= 0) return fmt::format("{}: {} [{}]", file, message, rule);
  return fmt::format("{}:{}:{}: {} [{}]", file, line, column, message, rule);
}

LoadResult load_string(std::string_view yaml, const std::string& source_name,
                       const LoadOptions& options) {
  return Loader(source_name, options.resolver).load(yaml);
}

LoadResult load_string(std::string_view yaml, const std::string& source_name) {
  return load_string(yaml, source_name, LoadOptions{});
}

LoadResult load_file(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return file_error(path, "cannot read the config file: it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return file_error(path, fmt::format("cannot read the config file: {}", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return file_error(path, fmt::format("cannot read the config file: {}", std::strerror(errno)));
  }
  return load_string(text.str(), path, options);
}

LoadResult load_file(const std::string& path) { return load_file(path, LoadOptions{}); }

}  // namespace revgate::config
