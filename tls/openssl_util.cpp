#include "tls/openssl_util.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <openssl/err.h>

namespace revgate::tls {

std::string openssl_reason() {
  unsigned long last = 0;
  while (unsigned long error = ERR_get_error()) last = error;
  if (last == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(last);
  return reason != nullptr ? std::string(reason) : fmt::format("error {:#x}", last);
}

std::expected<void, std::string> apply_policy(SSL_CTX* ctx, config::TlsVersion min,
                                              const char* groups) {
  // Mozilla's "intermediate" TLS 1.2 list: forward secrecy and AEAD only.
  constexpr const char* kTls12Ciphers =
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  constexpr const char* kTls13Suites =
      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
  int min_version = min == config::TlsVersion::tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
    return std::unexpected(fmt::format("cannot set the TLS versions ({})", openssl_reason()));
  }
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(ctx, kTls13Suites) != 1) {
    return std::unexpected(fmt::format("cannot set the cipher suites ({})", openssl_reason()));
  }
  if (SSL_CTX_set1_groups_list(ctx, groups) != 1) {
    return std::unexpected(fmt::format("cannot set the groups {} ({})", groups, openssl_reason()));
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // Renegotiation is also what SSL_OP_ALLOW_CLIENT_RENEGOTIATION would re-enable: keep it off.
  SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION | SSL_OP_LEGACY_SERVER_CONNECT);
  return {};
}

std::expected<std::string, std::string> read_whole_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return std::unexpected("cannot be read: it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(fmt::format("cannot be read: {}", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::unexpected(fmt::format("cannot be read: {}", std::strerror(errno)));
  return text.str();
}

}  // namespace revgate::tls
