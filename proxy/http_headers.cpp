#include "proxy/http_headers.h"

#include <array>
#include <string>

#include <boost/beast/http/field.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

namespace revgate::proxy {

namespace http = boost::beast::http;

void strip_hop_by_hop(Fields& fields) {
  // Headers named by Connection are hop-by-hop too (RFC 9110 7.6.1). Copy the names first:
  // erasing invalidates the views into the Connection values.
  constexpr std::size_t kMaxNamed = 16;
  std::array<std::string, kMaxNamed> named;
  std::size_t named_count = 0;
  // Scan every field: Beast keeps fields in arrival order, so equal names need not be adjacent.
  for (const auto& field : fields) {
    if (field.name() != http::field::connection) continue;
    for (auto token : http::token_list{field.value()}) {
      if (named_count == kMaxNamed) break;
      named[named_count++].assign(token.data(), token.size());
    }
  }
  for (std::size_t i = 0; i < named_count; ++i) fields.erase(named[i]);

  static constexpr http::field kHopByHop[] = {
      http::field::connection,        http::field::keep_alive, http::field::proxy_connection,
      http::field::te,                http::field::trailer,    http::field::transfer_encoding,
      http::field::upgrade,
  };
  for (auto field : kHopByHop) fields.erase(field);
}

void add_forwarding_headers(Fields& fields, const ForwardedFor& forwarded,
                            std::string_view request_id) {
  // X-Forwarded-For: append the client to what earlier proxies wrote (all fields, in order).
  constexpr std::string_view kXff = "x-forwarded-for";
  if (fields.find(kXff) == fields.end()) {
    fields.set(kXff, forwarded.client_ip);
  } else {
    std::string joined;
    for (const auto& field : fields) {
      if (!boost::beast::iequals(field.name_string(), kXff)) continue;
      if (!joined.empty()) joined += ", ";
      joined.append(field.value().data(), field.value().size());
    }
    joined += ", ";
    joined.append(forwarded.client_ip);
    fields.set(kXff, joined);
  }
  fields.set("x-forwarded-proto", forwarded.proto);
  if (fields.find("x-request-id") == fields.end()) fields.set("x-request-id", request_id);
  fields.set("knative-serving-revision", forwarded.revision);
  fields.set("knative-serving-namespace", forwarded.namespace_name);
}

void format_uuid4(std::uint64_t high, std::uint64_t low, char (&out)[36]) {
  high = (high & ~0xF000ULL) | 0x4000ULL;                     // version 4
  low = (low & ~(0xC0ULL << 56)) | (0x80ULL << 56);           // variant 10xx
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

}  // namespace revgate::proxy
