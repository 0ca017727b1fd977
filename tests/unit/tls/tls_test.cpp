// Unit tests of tls/: certificate loading and SNI selection without a network, then real
// handshakes over loopback against an in-process Asio server that uses ServerContext, with
// `openssl s_client` and Asio clients (ClientContext). Certificates are made at test time by
// the openssl command in a temp dir (a local CA, EC P-256 leaves): no key is ever committed.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tls/certificates.h"
#include "tls/client_context.h"
#include "tls/server_context.h"

namespace revgate::tls {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

struct Output {
  int status = -1;
  std::string output;  // stdout and stderr
};

Output run(const std::string& command) {
  Output result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe))
    result.output.append(buffer, n);
  int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

void write_file(const fs::path& path, std::string_view text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ---------------------------------------------------------------------------------------------
// Certificates for the whole run, made once.

class Pki : public testing::Environment {
 public:
  static fs::path dir;
  static std::string failure;  // why the PKI could not be made; tests then fail with it

  static fs::path path(const std::string& name) { return dir / name; }

  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "revgate-tls-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      failure = "mkdtemp failed";
      return;
    }
    dir = pattern;
    write_file(path("openssl.cnf"), R"([req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
)");
    make_ca("ca");
    make_ca("ca2");  // a CA that signed nothing we serve: the "wrong CA"
    make_leaf("example", "example.com", "DNS:example.com,DNS:www.example.com");
    make_leaf("example-v2", "example.com-v2", "DNS:example.com,DNS:www.example.com");
    make_leaf("wildcard", "apps-wildcard", "DNS:*.apps.example.org");
    make_leaf("other", "other.test", "DNS:other.test");
    make_leaf("client", "revgate-client", "DNS:client.test");
    make_leaf("ip", "loopback", "IP:127.0.0.1");
    if (!failure.empty()) return;
    // A chain in certFile: the leaf followed by its CA.
    write_file(path("other-bundle.crt"), read_file(path("other.crt")) + read_file(path("ca.crt")));
    write_file(path("garbage.pem"), "this is not PEM\n");
  }

  void TearDown() override {
    if (!dir.empty()) fs::remove_all(dir);
  }

 private:
  void make_ca(const std::string& name) {
    exec("openssl req -x509 -config " + path("openssl.cnf").string() +
         " -extensions ca -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
         path(name + ".key").string() + " -out " + path(name + ".crt").string() +
         " -days 365 -subj /CN=revgate-test-" + name);
  }

  void make_leaf(const std::string& name, const std::string& cn, const std::string& san) {
    exec("openssl req -x509 -config " + path("openssl.cnf").string() +
         " -extensions leaf -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
         path(name + ".key").string() + " -out " + path(name + ".crt").string() +
         " -days 90 -subj /CN=" + cn + " -addext subjectAltName=" + san + " -CA " +
         path("ca.crt").string() + " -CAkey " + path("ca.key").string());
  }

  void exec(const std::string& command) {
    if (!failure.empty()) return;
    Output result = run(command);
    if (result.status != 0) failure = command + "\n" + result.output;
  }
};

fs::path Pki::dir;
std::string Pki::failure;

[[maybe_unused]] testing::Environment* const kPki = testing::AddGlobalTestEnvironment(new Pki);

#define REQUIRE_PKI() ASSERT_TRUE(Pki::failure.empty()) << Pki::failure

config::CertificateFiles files(const std::string& name) {
  return {.cert_file = Pki::path(name + ".crt").string(),
          .key_file = Pki::path(name + ".key").string(),
          .pos = {}};
}

config::ListenerTls listener(std::vector<std::string> names) {
  config::ListenerTls tls;
  for (const std::string& name : names) tls.certificates.push_back(files(name));
  return tls;
}

// ---------------------------------------------------------------------------------------------
// The in-process server: one io_context thread that owns the ServerContext, as a worker does.

struct Handshake {
  bool ok = false;
  std::string error;
  std::string server_name;
  std::string version;
  std::string alpn;
  bool reused = false;
  std::string peer_subject;  // the client certificate's, for mutual TLS
};

class TestServer {
 public:
  explicit TestServer(std::unique_ptr<ServerContext> context)
      : context_(std::move(context)),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestServer() {
    asio::post(io_, [this] {
      acceptor_.close();
      io_.stop();
    });
    thread_.join();
  }

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  // Runs `f(context)` on the server's thread, as the proxy posts to a worker, and waits.
  template <typename F>
  auto on_server_thread(F f) {
    std::packaged_task<decltype(f(std::declval<ServerContext&>()))()> task(
        [&] { return f(*context_); });
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }

  // After a handshake: true = write "hello\n" and close; false = write it, then echo lines.
  void set_close_after_greeting(bool close) { close_after_greeting_ = close; }

