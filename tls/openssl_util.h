// Small private helpers for tls/: owning handles for OpenSSL objects, the reason of the last
// OpenSSL error, reading a file whole. No state; any thread.
#pragma once

#include <expected>
#include <memory>
#include <string>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "config/config.h"

namespace revgate::tls {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using SslCtx = std::unique_ptr<SSL_CTX, SslCtxFree>;

// The reason text of the most recent OpenSSL error ("no start line", "ee key too small"), or
// "unknown error"; empties the thread's error queue so the next call starts clean.
std::string openssl_reason();

// revgate's protocol policy, shared by both sides: TLS 1.2 (or `min`) to 1.3, TLS 1.2 ciphers
// ECDHE with AEAD only, no compression, no renegotiation, the given key exchange groups.
std::expected<void, std::string> apply_policy(SSL_CTX* ctx, config::TlsVersion min,
                                              const char* groups);

// The file's bytes, or why not ("cannot be read: No such file or directory").
std::expected<std::string, std::string> read_whole_file(const std::string& path);

}  // namespace revgate::tls
