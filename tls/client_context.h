// The client side, for https:// revision endpoints: an OpenSSL context that always verifies the
// upstream's certificate (system store or the revision's caFile) and may present a client
// certificate (mutual TLS). Immutable after create(): any thread may use one concurrently.
#pragma once

#include <expected>
#include <memory>
#include <string>
#include <string_view>

#include <openssl/types.h>

#include "config/config.h"

namespace boost::asio::ssl {
class context;
}

namespace revgate::tls {

// Why there is no switch to turn verification off: an unverified TLS connection gives the
// appearance of security without it. For a self-signed upstream, give its certificate (or its
// CA) as caFile.
class ClientContext {
 public:
  // `tls` null = Istio's SIMPLE mode with the system trust store and no client certificate.
  // Errors are one line naming the file (caFile, certFile or keyFile) at fault.
  static std::expected<std::shared_ptr<const ClientContext>, std::string> create(
      const config::UpstreamTls* tls);

  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  // For boost::asio::ssl::stream<tcp::socket>(socket, context.asio_context()). Only read by
  // OpenSSL after create(), hence usable from every worker at once.
  boost::asio::ssl::context& asio_context() const { return *context_; }
  SSL_CTX* native_handle() const;

  // Per connection, before the handshake: SNI and the name the certificate must carry. A DNS
  // name is sent as SNI and matched against the DNS SANs; an IP address (which SNI cannot carry)
  // is matched against the IP SANs.
  std::expected<void, std::string> prepare(SSL* ssl, std::string_view server_name) const;

  // The name to verify for `endpoint`: the revision's serverName, else the endpoint's host.
  std::string_view server_name_for(const config::Endpoint& endpoint) const;

 private:
  ClientContext() = default;

  std::string server_name_;  // the configured override, or empty
  std::unique_ptr<boost::asio::ssl::context> context_;
};

}  // namespace revgate::tls