  // The n-th handshake (0-based) once it has finished, waiting up to 5 s.
  Handshake handshake(std::size_t n) {
    std::unique_lock lock(mutex_);
    bool done = changed_.wait_for(lock, 5s, [&] { return handshakes_.size() > n; });
    if (done) return handshakes_[n];
    Handshake missing;
    missing.error = "no handshake recorded";
    return missing;
  }
  std::size_t handshake_count() {
    std::lock_guard lock(mutex_);
    return handshakes_.size();
  }

 private:
  struct Connection : std::enable_shared_from_this<Connection> {
    Connection(tcp::socket socket, ssl::context& context, TestServer& server)
        : stream(std::move(socket), context), server(server) {}
    ssl::stream<tcp::socket> stream;
    TestServer& server;
    asio::streambuf buffer;
    std::string line;

    void start() {
      auto self = shared_from_this();
      stream.async_handshake(ssl::stream_base::server,
                             [self](boost::system::error_code ec) { self->on_handshake(ec); });
    }
    void on_handshake(boost::system::error_code ec) {
      SSL* ssl = stream.native_handle();
      Handshake record;
      record.ok = !ec;
      record.error = ec ? ec.message() : "";
      record.server_name = requested_server_name(ssl);
      if (!ec) {
        record.version = negotiated_version(ssl);
        record.alpn = negotiated_alpn(ssl);
        record.reused = session_reused(ssl);
        if (X509* peer = SSL_get0_peer_certificate(ssl)) {
          char name[256] = {};
          X509_NAME_oneline(X509_get_subject_name(peer), name, sizeof name);
          record.peer_subject = name;
        }
      }
      server.record(std::move(record));
      if (ec) return;
      auto self = shared_from_this();
      asio::async_write(stream, asio::buffer("hello\n", 6),
                        [self](boost::system::error_code ec, std::size_t) {
                          if (ec) return;
                          if (self->server.close_after_greeting_) return self->close();
                          self->echo();
                        });
    }
    void echo() {
      auto self = shared_from_this();
      asio::async_read_until(stream, buffer, '\n',
                             [self](boost::system::error_code ec, std::size_t n) {
                               if (ec) return self->close();
                               self->line.assign(asio::buffers_begin(self->buffer.data()),
                                                 asio::buffers_begin(self->buffer.data()) + n);
                               self->buffer.consume(n);
                               asio::async_write(self->stream, asio::buffer(self->line),
                                                 [self](boost::system::error_code ec, std::size_t) {
                                                   if (ec) return self->close();
                                                   self->echo();
                                                 });
                             });
    }
    void close() {
      auto self = shared_from_this();
      stream.async_shutdown([self](boost::system::error_code) {
        boost::system::error_code ignored;
        self->stream.lowest_layer().close(ignored);
      });
    }
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) return;
      std::make_shared<Connection>(std::move(socket), context_->asio_context(), *this)->start();
      accept();
    });
  }

  void record(Handshake handshake) {
    std::lock_guard lock(mutex_);
    handshakes_.push_back(std::move(handshake));
    changed_.notify_all();
  }

  std::unique_ptr<ServerContext> context_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<bool> close_after_greeting_{true};
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Handshake> handshakes_;
};

std::unique_ptr<TestServer> start_server(const config::ListenerTls& tls) {
  auto context = ServerContext::create(tls);
  EXPECT_TRUE(context.has_value()) << (context ? "" : context.error());
  if (!context) return nullptr;
  return std::make_unique<TestServer>(std::move(*context));
}

// `openssl s_client` against the server, verifying against our CA; `args` adds options.
Output s_client(const TestServer& server, const std::string& args) {
  return run("timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(server.port()) +
             " -CAfile " + Pki::path("ca.crt").string() + " -verify_return_error -ign_eof " + args +
             " </dev/null");
}

bool handshake_ok(const Output& r) {
  return r.status == 0 && contains(r.output, "Verification: OK") &&
         !contains(r.output, "Cipher is (NONE)");
}

// ---------------------------------------------------------------------------------------------
// Loading and selection, no network

TEST(CertificateSet, LoadsNamesSubjectAndChain) {
  REQUIRE_PKI();
  config::ListenerTls tls = listener({"example", "wildcard"});
  tls.certificates.push_back({.cert_file = Pki::path("other-bundle.crt").string(),
                              .key_file = Pki::path("other.key").string(),
                              .pos = {}});
  auto set = CertificateSet::load(tls);
  ASSERT_TRUE(set.has_value()) << set.error();
  const auto& certs = (*set)->certificates();
  ASSERT_EQ(certs.size(), 3u);
  EXPECT_EQ(certs[0]->subject, "CN=example.com");
  EXPECT_EQ(certs[0]->dns_names, (std::vector<std::string>{"example.com", "www.example.com"}));
  EXPECT_EQ(certs[1]->dns_names, (std::vector<std::string>{"*.apps.example.org"}));
  EXPECT_EQ(sk_X509_num(certs[0]->chain), 0);
  EXPECT_EQ(sk_X509_num(certs[2]->chain), 1);  // the CA after the leaf
}

