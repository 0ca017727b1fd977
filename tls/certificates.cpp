// Loading certificates: PEM files read whole, parsed with OpenSSL, checked key against
// certificate and against a scratch SSL_CTX (so a key OpenSSL would refuse at the handshake is
// refused here instead), then indexed by SAN. Runs on the loading thread only.
#include "tls/certificates.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/openssl_util.h"

namespace revgate::tls {
namespace {

FileStamp stamp(const std::string& path) {
  FileStamp out;
  out.path = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return out;
  out.exists = true;
  out.device = st.st_dev;
  out.inode = st.st_ino;
  out.size = st.st_size;
  out.mtime_ns = std::int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  return out;
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  return out;
}

// Refuses to prompt: an encrypted key cannot be used unattended, so it fails to parse.
int no_passphrase(char*, int, int, void*) { return -1; }

std::expected<void, std::string> read_chain(Certificate& cert) {
  auto text = read_whole_file(cert.cert_file);
  if (!text) return std::unexpected(fmt::format("certFile '{}': {}", cert.cert_file, text.error()));
  Bio bio(BIO_new_mem_buf(text->data(), int(text->size())));
  ERR_clear_error();
  cert.leaf = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr);
  if (cert.leaf == nullptr) {
    return std::unexpected(fmt::format("certFile '{}' holds no PEM certificate ({})",
                                       cert.cert_file, openssl_reason()));
  }
  cert.chain = sk_X509_new_null();
  while (true) {
    ERR_clear_error();
    X509* next = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr);
    if (next == nullptr) {
      unsigned long error = ERR_peek_last_error();
      if (ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE) {
        ERR_clear_error();  // the end of the file
        break;
      }
      return std::unexpected(
          fmt::format("certFile '{}': certificate {} of the chain is not "
                      "valid PEM ({})",
                      cert.cert_file, sk_X509_num(cert.chain) + 2, openssl_reason()));
    }
    X509_check_purpose(next, -1, 0);  // caches extensions now, not racing in handshakes
    sk_X509_push(cert.chain, next);
  }
  X509_check_purpose(cert.leaf, -1, 0);
  return {};
}

std::expected<void, std::string> read_key(Certificate& cert) {
  auto text = read_whole_file(cert.key_file);
  if (!text) return std::unexpected(fmt::format("keyFile '{}': {}", cert.key_file, text.error()));
  Bio bio(BIO_new_mem_buf(text->data(), int(text->size())));
  ERR_clear_error();
  cert.key = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr);
  if (cert.key == nullptr) {
    return std::unexpected(fmt::format(
        "keyFile '{}' holds no usable PEM private key ({}); encrypted keys are not supported",
        cert.key_file, openssl_reason()));
  }
  return {};
}

void read_names(Certificate& cert) {
  char subject[512] = {};
  Bio out(BIO_new(BIO_s_mem()));
  if (X509_NAME_print_ex(out.get(), X509_get_subject_name(cert.leaf), 0, XN_FLAG_RFC2253) >= 0) {
    int n = BIO_read(out.get(), subject, sizeof subject - 1);
    if (n > 0) cert.subject.assign(subject, std::size_t(n));
  }
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.leaf, NID_subject_alt_name, nullptr, nullptr));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
      if (name->type != GEN_DNS) continue;
      const ASN1_STRING* dns = name->d.dNSName;
      std::string_view text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                            std::size_t(ASN1_STRING_length(dns)));
      if (text.empty() || text.find('\0') != std::string_view::npos) continue;
      cert.dns_names.push_back(lowercase(text));
    }
    GENERAL_NAMES_free(names);
  }
  if (!cert.dns_names.empty()) return;
  // Clients ignore the CN when a SAN exists (RFC 6125); without one it is the only name.
  X509_NAME* subject_name = X509_get_subject_name(cert.leaf);
  int at = X509_NAME_get_index_by_NID(subject_name, NID_commonName, -1);
  if (at < 0) return;
  const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject_name, at));
  std::string_view text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn)),
                        std::size_t(ASN1_STRING_length(cn)));
  if (!text.empty() && text.find('\0') == std::string_view::npos) {
    cert.dns_names.push_back(lowercase(text));
  }
}

}  // namespace

