// The single translation unit that compiles Boost.Asio, Asio SSL and Beast (separate
// compilation), so that a change elsewhere never recompiles them.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