TEST(CertificateSet, SelectsExactThenWildcardOfOneLabelElseTheFirst) {
  REQUIRE_PKI();
  auto set = CertificateSet::load(listener({"example", "wildcard", "other"}));
  ASSERT_TRUE(set.has_value()) << set.error();
  auto subject = [&](std::string_view name) {
    const Certificate* cert = (*set)->select(name);
    return cert != nullptr ? cert->subject : std::string("(none)");
  };
  EXPECT_EQ(subject("example.com"), "CN=example.com");
  EXPECT_EQ(subject("www.example.com"), "CN=example.com");
  EXPECT_EQ(subject("other.test"), "CN=other.test");
  EXPECT_EQ(subject("OTHER.Test."), "CN=other.test");  // any case, a trailing dot
  EXPECT_EQ(subject("a.apps.example.org"), "CN=apps-wildcard");
  EXPECT_EQ(subject("a.b.apps.example.org"), "CN=example.com");  // two labels: no match
  EXPECT_EQ(subject("apps.example.org"), "CN=example.com");      // zero labels: no match
  EXPECT_EQ(subject(".apps.example.org"), "CN=example.com");
  EXPECT_EQ(subject("unknown.test"), "CN=example.com");
  EXPECT_EQ(subject(""), "CN=example.com");
}

TEST(CertificateSet, ExactNameBeatsAnEarlierWildcard) {
  REQUIRE_PKI();
  // other.test has no wildcard; make a listener where the wildcard is listed first and check that
  // an exact SAN of a later certificate still wins for its own name.
  auto set = CertificateSet::load(listener({"wildcard", "example"}));
  ASSERT_TRUE(set.has_value()) << set.error();
  EXPECT_EQ((*set)->select("www.example.com")->subject, "CN=example.com");
  EXPECT_EQ((*set)->select("x.apps.example.org")->subject, "CN=apps-wildcard");
  EXPECT_EQ((*set)->select("nothing.test")->subject, "CN=apps-wildcard");  // the first
}

TEST(CertificateSet, RequireSniSelectsNothingForUnknownNames) {
  REQUIRE_PKI();
  config::ListenerTls tls = listener({"example"});
  tls.require_sni = true;
  auto set = CertificateSet::load(tls);
  ASSERT_TRUE(set.has_value()) << set.error();
  EXPECT_NE((*set)->select("example.com"), nullptr);
  EXPECT_EQ((*set)->select("unknown.test"), nullptr);
  EXPECT_EQ((*set)->select(""), nullptr);
}

TEST(CertificateSet, BadFilesAreOneLineErrorsNamingTheFile) {
  REQUIRE_PKI();
  const std::string missing = Pki::path("missing.crt").string();
  const std::string garbage = Pki::path("garbage.pem").string();
  const std::string example_crt = Pki::path("example.crt").string();
  const std::string other_key = Pki::path("other.key").string();
  struct Case {
    std::pair<std::string, std::string> files;
    std::string expected;
  };
  const Case cases[] = {
      {{missing, other_key},
       "certFile '" + missing + "': cannot be read: No such file or directory"},
      {{garbage, other_key}, "certFile '" + garbage + "' holds no PEM certificate (no start line)"},
      {{example_crt, garbage}, "keyFile '" + garbage + "' holds no usable PEM private key"},
      {{example_crt, example_crt}, "keyFile '" + example_crt + "' holds no usable PEM private key"},
      {{example_crt, other_key},
       "keyFile '" + other_key + "' does not match the certificate in certFile '" + example_crt +
           "'"},
  };
  for (const Case& c : cases) {
    config::ListenerTls tls = listener({"example"});
    tls.certificates.push_back(
        {c.files.first, c.files.second, {}});  // the bad one second: every certificate is checked
    auto set = CertificateSet::load(tls);
    ASSERT_FALSE(set.has_value()) << c.expected;
    EXPECT_EQ(set.error().rfind(c.expected, 0), 0u) << set.error();
    EXPECT_EQ(set.error().find('\n'), std::string::npos) << set.error();
  }
}

