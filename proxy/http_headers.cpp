#include "proxy/http_headers.h"

#include <algorithm>
#include <array>
#include <charconv>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/status.hpp>

#include "tracing/trace_context.h"

namespace revgate::proxy {

namespace beast = boost::beast;
namespace http = boost::beast::http;

namespace {

constexpr std::string_view kCrlf = "\r\n";

bool is_hop_by_hop(http::field name) {
  switch (name) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::te:
    case http::field::trailer:
    case http::field::transfer_encoding:
    case http::field::upgrade:
      return true;
    default:
      return false;
  }
}

// The field names listed in `Connection` headers (RFC 9110 7.6.1): hop-by-hop too. The
// first few are kept at hand; past those, the headers are scanned again (never seen in
// practice, but a long list must not let a named field through).
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const Fields& fields) : fields_(fields) {
    for (const auto& field : fields) {
      if (field.name() != http::field::connection) continue;
      for (auto token : http::token_list{field.value()}) {
        if (count_ == tokens_.size()) {
          overflow_ = true;
          return;
        }
        tokens_[count_++] = token;
      }
    }
  }
  bool names(std::string_view field_name) const {
    if (overflow_) return scan(field_name);
    for (std::size_t i = 0; i < count_; ++i) {
      if (beast::iequals(tokens_[i], field_name)) return true;
    }
    return false;
  }

 private:
  bool scan(std::string_view field_name) const {
    for (const auto& field : fields_) {
      if (field.name() != http::field::connection) continue;
      for (auto token : http::token_list{field.value()}) {
        if (beast::iequals(token, field_name)) return true;
      }
    }
    return false;
  }
  const Fields& fields_;
  std::array<std::string_view, 16> tokens_{};
  std::size_t count_ = 0;
  bool overflow_ = false;
};

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append(kCrlf);
}

void append_decimal(std::string& out, std::uint64_t value) {
  char digits[20];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}

void append_framing(std::string& out, Framing framing, std::uint64_t content_length) {
  if (framing == Framing::content_length) {
    out.append("Content-Length: ");
    append_decimal(out, content_length);
    out.append(kCrlf);
  } else if (framing == Framing::chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  }
}

// The proxy's own fields replace what an upstream sent under their names (as Envoy does with
// x-envoy-upstream-service-time): a client must not see two or a forged one.
bool is_proxy_field(http::field name, std::string_view name_string) {
  return name == http::field::unknown &&
         (beast::iequals(name_string, "x-envoy-upstream-service-time") ||
          beast::iequals(name_string, "x-revgate-revision") ||
          beast::iequals(name_string, "x-revgate-endpoint"));
}

// Fields [first, end) of `fields` that HTTP/2 may carry end to end.
template <class Fields>
void add_h2_fields(HeaderBlock& out, const Fields& fields, std::size_t first) {
  const ConnectionTokens connection_tokens(fields);
  std::size_t index = 0;
  for (const auto& field : fields) {
    if (index++ < first) continue;
    const auto name = field.name();
    if (is_hop_by_hop(name)) continue;
    const std::string_view name_string = field.name_string();
    if (connection_tokens.names(name_string) || is_proxy_field(name, name_string)) continue;
    out.add(name_string, field.value());
  }
}

