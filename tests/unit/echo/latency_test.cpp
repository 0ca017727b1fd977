// LogNormalDelay (echo/latency.h): the fit to a median and a 99th percentile, and the draws.
#include "echo/latency.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

namespace {

using revgate::echo::LogNormalDelay;

// The same generator family as the echo workers use (splitmix64), seeded per test.
struct Uniform {
  std::uint64_t state;
  double next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<double>((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
  }
};

double percentile(std::vector<double>& v, double q) {
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

std::vector<double> draws(const LogNormalDelay& d, std::size_t n, std::uint64_t seed) {
  Uniform u{seed};
  std::vector<double> out(n);
  for (auto& x : out) x = d.draw_ms(u.next(), u.next());
  return out;
}

TEST(LogNormalDelay, FitsTheAskedPercentiles) {
  auto d = LogNormalDelay::fit(2.0, 20.0);
  ASSERT_TRUE(d.has_value());
  EXPECT_NEAR(d->p50_ms(), 2.0, 1e-9);
  EXPECT_NEAR(d->p99_ms(), 20.0, 1e-9);
}

TEST(LogNormalDelay, ObservedPercentilesOfManyDrawsAreNearTheAskedOnes) {
  struct Case {
    double p50, p99;
  };
  for (const Case c : {Case{2.0, 20.0}, Case{1.0, 1.5}, Case{0.2, 50.0}, Case{10.0, 30.0}}) {
    auto d = LogNormalDelay::fit(c.p50, c.p99);
    ASSERT_TRUE(d.has_value());
    auto v = draws(*d, 400'000, 12345);
    // Sampling error at n = 400,000: about 0.3% at p50 and 1-2% at p99 for these spreads.
    EXPECT_NEAR(percentile(v, 0.50), c.p50, c.p50 * 0.02) << c.p50 << "/" << c.p99;
    EXPECT_NEAR(percentile(v, 0.99), c.p99, c.p99 * 0.05) << c.p50 << "/" << c.p99;
    EXPECT_GT(*std::min_element(v.begin(), v.end()), 0.0);
  }
}

TEST(LogNormalDelay, IsATrueDistributionNotAFixedDelay) {
  auto d = LogNormalDelay::fit(2.0, 20.0);
  auto v = draws(*d, 100'000, 7);
  const auto over_p99 = std::count_if(v.begin(), v.end(), [](double x) { return x > 20.0; });
  EXPECT_NEAR(static_cast<double>(over_p99) / 100'000.0, 0.01, 0.002);
  EXPECT_LT(percentile(v, 0.10), 1.0);  // p10 = 2 * exp(-1.2816 * 0.99) = 0.56 ms
}

TEST(LogNormalDelay, EqualPercentilesGiveAFixedDelay) {
  auto d = LogNormalDelay::fit(1.5, 1.5);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->sigma, 0.0);
  Uniform u{1};
  for (int i = 0; i < 100; ++i) EXPECT_DOUBLE_EQ(d->draw_ms(u.next(), u.next()), 1.5);
}

TEST(LogNormalDelay, RefusesImpossiblePercentiles) {
  EXPECT_FALSE(LogNormalDelay::fit(0.0, 10.0).has_value());
  EXPECT_FALSE(LogNormalDelay::fit(-1.0, 10.0).has_value());
  EXPECT_FALSE(LogNormalDelay::fit(10.0, 5.0).has_value());
  EXPECT_EQ(LogNormalDelay::fit(10.0, 5.0).error(), "echo: delay_p99_ms must be >= delay_p50_ms");
}

TEST(LogNormalDelay, ExtremeUniformsStayFinite) {
  auto d = LogNormalDelay::fit(2.0, 20.0);
  EXPECT_TRUE(std::isfinite(d->draw_ms(0.0, 0.0)));
  EXPECT_TRUE(std::isfinite(d->draw_ms(1.0 - 0x1.0p-53, 0.5)));
}

}  // namespace