TEST(CertificateSet, FilesChangedNoticesRewriteReplaceAndRemove) {
  REQUIRE_PKI();
  fs::copy_file(Pki::path("example.crt"), Pki::path("watch.crt"),
                fs::copy_options::overwrite_existing);
  fs::copy_file(Pki::path("example.key"), Pki::path("watch.key"),
                fs::copy_options::overwrite_existing);
  auto set = CertificateSet::load(listener({"watch"}));
  ASSERT_TRUE(set.has_value()) << set.error();
  EXPECT_FALSE((*set)->files_changed());

  // Rewritten in place, same size: the mtime tells.
  struct timespec later[2] = {{0, UTIME_OMIT}, {std::time(nullptr) + 5, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, Pki::path("watch.crt").c_str(), later, 0), 0);
  EXPECT_TRUE((*set)->files_changed());

  set = CertificateSet::load(listener({"watch"}));
  ASSERT_TRUE(set.has_value());
  EXPECT_FALSE((*set)->files_changed());
  // Replaced by a rename (how cert-manager and secret volumes update): the inode tells.
  fs::copy_file(Pki::path("example.key"), Pki::path("watch.key.new"));
  fs::rename(Pki::path("watch.key.new"), Pki::path("watch.key"));
  EXPECT_TRUE((*set)->files_changed());

  set = CertificateSet::load(listener({"watch"}));
  ASSERT_TRUE(set.has_value());
  fs::remove(Pki::path("watch.key"));
  EXPECT_TRUE((*set)->files_changed());
}

TEST(CertificateReloader, PollReloadsOnceAfterAChangeAndKeepsTheOldSetOnError) {
  REQUIRE_PKI();
  fs::copy_file(Pki::path("example.crt"), Pki::path("poll.crt"),
                fs::copy_options::overwrite_existing);
  fs::copy_file(Pki::path("example.key"), Pki::path("poll.key"),
                fs::copy_options::overwrite_existing);
  auto initial = CertificateSet::load(listener({"poll"}));
  ASSERT_TRUE(initial.has_value()) << initial.error();
  CertificateReloader reloader(*initial);
  EXPECT_FALSE(reloader.poll().has_value());

  // A bad certificate: reported once, the old set stays.
  write_file(Pki::path("poll.crt.new"), "garbage");
  fs::rename(Pki::path("poll.crt.new"), Pki::path("poll.crt"));
  auto failed = reloader.poll();
  ASSERT_TRUE(failed.has_value());
  ASSERT_FALSE(failed->has_value());
  EXPECT_TRUE(contains(failed->error(), Pki::path("poll.crt").string())) << failed->error();
  EXPECT_EQ(reloader.current(), *initial);
  EXPECT_FALSE(reloader.poll().has_value());  // unchanged since the failed attempt

  // Fixed: the new set is current.
  fs::copy_file(Pki::path("example-v2.crt"), Pki::path("poll.crt.new"));
  fs::copy_file(Pki::path("example-v2.key"), Pki::path("poll.key.new"));
  fs::rename(Pki::path("poll.key.new"), Pki::path("poll.key"));
  fs::rename(Pki::path("poll.crt.new"), Pki::path("poll.crt"));
  auto fixed = reloader.poll();
  ASSERT_TRUE(fixed.has_value());
  ASSERT_TRUE(fixed->has_value()) << fixed->error();
  EXPECT_EQ(reloader.current(), **fixed);
  EXPECT_EQ(reloader.current()->certificates()[0]->subject, "CN=example.com-v2");
  EXPECT_FALSE(reloader.poll().has_value());

  // SIGHUP reloads even when nothing changed.
  auto forced = reloader.reload();
  ASSERT_TRUE(forced.has_value()) << forced.error();
  EXPECT_NE(*forced, **fixed);
}

// ---------------------------------------------------------------------------------------------
// Handshakes with openssl s_client

class TlsServer : public testing::Test {
 protected:
  void SetUp() override { REQUIRE_PKI(); }
};

TEST_F(TlsServer, EachNameGetsItsCertificate) {
  auto server = start_server(listener({"example", "wildcard", "other"}));
  ASSERT_TRUE(server);
  struct Case {
    std::string name, subject, san;
  };
  const Case cases[] = {
      {"example.com", "subject=CN = example.com", "example.com"},
      {"www.example.com", "subject=CN = example.com", "www.example.com"},
      {"a.apps.example.org", "subject=CN = apps-wildcard", "*.apps.example.org"},
      {"other.test", "subject=CN = other.test", "other.test"},
  };
  for (const Case& c : cases) {
    // -verify_hostname with -verify_return_error: the handshake fails unless a SAN matches.
    Output r = s_client(*server, "-servername " + c.name + " -verify_hostname " + c.name);
    EXPECT_TRUE(handshake_ok(r)) << c.name << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, c.subject)) << c.name << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "Verified peername: " + c.san)) << c.name << "\n" << r.output;
  }
  EXPECT_EQ(server->handshake(2).server_name, "a.apps.example.org");
}

TEST_F(TlsServer, WildcardCoversOneLabelNotTwo) {
  auto server = start_server(listener({"example", "wildcard"}));
  ASSERT_TRUE(server);
  Output r = s_client(*server, "-servername a.b.apps.example.org");
  EXPECT_TRUE(handshake_ok(r)) << r.output;
  EXPECT_TRUE(contains(r.output, "subject=CN = example.com")) << r.output;  // the default
}

