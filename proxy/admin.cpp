#include "proxy/admin.h"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "api/api.h"

namespace revgate::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

// One admin connection: read a request, answer it, repeat while keep-alive.
class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(Socket socket, std::shared_ptr<const AdminHandlers> handlers)
      : socket_(std::move(socket)), handlers_(std::move(handlers)) {}

  void read() {
    request_ = {};
    http::async_read(socket_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec) return self->close();
                       self->handle();
                     });
  }

 private:
  void handle() {
    const auto target = request_.target();
    const auto path = target.substr(0, target.find('?'));
    if (handlers_->snapshot && api::is_api_path(std::string_view(path.data(), path.size()))) {
      // The API answers its own 404/405 as Kubernetes Status objects.
      const auto method = request_.method_string();
      auto answer =
          api::handle(handlers_->snapshot(), std::string_view(method.data(), method.size()),
                      std::string_view(target.data(), target.size()));
      return respond(static_cast<http::status>(answer.status), "application/json",
                     api::to_pretty_json(answer.body));
    }
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      return respond(http::status::method_not_allowed, "text/plain", "GET only\n");
    }
    if (path == "/healthz") return respond(http::status::ok, "text/plain", "ok\n");
    if (path == "/readyz") {
      return handlers_->ready() ? respond(http::status::ok, "text/plain", "ready\n")
                                : respond(http::status::service_unavailable, "text/plain",
                                          "not ready\n");
    }
    if (path == "/metrics") {
      return handlers_->metrics([self = shared_from_this()](std::string text) {
        self->recycle_body_ = true;
        self->respond(http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                      std::move(text));
      });
    }
    respond(http::status::not_found, "text/plain", "not found\n");
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
                        if (self->recycle_body_) {
                          self->recycle_body_ = false;
                          if (self->handlers_->recycle) {
                            self->handlers_->recycle(std::move(self->response_.body()));
                          }
                        }
                        if (ec || !self->response_.keep_alive()) return self->close();
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
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  bool recycle_body_ = false;  // the body is a metrics text to hand back after the write
};

}  // namespace

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
