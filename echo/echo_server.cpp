// EchoServer: one acceptor on worker 0 hands each accepted socket to the workers in turn; a
// connection then lives on its worker's io_context and thread only. Each worker owns its PRNG,
// JSON serializer and scratch string; sessions own their buffers and reuse them across requests.
// Responses are formatted by hand into two reused strings (head, body) and sent with one gather
// write: no Beast serializer, no JSON DOM, no allocation per request once a connection is warm
// (Beast's request fields aside). Request parsing is Beast's.
#include "echo/echo_server.h"
#include "echo/latency.h"
#include "echo/h2_echo.h"
#include "echo/websocket_echo.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string_view>
#include <functional>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json/serializer.hpp>

namespace revgate::echo {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using beast::error_code;

constexpr std::uint32_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kIoBytes = 64 * 1024;  // body discard buffer, /_echo/bytes piece size
constexpr std::uint64_t kMaxDelayMs = 3'600'000;
constexpr std::uint64_t kMaxStreamBytes = std::uint64_t{1} << 40;
constexpr unsigned kMaxThreads = 256;
constexpr auto kLingerTime = std::chrono::seconds(1);  // drain before closing after a reply
constexpr auto kAcceptRetry = std::chrono::milliseconds(50);
constexpr std::size_t kPrefaceBytes = 4096;  // the first read of a connection
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";
constexpr std::string_view kCrlf = "\r\n";

// Byte i of every /_echo/bytes body is 'a' + i % 26; a piece starting at stream offset `o` is
// byte_pattern() + o % 26, so the pattern is one piece plus one period long.
const char* byte_pattern() {
  static const std::string pattern = [] {
    std::string p(kIoBytes + 26, '\0');
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<char>('a' + i % 26);
    return p;
  }();
  return pattern.data();
}

// splitmix64: tiny, fast and good enough to pick which requests fail.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double next_unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  std::uint64_t state_;
};

std::string format_endpoint(const tcp::endpoint& ep) {
  std::string out =
      ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
  out += ':';
  out += std::to_string(ep.port());
  return out;
}

void append_uint(std::string& out, std::uint64_t v, int base = 10) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, base);
  out.append(buf, end);
}