TEST_F(TlsServer, NoSniGetsTheFirstCertificate) {
  auto server = start_server(listener({"example", "other"}));
  ASSERT_TRUE(server);
  Output r = s_client(*server, "-noservername");
  EXPECT_TRUE(handshake_ok(r)) << r.output;
  EXPECT_TRUE(contains(r.output, "subject=CN = example.com")) << r.output;
  EXPECT_EQ(server->handshake(0).server_name, "");
}

TEST_F(TlsServer, ChainInCertFileIsSentWhole) {
  config::ListenerTls tls;
  tls.certificates.push_back({.cert_file = Pki::path("other-bundle.crt").string(),
                              .key_file = Pki::path("other.key").string(),
                              .pos = {}});
  auto server = start_server(tls);
  ASSERT_TRUE(server);
  Output r = s_client(*server, "-servername other.test");
  EXPECT_TRUE(handshake_ok(r)) << r.output;
  EXPECT_TRUE(contains(r.output, " 1 s:CN = revgate-test-ca")) << r.output;
}

TEST_F(TlsServer, RequireSniRefusesUnknownAndMissingNamesWithUnrecognizedName) {
  config::ListenerTls tls = listener({"example"});
  tls.require_sni = true;
  auto server = start_server(tls);
  ASSERT_TRUE(server);
  for (const char* args : {"-noservername", "-servername unknown.test"}) {
    Output r = s_client(*server, args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_TRUE(contains(r.output, "unrecognized name")) << args << "\n" << r.output;
  }
  Output ok = s_client(*server, "-servername example.com");
  EXPECT_TRUE(handshake_ok(ok)) << ok.output;
}

TEST_F(TlsServer, ProtocolPolicy) {
  auto server = start_server(listener({"example"}));
  ASSERT_TRUE(server);
  Output tls13 = s_client(*server, "-servername example.com");
  EXPECT_TRUE(contains(tls13.output, "New, TLSv1.3, Cipher is TLS_AES_")) << tls13.output;
  Output tls12 = s_client(*server, "-servername example.com -tls1_2");
  EXPECT_TRUE(contains(tls12.output, "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"))
      << tls12.output;
  EXPECT_TRUE(contains(tls12.output, "Secure Renegotiation IS supported")) << tls12.output;
  EXPECT_TRUE(contains(tls12.output, "Compression: NONE")) << tls12.output;
  Output chacha =
      s_client(*server, "-servername example.com -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305");
  EXPECT_TRUE(contains(chacha.output, "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305")) << chacha.output;
  Output p256 = s_client(*server, "-servername example.com -groups P-256");
  EXPECT_TRUE(handshake_ok(p256)) << p256.output;
  EXPECT_TRUE(contains(p256.output, "Server Temp Key: ECDH, prime256v1")) << p256.output;

  // The server answers with the alert that names the reason; the client gets no certificate.
  struct Refused {
    const char* args;
    const char* alert;
    const char* why;
  };
  const Refused refused[] = {
      {"-tls1_1 -cipher DEFAULT@SECLEVEL=0", "alert protocol version", "TLS 1.1"},
      {"-tls1_2 -cipher AES128-SHA256", "alert handshake failure", "RSA key exchange"},
      {"-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256", "alert handshake failure", "CBC, not AEAD"},
      {"-groups P-384", "alert handshake failure", "not X25519 or P-256"},
  };
  for (const Refused& r : refused) {
    Output out = s_client(*server, std::string("-servername example.com ") + r.args);
    EXPECT_NE(out.status, 0) << r.why << "\n" << out.output;
    EXPECT_TRUE(contains(out.output, r.alert)) << r.why << "\n" << out.output;
    EXPECT_TRUE(contains(out.output, "no peer certificate available")) << r.why << "\n"
                                                                       << out.output;
  }
}

TEST_F(TlsServer, RenegotiationIsRefused) {
  auto server = start_server(listener({"example"}));
  ASSERT_TRUE(server);
  server->set_close_after_greeting(false);
  // s_client's "R" command asks for a TLS 1.2 renegotiation.
  Output r =
      run("(sleep 0.1; echo R; sleep 0.2) | timeout 10 openssl s_client -connect 127.0.0.1:" +
          std::to_string(server->port()) + " -CAfile " + Pki::path("ca.crt").string() +
          " -servername example.com -tls1_2");
  EXPECT_TRUE(contains(r.output, "RENEGOTIATING")) << r.output;
  EXPECT_TRUE(contains(r.output, "no renegotiation")) << r.output;  // the server's alert
}

TEST_F(TlsServer, MinVersion13RefusesTls12) {
  config::ListenerTls tls = listener({"example"});
  tls.min_version = config::TlsVersion::tls13;
  auto server = start_server(tls);
  ASSERT_TRUE(server);
  Output tls12 = s_client(*server, "-servername example.com -tls1_2");
  EXPECT_NE(tls12.status, 0) << tls12.output;
  EXPECT_TRUE(contains(tls12.output, "protocol version")) << tls12.output;
  Output tls13 = s_client(*server, "-servername example.com");
  EXPECT_TRUE(contains(tls13.output, "New, TLSv1.3")) << tls13.output;
}

TEST_F(TlsServer, AlpnOffersHttp11) {
  auto server = start_server(listener({"example"}));
  ASSERT_TRUE(server);
  Output r = s_client(*server, "-servername example.com -alpn h2,http/1.1");
  EXPECT_TRUE(contains(r.output, "ALPN protocol: http/1.1")) << r.output;
  EXPECT_EQ(server->handshake(0).alpn, "http/1.1");
  // A client that offers only protocols we do not speak still gets a connection, without ALPN.
  Output h2 = s_client(*server, "-servername example.com -alpn h2");
  EXPECT_TRUE(handshake_ok(h2)) << h2.output;
  EXPECT_TRUE(contains(h2.output, "No ALPN negotiated")) << h2.output;
}

TEST_F(TlsServer, SessionsResumeWithTls13AndTls12) {
  auto server = start_server(listener({"example"}));
  ASSERT_TRUE(server);
  for (const std::string version : {"", "-tls1_2"}) {
    const std::string session = Pki::path("session" + version + ".pem").string();
    Output first =
        s_client(*server, "-servername example.com " + version + " -sess_out " + session);
    EXPECT_TRUE(contains(first.output, "New, TLSv1.")) << first.output;
    Output second =
        s_client(*server, "-servername example.com " + version + " -sess_in " + session);
    EXPECT_TRUE(contains(second.output, "Reused, TLSv1.")) << version << "\n" << second.output;
  }
}

TEST_F(TlsServer, TicketsResumeOnAnotherWorkersContext) {
  // Two contexts sharing ticket keys, as two workers do.
  auto keys = SessionTicketKeys::generate();
  ASSERT_TRUE(keys.has_value());
  config::ListenerTls tls = listener({"example"});
  auto set = CertificateSet::load(tls);
  ASSERT_TRUE(set.has_value()) << set.error();
  auto a = ServerContext::create(tls, *set, *keys);
  auto b = ServerContext::create(tls, *set, *keys);
  ASSERT_TRUE(a.has_value() && b.has_value());
  TestServer worker_a(std::move(*a));
  TestServer worker_b(std::move(*b));
  const std::string session = Pki::path("session-shared.pem").string();
  Output first = s_client(worker_a, "-servername example.com -sess_out " + session);
  EXPECT_TRUE(contains(first.output, "New, TLSv1.3")) << first.output;
  Output second = s_client(worker_b, "-servername example.com -sess_in " + session);
  EXPECT_TRUE(contains(second.output, "Reused, TLSv1.3")) << second.output;
  EXPECT_TRUE(worker_b.handshake(0).reused);
}

TEST_F(TlsServer, ReloadUsesTheNewCertificateForNewHandshakesAndKeepsOpenConnections) {
  fs::copy_file(Pki::path("example.crt"), Pki::path("live.crt"),
                fs::copy_options::overwrite_existing);
  fs::copy_file(Pki::path("example.key"), Pki::path("live.key"),
                fs::copy_options::overwrite_existing);
  auto server = start_server(listener({"live"}));
  ASSERT_TRUE(server);
  server->set_close_after_greeting(false);

  // A connection open across the reloads.
  asio::io_context io;
  ssl::context verify_ca(ssl::context::tls_client);
  verify_ca.load_verify_file(Pki::path("ca.crt").string());
  verify_ca.set_verify_mode(ssl::verify_peer);
  ssl::stream<tcp::socket> open(io, verify_ca);
  SSL_set_tlsext_host_name(open.native_handle(), "example.com");
  open.lowest_layer().connect({asio::ip::make_address("127.0.0.1"), server->port()});
  open.handshake(ssl::stream_base::client);
  asio::streambuf buffer;
  EXPECT_EQ(asio::read_until(open, buffer, '\n'), 6u);  // "hello\n"
  buffer.consume(6);
  server->set_close_after_greeting(true);

  // Bad files: each keeps the old certificate and names the file.
  const std::string live_crt = Pki::path("live.crt").string();
  const std::string live_key = Pki::path("live.key").string();
  struct Bad {
    std::function<void()> apply;
    std::string file;
  };
  const Bad bad[] = {
      {[&] { fs::remove(live_crt); }, live_crt},
      {[&] { write_file(live_crt, "garbage"); }, live_crt},
      {[&] {
         fs::copy_file(Pki::path("other.crt"), live_crt, fs::copy_options::overwrite_existing);
       },
       live_key},  // key does not match
  };
  for (const Bad& b : bad) {
    b.apply();
    auto result = server->on_server_thread([](ServerContext& c) { return c.reload(); });
    ASSERT_FALSE(result.has_value());
    EXPECT_TRUE(contains(result.error(), "'" + b.file + "'")) << result.error();
    Output r = s_client(*server, "-servername example.com");
    EXPECT_TRUE(contains(r.output, "subject=CN = example.com\n")) << r.output;
  }

  // A good new certificate: the next handshake has it.
  fs::copy_file(Pki::path("example-v2.crt"), live_crt, fs::copy_options::overwrite_existing);
  fs::copy_file(Pki::path("example-v2.key"), live_key, fs::copy_options::overwrite_existing);
  auto result = server->on_server_thread([](ServerContext& c) { return c.reload(); });
  ASSERT_TRUE(result.has_value()) << result.error();
  Output r = s_client(*server, "-servername example.com");
  EXPECT_TRUE(handshake_ok(r)) << r.output;
  EXPECT_TRUE(contains(r.output, "subject=CN = example.com-v2")) << r.output;

  // The connection opened before is untouched.
  asio::write(open, asio::buffer("still here\n", 11));
  EXPECT_EQ(asio::read_until(open, buffer, '\n'), 11u);
  X509* peer = SSL_get0_peer_certificate(open.native_handle());
  ASSERT_NE(peer, nullptr);
  char subject[128] = {};
  X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof subject);
  EXPECT_STREQ(subject, "/CN=example.com");
}