std::expected<std::unique_ptr<Certificate>, std::string> load_certificate(
    const std::string& cert_file, const std::string& key_file) {
  auto cert = std::make_unique<Certificate>();
  cert->cert_file = cert_file;
  cert->key_file = key_file;
  if (auto ok = read_chain(*cert); !ok) return std::unexpected(ok.error());
  if (auto ok = read_key(*cert); !ok) return std::unexpected(ok.error());
  ERR_clear_error();
  if (X509_check_private_key(cert->leaf, cert->key) != 1) {
    ERR_clear_error();
    return std::unexpected(
        fmt::format("keyFile '{}' does not match the certificate in certFile "
                    "'{}'",
                    cert->key_file, cert->cert_file));
  }
  // The same call the SNI callback makes, with the same security level: it must not fail there.
  SslCtx scratch(SSL_CTX_new(TLS_server_method()));
  if (!scratch ||
      SSL_CTX_use_cert_and_key(scratch.get(), cert->leaf, cert->key, cert->chain, 1) != 1) {
    return std::unexpected(
        fmt::format("certFile '{}' is refused by OpenSSL ({})", cert->cert_file, openssl_reason()));
  }
  read_names(*cert);
  return cert;
}

FileStamps stamp_files(const config::ListenerTls& tls) {
  FileStamps stamps;
  for (const config::CertificateFiles& files : tls.certificates) {
    stamps.push_back(stamp(files.cert_file));
    stamps.push_back(stamp(files.key_file));
  }
  return stamps;
}

Certificate::~Certificate() {
  X509_free(leaf);
  if (chain != nullptr) sk_X509_pop_free(chain, X509_free);
  EVP_PKEY_free(key);
}

std::expected<std::shared_ptr<const CertificateSet>, std::string> CertificateSet::load(
    const config::ListenerTls& tls) {
  if (tls.certificates.empty()) return std::unexpected("a TLS listener needs a certificate");
  std::shared_ptr<CertificateSet> set(new CertificateSet());
  set->config_ = tls;
  set->stamps_ = stamp_files(tls);
  for (const config::CertificateFiles& files : tls.certificates) {
    auto cert = load_certificate(files.cert_file, files.key_file);
    if (!cert) return std::unexpected(std::move(cert.error()));
    for (const std::string& name : (*cert)->dns_names) {
      if (name.starts_with("*.")) {
        set->wildcard_.emplace(name.substr(2), cert->get());
      } else if (name.find('*') == std::string::npos) {
        set->exact_.emplace(name, cert->get());
      }  // other wildcard forms ("w*.example.org") are not honoured by browsers either
    }
    set->certificates_.push_back(std::move(*cert));
  }
  return set;
}

const Certificate* CertificateSet::select(std::string_view server_name) const {
  if (!server_name.empty() && server_name.back() == '.') server_name.remove_suffix(1);
  if (!server_name.empty()) {
    std::string name = lowercase(server_name);
    if (auto it = exact_.find(name); it != exact_.end()) return it->second;
    std::size_t dot = name.find('.');
    if (dot != std::string::npos && dot > 0) {
      if (auto it = wildcard_.find(name.substr(dot + 1)); it != wildcard_.end()) {
        return it->second;
      }
    }
  }
  return config_.require_sni ? nullptr : certificates_.front().get();
}

bool CertificateSet::files_changed() const { return stamp_files(config_) != stamps_; }

CertificateReloader::CertificateReloader(std::shared_ptr<const CertificateSet> initial)
    : current_(std::move(initial)), last_seen_(current_->stamps()) {}

std::expected<std::shared_ptr<const CertificateSet>, std::string> CertificateReloader::reload() {
  FileStamps before = stamp_files(current_->config());
  auto loaded = CertificateSet::load(current_->config());
  if (!loaded) {
    last_seen_ = std::move(before);
    return std::unexpected(std::move(loaded.error()));
  }
  current_ = *loaded;
  last_seen_ = current_->stamps();
  return current_;
}

std::optional<std::expected<std::shared_ptr<const CertificateSet>, std::string>>
CertificateReloader::poll() {
  if (stamp_files(current_->config()) == last_seen_) return std::nullopt;
  return reload();
}

}  // namespace revgate::tls
