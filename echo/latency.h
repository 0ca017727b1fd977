// LogNormalDelay: the random reply delay of `revgate echo --delay-p50-ms A --delay-p99-ms B`, a
// log-normal distribution fitted to a median and a 99th percentile (service latencies are close to
// log-normal). Pure arithmetic, no state: each echo worker draws from it with its own PRNG.
#pragma once

#include <algorithm>
#include <cmath>
#include <expected>
#include <numbers>
#include <string>

namespace revgate::echo {

struct LogNormalDelay {
  // z of the standard normal's 99th percentile.
  static constexpr double kZ99 = 2.3263478740408408;

  double mu = 0.0;     // ln of the median, in ms
  double sigma = 0.0;  // 0 = always the median

  // exp(mu) = p50 and exp(mu + kZ99 * sigma) = p99. p50 == p99 gives a fixed delay.
  static std::expected<LogNormalDelay, std::string> fit(double p50_ms, double p99_ms) {
    if (!(p50_ms > 0.0) || !std::isfinite(p50_ms)) {
      return std::unexpected(std::string("echo: delay_p50_ms must be > 0"));
    }
    if (!(p99_ms >= p50_ms) || !std::isfinite(p99_ms)) {
      return std::unexpected(std::string("echo: delay_p99_ms must be >= delay_p50_ms"));
    }
    return LogNormalDelay{std::log(p50_ms), std::log(p99_ms / p50_ms) / kZ99};
  }

  // The q-quantile (0 < q < 1) is exp(mu + sigma * z_q); here only for q = 0.5 and 0.99.
  double p50_ms() const { return std::exp(mu); }
  double p99_ms() const { return std::exp(mu + kZ99 * sigma); }

  // One draw from two independent uniforms in [0, 1) (Box-Muller; the sine half is dropped).
  double draw_ms(double u1, double u2) const {
    if (sigma == 0.0) return std::exp(mu);
    const double r = std::sqrt(-2.0 * std::log(1.0 - u1));  // 1 - u1 is in (0, 1]
    const double z = r * std::cos(2.0 * std::numbers::pi * u2);
    return std::exp(mu + sigma * z);
  }
};

}  // namespace revgate::echo
