#include "echo/websocket_echo.h"

#include <memory>
#include <utility>

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

namespace revgate::echo {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = boost::asio::ip::tcp;
using beast::error_code;

template <class Stream>
class WebSocketEcho : public std::enable_shared_from_this<WebSocketEcho<Stream>> {
 public:
  WebSocketEcho(Stream stream, const std::string& revision)
      : ws_(std::move(stream)), revision_(revision) {}

  void accept(http::request<http::buffer_body> upgrade) {
    upgrade_ = std::move(upgrade);
    ws_.set_option(websocket::stream_base::decorator([revision = revision_](
                                                         websocket::response_type& response) {
      response.set("X-Revision", revision);
    }));
    ws_.read_message_max(64 * 1024 * 1024);
    ws_.async_accept(upgrade_, [self = this->shared_from_this()](error_code ec) {
      if (!ec) self->read();
    });
  }

 private:
  void read() {
    buffer_.clear();
    ws_.async_read(buffer_, [self = this->shared_from_this()](error_code ec, std::size_t) {
      if (ec) return;  // closed by the peer (or gone): Beast answered its close frame
      if (self->ws_.got_text() && beast::buffers_to_string(self->buffer_.data()) == "!close") {
        return self->ws_.async_close({websocket::close_code::normal, "bye"},
                                     [self](error_code) {});
      }
      self->ws_.text(self->ws_.got_text());
      self->ws_.async_write(self->buffer_.data(), [self](error_code write_ec, std::size_t) {
        if (!write_ec) self->read();
      });
    });
  }

  websocket::stream<Stream> ws_;
  std::string revision_;
  http::request<http::buffer_body> upgrade_;
  beast::flat_buffer buffer_;
};

}  // namespace

template <class Stream>
void serve_websocket(Stream stream, http::request<http::buffer_body> upgrade,
                     const std::string& revision) {
  std::make_shared<WebSocketEcho<Stream>>(std::move(stream), revision)
      ->accept(std::move(upgrade));
}

template void serve_websocket(tcp::socket, http::request<http::buffer_body>, const std::string&);
template void serve_websocket(boost::asio::ssl::stream<tcp::socket>,
                              http::request<http::buffer_body>, const std::string&);

}  // namespace revgate::echo
