#include "proxy/upstream_tls.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proxy/log.h"
#include "tls/client_context.h"

namespace revgate::proxy {

bool begin_upstream_tls(UpstreamConnection& connection, const UpstreamEndpoint& target,
                        const routing::Decision& decision) {
  connection.stream.use_tls(target.tls->asio_context());
  auto prepared = target.tls->prepare(connection.stream.tls()->native_handle(), target.server_name);
  if (!prepared) {
    log_error("upstream {}: {}", decision.endpoint->authority, prepared.error());
    return false;
  }
  return true;
}

void log_upstream_tls_failure(UpstreamConnection& connection, const UpstreamEndpoint& target,
                              const routing::Decision& decision, bool timed_out,
                              boost::system::error_code ec) {
  const auto& endpoint = *decision.endpoint;
  const long verify = SSL_get_verify_result(connection.stream.tls()->native_handle());
  if (timed_out) {
    log_error("upstream {} (revision {}): TLS handshake timed out", endpoint.authority,
              decision.revision->name);
  } else if (verify != X509_V_OK) {
    log_error("upstream {} (revision {}): certificate verification failed for '{}': {}",
              endpoint.authority, decision.revision->name, target.server_name,
              X509_verify_cert_error_string(verify));
  } else {
    log_error("upstream {} (revision {}): TLS handshake failed: {}", endpoint.authority,
              decision.revision->name, ec.message());
  }
}

}  // namespace revgate::proxy
