// A listener's certificates, loaded and validated from PEM files into an immutable
// CertificateSet, with its index by SAN for SNI, and CertificateReloader which notices changed
// files. A CertificateSet may be read from any thread; CertificateReloader has one owner thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <openssl/types.h>

#include "config/config.h"

struct stack_st_X509;  // OpenSSL's STACK_OF(X509), kept out of this header

namespace revgate::tls {

// What identifies the content of a file without reading it: a rename over it (cert-manager,
// Kubernetes secret volumes swap a symlink) changes the inode; an in-place write, size or mtime.
struct FileStamp {
  std::string path;
  bool exists = false;
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
using FileStamps = std::vector<FileStamp>;

// The stamps of every certificate and key file of `tls`, in order (stat follows symlinks).
FileStamps stamp_files(const config::ListenerTls& tls);

// One certificate of a listener: its chain and key, parsed, matched and owned (OpenSSL refs).
struct Certificate {
  Certificate() = default;
  Certificate(const Certificate&) = delete;
  Certificate& operator=(const Certificate&) = delete;
  ~Certificate();

  std::string cert_file;
  std::string key_file;
  std::string subject;                 // one line, e.g. "CN=example.com"
  std::vector<std::string> dns_names;  // lowercase DNS SANs (the CN when there is none)
  X509* leaf = nullptr;
  stack_st_X509* chain = nullptr;  // the certificates after the leaf in cert_file; may be empty
  EVP_PKEY* key = nullptr;
};

// Reads one certificate (chain) and its key, checks they match and that OpenSSL accepts them.
// Any thread. The error is one line naming the file, e.g. "keyFile 'a.key' does not match the
// certificate in certFile 'a.crt'". Also used for upstream client certificates.
std::expected<std::unique_ptr<Certificate>, std::string> load_certificate(
    const std::string& cert_file, const std::string& key_file);

// The certificates of one listener, immutable once loaded. Selection by SNI, across all of them:
// an exact DNS SAN first, then a wildcard SAN ("*.example.org" covers exactly one more label);
// when two certificates claim a name, the one listed first wins.
class CertificateSet {
 public:
  // Reads and checks every file of `tls`: each certificate parses, each key parses, each key
  // matches its certificate and is acceptable for TLS. The error is one line naming the file.
  static std::expected<std::shared_ptr<const CertificateSet>, std::string> load(
      const config::ListenerTls& tls);

  // The certificate for `server_name` (the SNI, any case, empty when the client sent none).
  // No match: the first certificate, or nullptr when the listener has requireSni.
  const Certificate* select(std::string_view server_name) const;

  const std::vector<std::unique_ptr<Certificate>>& certificates() const { return certificates_; }
  const config::ListenerTls& config() const { return config_; }

  // The files' stamps taken just before they were read, so that a write racing the read is
  // still seen as a change by the next poll.
  const FileStamps& stamps() const { return stamps_; }
  // True when some file differs from stamps() now (changed, replaced, removed or back).
  bool files_changed() const;

 private:
  CertificateSet() = default;

  config::ListenerTls config_;
  FileStamps stamps_;
  std::vector<std::unique_ptr<Certificate>> certificates_;
  std::unordered_map<std::string, const Certificate*> exact_;  // "www.example.org"
  std::unordered_map<std::string, const Certificate*>
      wildcard_;  // "example.org" for "*.example.org"
};

// Owned by the thread that reloads (the proxy's main thread): holds the set in force and tells
// when the files changed since the last attempt, so a bad file is reported once per change
// rather than at every poll. It never touches a ServerContext: the owner publishes the set it
// returns to each worker (ServerContext::install on the worker's thread).
class CertificateReloader {
 public:
  explicit CertificateReloader(std::shared_ptr<const CertificateSet> initial);

  // SIGHUP: loads the files again, whether or not they changed. On success the new set is the
  // current one and is returned; on failure the current set stays and the error is returned.
  std::expected<std::shared_ptr<const CertificateSet>, std::string> reload();

  // A timer: nullopt when no file changed since the last load or attempt; else reload().
  std::optional<std::expected<std::shared_ptr<const CertificateSet>, std::string>> poll();

  const std::shared_ptr<const CertificateSet>& current() const { return current_; }

 private:
  std::shared_ptr<const CertificateSet> current_;
  FileStamps last_seen_;  // stamps of the last load or failed attempt
};

}  // namespace revgate::tls
