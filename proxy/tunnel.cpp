#include "proxy/tunnel.h"

#include <utility>

#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>

namespace revgate::proxy {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

Tunnel::Tunnel(Worker& worker, Stream& client, std::shared_ptr<UpstreamConnection> upstream)
    : worker_(worker), client_(client), upstream_(std::move(upstream)) {
  up_.from = &client_;
  up_.to = &upstream_->stream;
  down_.from = &upstream_->stream;
  down_.to = &client_;
}

Tunnel::~Tunnel() {
  for (Direction* d : {&up_, &down_}) {
    if (d->chunk) worker_.release_chunk(std::move(d->chunk));
  }
}

void Tunnel::start(std::string to_upstream, std::string to_client, std::shared_ptr<void> keep,
                   Done done) {
  done_ = std::move(done);
  last_activity_ = Clock::now();
  up_.pending = std::move(to_upstream);
  down_.pending = std::move(to_client);
  // Synchronous reads on these sockets must not block (see write()); Asio's async operations
  // are not affected.
  for (Stream* stream : {&client_, &upstream_->stream}) {
    error_code ignored;
    if (stream->tls() == nullptr) stream->socket().non_blocking(true, ignored);
  }
  for (Direction* d : {&up_, &down_}) {
    if (!d->pending.empty()) {
      write(*d, keep);
    } else {
      wait(*d, keep);
    }
  }
}

void Tunnel::wait(Direction& d, const Keep& keep) {
  if (d.from->tls() != nullptr) return read(d, keep);  // OpenSSL may hold bytes already read
  d.from->socket().async_wait(Socket::wait_read, [this, &d, keep](error_code ec) {
    if (finished_) return;
    if (ec) return finish(true);
    read(d, keep);
  });
}

void Tunnel::read(Direction& d, const Keep& keep) {
  if (!d.chunk) d.chunk = worker_.acquire_chunk();
  d.from->async_read_some(
      asio::buffer(d.chunk.get(), Worker::kChunkSize), [this, &d, keep](error_code ec, std::size_t n) {
        if (finished_) return;
        if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) return end(d);
        if (ec) return finish(true);
        d.fill = n;
        write(d, keep);
      });
}

void Tunnel::write(Direction& d, const Keep& keep) {
  last_activity_ = Clock::now();
  const auto buffer = d.pending.empty() ? asio::const_buffer(d.chunk.get(), d.fill)
                                        : asio::const_buffer(d.pending.data(), d.pending.size());
  asio::async_write(*d.to, buffer, [this, &d, keep](error_code ec, std::size_t n) {
    if (finished_) return;
    if (ec) return finish(true);
    last_activity_ = Clock::now();
    d.bytes += n;
    if (!d.pending.empty()) {
      std::string().swap(d.pending);
      return wait(d, keep);
    }
    d.fill = 0;
    if (d.from->tls() != nullptr) return read(d, keep);
    // Cleartext: read on at once (the socket is non-blocking). What came meanwhile goes out with
    // the same chunk; nothing yet gives the chunk back and waits for readability, so an idle
    // direction holds no buffer and a busy one pays one read per message, as nginx does.
    error_code read_ec;
    const std::size_t more =
        d.from->socket().read_some(asio::buffer(d.chunk.get(), Worker::kChunkSize), read_ec);
    if (read_ec == asio::error::would_block || read_ec == asio::error::try_again) {
      worker_.release_chunk(std::move(d.chunk));
      return wait(d, keep);
    }
    if (read_ec == asio::error::eof) return end(d);
    if (read_ec) return finish(true);
    d.fill = more;
    write(d, keep);
  });
}

void Tunnel::end(Direction& d) {
  d.ended = true;
  if (d.chunk) worker_.release_chunk(std::move(d.chunk));
  Direction& other = &d == &up_ ? down_ : up_;
  if (other.ended || d.to->tls() != nullptr || d.from->tls() != nullptr) return finish(false);
  // Half-close: the receiver learns that no more is coming; the other direction goes on.
  error_code ignored;
  d.to->socket().shutdown(Socket::shutdown_send, ignored);
}

void Tunnel::finish(bool failed) {
  if (finished_) return;
  finished_ = true;
  close_sockets();
  if (done_) std::exchange(done_, nullptr)(failed);
}

void Tunnel::stop() {
  if (finished_) return;
  finished_ = true;
  done_ = nullptr;
  close_sockets();
}

void Tunnel::close_sockets() {
  error_code ignored;
  upstream_->stream.socket().close(ignored);
  client_.socket().close(ignored);
}

}  // namespace revgate::proxy