TEST_F(TlsServer, CreateFailsWithTheFileWhenACertificateIsBad) {
  config::ListenerTls tls = listener({"example"});
  tls.certificates.push_back({.cert_file = Pki::path("garbage.pem").string(),
                              .key_file = Pki::path("other.key").string(),
                              .pos = {}});
  auto context = ServerContext::create(tls);
  ASSERT_FALSE(context.has_value());
  EXPECT_TRUE(contains(context.error(), Pki::path("garbage.pem").string())) << context.error();
}

// ---------------------------------------------------------------------------------------------
// The client context against our server

config::UpstreamTls upstream(const std::string& ca_file, const std::string& server_name = "",
                             const std::string& cert_file = "", const std::string& key_file = "") {
  config::UpstreamTls tls;
  tls.ca_file = ca_file;
  tls.server_name = server_name;
  tls.cert_file = cert_file;
  tls.key_file = key_file;
  return tls;
}

config::Endpoint https_endpoint(const std::string& host, std::uint16_t port) {
  config::Endpoint endpoint;
  endpoint.host = host;
  endpoint.port = port;
  endpoint.tls = true;
  return endpoint;
}

struct ClientResult {
  boost::system::error_code handshake;
  std::string greeting;
};

ClientResult connect_with(const ClientContext& context, std::uint16_t port,
                          std::string_view server_name) {
  ClientResult result;
  asio::io_context io;
  ssl::stream<tcp::socket> stream(io, context.asio_context());
  auto prepared = context.prepare(stream.native_handle(), server_name);
  EXPECT_TRUE(prepared.has_value()) << prepared.error();
  boost::system::error_code ec;
  stream.lowest_layer().connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) {
    result.handshake = ec;
    return result;
  }
  stream.handshake(ssl::stream_base::client, result.handshake);
  if (result.handshake) return result;
  asio::streambuf buffer;
  std::size_t n = asio::read_until(stream, buffer, '\n', ec);
  if (!ec)
    result.greeting.assign(asio::buffers_begin(buffer.data()),
                           asio::buffers_begin(buffer.data()) + n);
  return result;
}

