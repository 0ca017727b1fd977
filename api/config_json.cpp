// Config -> JSON, key by key in the order of SPEC section 3 and config/config.cpp. Every key the
// loader reads is written, with its value in force (defaults included).
#include "api/config_json.h"

#include <fmt/format.h>

namespace revgate::api {

namespace json = boost::json;

namespace {

json::object listener_tls(const config::ListenerTls& tls) {
  json::array certificates;
  for (const auto& files : tls.certificates) {
    json::object c;
    c["certFile"] = files.cert_file;
    c["keyFile"] = files.key_file;
    certificates.push_back(std::move(c));
  }
  json::object o;
  o["certificates"] = std::move(certificates);
  o["minVersion"] = tls.min_version == config::TlsVersion::tls13 ? "1.3" : "1.2";
  o["requireSni"] = tls.require_sni;
  o["handshakeTimeout"] = duration_text(tls.handshake_timeout);
  return o;
}

json::object upstream_tls(const config::UpstreamTls& tls) {
  // Empty strings mean "not set" (system trust store, the endpoint's host, no client cert);
  // the loader refuses empty file names, so they are left out rather than written empty.
  json::object o;
  if (!tls.ca_file.empty()) o["caFile"] = tls.ca_file;
  if (!tls.server_name.empty()) o["serverName"] = tls.server_name;
  if (!tls.cert_file.empty()) o["certFile"] = tls.cert_file;
  if (!tls.key_file.empty()) o["keyFile"] = tls.key_file;
  return o;
}

json::object hash_on_json(const config::HashOn& hash_on) {
  json::object o;
  switch (hash_on.kind) {
    case config::HashOn::Kind::header:
      o["header"] = hash_on.header;
      break;
    case config::HashOn::Kind::cookie: {
      json::object cookie;
      cookie["name"] = hash_on.cookie_name;
      // 0 = a session cookie: the loader's default when ttl is left out
      if (hash_on.cookie_ttl.count() > 0) cookie["ttl"] = duration_text(hash_on.cookie_ttl);
      o["cookie"] = std::move(cookie);
      break;
    }
    case config::HashOn::Kind::source_ip:
      o["sourceIp"] = true;
      break;
  }
  return o;
}

json::object string_match_json(const config::StringMatch& match) {
  json::object o;
  switch (match.kind) {
    case config::StringMatch::Kind::exact:
      o["exact"] = match.value;
      break;
    case config::StringMatch::Kind::prefix:
      o["prefix"] = match.value;
      break;
    case config::StringMatch::Kind::regex:
      o["regex"] = match.value;
      break;
    case config::StringMatch::Kind::present:
      break;  // {}
  }
  return o;
}

json::object named_matches_json(const std::vector<config::NamedMatch>& matches) {
  json::object o;
  for (const auto& named : matches) o[named.name] = string_match_json(named.match);
  return o;
}

json::object header_operations_json(const config::HeaderOperations& ops) {
  json::object o;
  const auto pairs = [](const auto& list) {
    json::object fields;
    for (const auto& [name, value] : list) fields[name] = value;
    return fields;
  };
  if (!ops.set.empty()) o["set"] = pairs(ops.set);
  if (!ops.add.empty()) o["add"] = pairs(ops.add);
  if (!ops.remove.empty()) {
    json::array names;
    for (const auto& name : ops.remove) names.emplace_back(name);
    o["remove"] = std::move(names);
  }
  return o;
}

json::array traffic_json(const std::vector<config::TrafficTarget>& traffic) {
  json::array out;
  for (const auto& target : traffic) {
    json::object t;
    if (target.latest_revision) {
      t["latestRevision"] = true;
    } else {
      t["revisionName"] = target.revision_name;
    }
    t["percent"] = target.percent;
    if (!target.tag.empty()) t["tag"] = target.tag;
    out.push_back(std::move(t));
  }
  return out;
}

// `routes`, in the keys they are written with (so that /config loads back as a config).
json::array routes_json(const std::vector<config::RouteRule>& routes) {
  json::array out;
  for (const auto& rule : routes) {
    json::object r;
    if (!rule.name.empty()) r["name"] = rule.name;
    if (!rule.match.empty()) {
      json::array matches;
      for (const auto& match : rule.match) {
        json::object m;
        if (!match.name.empty()) m["name"] = match.name;
        if (match.uri) m["uri"] = string_match_json(*match.uri);
        if (match.method) m["method"] = string_match_json(*match.method);
        if (match.authority) m["authority"] = string_match_json(*match.authority);
        if (!match.headers.empty()) m["headers"] = named_matches_json(match.headers);
        if (!match.without_headers.empty()) {
          m["withoutHeaders"] = named_matches_json(match.without_headers);
        }
        if (!match.query_params.empty()) m["queryParams"] = named_matches_json(match.query_params);
        if (match.ignore_uri_case) m["ignoreUriCase"] = true;
        matches.push_back(std::move(m));
      }
      r["match"] = std::move(matches);
    }
    if (!rule.traffic.empty()) r["traffic"] = traffic_json(rule.traffic);
    if (rule.rewrite) {
      json::object rewrite;
      if (rule.rewrite->uri) rewrite["uri"] = *rule.rewrite->uri;
      if (rule.rewrite->authority) rewrite["authority"] = *rule.rewrite->authority;
      r["rewrite"] = std::move(rewrite);
    }
    if (rule.redirect) {
      json::object redirect;
      if (rule.redirect->uri) redirect["uri"] = *rule.redirect->uri;
      if (rule.redirect->authority) redirect["authority"] = *rule.redirect->authority;
      if (rule.redirect->scheme) redirect["scheme"] = *rule.redirect->scheme;
      if (rule.redirect->port) redirect["port"] = *rule.redirect->port;
      redirect["redirectCode"] = rule.redirect->code;
      r["redirect"] = std::move(redirect);
    }
    if (rule.direct_response) {
      r["directResponse"] = {{"status", rule.direct_response->status},
                             {"body", {{"string", rule.direct_response->body}}}};
    }
    if (!rule.request_headers.empty() || !rule.response_headers.empty()) {
      json::object headers;
      if (!rule.request_headers.empty()) {
        headers["request"] = header_operations_json(rule.request_headers);
      }
      if (!rule.response_headers.empty()) {
        headers["response"] = header_operations_json(rule.response_headers);
      }
      r["headers"] = std::move(headers);
    }
    out.push_back(std::move(r));
  }
  return out;
}

json::object load_balancer_json(config::LoadBalancer simple,
                                const std::optional<config::ConsistentHash>& hash) {
  json::object lb;
  if (!hash) {
    lb["simple"] = config::to_string(simple);
  } else {
    json::object h;
    switch (hash->key) {
      case config::ConsistentHash::Key::header:
        h["httpHeaderName"] = hash->name;
        break;
      case config::ConsistentHash::Key::source_ip:
        h["useSourceIp"] = true;
        break;
      case config::ConsistentHash::Key::query_param:
        h["httpQueryParameterName"] = hash->name;
        break;
    }
    lb["consistentHash"] = std::move(h);
  }
  return {{"loadBalancer", std::move(lb)}};
}

json::object service_json(const config::Service& service) {
  json::object o;
  o["name"] = service.name;
  o["namespace"] = service.namespace_name;
  o["splitPolicy"] = config::to_string(service.split_policy);
  if (service.hash_on) o["hashOn"] = hash_on_json(*service.hash_on);
  if (service.consistent_hash) {
    o["trafficPolicy"] = load_balancer_json(service.load_balancer, service.consistent_hash);
  } else {
    o["loadBalancer"] = config::to_string(service.load_balancer);
  }
  o["debugHeaders"] = service.debug_headers;
  o["rolloutDuration"] = duration_text(service.rollout_duration);  // "0s": no rollout
  boost::json::array upgrades;
  for (const auto& type : service.upgrade_types) upgrades.emplace_back(type);
  o["upgradeTypes"] = std::move(upgrades);
  json::array revisions;
  for (const auto& revision : service.revisions) {
    json::object r;
    r["name"] = revision.name;
    json::array endpoints;
    for (const auto& endpoint : revision.endpoints) {
      endpoints.push_back(json::value(endpoint_text(endpoint)));
    }
    r["endpoints"] = std::move(endpoints);
    if (revision.tls) r["tls"] = upstream_tls(*revision.tls);
    r["protocol"] = config::to_string(revision.protocol);
    if (revision.load_balancer) {
      r["trafficPolicy"] =
          load_balancer_json(revision.load_balancer->simple, revision.load_balancer->consistent_hash);
    }
    revisions.push_back(std::move(r));
  }
  o["revisions"] = std::move(revisions);
  o["traffic"] = traffic_json(service.traffic);
  if (!service.routes.empty()) o["routes"] = routes_json(service.routes);
  return o;
}

}  // namespace

std::string address_text(const std::string& host, std::uint16_t port) {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

std::string endpoint_text(const config::Endpoint& endpoint) {
  return (endpoint.tls ? "https://" : "") + address_text(endpoint.host, endpoint.port);
}

std::string duration_text(std::chrono::milliseconds duration) {
  const auto ms = duration.count();
  if (ms == 0) return "0s";  // drainDelay, rolloutDuration: none
  if (ms > 0 && ms % 3'600'000 == 0) return fmt::format("{}h", ms / 3'600'000);
  if (ms > 0 && ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms > 0 && ms % 1'000 == 0) return fmt::format("{}s", ms / 1'000);
  return fmt::format("{}ms", ms);
}

json::object config_to_json(const config::Config& config) {
  json::object o;
  o["domain"] = config.domain;
  o["workers"] = config.workers;
  json::array listeners;
  for (const auto& listener : config.listeners) {
    json::object l;
    l["name"] = listener.name;
    l["address"] = address_text(listener.host, listener.port);
    if (listener.tls) l["tls"] = listener_tls(*listener.tls);
    l["httpsRedirect"] = listener.https_redirect;
    if (listener.tls) {
      json::array alpn;
      for (const auto& protocol : listener.alpn) alpn.emplace_back(protocol);
      l["alpn"] = std::move(alpn);
    } else {
      l["h2c"] = listener.h2c;
    }
    listeners.push_back(std::move(l));
  }
  o["listeners"] = std::move(listeners);
  json::object admin;
  admin["address"] = address_text(config.admin.host, config.admin.port);
  o["admin"] = std::move(admin);
  json::object limits;
  limits["requestLineBytes"] = config.limits.request_line_bytes;
  limits["requestHeadersBytes"] = config.limits.request_headers_bytes;
  limits["requestHeaderCount"] = config.limits.request_header_count;
  limits["requestBodyBytes"] = config.limits.request_body_bytes;
  limits["maxConcurrentStreams"] = config.limits.max_concurrent_streams;
  o["limits"] = std::move(limits);
  const auto& t = config.timeouts;
  json::object timeouts;
  timeouts["requestHeaders"] = duration_text(t.request_headers);
  timeouts["idle"] = duration_text(t.idle);
  timeouts["upstreamConnect"] = duration_text(t.upstream_connect);
  timeouts["upstreamResponse"] = duration_text(t.upstream_response);
  timeouts["upstreamIdle"] = duration_text(t.upstream_idle);
  timeouts["shutdownGrace"] = duration_text(t.shutdown_grace);
  timeouts["tunnelIdle"] = duration_text(t.tunnel_idle);
  timeouts["drainDelay"] = duration_text(t.drain_delay);
  o["timeouts"] = std::move(timeouts);
  json::object upstream;
  upstream["maxIdlePerEndpoint"] = config.upstream.max_idle_per_endpoint;
  o["upstream"] = std::move(upstream);
  json::array services;
  for (const auto& service : config.services) services.push_back(service_json(service));
  o["services"] = std::move(services);
  json::array mappings;
  for (const auto& mapping : config.domain_mappings) {
    json::object m;
    m["domain"] = mapping.domain;
    m["service"] = mapping.service;
    m["namespace"] = mapping.namespace_name;
    mappings.push_back(std::move(m));
  }
  o["domainMappings"] = std::move(mappings);
  if (config.access_log) {  // absent = no access log, and the loader has no "off" value
    json::object log;
    log["path"] = config.access_log->path;
    log["format"] = config.access_log->format == config::AccessLogFormat::json ? "json" : "text";
    o["accessLog"] = std::move(log);
  }
  json::object tracing;
  tracing["sampleRate"] = config.tracing.sample_rate;
  o["tracing"] = std::move(tracing);
  // Empty for a config without a file ("<demo>"); the loader refuses an empty stateFile, and
  // leaving it out gives the same default when the config is loaded back.
  if (!config.state_file.empty()) o["stateFile"] = config.state_file;
  return o;
}

}  // namespace revgate::api