bool parse_uint(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

// Appends `s` as a JSON string literal, escaped by Boost.JSON's serializer (no allocation once
// `out` has grown). Bytes are passed through as they are: a non-UTF-8 header value stays so.
void append_json_string(std::string& out, std::string_view s, json::serializer& sr) {
  sr.reset(json::string_view(s.data(), s.size()));
  do {
    const std::size_t old = out.size();
    out.resize(old + s.size() + 16);
    const auto got = sr.read(out.data() + old, out.size() - old);
    out.resize(old + got.size());
  } while (!sr.done());
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding: %XX and '+' for a space.
bool form_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

bool is_tchar(unsigned char c) {
  return std::isalnum(c) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// A field value per RFC 9110: visible characters, spaces, tabs and obs-text; no CR, LF, NUL.
bool is_field_value(std::string_view v) {
  return std::all_of(v.begin(), v.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c == '\t' || (c >= 0x20 && c != 0x7f);
  });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool has_close_token(std::string_view value) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (beast::iequals(trim(value.substr(0, comma)), "close")) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::string_view reason_phrase(unsigned status) {
  const auto s = http::int_to_status(status);
  return s == http::status::unknown ? std::string_view("Unknown")
                                    : std::string_view(http::obsolete_reason(s));
}

bool is_http_error(const error_code& ec) {
  return ec.category() == http::make_error_code(http::error::end_of_stream).category();
}

// Written by its worker's thread only (so a plain load+store, no locked increment); read by any
// thread through EchoServer::requests(). On its own cache line so workers never share one.
struct alignas(64) RequestCounter {
  std::atomic<std::uint64_t> value{0};
  void add_one() { value.store(value.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
};

// Everything one worker thread owns. Sessions on this worker use `json` and `scratch`
// synchronously inside one handler, so sharing them across the worker's sessions is safe.
struct Worker {
  Worker(const EchoOptions& o, std::uint64_t seed, RequestCounter& counter,
         std::function<std::pair<std::uint64_t, std::uint64_t>()> totals)
      : options(o), rng(seed), requests(counter), stats(std::move(totals)) {
    if (o.delay_p50_ms > 0.0) delay = LogNormalDelay::fit(o.delay_p50_ms, o.delay_p99_ms).value();
  }

  // The reply delay of a plain request, in microseconds: fixed, or drawn (validated options).
  std::uint64_t next_delay_us() {
    if (!delay) return std::uint64_t{options.delay_ms} * 1000;
    const double ms = std::min(delay->draw_ms(rng.next_unit(), rng.next_unit()),
                               static_cast<double>(kMaxDelayMs));
    return static_cast<std::uint64_t>(std::llround(ms * 1000.0));
  }

  asio::io_context ioc{1};  // declared first: destroyed last, after everything bound to it
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  const EchoOptions& options;
  SplitMix64 rng;
  std::optional<LogNormalDelay> delay;  // set when delay_p50_ms is
  json::serializer json;
  std::string scratch;
  RequestCounter& requests;
  // Server-wide {accepted connections, requests} for /_echo/stats (diagnostic, not hot).
  std::function<std::pair<std::uint64_t, std::uint64_t>()> stats;
};

// How the current request will be answered; decided once its body has been read.
struct Reply {
  unsigned status = 200;
  bool keep_alive = true;
  bool head_only = false;     // HEAD: headers as for GET, no body
  bool stream_bytes = false;  // /_echo/bytes/N
  bool chunked = false;
  std::uint64_t bytes = 0;
  std::uint64_t delay_us = 0;
  bool connection_close_sent = false;  // an /_echo/headers Connection header already says close
  bool stats = false;                  // /_echo/stats: counters instead of the echo
  std::string_view error;              // static text, added to the JSON as "error"
};

// One client connection. Its life per request: read head, (100 Continue), read and count body,
// decide the reply, (wait), write, then read the next head or close.
// Stream: a TCP socket, or TLS over one (--tls-cert/--tls-key), where ALPN picks HTTP/2 or 1.1.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, tcp::socket>;

  Session(Stream stream, Worker& worker)
      : socket_(std::move(stream)), worker_(worker), timer_(socket_.get_executor()) {}

  void start() {
    error_code ec;
    lowest().set_option(tcp::no_delay(true), ec);
    const auto remote = lowest().remote_endpoint(ec);
    if (ec) return;  // the peer is already gone
    remote_ = format_endpoint(remote);
    if constexpr (kTls) {
      socket_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](error_code handshake_ec) {
                                if (handshake_ec) return;
                                const unsigned char* alpn = nullptr;
                                unsigned int length = 0;
                                SSL_get0_alpn_selected(self->socket_.native_handle(), &alpn,
                                                       &length);
                                if (std::string_view(reinterpret_cast<const char*>(alpn), length) ==
                                    "h2") {
                                  return self->hand_to_http2("");
                                }
                                self->read_header();
                              });
    } else {
      read_first_bytes();
    }
  }

 private:
  using Parser = http::request_parser<http::buffer_body>;
  using Request = Parser::value_type;

  // HTTP/2 with prior knowledge (h2_echo.h) or HTTP/1.1: the connection's first bytes tell.
  // Whatever was read stays in buffer_ for Beast's parser.
  void read_first_bytes() {
    socket_.async_read_some(
        buffer_.prepare(kPrefaceBytes), [self = this->shared_from_this()](error_code ec, std::size_t n) {
          if (ec) return;
          self->buffer_.commit(n);
          const std::string_view seen(static_cast<const char*>(self->buffer_.data().data()),
                                      self->buffer_.size());
          const std::size_t compared = std::min(seen.size(), kHttp2Preface.size());
          if (seen.substr(0, compared) != kHttp2Preface.substr(0, compared)) {
            return self->read_header();
          }
          if (seen.size() < kHttp2Preface.size()) return self->read_first_bytes();
          self->hand_to_http2(std::string(seen));
        });
  }

  void hand_to_http2(std::string received) {
    auto& worker = worker_;
    serve_http2(std::move(socket_), std::move(received),
                {worker.options.name, remote_, [&worker] { worker.requests.add_one(); },
                 [&worker] { return worker.next_delay_us(); }});
  }

  tcp::socket& lowest() { return beast::get_lowest_layer(socket_); }

  void read_header() {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(worker_.options.max_body_bytes);
    body_bytes_ = 0;
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = this->shared_from_this()](error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(error_code ec) {
    if (ec) return on_read_error(ec);
    if (parser_->is_done()) return on_request();
    if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      asio::async_write(socket_, asio::buffer(kContinue),
                        [self = this->shared_from_this()](error_code ec, std::size_t) {
                          if (!ec) self->read_body();
                        });
      return;
    }
    read_body();
  }

  // The body goes through one fixed buffer and is counted, never kept.
  void read_body() {
    if (!discard_) discard_ = std::make_unique_for_overwrite<char[]>(kIoBytes);
    auto& body = parser_->get().body();
    body.data = discard_.get();
    body.size = kIoBytes;
    http::async_read_some(
        socket_, buffer_, *parser_,
        [self = this->shared_from_this()](error_code ec, std::size_t) { self->on_body(ec); });
  }

  void on_body(error_code ec) {
    if (ec == http::error::need_buffer) ec = {};
    body_bytes_ += kIoBytes - parser_->get().body().size;
    if (ec) return on_read_error(ec);
    if (!parser_->is_done()) return read_body();
    on_request();
  }

  // Clean ends (end of stream, reset, aborted at shutdown) just drop the connection; protocol
  // errors get an answer first.
  void on_read_error(const error_code& ec) {
    if (ec == http::error::body_limit) return reply_error(413, "request body over the limit");
    if (ec == http::error::header_limit) return reply_error(431, "request header over 64 KiB");
    if (is_http_error(ec) && ec != http::error::end_of_stream &&
        ec != http::error::partial_message) {
      return reply_error(400, "malformed request");
    }
  }

  void on_request() {
    count_request();
    if (websocket::is_upgrade(parser_->get())) {
      // The connection becomes a WebSocket echo (websocket_echo.h); this session ends here.
      return serve_websocket(std::move(socket_), parser_->release(), worker_.options.name);
    }
    const Request& req = parser_->get();
    reply_ = Reply{};
    reply_.keep_alive = req.keep_alive();
    reply_.head_only = req.method() == http::verb::head;
    reply_.delay_us = worker_.next_delay_us();
    extra_headers_.clear();
    const std::string_view target = req.target();
    if (target.starts_with("/_echo/")) parse_special(target);
    if (worker_.options.error_rate > 0.0 && worker_.rng.next_unit() < worker_.options.error_rate) {
      reply_.status = 500;
      reply_.stream_bytes = false;
    }
    if (reply_.stream_bytes) {
      build_bytes_head();
    } else {
      build_json_reply(req);
    }
    if (reply_.delay_us == 0) return write_reply();
    timer_.expires_after(std::chrono::microseconds(reply_.delay_us));
    timer_.async_wait([self = this->shared_from_this()](error_code ec) {
      if (!ec) self->write_reply();
    });
  }

  void count_request() { worker_.requests.add_one(); }  // single writer: this worker's thread

  void reject(unsigned status, std::string_view error) {
    reply_.status = status;
    reply_.error = error;
    reply_.stream_bytes = false;
    reply_.connection_close_sent = false;
    extra_headers_.clear();
  }

  // target starts with "/_echo/"; see the header comment for the forms.
  void parse_special(std::string_view target) {
    std::string_view path = target;
    std::string_view query;
    if (const auto q = target.find('?'); q != std::string_view::npos) {
      path = target.substr(0, q);
      query = target.substr(q + 1);
    }
    bool chunked = false;
    while (!query.empty()) {
      const auto amp = query.find('&');
      const std::string_view param = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      const auto eq = param.find('=');
      const std::string_view key = param.substr(0, eq);
      const std::string_view value =
          eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
      if (key == "chunked") {
        chunked = value == "1" || value == "true";
      } else if (key == "h" && !add_extra_header(value)) {
        return reject(400, "bad h= header: use h=Name:Value, percent-encoded");
      }
    }

    const std::string_view rest = path.substr(std::string_view("/_echo/").size());
    std::uint64_t n = 0;
    if (rest.starts_with("bytes/")) {
      if (!parse_uint(rest.substr(6), n) || n > kMaxStreamBytes) {
        return reject(400, "bad /_echo/bytes/N: N is 0..2^40");
      }
      reply_.stream_bytes = true;
      reply_.bytes = n;
      reply_.chunked = chunked;
    } else if (rest.starts_with("status/")) {
      if (!parse_uint(rest.substr(7), n) || n < 200 || n > 599) {
        return reject(400, "bad /_echo/status/NNN: NNN is 200..599");
      }
      reply_.status = static_cast<unsigned>(n);
    } else if (rest.starts_with("delay/")) {
      if (!parse_uint(rest.substr(6), n) || n > kMaxDelayMs) {
        return reject(400, "bad /_echo/delay/MS: MS is 0..3600000");
      }
      reply_.delay_us = n * 1000;
    } else if (rest == "close") {
      reply_.keep_alive = false;
    } else if (rest == "stats") {
      reply_.stats = true;
    } else if (rest != "headers") {
      reject(404, "unknown /_echo/ endpoint");
    }
  }

  // One h= value: "Name:Value", form-encoded. Appends "Name: Value\r\n" to extra_headers_.
  bool add_extra_header(std::string_view encoded) {
    std::string& decoded = worker_.scratch;
    if (!form_decode(encoded, decoded)) return false;
    const auto colon = decoded.find(':');
    if (colon == std::string::npos || colon == 0) return false;
    const std::string_view name = std::string_view(decoded).substr(0, colon);
    const std::string_view value = trim(std::string_view(decoded).substr(colon + 1));
    if (!std::all_of(name.begin(), name.end(),
                     [](char c) { return is_tchar(static_cast<unsigned char>(c)); }) ||
        !is_field_value(value) || beast::iequals(name, "content-length") ||
        beast::iequals(name, "transfer-encoding")) {
      return false;
    }
    if (beast::iequals(name, "connection") && has_close_token(value)) {
      reply_.keep_alive = false;
      reply_.connection_close_sent = true;
    }
    extra_headers_.append(name).append(": ").append(value).append(kCrlf);
    return true;
  }

  // Status line, X-Revision and the connection headers; the caller adds framing and "\r\n".
  void begin_head(unsigned status, unsigned request_version) {
    head_.clear();
    head_ += "HTTP/1.1 ";
    append_uint(head_, status);
    head_ += ' ';
    head_ += reason_phrase(status);
    head_ += "\r\nX-Revision: ";
    head_ += worker_.options.name;
    head_ += kCrlf;
    if (!reply_.keep_alive && !reply_.connection_close_sent) {
      head_ += "Connection: close\r\n";
    } else if (reply_.keep_alive && request_version < 11) {
      head_ += "Connection: keep-alive\r\n";
    }
    head_ += extra_headers_;
  }

  void build_json_reply(const Request& req) {
    const bool has_body = reply_.status != 204 && reply_.status != 304;
    body_.clear();
    if (has_body && reply_.stats && reply_.error.empty()) {
      const auto [accepted, requests] = worker_.stats();
      body_ = "{\"accepted_connections\":";
      append_uint(body_, accepted);
      body_ += ",\"requests\":";
      append_uint(body_, requests);
      body_ += "}";
    } else if (has_body) {
      append_echo_json(req);
    }
    begin_head(reply_.status, req.version());
    if (has_body) {
      head_ += "Content-Type: application/json\r\nContent-Length: ";
      append_uint(head_, body_.size());
      head_ += kCrlf;
    }
    head_ += kCrlf;
    if (reply_.head_only) body_.clear();
  }

  void build_bytes_head() {
    begin_head(reply_.status, parser_->get().version());
    head_ += "Content-Type: application/octet-stream\r\n";
    if (reply_.chunked) {
      head_ += "Transfer-Encoding: chunked\r\n";
    } else {
      head_ += "Content-Length: ";
      append_uint(head_, reply_.bytes);
      head_ += kCrlf;
    }
    head_ += kCrlf;
  }

  void append_echo_json(const Request& req) {
    json::serializer& sr = worker_.json;
    std::string& out = body_;
    out += "{\"revision\":";
    append_json_string(out, worker_.options.name, sr);
    out += ",\"method\":";
    append_json_string(out, req.method_string(), sr);
    out += ",\"target\":";
    append_json_string(out, req.target(), sr);
    out += ",\"version\":\"HTTP/";
    out += static_cast<char>('0' + req.version() / 10 % 10);
    out += '.';
    out += static_cast<char>('0' + req.version() % 10);
    out += "\",\"headers\":{";
    bool first = true;
    for (auto it = req.begin(); it != req.end(); ++it) {
      const std::string_view name = it->name_string();
      // Beast's fields keep arrival order; find() gives a name's first arrival.
      const bool repeated = req.count(name) > 1;
      if (repeated && &*req.find(name) != &*it) continue;  // joined at its first arrival
      if (!first) out += ',';
      first = false;
      std::string& lower = worker_.scratch;
      lower.assign(name);
      for (char& c : lower) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      append_json_string(out, lower, sr);
      out += ':';
      if (!repeated) {
        append_json_string(out, it->value(), sr);
        continue;
      }
      std::string& joined = worker_.scratch;
      joined.clear();
      for (auto same = it; same != req.end(); ++same) {
        if (!beast::iequals(same->name_string(), name)) continue;
        if (!joined.empty()) joined += ", ";
        joined += same->value();
      }
      append_json_string(out, joined, sr);
    }
    out += "},\"body_bytes\":";
    append_uint(out, body_bytes_);
    out += ",\"remote\":";
    append_json_string(out, remote_, sr);
    if (!reply_.error.empty()) {
      out += ",\"error\":";
      append_json_string(out, reply_.error, sr);
    }
    out += '}';
  }

  // For requests that could not be parsed: a short JSON error, then close.
  void reply_error(unsigned status, std::string_view error) {
    count_request();
    reply_ = Reply{};
    reply_.status = status;
    reply_.keep_alive = false;
    extra_headers_.clear();
    body_.clear();
    body_ += "{\"revision\":";
    append_json_string(body_, worker_.options.name, worker_.json);
    body_ += ",\"error\":";
    append_json_string(body_, error, worker_.json);
    body_ += '}';
    begin_head(status, 11);
    head_ += "Content-Type: application/json\r\nContent-Length: ";
    append_uint(head_, body_.size());
    head_ += "\r\n\r\n";
    write_reply();
  }

  void write_reply() {
    if (reply_.stream_bytes) {
      head_pending_ = true;
      last_chunk_pending_ = reply_.chunked && !reply_.head_only;
      bytes_left_ = reply_.head_only ? 0 : reply_.bytes;
      bytes_offset_ = 0;
      return write_bytes();
    }
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(body_)};
    asio::async_write(socket_, buffers, [self = this->shared_from_this()](error_code ec, std::size_t) {
      self->on_written(ec);
    });
  }

  // One piece per write (head with the first): memory stays bounded whatever N is.
  void write_bytes() {
    std::array<asio::const_buffer, 5> buffers{};  // unused entries stay empty
    std::size_t i = 0;
    if (head_pending_) {
      buffers[i++] = asio::buffer(head_);
      head_pending_ = false;
    }
    if (bytes_left_ > 0) {
      const std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(bytes_left_, kIoBytes));
      if (reply_.chunked) {
        chunk_size_.clear();
        append_uint(chunk_size_, n, 16);
        chunk_size_ += kCrlf;
        buffers[i++] = asio::buffer(chunk_size_);
      }
      buffers[i++] = asio::buffer(byte_pattern() + bytes_offset_ % 26, n);
      if (reply_.chunked) buffers[i++] = asio::buffer(kCrlf);
      bytes_left_ -= n;
      bytes_offset_ += n;
    }
    if (bytes_left_ == 0 && last_chunk_pending_) {
      buffers[i++] = asio::buffer(kLastChunk);
      last_chunk_pending_ = false;
    }
    const bool last = bytes_left_ == 0 && !last_chunk_pending_;
    asio::async_write(socket_, buffers,
                      [self = this->shared_from_this(), last](error_code ec, std::size_t) {
                        if (ec || last) return self->on_written(ec);
                        self->write_bytes();
                      });
  }

  void on_written(const error_code& ec) {
    if (ec) return;  // the peer went away: drop the connection
    if (reply_.keep_alive) return read_header();
    close_gracefully();
  }

  // Send FIN, then read and discard until the peer closes (or kLingerTime passes), so that
  // unread request bytes cannot make the kernel reset the connection before the peer has read
  // the reply.
  void close_gracefully() {
    error_code ec;
    lowest().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return;
    if (!discard_) discard_ = std::make_unique_for_overwrite<char[]>(kIoBytes);
    timer_.expires_after(kLingerTime);
    timer_.async_wait([self = this->shared_from_this()](error_code ec) {
      if (!ec) self->lowest().close(ec);
    });
    drain();
  }

  void drain() {
    socket_.async_read_some(asio::buffer(discard_.get(), kIoBytes),
                            [self = this->shared_from_this()](error_code ec, std::size_t) {
                              if (ec) return static_cast<void>(self->timer_.cancel());
                              self->drain();
                            });
  }

  Stream socket_;
  Worker& worker_;
  asio::steady_timer timer_;  // the reply delay, then the linger on close
  beast::flat_buffer buffer_;
  std::optional<Parser> parser_;
  std::unique_ptr<char[]> discard_;  // allocated at the first body
  std::string remote_;               // "ip:port" of the peer
  std::string head_;
  std::string body_;
  std::string extra_headers_;
  std::string chunk_size_;
  Reply reply_;
  std::uint64_t body_bytes_ = 0;
  std::uint64_t bytes_left_ = 0;
  std::uint64_t bytes_offset_ = 0;
  bool head_pending_ = false;
  bool last_chunk_pending_ = false;
};

