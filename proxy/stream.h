// A TCP socket, or TLS over it: the client side of a session on a TLS listener, and an upstream
// connection to an https:// endpoint. One type so the session's phases are written once; each
// call picks the layer with one branch. Used by its session's worker thread only.
#pragma once

#include <memory>
#include <utility>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "proxy/net.h"

namespace revgate::proxy {

class Stream {
 public:
  using executor_type = Executor;
  using TlsStream = boost::asio::ssl::stream<Socket>;

  explicit Stream(Socket socket) : socket_(std::move(socket)) {}

  // Before anything is read or written: from now on bytes go through TLS.
  void use_tls(boost::asio::ssl::context& context) {
    tls_ = std::make_unique<TlsStream>(std::move(socket_), context);
  }
  TlsStream* tls() { return tls_.get(); }

  // The TCP socket under it all: options, cancel, shutdown, close.
  Socket& socket() { return tls_ ? tls_->next_layer() : socket_; }
  executor_type get_executor() { return socket_.get_executor(); }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      socket_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    } else {
      socket_.async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

 private:
  Socket socket_;  // moved into tls_ by use_tls() (a moved-from socket keeps its executor)
  // On the heap: a TLS stream is ~400 bytes that a cleartext connection should not carry.
  std::unique_ptr<TlsStream> tls_;
};

}  // namespace revgate::proxy
