#include "echo/h2_echo.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace revgate::echo {

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr std::string_view kUnary = "/revgate.Echo/Unary";
constexpr std::string_view kBidi = "/revgate.Echo/Stream";
constexpr std::size_t kGrpcPrefix = 5;  // compressed flag, 4-byte big-endian length

nghttp2_nv header(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

template <class Transport>
class H2Echo : public std::enable_shared_from_this<H2Echo<Transport>> {
 public:
  H2Echo(Transport stream, H2EchoContext context)
      : socket_(std::move(stream)), context_(std::move(context)) {}
  ~H2Echo() {
    if (session_ != nullptr) nghttp2_session_del(session_);
  }

  void start(std::string received) {
    nghttp2_session_callbacks* callbacks = nullptr;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_server_new(&session_, callbacks, this);
    nghttp2_session_callbacks_del(callbacks);
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 1);
    if (!feed(received.data(), received.size())) return close();
    flush();
    read();
  }

 private:
  enum class Kind { plain, unary, bidi, refused };
  struct Stream {
    std::string method, path, authority;
    std::vector<std::pair<std::string, std::string>> headers;  // regular fields, as received
    std::uint64_t body_bytes = 0;
    bool grpc = false;
    Kind kind = Kind::plain;
    std::string partial;  // gRPC: bytes of a message not complete yet
    std::string out;      // response body bytes not yet taken by nghttp2
    std::size_t out_taken = 0;
    bool out_done = false;  // nothing more will be appended to `out`
    bool responded = false;
    bool octets = false;  // /_echo/bytes/N
    std::string content_length;
    unsigned status = 200;                        // /_echo/status/NNN
    std::string status_text;
    std::unique_ptr<asio::steady_timer> delay;  // /_echo/delay/MS
  };

  static H2Echo& self(void* user_data) { return *static_cast<H2Echo*>(user_data); }
  Stream* find(std::int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : &it->second;
  }

  bool feed(const char* data, std::size_t size) {
    const auto used =
        nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), size);
    return used >= 0;
  }

  void read() {
    socket_.async_read_some(asio::buffer(in_), [keep = this->shared_from_this()](
                                                   error_code ec, std::size_t n) {
      if (ec) return keep->close();
      if (!keep->feed(keep->in_.data(), n)) return keep->close();
      keep->flush();
      if (keep->lowest().is_open()) keep->read();
    });
  }

  // Everything nghttp2 has to send, one write at a time.
  void flush() {
    if (writing_ || session_ == nullptr) return;
    for (;;) {
      const uint8_t* data = nullptr;
      const auto n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    if (out_.empty()) {
      if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) close();
      return;
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_),
                      [keep = this->shared_from_this()](error_code ec, std::size_t) {
                        keep->writing_ = false;
                        keep->out_.clear();
                        if (ec) return keep->close();
                        keep->flush();
                      });
  }

  tcp::socket& lowest() { return boost::beast::get_lowest_layer(socket_); }

  void close() {
    error_code ignored;
    lowest().close(ignored);
  }

  // ---- nghttp2 callbacks (user_data is this)

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      self(user_data).streams_[frame->hd.stream_id];
    }
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name_bytes,
                       size_t name_size, const uint8_t* value_bytes, size_t value_size, uint8_t,
                       void* user_data) {
    Stream* s = self(user_data).find(frame->hd.stream_id);
    if (s == nullptr) return 0;  // trailers of a stream already answered, say
    const std::string_view name(reinterpret_cast<const char*>(name_bytes), name_size);
    std::string value(reinterpret_cast<const char*>(value_bytes), value_size);
    if (name == ":method") {
      s->method = std::move(value);
    } else if (name == ":path") {
      s->path = std::move(value);
    } else if (name == ":authority") {
      s->authority = std::move(value);
    } else if (!name.starts_with(':')) {
      if (name == "content-type" && value.starts_with("application/grpc")) s->grpc = true;
      s->headers.emplace_back(std::string(name), std::move(value));
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& echo = self(user_data);
    const auto id = frame->hd.stream_id;
    Stream* s = echo.find(id);
    if (s == nullptr) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      echo.context_.counted();
      if (s->grpc) {
        if (s->path == kUnary) {
          s->kind = Kind::unary;
        } else if (s->path == kBidi) {
          s->kind = Kind::bidi;
          echo.respond(id, *s);  // the response starts now; messages follow as they come
        } else {
          s->kind = Kind::refused;
          echo.refuse_grpc(id);
          return 0;
        }
      }
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
      echo.on_request_end(id, *s);
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data,
                           size_t size, void* user_data) {
    auto& echo = self(user_data);
    Stream* s = echo.find(id);
    if (s == nullptr) return 0;
    s->body_bytes += size;
    if (!s->grpc) return 0;  // counted, not kept
    s->partial.append(reinterpret_cast<const char*>(data), size);
    // Whole messages go back as they came; a partial one waits for the rest.
    std::size_t at = 0;
    while (s->partial.size() - at >= kGrpcPrefix) {
      const auto* p = reinterpret_cast<const unsigned char*>(s->partial.data() + at);
      const std::size_t length = (std::size_t{p[1]} << 24) | (std::size_t{p[2]} << 16) |
                                 (std::size_t{p[3]} << 8) | std::size_t{p[4]};
      if (s->partial.size() - at < kGrpcPrefix + length) break;
      s->out.append(s->partial, at, kGrpcPrefix + length);
      at += kGrpcPrefix + length;
    }
    s->partial.erase(0, at);
    if (at != 0 && s->kind == Kind::bidi) nghttp2_session_resume_data(echo.session_, id);
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t, void* user_data) {
    self(user_data).streams_.erase(id);
    return 0;
  }

  static ssize_t read_body(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source*, void* user_data) {
    Stream* s = self(user_data).find(id);
    if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const std::size_t left = s->out.size() - s->out_taken;
    const std::size_t n = std::min(left, length);
    std::memcpy(buf, s->out.data() + s->out_taken, n);
    s->out_taken += n;
    if (s->out_taken == s->out.size()) {
      s->out.clear();
      s->out_taken = 0;
      if (!s->out_done) {
        return n != 0 ? static_cast<ssize_t>(n) : static_cast<ssize_t>(NGHTTP2_ERR_DEFERRED);
      }
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (s->grpc) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        const nghttp2_nv trailers[] = {header("grpc-status", "0")};
        nghttp2_submit_trailer(session, id, trailers, 1);
      }
    }
    return static_cast<ssize_t>(n);
  }

  // ---- answers

  void on_request_end(std::int32_t id, Stream& s) {
    if (s.kind == Kind::refused) return;  // answered already, trailers only
    if (s.kind == Kind::plain && bytes_asked(s)) {
      // /_echo/bytes/N: N bytes of the HTTP/1.1 echo's pattern ('a' + i % 26).
      for (std::size_t i = 0; i < s.out.size(); ++i) s.out[i] = static_cast<char>('a' + i % 26);
    } else if (s.kind == Kind::plain) {
      json::object headers;
      for (const auto& [name, value] : s.headers) {
        auto* seen = headers.if_contains(name);
        if (seen == nullptr) {
          headers[name] = value;
        } else {
          seen->as_string().append(", ").append(value);  // joined, as the HTTP/1.1 echo does
        }
      }
      if (!headers.contains("host")) headers["host"] = s.authority;
      json::object body{{"revision", context_.revision}, {"method", s.method},
                        {"target", s.path},             {"version", "HTTP/2"},
                        {"headers", std::move(headers)}, {"body_bytes", s.body_bytes},
                        {"remote", context_.remote}};
      s.out = json::serialize(body);
    }
    if (s.kind == Kind::plain || s.kind == Kind::unary) {
      // /_echo/delay/MS, else the configured delay (as for HTTP/1.1 answers).
      std::uint64_t delay_us = s.kind == Kind::plain ? special(s) * 1000 : 0;
      if (delay_us == 0 && context_.next_delay_us) delay_us = context_.next_delay_us();
      if (delay_us != 0) {
        s.out_done = true;
        s.delay = std::make_unique<asio::steady_timer>(socket_.get_executor());
        s.delay->expires_after(std::chrono::microseconds(delay_us));
        s.delay->async_wait([keep = this->shared_from_this(), id](error_code ec) {
          Stream* delayed = keep->find(id);
          if (ec || delayed == nullptr) return;  // the client reset the stream meanwhile
          keep->respond(id, *delayed);
          keep->flush();
        });
        return;
      }
    }
    s.out_done = true;
    if (!s.responded) return respond(id, s);
    nghttp2_session_resume_data(session_, id);
  }

  // /_echo/bytes/N (N up to 64 MiB): sizes s.out for the body and marks it octets.
  static bool bytes_asked(Stream& s) {
    constexpr std::string_view kPrefix = "/_echo/bytes/";
    const std::string_view path = std::string_view(s.path).substr(0, s.path.find('?'));
    if (!path.starts_with(kPrefix)) return false;
    const auto digits = path.substr(kPrefix.size());
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec != std::errc() || end != digits.data() + digits.size() || n > (64u << 20)) return false;
    s.out.resize(n);
    s.octets = true;
    return true;
  }

  // The HTTP/1.1 echo's /_echo/status/NNN and /_echo/delay/MS (the others are HTTP/1.1 only):
  // sets the status; returns the delay in ms (0: answer now).
  static std::uint64_t special(Stream& s) {
    const std::string_view path = std::string_view(s.path).substr(0, s.path.find('?'));
    std::uint64_t n = 0;
    const auto number = [&](std::string_view prefix, std::uint64_t max) {
      if (!path.starts_with(prefix)) return false;
      const auto digits = path.substr(prefix.size());
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      return ec == std::errc() && end == digits.data() + digits.size() && n <= max;
    };
    if (number("/_echo/status/", 599) && n >= 200) s.status = static_cast<unsigned>(n);
    if (number("/_echo/delay/", 3'600'000)) return n;
    return 0;
  }

  void respond(std::int32_t id, Stream& s) {
    s.responded = true;
    s.status_text = std::to_string(s.status);
    std::vector<nghttp2_nv> fields = {header(":status", s.status_text),
                                      header("x-revision", context_.revision)};
    if (s.grpc) {
      fields.push_back(header("content-type", "application/grpc"));
    } else {
      s.content_length = std::to_string(s.out.size());
      fields.push_back(
          header("content-type", s.octets ? "application/octet-stream" : "application/json"));
      fields.push_back(header("content-length", s.content_length));
    }
    nghttp2_data_provider body{};
    body.read_callback = read_body;
    nghttp2_submit_response(session_, id, fields.data(), fields.size(), &body);
  }

  // An unknown gRPC method: trailers only (RFC: gRPC over HTTP/2, "Trailers-Only").
  void refuse_grpc(std::int32_t id) {
    const nghttp2_nv fields[] = {header(":status", "200"), header("x-revision", context_.revision),
                                 header("content-type", "application/grpc"),
                                 header("grpc-status", "12"),
                                 header("grpc-message", "unknown method")};
    nghttp2_submit_response(session_, id, fields, std::size(fields), nullptr);
    if (Stream* s = find(id)) s->responded = true;
  }

  Transport socket_;
  H2EchoContext context_;
  nghttp2_session* session_ = nullptr;
  std::array<char, 16 * 1024> in_{};
  std::string out_;
  bool writing_ = false;
  std::map<std::int32_t, Stream> streams_;
};

}  // namespace

template <class Transport>
void serve_http2(Transport stream, std::string received, H2EchoContext context) {
  std::make_shared<H2Echo<Transport>>(std::move(stream), std::move(context))
      ->start(std::move(received));
}

template void serve_http2(tcp::socket, std::string, H2EchoContext);
template void serve_http2(boost::asio::ssl::stream<tcp::socket>, std::string, H2EchoContext);

}  // namespace revgate::echo