class TlsClient : public testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_PKI();
    server_ = start_server(listener({"example", "other", "ip"}));
    ASSERT_TRUE(server_);
  }
  std::unique_ptr<TestServer> server_;
};

TEST_F(TlsClient, VerifiesAgainstCaFileAndSendsSni) {
  config::UpstreamTls tls = upstream(Pki::path("ca.crt").string());
  auto context = ClientContext::create(&tls);
  ASSERT_TRUE(context.has_value()) << context.error();
  ClientResult result = connect_with(**context, server_->port(), "other.test");
  EXPECT_FALSE(result.handshake) << result.handshake.message();
  EXPECT_EQ(result.greeting, "hello\n");
  Handshake seen = server_->handshake(0);
  EXPECT_EQ(seen.server_name, "other.test");
  EXPECT_EQ(seen.alpn, "http/1.1");
  EXPECT_EQ(seen.version, "TLSv1.3");
}

TEST_F(TlsClient, VerifiesAnIpAddressAgainstIpSansWithoutSni) {
  config::UpstreamTls tls = upstream(Pki::path("ca.crt").string());
  auto context = ClientContext::create(&tls);
  ASSERT_TRUE(context.has_value()) << context.error();
  config::Endpoint endpoint = https_endpoint("127.0.0.1", server_->port());
  // With no SNI the server presents its first certificate (example.com), which has no IP SAN...
  ClientResult wrong =
      connect_with(**context, server_->port(), (*context)->server_name_for(endpoint));
  EXPECT_TRUE(wrong.handshake);
  EXPECT_EQ(server_->handshake(0).server_name, "");
  // ...and with the IP certificate first, it passes.
  auto ip_first = start_server(listener({"ip"}));
  ASSERT_TRUE(ip_first);
  ClientResult ok = connect_with(**context, ip_first->port(), "127.0.0.1");
  EXPECT_FALSE(ok.handshake) << ok.handshake.message();
}