void validate(const EchoOptions& o) {
  if (o.name.empty() || !is_field_value(o.name) || o.name.find('\t') != std::string::npos) {
    throw std::invalid_argument("echo: the name must be non-empty printable text");
  }
  if (!(o.error_rate >= 0.0 && o.error_rate <= 1.0)) {
    throw std::invalid_argument("echo: error_rate must be between 0 and 1");
  }
  if (o.delay_ms > kMaxDelayMs) throw std::invalid_argument("echo: delay_ms must be <= 3600000");
  if (o.delay_p50_ms != 0.0 || o.delay_p99_ms != 0.0) {
    if (o.delay_ms != 0) {
      throw std::invalid_argument(
          "echo: delay_ms and delay_p50_ms/delay_p99_ms exclude each other");
    }
    if (auto fitted = LogNormalDelay::fit(o.delay_p50_ms, o.delay_p99_ms); !fitted) {
      throw std::invalid_argument(fitted.error());
    }
    if (o.delay_p99_ms > static_cast<double>(kMaxDelayMs)) {
      throw std::invalid_argument("echo: delay_p99_ms must be <= 3600000");
    }
  }
  if (o.threads < 1 || o.threads > kMaxThreads) {
    throw std::invalid_argument("echo: threads must be 1..256");
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    throw std::invalid_argument("echo: TLS needs both a certificate and a key file");
  }
}