// The end-to-end fields of a request as the upstream gets them, one add(name, value) call each:
// hop-by-hop ones (and those `Connection` names), Content-Length and the fields only the proxy
// sets dropped, X-Forwarded-For appended to, then X-Forwarded-Proto, X-Request-Id (kept when
// present), Knative-Serving-Revision/-Namespace and traceparent (kept when valid). Host comes
// in its place unless `skip_host` (HTTP/2 sends it as :authority).
template <class Add>
void add_request_fields(const RequestHead& request, const ForwardedFor& forwarded,
                        bool skip_host, Add&& add) {
  const ConnectionTokens connection_tokens(request);
  std::string xff;  // X-Forwarded-For values received (rare on the benchmark path)
  bool has_request_id = false;
  bool has_traceparent = false;
  for (const auto& field : request) {
    const auto name = field.name();
    if (is_hop_by_hop(name) || name == http::field::content_length) continue;
    if (name == http::field::host && skip_host) continue;
    const std::string_view name_string = field.name_string();
    // Host is end-to-end whatever Connection says (SPEC: passed through unchanged).
    if (name != http::field::host && connection_tokens.names(name_string)) continue;
    if (name == http::field::unknown) {
      // Fields without a Beast enum value: the ones the proxy sets are all among them.
      if (beast::iequals(name_string, "x-forwarded-for")) {
        if (!xff.empty()) xff.append(", ");
        xff.append(field.value());
        continue;
      }
      if (beast::iequals(name_string, "x-forwarded-proto") ||
          beast::iequals(name_string, "knative-serving-revision") ||
          beast::iequals(name_string, "knative-serving-namespace")) {
        continue;  // ours to set: a client must not choose them
      }
      has_request_id |= beast::iequals(name_string, "x-request-id");
      if (beast::iequals(name_string, "traceparent")) {
        if (has_traceparent || !tracing::valid_traceparent(field.value())) continue;
        has_traceparent = true;
      }
    }
    add(name_string, field.value());
  }
  if (xff.empty()) {
    add("X-Forwarded-For", forwarded.client_ip);
  } else {
    add("X-Forwarded-For", xff.append(", ").append(forwarded.client_ip));
  }
  add("X-Forwarded-Proto", forwarded.proto);
  if (!has_request_id) add("X-Request-Id", forwarded.request_id);
  add("Knative-Serving-Revision", forwarded.revision);
  add("Knative-Serving-Namespace", forwarded.namespace_name);
  if (!has_traceparent && !forwarded.traceparent.empty()) {
    add("traceparent", forwarded.traceparent);
  }
}

}  // namespace

void write_request_head(std::string& out, const RequestHead& request, const ForwardedFor& forwarded,
                        Framing framing, std::uint64_t content_length) {
  out.clear();
  out.append(request.method_string()).push_back(' ');
  out.append(request.target()).append(" HTTP/1.1\r\n");
  add_request_fields(request, forwarded, false,
                     [&out](std::string_view name, std::string_view value) {
                       append_field(out, name, value);
                     });
  if (!forwarded.upgrade.empty()) {
    append_field(out, "Connection", "upgrade");
    append_field(out, "Upgrade", forwarded.upgrade);
  }
  append_framing(out, framing, content_length);
  out.append(kCrlf);
}

void write_h2_request_head(HeaderBlock& out, const RequestHead& request,
                           const ForwardedFor& forwarded, std::string_view scheme,
                           std::optional<std::uint64_t> content_length) {
  out.clear();
  out.add(":method", request.method_string());
  out.add(":scheme", scheme);
  out.add(":authority", request[http::field::host]);
  out.add(":path", request.target());
  add_request_fields(request, forwarded, true,
                     [&out](std::string_view name, std::string_view value) { out.add(name, value); });
  if (content_length) {
    char digits[20];
    const auto end = std::to_chars(digits, digits + sizeof digits, *content_length).ptr;
    out.add("content-length", std::string_view(digits, end - digits));
  }
  // te is hop-by-hop, but HTTP/2 carries its one allowed value, and gRPC servers want it.
  for (const auto& field : request) {
    if (field.name() != http::field::te) continue;
    for (auto token : http::token_list{field.value()}) {
      if (beast::iequals(token, "trailers")) return out.add("te", "trailers");
    }
  }
}

