// ServerContext: builds the listener's SSL_CTX once (policy, session resumption, callbacks) and
// afterwards only swaps the CertificateSet that the SNI callback reads. The callbacks run on the
// thread doing the handshake, which is the owner thread (one context per worker).
#include "tls/server_context.h"

#include <algorithm>

#include <boost/asio/ssl/context.hpp>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "tls/openssl_util.h"

namespace revgate::tls {
namespace {

// X25519 first: fastest and what browsers send a key share for; P-256 for everyone else.
constexpr const char* kServerGroups = "X25519:P-256";

// Sessions are only resumed into the same listener: the session id context names its files.
// (Ticket keys are shared by all listeners, so without this a ticket from one listener would
// resume on another that serves different certificates.)
std::expected<void, std::string> set_session_id_context(SSL_CTX* ctx,
                                                        const config::ListenerTls& tls) {
  std::string identity = "revgate";
  for (const config::CertificateFiles& files : tls.certificates) {
    identity += '\0' + files.cert_file + '\0' + files.key_file;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(identity.data(), identity.size(), digest, &length, EVP_sha256(), nullptr) != 1 ||
      SSL_CTX_set_session_id_context(ctx, digest, std::min(length, 32u)) != 1) {
    return std::unexpected(fmt::format("cannot set the session id context ({})", openssl_reason()));
  }
  return {};
}

}  // namespace

std::expected<SessionTicketKeys, std::string> SessionTicketKeys::generate() {
  SessionTicketKeys keys;
  if (RAND_bytes(keys.bytes.data(), int(keys.bytes.size())) != 1) {
    return std::unexpected(
        fmt::format("no random bytes for the ticket keys ({})", openssl_reason()));
  }
  return keys;
}

std::expected<std::unique_ptr<ServerContext>, std::string> ServerContext::create(
    const config::ListenerTls& tls, std::shared_ptr<const CertificateSet> certificates,
    const SessionTicketKeys& ticket_keys, const ServerOptions& options) {
  if (!certificates) return std::unexpected("no certificates");
  SslCtx ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return std::unexpected(fmt::format("SSL_CTX_new: {}", openssl_reason()));
  SSL_CTX* raw = ctx.get();
  if (auto ok = apply_policy(raw, tls.min_version, kServerGroups); !ok) {
    return std::unexpected(ok.error());
  }
  // Our order, not the client's: it puts AES-GCM before ChaCha20 for clients with AES hardware;
  // PRIORITIZE_CHACHA keeps ChaCha20 first for the (mobile) clients that list it first.
  SSL_CTX_set_options(raw, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);

  // Resumption: stateless tickets for TLS 1.3 and 1.2 (keys shared across workers), plus the
  // server-side cache for TLS 1.2 clients that only offer a session id.
  SSL_CTX_clear_options(raw, SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_SERVER);
  if (SSL_CTX_set_tlsext_ticket_keys(raw, const_cast<unsigned char*>(ticket_keys.bytes.data()),
                                     long(ticket_keys.bytes.size())) != 1) {
    return std::unexpected(fmt::format("cannot set the ticket keys ({})", openssl_reason()));
  }
  if (auto ok = set_session_id_context(raw, tls); !ok) return std::unexpected(ok.error());

  std::unique_ptr<ServerContext> self(new ServerContext());
  for (const std::string& protocol : options.alpn) {
    if (protocol.empty() || protocol.size() > 255) {
      return std::unexpected(fmt::format("bad ALPN protocol '{}'", protocol));
    }
    self->alpn_wire_ += static_cast<char>(protocol.size());
    self->alpn_wire_ += protocol;
  }
  // `self` does not move (unique_ptr), so the callbacks may keep its address.
  SSL_CTX_set_tlsext_servername_callback(raw, &ServerContext::on_server_name);
  SSL_CTX_set_tlsext_servername_arg(raw, self.get());
  if (!self->alpn_wire_.empty())
    SSL_CTX_set_alpn_select_cb(raw, &ServerContext::on_alpn, self.get());

  self->config_ = tls;
  self->certificates_ = std::move(certificates);
  self->context_ = std::make_unique<boost::asio::ssl::context>(ctx.release());
  return self;
}

std::expected<std::unique_ptr<ServerContext>, std::string> ServerContext::create(
    const config::ListenerTls& tls, const ServerOptions& options) {
  auto certificates = CertificateSet::load(tls);
  if (!certificates) return std::unexpected(std::move(certificates.error()));
  auto keys = SessionTicketKeys::generate();
  if (!keys) return std::unexpected(std::move(keys.error()));
  return create(tls, std::move(*certificates), *keys, options);
}

ServerContext::~ServerContext() = default;

SSL_CTX* ServerContext::native_handle() const { return context_->native_handle(); }

void ServerContext::install(std::shared_ptr<const CertificateSet> certificates) {
  if (certificates) certificates_ = std::move(certificates);
}

std::expected<void, std::string> ServerContext::reload() {
  auto loaded = CertificateSet::load(config_);
  if (!loaded) return std::unexpected(std::move(loaded.error()));
  install(std::move(*loaded));
  return {};
}

// Called for every ClientHello, with or without SNI (OpenSSL's final_server_name), before the
// cipher and signature are chosen, so the certificate set here is the one they are chosen for.
int ServerContext::on_server_name(SSL* ssl, int* alert, void* arg) {
  auto* self = static_cast<ServerContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const Certificate* cert = self->certificates_->select(name != nullptr ? name : "");
  if (cert == nullptr) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;  // requireSni: RFC 6066's answer to an unknown name
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  // The SSL takes its own references: the set may be replaced while this connection lives.
  if (SSL_use_cert_and_key(ssl, cert->leaf, cert->key, cert->chain, 1) != 1) {
    ERR_clear_error();
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

int ServerContext::on_alpn(SSL*, const unsigned char** out, unsigned char* out_length,
                           const unsigned char* in, unsigned int in_length, void* arg) {
  auto* self = static_cast<ServerContext*>(arg);
  unsigned char* selected = nullptr;
  // Iterates our list first: server preference.
  int rc = SSL_select_next_proto(&selected, out_length,
                                 reinterpret_cast<const unsigned char*>(self->alpn_wire_.data()),
                                 unsigned(self->alpn_wire_.size()), in, in_length);
  if (rc != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

std::string_view negotiated_version(const SSL* ssl) { return SSL_get_version(ssl); }

std::string_view negotiated_alpn(const SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(ssl, &data, &length);
  return data == nullptr ? std::string_view()
                         : std::string_view(reinterpret_cast<const char*>(data), length);
}

std::string_view requested_server_name(const SSL* ssl) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? std::string_view(name) : std::string_view();
}

bool session_reused(const SSL* ssl) { return SSL_session_reused(ssl) == 1; }

}  // namespace revgate::tls