TEST_F(TlsClient, ServerNameOverridesTheEndpointHost) {
  config::UpstreamTls tls = upstream(Pki::path("ca.crt").string(), "other.test");
  auto context = ClientContext::create(&tls);
  ASSERT_TRUE(context.has_value()) << context.error();
  config::Endpoint endpoint = https_endpoint("backend.internal", server_->port());
  EXPECT_EQ((*context)->server_name_for(endpoint), "other.test");
  auto plain = ClientContext::create(nullptr);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ((*plain)->server_name_for(endpoint), "backend.internal");
}

TEST_F(TlsClient, FailsWithAWrongCaTheSystemStoreOrTheWrongName) {
  config::UpstreamTls wrong_ca = upstream(Pki::path("ca2.crt").string());
  auto wrong = ClientContext::create(&wrong_ca);
  ASSERT_TRUE(wrong.has_value()) << wrong.error();
  ClientResult r1 = connect_with(**wrong, server_->port(), "other.test");
  EXPECT_TRUE(r1.handshake);
  EXPECT_TRUE(contains(r1.handshake.message(), "certificate verify failed"))
      << r1.handshake.message();

  auto system = ClientContext::create(nullptr);  // our test CA is in no system store
  ASSERT_TRUE(system.has_value()) << system.error();
  ClientResult r2 = connect_with(**system, server_->port(), "other.test");
  EXPECT_TRUE(contains(r2.handshake.message(), "certificate verify failed"))
      << r2.handshake.message();

  // The right CA, but a name the certificate does not carry (the server falls back to its first
  // certificate, example.com).
  config::UpstreamTls right_ca = upstream(Pki::path("ca.crt").string());
  auto right = ClientContext::create(&right_ca);
  ASSERT_TRUE(right.has_value());
  ClientResult r3 = connect_with(**right, server_->port(), "elsewhere.test");
  EXPECT_TRUE(contains(r3.handshake.message(), "certificate verify failed"))
      << r3.handshake.message();
}

TEST_F(TlsClient, PresentsAClientCertificateForMutualTls) {
  // A server that requires a client certificate signed by our CA.
  auto server_context = ServerContext::create(listener({"other"}));
  ASSERT_TRUE(server_context.has_value()) << server_context.error();
  SSL_CTX* native = (*server_context)->native_handle();
  ASSERT_EQ(SSL_CTX_load_verify_file(native, Pki::path("ca.crt").c_str()), 1);
  SSL_CTX_set_verify(native, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  TestServer mutual(std::move(*server_context));

  config::UpstreamTls with_cert =
      upstream(Pki::path("ca.crt").string(), "", Pki::path("client.crt").string(),
               Pki::path("client.key").string());
  auto context = ClientContext::create(&with_cert);
  ASSERT_TRUE(context.has_value()) << context.error();
  ClientResult ok = connect_with(**context, mutual.port(), "other.test");
  EXPECT_FALSE(ok.handshake) << ok.handshake.message();
  EXPECT_EQ(ok.greeting, "hello\n");
  EXPECT_EQ(mutual.handshake(0).peer_subject, "/CN=revgate-client");

  // Without a client certificate the server refuses (in TLS 1.3 after the client's Finished, so
  // the client sees it at its first read).
  config::UpstreamTls without = upstream(Pki::path("ca.crt").string());
  auto anonymous = ClientContext::create(&without);
  ASSERT_TRUE(anonymous.has_value());
  ClientResult refused = connect_with(**anonymous, mutual.port(), "other.test");
  EXPECT_EQ(refused.greeting, "");
  Handshake seen = mutual.handshake(1);
  EXPECT_FALSE(seen.ok);
  EXPECT_TRUE(contains(seen.error, "certificate")) << seen.error;
}

TEST_F(TlsClient, BadFilesAreErrorsNamingTheFile) {
  config::UpstreamTls bad_ca = upstream(Pki::path("garbage.pem").string());
  auto r1 = ClientContext::create(&bad_ca);
  ASSERT_FALSE(r1.has_value());
  EXPECT_TRUE(contains(r1.error(), "caFile '" + Pki::path("garbage.pem").string() + "'"))
      << r1.error();
  config::UpstreamTls mismatch =
      upstream("", "", Pki::path("client.crt").string(), Pki::path("other.key").string());
  auto r2 = ClientContext::create(&mismatch);
  ASSERT_FALSE(r2.has_value());
  EXPECT_TRUE(contains(r2.error(), "does not match")) << r2.error();
}

}  // namespace
}  // namespace revgate::tls
