// The stream ids an HTTP/2 client skipped. A client opens streams in increasing order and may
// leave ids out (RFC 9113 5.1.1: they are closed then); HEADERS on such an id later is "an
// unexpected stream identifier", a connection error. nghttp2 cannot tell such an id from one
// of a stream that ran and was closed (whose late frames it must ignore), so it ignores both;
// this remembers the gaps (the most recent kMaxGaps; clients rarely skip at all).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace revgate::proxy {

class SkippedStreamIds {
 public:
  static constexpr std::size_t kMaxGaps = 16;

  // A HEADERS frame on client stream `id` (odd) begins: false when the client skipped that id
  // before, i.e. the frame is a protocol error.
  bool headers_begin(std::int32_t id) noexcept {
    if (id > highest_) {
      if (id > highest_ + 2) {
        gaps_[next_ % kMaxGaps] = {highest_ + 2, id - 2};
        ++next_;
      }
      highest_ = id;
      return true;
    }
    const std::size_t kept = next_ < kMaxGaps ? next_ : kMaxGaps;
    for (std::size_t i = 0; i < kept; ++i) {
      if (gaps_[i].first <= id && id <= gaps_[i].last) return false;
    }
    return true;
  }

 private:
  struct Gap {
    std::int32_t first = 0;
    std::int32_t last = -1;
  };
  std::array<Gap, kMaxGaps> gaps_{};
  std::size_t next_ = 0;
  std::int32_t highest_ = -1;  // so that stream 1 skips nothing
};

}  // namespace revgate::proxy
