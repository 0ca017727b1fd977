// What an nghttp2 session has queued, taken into one write buffer: the same for both ends
// (H2Connection to clients, H2Upstream to revisions), each with one write in flight at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <nghttp2/nghttp2.h>

namespace revgate::proxy {

enum class SessionOutput {
  kBytes,     // `out` holds bytes to write
  kNothing,   // nothing to send now
  kFinished,  // nothing to send or read any more (GOAWAY went out, or both sides are done)
  kError,     // the session failed: close the connection
};

// Fills `out` with up to about 64 KiB of the session's frames; the rest waits for the write's
// completion, so a peer that does not read holds back its own streams only, and memory stays
// bounded. An idle connection keeps no write buffer larger than `idle_capacity` (a busy one
// reuses its own).
inline SessionOutput take_session_output(nghttp2_session* session, std::string& out,
                                         std::size_t idle_capacity) {
  constexpr std::size_t kWriteBatch = 64 * 1024;
  out.clear();
  while (out.size() < kWriteBatch) {
    const std::uint8_t* data = nullptr;
    const auto n = nghttp2_session_mem_send(session, &data);
    if (n < 0) return SessionOutput::kError;
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  if (!out.empty()) return SessionOutput::kBytes;
  if (out.capacity() > idle_capacity) std::string().swap(out);
  return nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0
             ? SessionOutput::kFinished
             : SessionOutput::kNothing;
}

}  // namespace revgate::proxy
