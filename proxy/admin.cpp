#include "proxy/admin.h"

#include <optional>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <boost/beast/http/parser.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "api/api.h"

namespace revgate::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

// A PATCH body is one service's traffic list; anything near this size is not one.
constexpr std::uint64_t kMaxRequestBody = 1024 * 1024;
// A streamed body's pieces: small enough to stay in cache, large enough for few writes.
constexpr std::size_t kStreamChunkBytes = 256 * 1024;

// One admin connection: read a request, answer it, repeat while keep-alive.
class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(Socket socket, std::shared_ptr<const AdminHandlers> handlers)
      : socket_(std::move(socket)), handlers_(std::move(handlers)) {}

  void read() {
    parser_.emplace();
    parser_->body_limit(kMaxRequestBody);
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec == http::error::body_limit) {
                         self->request_ = self->parser_->release();
                         self->request_.keep_alive(false);
                         return self->respond(http::status::payload_too_large, "text/plain",
                                              "request body too large\n");
                       }
                       if (ec) return self->close();
                       self->request_ = self->parser_->release();
                       self->handle();
                     });
  }

 private:
  void handle() {
    const auto target = request_.target();
    const auto path = target.substr(0, target.find('?'));
    const auto method = request_.method();
    if (handlers_->snapshot && api::is_api_path(std::string_view(path.data(), path.size()))) {
      if (method == http::verb::patch && handlers_->patch) {
        const auto content_type = request_[http::field::content_type];
        return handlers_->patch(
            std::string_view(target.data(), target.size()),
            std::string_view(content_type.data(), content_type.size()), request_.body(),
            [self = shared_from_this()](AdminReply reply) { self->respond(reply); });
      }
      // The API answers its own 404/405 as Kubernetes Status objects.
      const auto method_text = request_.method_string();
      auto answer = api::handle(handlers_->snapshot(),
                                std::string_view(method_text.data(), method_text.size()),
                                std::string_view(target.data(), target.size()));
      return respond(static_cast<http::status>(answer.status), "application/json",
                     api::to_pretty_json(answer.body));
    }
    if (path == "/reload" && handlers_->reload) {
      if (method != http::verb::post) {
        return respond(http::status::method_not_allowed, "text/plain", "POST only\n");
      }
      return handlers_->reload(
          [self = shared_from_this()](AdminReply reply) { self->respond(reply); });
    }
    if (method != http::verb::get && method != http::verb::head) {
      return respond(http::status::method_not_allowed, "text/plain", "GET only\n");
    }
    if (path == "/healthz") return respond(http::status::ok, "text/plain", "ok\n");
    if (path == "/readyz") {
      return handlers_->ready()
                 ? respond(http::status::ok, "text/plain", "ready\n")
                 : respond(http::status::service_unavailable, "text/plain", "not ready\n");
    }
    if (path == "/metrics") {
      return handlers_->metrics([self = shared_from_this()](BodySource text) {
        self->stream(http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                     std::move(text));
      });
    }
    respond(http::status::not_found, "text/plain", "not found\n");
  }

  void respond(AdminReply& reply) {
    respond(static_cast<http::status>(reply.status), reply.content_type, std::move(reply.body));
  }

  void respond(http::status status, std::string_view content_type, std::string body) {
    response_ = http::response<http::string_body>(status, request_.version());
    response_.set(http::field::content_type, content_type);
    response_.body() = std::move(body);
    response_.keep_alive(request_.keep_alive());
    response_.prepare_payload();
    if (request_.method() == http::verb::head) response_.body().clear();
    http::async_write(socket_, response_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec || !self->response_.keep_alive()) return self->close();
                        self->read();
                      });
  }

  // A body of unknown length in chunked encoding, one piece in memory at a time, each written
  // before the next is produced (the client's pace sets the scrape's).
  void stream(http::status status, std::string_view content_type, BodySource source) {
    if (request_.version() < 11 || request_.method() == http::verb::head) {
      // No chunked encoding in HTTP/1.0; HEAD wants the length of what GET would send.
      std::string body;
      while (source(body, SIZE_MAX)) {
      }
      return respond(status, content_type, std::move(body));
    }
    source_ = std::move(source);
    stream_head_.emplace(status, 11);
    stream_head_->set(http::field::content_type, content_type);
    stream_head_->keep_alive(request_.keep_alive());
    stream_head_->chunked(true);
    stream_serializer_.emplace(*stream_head_);
    http::async_write_header(socket_, *stream_serializer_,
                             [self = shared_from_this()](beast::error_code ec, std::size_t) {
                               if (ec) return self->close();
                               self->write_chunk();
                             });
  }

  void write_chunk() {
    chunk_.clear();
    const bool more = source_(chunk_, kStreamChunkBytes);
    auto next = [self = shared_from_this(), more](beast::error_code ec, std::size_t) {
      if (ec) return self->close();
      if (more) return self->write_chunk();
      self->end_stream();
    };
    if (chunk_.empty()) return next({}, 0);
    asio::async_write(socket_, http::make_chunk(asio::buffer(chunk_)), std::move(next));
  }

  void end_stream() {
    source_ = nullptr;  // the scrape's copies go now, not with the connection
    chunk_ = std::string();
    asio::async_write(socket_, http::make_chunk_last(),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec || !self->stream_head_->keep_alive()) return self->close();
                        self->stream_serializer_.reset();
                        self->stream_head_.reset();
                        self->read();
                      });
  }

  void close() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    socket_.close(ignored);
  }

  Socket socket_;
  std::shared_ptr<const AdminHandlers> handlers_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  // A streamed response (stream()): its head, the serializer that wrote it, the source of its
  // chunks and the chunk being written.
  std::optional<http::response<http::empty_body>> stream_head_;
  std::optional<http::response_serializer<http::empty_body>> stream_serializer_;
  BodySource source_;
  std::string chunk_;
};

}  // namespace

AdminReply reload_reply(bool applied, std::uint64_t generation,
                        const std::vector<std::string>& errors,
                        const std::vector<std::string>& warnings) {
  boost::json::object body;
  body["status"] = applied ? "applied" : "failed";
  body["generation"] = generation;
  boost::json::array list;
  for (const auto& error : errors) list.emplace_back(error);
  if (!applied) body["errors"] = std::move(list);
  boost::json::array notes;
  for (const auto& warning : warnings) notes.emplace_back(warning);
  body["warnings"] = std::move(notes);
  // 422 like the API's validation failures: the request was fine, the file it names is not.
  return {applied ? 200u : 422u, "application/json", api::to_pretty_json(body)};
}

AdminServer::AdminServer(Acceptor acceptor, AdminHandlers handlers)
    : acceptor_(std::move(acceptor)),
      handlers_(std::make_shared<const AdminHandlers>(std::move(handlers))) {}

void AdminServer::start() { accept(); }

void AdminServer::close() {
  beast::error_code ignored;
  acceptor_.close(ignored);
}

void AdminServer::accept() {
  acceptor_.async_accept([this](beast::error_code ec, Socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) std::make_shared<AdminSession>(std::move(socket), handlers_)->read();
    accept();
  });
}

}  // namespace revgate::proxy
