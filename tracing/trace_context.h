// W3C Trace Context (level 1) for requests that pass through: validating a `traceparent`, making
// a new one for a request that has none, and the sampling decision. Pure functions of their
// arguments (randomness is passed in by the caller's per-worker PRNG): any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace revgate::tracing {

// "00-" + 32 hex trace id + "-" + 16 hex parent id + "-" + 2 hex flags.
inline constexpr std::size_t kTraceparentSize = 55;

// True when `value` is a traceparent a W3C Trace Context level 1 receiver accepts:
// version 00: exactly `00-<trace-id>-<parent-id>-<flags>`, lowercase hex, the trace id (32) and
// parent id (16) not all zero; a higher version (01..fe): the first 55 characters follow that
// layout and anything after them starts with '-' (forward compatibility); version ff: invalid.
bool valid_traceparent(std::string_view value);

// A new version-00 traceparent in `out`, returned as a view of it: trace id from r1 and r2, parent
// (span) id from r3, flags 01 when `sampled` else 00. Ids are never all zero: a zero draw is
// replaced by a fixed non-zero value (W3C: all-zero ids are invalid).
std::string_view make_traceparent(std::uint64_t r1, std::uint64_t r2, std::uint64_t r3,
                                  bool sampled, char (&out)[kTraceparentSize]);

// True with probability `rate` for a uniformly random `r`: rate <= 0 never, rate >= 1 always.
bool sample(double rate, std::uint64_t r);

}  // namespace revgate::tracing
