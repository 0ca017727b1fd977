// ClientContext: the SSL_CTX for upstream connections (verification, CA, client certificate,
// ALPN http/1.1), and the per-connection SNI + hostname check. Built on the loading thread.
#include "tls/client_context.h"

#include <arpa/inet.h>

#include <boost/asio/ssl/context.hpp>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls/certificates.h"
#include "tls/openssl_util.h"

namespace revgate::tls {
namespace {

// Wider than the server's: an upstream we do not control may only offer P-384.
constexpr const char* kClientGroups = "X25519:P-256:P-384";

bool is_ip_address(const std::string& name) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, name.c_str(), buffer) == 1;
}

}  // namespace

std::expected<std::shared_ptr<const ClientContext>, std::string> ClientContext::create(
    const config::UpstreamTls* tls) {
  SslCtx ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return std::unexpected(fmt::format("SSL_CTX_new: {}", openssl_reason()));
  SSL_CTX* raw = ctx.get();
  if (auto ok = apply_policy(raw, config::TlsVersion::tls12, kClientGroups); !ok) {
    return std::unexpected(ok.error());
  }
  SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nullptr);
  if (tls != nullptr && !tls->ca_file.empty()) {
    ERR_clear_error();
    if (SSL_CTX_load_verify_file(raw, tls->ca_file.c_str()) != 1) {
      return std::unexpected(fmt::format("caFile '{}' holds no usable PEM certificate ({})",
                                         tls->ca_file, openssl_reason()));
    }
  } else if (SSL_CTX_set_default_verify_paths(raw) != 1) {
    return std::unexpected(
        fmt::format("cannot load the system trust store ({})", openssl_reason()));
  }
  if (tls != nullptr && !tls->cert_file.empty()) {
    auto cert = load_certificate(tls->cert_file, tls->key_file);
    if (!cert) return std::unexpected(std::move(cert.error()));
    // The context takes its own references; `cert` may go.
    if (SSL_CTX_use_cert_and_key(raw, (*cert)->leaf, (*cert)->key, (*cert)->chain, 1) != 1) {
      return std::unexpected(fmt::format("certFile '{}' is refused by OpenSSL ({})", tls->cert_file,
                                         openssl_reason()));
    }
  }
  static constexpr unsigned char kAlpn[] = "\x08http/1.1";
  if (SSL_CTX_set_alpn_protos(raw, kAlpn, sizeof kAlpn - 1) != 0) {  // 0 is success here
    return std::unexpected(fmt::format("cannot set ALPN ({})", openssl_reason()));
  }
  std::shared_ptr<ClientContext> self(new ClientContext());
  if (tls != nullptr) self->server_name_ = tls->server_name;
  self->context_ = std::make_unique<boost::asio::ssl::context>(ctx.release());
  return self;
}

ClientContext::~ClientContext() = default;

SSL_CTX* ClientContext::native_handle() const { return context_->native_handle(); }

std::expected<void, std::string> ClientContext::prepare(SSL* ssl,
                                                        std::string_view server_name) const {
  std::string name(server_name);
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (name.empty()) return std::unexpected("no server name to verify");
  ERR_clear_error();
  if (is_ip_address(name)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) != 1) {
      return std::unexpected(
          fmt::format("cannot verify IP address '{}' ({})", name, openssl_reason()));
    }
    return {};
  }
  // "*.example.org" in a certificate covers one whole label, never "w*.example.org" parts.
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1 || SSL_set1_host(ssl, name.c_str()) != 1) {
    return std::unexpected(fmt::format("cannot set server name '{}' ({})", name, openssl_reason()));
  }
  return {};
}

std::string_view ClientContext::server_name_for(const config::Endpoint& endpoint) const {
  return server_name_.empty() ? std::string_view(endpoint.host) : std::string_view(server_name_);
}

}  // namespace revgate::tls
