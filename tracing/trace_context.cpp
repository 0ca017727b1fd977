// W3C Trace Context: traceparent validation and generation, sampling. No state, no allocation.
#include "tracing/trace_context.h"

namespace revgate::tracing {
namespace {

constexpr char kHex[] = "0123456789abcdef";

constexpr bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// `s` is all lowercase hex digits; `nonzero` also asks for at least one digit other than '0'.
bool hex_field(std::string_view s, bool nonzero) {
  bool any_nonzero = false;
  for (char c : s) {
    if (!is_lower_hex(c)) return false;
    any_nonzero = any_nonzero || c != '0';
  }
  return !nonzero || any_nonzero;
}

void put_hex(std::uint64_t value, char* out) {
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[value & 0xf];
    value >>= 4;
  }
}

}  // namespace

bool valid_traceparent(std::string_view value) {
  if (value.size() < kTraceparentSize) return false;
  std::string_view version = value.substr(0, 2);
  if (!hex_field(version, false) || version == "ff") return false;
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') return false;
  if (!hex_field(value.substr(3, 32), true)) return false;   // trace-id
  if (!hex_field(value.substr(36, 16), true)) return false;  // parent-id
  if (!hex_field(value.substr(53, 2), false)) return false;  // trace-flags
  if (version == "00") return value.size() == kTraceparentSize;
  return value.size() == kTraceparentSize || value[kTraceparentSize] == '-';
}

std::string_view make_traceparent(std::uint64_t r1, std::uint64_t r2, std::uint64_t r3,
                                  bool sampled, char (&out)[kTraceparentSize]) {
  // Any fixed non-zero value will do: a zero draw has probability 2^-128 (2^-64 for r3).
  if (r1 == 0 && r2 == 0) r2 = 1;
  if (r3 == 0) r3 = 1;
  out[0] = '0';
  out[1] = '0';
  out[2] = '-';
  put_hex(r1, out + 3);
  put_hex(r2, out + 19);
  out[35] = '-';
  put_hex(r3, out + 36);
  out[52] = '-';
  out[53] = '0';
  out[54] = sampled ? '1' : '0';
  return {out, kTraceparentSize};
}

bool sample(double rate, std::uint64_t r) {
  if (!(rate > 0)) return false;  // also NaN
  if (rate >= 1) return true;
  // The top 53 bits of r as a uniform double in [0, 1).
  return static_cast<double>(r >> 11) * 0x1p-53 < rate;
}

}  // namespace revgate::tracing