// ALPN: h2 when the client offers it, else http/1.1; a client that offers neither still gets
// HTTP/1.1 (no ALPN at all is fine too).
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_length,
                const unsigned char* offered, unsigned int offered_length, void*) {
  static constexpr unsigned char kPreferred[] = "\x02h2\x08http/1.1";
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, out_length, kPreferred, sizeof kPreferred - 1, offered,
                            offered_length) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

std::unique_ptr<asio::ssl::context> make_tls_context(const EchoOptions& o) {
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
  error_code ec;
  context->use_certificate_chain_file(o.tls_cert_file, ec);
  if (ec) throw std::system_error(ec, "echo: cannot load certificate " + o.tls_cert_file);
  context->use_private_key_file(o.tls_key_file, asio::ssl::context::pem, ec);
  if (ec) throw std::system_error(ec, "echo: cannot load key " + o.tls_key_file);
  SSL_CTX_set_alpn_select_cb(context->native_handle(), select_alpn, nullptr);
  return context;
}

tcp::endpoint resolve(std::string host, std::uint16_t port, asio::io_context& ioc) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (!ec) return {address, port};
  tcp::resolver resolver(ioc);
  const auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    throw std::system_error(ec ? ec : asio::error::host_not_found, "echo: cannot resolve " + host);
  }
  return results.begin()->endpoint();
}

}  // namespace

