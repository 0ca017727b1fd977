// Unit tests of W3C trace context: traceparent validation (the spec's examples and every way to
// break one), generation (layout, flags, never all-zero ids) and the sampling decision.
#include "tracing/trace_context.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <string_view>

namespace revgate::tracing {
namespace {

constexpr std::string_view kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(ValidTraceparent, AcceptsTheSpecExamples) {
  EXPECT_TRUE(valid_traceparent(kValid));
  EXPECT_TRUE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
  EXPECT_TRUE(valid_traceparent("00-00000000000000000000000000000001-0000000000000001-ff"));
}

TEST(ValidTraceparent, RejectsAllZeroIds) {
  EXPECT_FALSE(valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
  EXPECT_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
}

TEST(ValidTraceparent, RejectsUppercaseAndNonHex) {
  EXPECT_FALSE(valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"));
  EXPECT_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"));
  EXPECT_FALSE(valid_traceparent("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"));
  EXPECT_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01"));
  EXPECT_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x"));
}

TEST(ValidTraceparent, RejectsWrongLayout) {
  EXPECT_FALSE(valid_traceparent(""));
  EXPECT_FALSE(valid_traceparent("00"));
  EXPECT_FALSE(valid_traceparent(kValid.substr(0, 54)));
  EXPECT_FALSE(valid_traceparent("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"));
  EXPECT_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01"));
  EXPECT_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01"));
  EXPECT_FALSE(valid_traceparent(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

TEST(ValidTraceparent, Version00HasNothingAfterTheFlags) {
  EXPECT_FALSE(valid_traceparent(std::string(kValid) + "-"));
  EXPECT_FALSE(valid_traceparent(std::string(kValid) + "-what-the-future-will-be-like"));
  EXPECT_FALSE(valid_traceparent(std::string(kValid) + " "));
}

TEST(ValidTraceparent, HigherVersionsAreForwardCompatible) {
  constexpr std::string_view kV1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  constexpr std::string_view kVfe = "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
  EXPECT_TRUE(valid_traceparent(kV1));
  EXPECT_TRUE(valid_traceparent(kVfe));
  EXPECT_TRUE(valid_traceparent(std::string(kV1) + "-what-the-future-will-be-like"));
  EXPECT_TRUE(valid_traceparent(std::string(kV1) + "-"));
  EXPECT_FALSE(valid_traceparent(std::string(kV1) + "x"));
  EXPECT_FALSE(valid_traceparent(std::string(kV1) + "1-abc"));
  // The known fields still follow version 00's rules.
  EXPECT_FALSE(valid_traceparent("01-00000000000000000000000000000000-00f067aa0ba902b7-01"));
  EXPECT_FALSE(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"));
}

TEST(ValidTraceparent, VersionFfIsInvalid) {
  EXPECT_FALSE(valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"));
}

TEST(MakeTraceparent, LayoutAndFlags) {
  char out[kTraceparentSize];
  std::string_view sampled =
      make_traceparent(0x4bf92f3577b34da6, 0xa3ce929d0e0e4736, 0x00f067aa0ba902b7, true, out);
  EXPECT_EQ(sampled, kValid);
  EXPECT_EQ(static_cast<const void*>(sampled.data()), static_cast<const void*>(out));
  std::string_view unsampled = make_traceparent(1, 2, 3, false, out);
  EXPECT_EQ(unsampled, "00-00000000000000010000000000000002-0000000000000003-00");
  EXPECT_TRUE(valid_traceparent(unsampled));
  EXPECT_EQ(make_traceparent(~0ull, ~0ull, ~0ull, true, out),
            "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01");
}

TEST(MakeTraceparent, NeverAllZeroIds) {
  char out[kTraceparentSize];
  std::string_view value = make_traceparent(0, 0, 0, true, out);
  EXPECT_TRUE(valid_traceparent(value)) << value;
  EXPECT_NE(value.substr(3, 32), std::string(32, '0'));
  EXPECT_NE(value.substr(36, 16), std::string(16, '0'));
  // Half-zero trace ids are fine as they are.
  EXPECT_EQ(make_traceparent(0, 5, 7, false, out),
            "00-00000000000000000000000000000005-0000000000000007-00");
  EXPECT_EQ(make_traceparent(5, 0, 7, false, out),
            "00-00000000000000050000000000000000-0000000000000007-00");
}

TEST(MakeTraceparent, RandomOnesAreValid) {
  std::mt19937_64 rng(42);
  char out[kTraceparentSize];
  for (int i = 0; i < 10'000; ++i) {
    std::string_view value = make_traceparent(rng(), rng(), rng(), i % 2 == 0, out);
    ASSERT_TRUE(valid_traceparent(value)) << value;
    ASSERT_EQ(value.back(), i % 2 == 0 ? '1' : '0');
  }
}

TEST(Sample, Bounds) {
  for (std::uint64_t r : {0ull, 1ull, 1ull << 63, ~0ull}) {
    EXPECT_FALSE(sample(0.0, r));
    EXPECT_FALSE(sample(-1.0, r));
    EXPECT_FALSE(sample(std::numeric_limits<double>::quiet_NaN(), r));
    EXPECT_TRUE(sample(1.0, r));
    EXPECT_TRUE(sample(2.0, r));
  }
  EXPECT_TRUE(sample(0.5, 0));
  EXPECT_TRUE(sample(0.5, (1ull << 63) - 1));
  EXPECT_FALSE(sample(0.5, 1ull << 63));
  EXPECT_FALSE(sample(0.5, ~0ull));
  EXPECT_TRUE(sample(0.01, 0));
  EXPECT_FALSE(sample(0.01, ~0ull));
}

TEST(Sample, RateIsTheShare) {
  std::mt19937_64 rng(7);
  for (double rate : {0.01, 0.1, 0.5, 0.9}) {
    constexpr int kDraws = 200'000;
    int hits = 0;
    for (int i = 0; i < kDraws; ++i) hits += sample(rate, rng()) ? 1 : 0;
    double share = double(hits) / kDraws;
    // Five standard deviations of a binomial share: a fixed seed makes this deterministic anyway.
    double tolerance = 5 * std::sqrt(rate * (1 - rate) / kDraws);
    EXPECT_NEAR(share, rate, tolerance) << rate;
  }
}

}  // namespace
}  // namespace revgate::tracing
