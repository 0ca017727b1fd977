// A TLS listener's server side: the SSL_CTX with revgate's policy (TLS 1.2/1.3, ECDHE+AEAD,
// tickets, ALPN) whose SNI callback picks from a CertificateSet. One per worker per TLS listener:
// created on any thread, then used (handshakes, install, reload) only by its worker's thread.
#pragma once

#include <array>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/types.h>

#include "config/config.h"
#include "tls/certificates.h"

namespace boost::asio::ssl {
class context;
}

namespace revgate::tls {

// The keys that encrypt session tickets (OpenSSL's 80-byte name + HMAC + AES layout). Made once
// per process and given to every ServerContext, so a ticket issued by one worker resumes on
// another. They live as long as the process: a restart invalidates every ticket.
struct SessionTicketKeys {
  std::array<unsigned char, 80> bytes{};
  static std::expected<SessionTicketKeys, std::string> generate();  // OpenSSL's CSPRNG
};

struct ServerOptions {
  // ALPN protocols in server preference order. When the client offers ALPN and none of these,
  // the handshake goes on without ALPN (as nginx does) rather than failing.
  std::vector<std::string> alpn = {"http/1.1"};
};

// Why the SNI callback installs the certificate per handshake (SSL_use_cert_and_key on the
// SSL) instead of switching to one SSL_CTX per certificate (SSL_set_SSL_CTX, nginx's way):
// the policy, tickets and ALPN stay in one SSL_CTX that is never modified after create(), and a
// reload only swaps a pointer; the per-handshake cost (a few refcounts and a public key
// comparison) is noise next to the key exchange. An open connection holds its own references to
// its certificate and key, so a reload never touches it.
class ServerContext {
 public:
  // Policy + the given certificates. Fails only if OpenSSL refuses the policy itself.
  static std::expected<std::unique_ptr<ServerContext>, std::string> create(
      const config::ListenerTls& tls, std::shared_ptr<const CertificateSet> certificates,
      const SessionTicketKeys& ticket_keys, const ServerOptions& options = {});
  // Convenience for one context: loads the certificates and makes its own ticket keys.
  static std::expected<std::unique_ptr<ServerContext>, std::string> create(
      const config::ListenerTls& tls, const ServerOptions& options = {});

  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // For boost::asio::ssl::stream<tcp::socket>(socket, context.asio_context()).
  boost::asio::ssl::context& asio_context() { return *context_; }
  SSL_CTX* native_handle() const;

  // Owner thread only: handshakes that start from now on use `certificates`; connections already
  // established, or mid-handshake past the ClientHello, keep theirs.
  void install(std::shared_ptr<const CertificateSet> certificates);
  // Owner thread only: reload the files and install them, or keep the current set and return
  // the error. For an owner that is also the reloader (a single worker); with several workers,
  // load once with CertificateReloader and install() the result on each.
  std::expected<void, std::string> reload();

  const std::shared_ptr<const CertificateSet>& certificates() const { return certificates_; }
  const config::ListenerTls& config() const { return config_; }

 private:
  ServerContext() = default;
  static int on_server_name(SSL* ssl, int* alert, void* self);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* out_length,
                     const unsigned char* in, unsigned int in_length, void* self);

  config::ListenerTls config_;
  std::unique_ptr<boost::asio::ssl::context> context_;
  std::shared_ptr<const CertificateSet> certificates_;
  std::string alpn_wire_;  // length-prefixed protocol list, as ALPN sends it
};

// Small readers for logs and metrics on an established connection.
std::string_view negotiated_version(const SSL* ssl);     // "TLSv1.3", "TLSv1.2"
std::string_view negotiated_alpn(const SSL* ssl);        // "http/1.1", or empty
std::string_view requested_server_name(const SSL* ssl);  // the SNI, or empty
bool session_reused(const SSL* ssl);

}  // namespace revgate::tls
