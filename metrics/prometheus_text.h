// The Prometheus text exposition (format 0.0.4) of a scrape, written piece by piece: a scrape of
// 10,000 services is hundreds of MiB of text, which the admin listener streams through one
// small buffer (chunked encoding) instead of building it whole. Each piece ends at a line end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "metrics/metrics.h"

namespace revgate::metrics {

class PrometheusText {
 public:
  // Reads the three until the text is complete: they must outlive this object.
  PrometheusText(const WorkerShard& merged, const std::vector<Destination>& catalog,
                 const ProcessView& process);

  // Appends whole lines to `out` until it holds at least `until_size` bytes or the text ends;
  // false once the whole text has been written.
  bool write_next(std::string& out, std::size_t until_size);

  // About the size of the whole text, for a caller that wants it in one string.
  std::size_t estimated_size() const { return estimated_size_; }

 private:
  struct Span {
    std::size_t begin = 0;
    std::size_t size = 0;
  };
  enum class Stage : std::uint8_t { start, requests, histograms, rest, done };

  void write_request_line(std::string& out, std::size_t k) const;
  void write_histogram(std::string& out, std::size_t family, std::size_t k) const;
  void write_rest(std::string& out) const;

  const WorkerShard& merged_;
  const std::vector<Destination>& catalog_;
  const ProcessView& process_;
  // Series in a stable order (destination, code, flags), and the label block of each (from
  // `reporter` to `response_flags`), written once into labels_ and copied into every line.
  std::vector<std::uint32_t> order_;
  std::string labels_;
  std::vector<Span> label_spans_;
  std::size_t estimated_size_ = 0;

  Stage stage_ = Stage::start;
  std::size_t family_ = 0;  // which histogram, during Stage::histograms
  std::size_t next_ = 0;    // the next series of the current family
};

// The whole text in one string (tests, benchmarks, HTTP/1.0 and HEAD scrapes).
std::string render_prometheus(const WorkerShard& merged, const std::vector<Destination>& catalog,
                              const ProcessView& process);

}  // namespace revgate::metrics
