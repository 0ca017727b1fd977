#include "proxy/log.h"

#include <chrono>

#include <fmt/chrono.h>

namespace revgate::proxy {

void write_log_line(const char* level, const std::string& message) {
  const auto now = std::chrono::system_clock::now();
  const auto line = fmt::format("{:%Y-%m-%dT%H:%M:%S}Z revgate {}: {}\n",
                                std::chrono::floor<std::chrono::milliseconds>(now), level, message);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace revgate::proxy
