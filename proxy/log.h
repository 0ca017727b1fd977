// Process log lines on stderr: "revgate: LEVEL: message". Any thread; each line is written with
// one call so lines of different threads do not interleave.
#pragma once

#include <cstdio>
#include <string>

#include <fmt/core.h>

namespace revgate::proxy {

void write_log_line(const char* level, const std::string& message);

template <typename... Args>
void log_info(fmt::format_string<Args...> format, Args&&... args) {
  write_log_line("info", fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void log_warning(fmt::format_string<Args...> format, Args&&... args) {
  write_log_line("warning", fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void log_error(fmt::format_string<Args...> format, Args&&... args) {
  write_log_line("error", fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace revgate::proxy
