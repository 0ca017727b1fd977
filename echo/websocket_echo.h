// WebSocket echo for `revgate echo` (Beast's websocket stream): every message comes back as it
// was sent, text or binary; the text message "!close" makes the server close (1000, "bye"),
// so that tests see a close from either side. The 101 carries X-Revision like every reply.
#pragma once

#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>

namespace revgate::echo {

// Takes over `stream` (a TCP socket, or TLS over one), whose `upgrade` request
// (beast::websocket::is_upgrade) has been read.
template <class Stream>
void serve_websocket(Stream stream,
                     boost::beast::http::request<boost::beast::http::buffer_body> upgrade,
                     const std::string& revision);

extern template void serve_websocket(boost::asio::ip::tcp::socket,
                                     boost::beast::http::request<boost::beast::http::buffer_body>,
                                     const std::string&);
extern template void serve_websocket(
    boost::asio::ssl::stream<boost::asio::ip::tcp::socket>,
    boost::beast::http::request<boost::beast::http::buffer_body>, const std::string&);

}  // namespace revgate::echo