void write_response_head(std::string& out, const ResponseHead& response, Framing framing,
                         std::uint64_t content_length, bool keep_alive, bool client_http10,
                         std::string_view extra_fields) {
  out.clear();
  out.append("HTTP/1.1 ");
  append_decimal(out, response.result_int());
  out.push_back(' ');
  auto reason = response.reason();
  if (reason.empty()) reason = http::obsolete_reason(response.result());
  out.append(reason).append(kCrlf);

  const ConnectionTokens connection_tokens(response);
  for (const auto& field : response) {
    const auto name = field.name();
    if (is_hop_by_hop(name)) continue;
    if (name == http::field::content_length && framing != Framing::none) continue;
    const std::string_view name_string = field.name_string();
    if (connection_tokens.names(name_string)) continue;
    if (is_proxy_field(name, name_string)) continue;
    append_field(out, name_string, field.value());
  }
  out.append(extra_fields);
  append_framing(out, framing, content_length);
  if (framing == Framing::upgrade) {
    append_field(out, "Connection", "upgrade");
    append_field(out, "Upgrade", response[http::field::upgrade]);
  } else if (!keep_alive) {
    out.append("Connection: close\r\n");
  } else if (client_http10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append(kCrlf);
}

bool is_proxy_response_field(std::string_view name) {
  return is_proxy_field(http::field::unknown, name);
}

void HeaderBlock::add(std::string_view name, std::string_view value) {
  Entry entry{static_cast<std::uint32_t>(bytes_.size()), static_cast<std::uint32_t>(name.size()),
              0, static_cast<std::uint32_t>(value.size())};
  bytes_.append(name);
  for (auto i = entry.name; i < entry.name + entry.name_size; ++i) {
    if (bytes_[i] >= 'A' && bytes_[i] <= 'Z') bytes_[i] = static_cast<char>(bytes_[i] + ('a' - 'A'));
  }
  entry.value = static_cast<std::uint32_t>(bytes_.size());
  bytes_.append(value);
  entries_.push_back(entry);
}


void write_h2_response_head(HeaderBlock& out, const ResponseHead& response) {
  out.clear();
  char status[4];
  const auto end = std::to_chars(status, status + sizeof status, response.result_int()).ptr;
  out.add(":status", std::string_view(status, static_cast<std::size_t>(end - status)));
  add_h2_fields(out, response, 0);
}

bool write_h2_trailers(HeaderBlock& out, const ResponseHead& response, std::size_t first) {
  out.clear();
  add_h2_fields(out, response, first);
  return out.size() != 0;
}

void write_proxy_fields(std::string& out, const routing::Decision& decision,
                        std::int64_t upstream_service_ms, bool https) {
  out.clear();
  add_proxy_fields(decision, upstream_service_ms, https,
                   [&out](std::string_view name, std::string_view value) {
                     append_field(out, name, value);
                   });
}

bool https_redirect_location(std::string& out, std::string_view host, std::uint16_t port,
                             std::string_view target) {
  char normalized[256];
  std::size_t length = 0;
  if (!routing::normalize_host(host, normalized, length)) return false;
  out.assign("https://").append(normalized, length);
  if (port != 443) {
    out.push_back(':');
    append_decimal(out, port);
  }
  out.append(target);
  return true;
}

bool is_replayable(http::verb method, bool bodyless) {
  switch (method) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::trace:
    case http::verb::put:
    case http::verb::delete_:
      return bodyless;  // nothing is lost by sending it again
    default:
      return false;
  }
}

void format_uuid4(std::uint64_t high, std::uint64_t low, char (&out)[36]) {
  high = (high & ~0xF000ULL) | 0x4000ULL;            // version 4
  low = (low & ~(0xC0ULL << 56)) | (0x80ULL << 56);  // variant 10xx
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t pos = 0;
  auto put = [&](std::uint64_t value, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) out[pos++] = kHex[(value >> (i * 4)) & 0xF];
  };
  put(high >> 32, 8);
  out[pos++] = '-';
  put((high >> 16) & 0xFFFF, 4);
  out[pos++] = '-';
  put(high & 0xFFFF, 4);
  out[pos++] = '-';
  put(low >> 48, 4);
  out[pos++] = '-';
  put(low & 0xFFFFFFFFFFFFULL, 12);
}

std::string_view chunk_size_line(std::size_t size, char (&out)[18]) {
  static constexpr char kHex[] = "0123456789abcdef";
  char digits[16];
  int n = 0;
  do {
    digits[n++] = kHex[size & 0xF];
    size >>= 4;
  } while (size != 0);
  std::size_t pos = 0;
  while (n > 0) out[pos++] = digits[--n];
  out[pos++] = '\r';
  out[pos++] = '\n';
  return {out, pos};
}

}  // namespace revgate::proxy