struct EchoServer::Impl {
  enum class State { kIdle, kRunning, kStopped };

  explicit Impl(EchoOptions o) : options(std::move(o)) {
    validate(options);
    std::uint64_t seed = options.seed;
    if (seed == 0) seed = (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}();
    counters = std::make_unique<RequestCounter[]>(options.threads);
    for (unsigned i = 0; i < options.threads; ++i) {
      workers.push_back(std::make_unique<Worker>(
          options, seed + i * 0x9e3779b97f4a7c15ULL, counters[i], [this] {
            return std::pair{accepted.load(std::memory_order_relaxed), requests()};
          }));
    }
    if (!options.tls_cert_file.empty()) tls = make_tls_context(options);
    asio::io_context& ioc = workers.front()->ioc;
    const tcp::endpoint wanted = resolve(options.host, options.port, ioc);
    acceptor.emplace(ioc);
    error_code ec;
    acceptor->open(wanted.protocol(), ec);
    if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->bind(wanted, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::system_error(ec, "echo: cannot listen on " + format_endpoint(wanted));
    const tcp::endpoint bound = acceptor->local_endpoint();
    port = bound.port();
    address = format_endpoint(bound);
    accept_retry.emplace(ioc);
    accept();  // completes once the io_context runs; the kernel queues connections until then
  }

  ~Impl() { stop(); }

  void accept() {
    Worker& target = *workers[next_worker];
    next_worker = (next_worker + 1) % workers.size();
    acceptor->async_accept(target.ioc, [this, &target](error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {  // e.g. out of file descriptors: keep listening, try again shortly
        accept_retry->expires_after(kAcceptRetry);
        accept_retry->async_wait([this](error_code ec) {
          if (!ec) accept();
        });
        return;
      }
      accepted.fetch_add(1, std::memory_order_relaxed);
      asio::dispatch(target.ioc, [this, &target, socket = std::move(socket)]() mutable {
        if (tls) {
          using TlsStream = asio::ssl::stream<tcp::socket>;
          std::make_shared<Session<TlsStream>>(TlsStream(std::move(socket), *tls), target)
              ->start();
        } else {
          std::make_shared<Session<tcp::socket>>(std::move(socket), target)->start();
        }
      });
      accept();
    });
  }

  void launch(unsigned first_worker) {  // with `mutex` held
    if (state != State::kIdle) throw std::logic_error("echo: server already started or stopped");
    state = State::kRunning;
    for (unsigned i = first_worker; i < workers.size(); ++i) {
      threads.emplace_back([w = workers[i].get()] { w->ioc.run(); });
    }
  }

  void run() {
    {
      std::lock_guard lock(mutex);
      launch(1);
      ++runners;
    }
    struct Done {
      Impl& impl;
      ~Done() {
        {
          std::lock_guard lock(impl.mutex);
          --impl.runners;
        }
        impl.runners_done.notify_all();
        impl.stop();
      }
    } done{*this};
    workers.front()->ioc.run();  // stop() waits for `runners` before destroying workers
  }

  void start() {
    std::lock_guard lock(mutex);
    launch(0);
  }

  void stop() {
    std::lock_guard stopping(stop_mutex);  // a second caller waits for the first to finish
    std::vector<std::thread> joinable;
    {
      std::lock_guard lock(mutex);
      if (state == State::kStopped) return;
      state = State::kStopped;
      for (auto& w : workers) w->ioc.stop();
      joinable.swap(threads);
    }
    for (auto& t : joinable) t.join();
    {
      std::unique_lock lock(mutex);
      runners_done.wait(lock, [this] { return runners == 0; });
    }
    // No thread runs any io_context now. The acceptor and its pending accept (which holds a
    // socket of another worker) go first, then each worker with its sessions.
    accept_retry.reset();
    acceptor.reset();
    for (auto& w : workers) w.reset();
    workers.clear();
  }

  std::uint64_t requests() const {
    std::uint64_t sum = 0;
    for (unsigned i = 0; i < options.threads; ++i) {
      sum += counters[i].value.load(std::memory_order_relaxed);
    }
    return sum;
  }

  const EchoOptions options;
  std::unique_ptr<asio::ssl::context> tls;  // --tls-cert/--tls-key; shared by the workers
  std::unique_ptr<RequestCounter[]> counters;
  std::vector<std::unique_ptr<Worker>> workers;
  std::optional<tcp::acceptor> acceptor;  // on workers[0]
  std::optional<asio::steady_timer> accept_retry;
  std::size_t next_worker = 0;  // acceptor thread only
  std::uint16_t port = 0;
  std::string address;
  // Test and diagnostic only: incremented by the acceptor thread, read by any thread. Once per
  // connection, so this shared atomic never touches the request path.
  std::atomic<std::uint64_t> accepted{0};

  std::mutex mutex;  // guards state, threads, runners
  std::mutex stop_mutex;
  std::condition_variable runners_done;
  State state = State::kIdle;
  int runners = 0;  // threads inside run()
  std::vector<std::thread> threads;
};

std::expected<std::unique_ptr<EchoServer>, std::string> EchoServer::create(EchoOptions options) {
  try {
    return std::make_unique<EchoServer>(std::move(options));
  } catch (const std::exception& e) {
    return std::unexpected(std::string(e.what()));
  }
}

EchoServer::EchoServer(EchoOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
EchoServer::~EchoServer() = default;

void EchoServer::run() { impl_->run(); }
void EchoServer::start() { impl_->start(); }
void EchoServer::stop() { impl_->stop(); }
std::uint16_t EchoServer::port() const noexcept { return impl_->port; }
std::string EchoServer::address() const { return impl_->address; }
const EchoOptions& EchoServer::options() const noexcept { return impl_->options; }
std::uint64_t EchoServer::accepted_connections() const noexcept {
  return impl_->accepted.load(std::memory_order_relaxed);
}
std::uint64_t EchoServer::requests() const noexcept { return impl_->requests(); }

}  // namespace revgate::echo
