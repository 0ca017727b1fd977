// read_process_stats(): the process_* figures Prometheus client libraries export, from /proc.
// Any thread; called at scrape time only.
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "metrics/metrics.h"

namespace revgate::metrics {

namespace {

double boot_time_seconds() {
  std::ifstream stat("/proc/stat");
  std::string key;
  double value = 0;
  while (stat >> key) {
    if (key == "btime") {
      stat >> value;
      return value;
    }
    stat.ignore(1 << 20, '\n');
  }
  return 0;
}

std::uint64_t count_open_fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  std::uint64_t n = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n > 0 ? n - 1 : 0;  // not the descriptor opendir holds
}

}  // namespace

ProcessStats read_process_stats() {
  ProcessStats stats;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  std::ifstream file("/proc/self/stat");
  std::string line;
  if (std::getline(file, line)) {
    // Fields after the command name, which is in parentheses and may hold anything.
    const auto close = line.rfind(')');
    if (close != std::string::npos) {
      std::istringstream rest(line.substr(close + 2));
      std::string field;
      // rest starts at field 3 (state); utime is 14, stime 15, starttime 22, vsize 23, rss 24.
      double utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
      for (int index = 3; rest >> field && index <= 24; ++index) {
        switch (index) {
          case 14:
            utime = std::stod(field);
            break;
          case 15:
            stime = std::stod(field);
            break;
          case 22:
            start = std::stod(field);
            break;
          case 23:
            vsize = std::stod(field);
            break;
          case 24:
            rss = std::stod(field);
            break;
          default:
            break;
        }
      }
      stats.cpu_seconds = (utime + stime) / ticks;
      stats.start_time_seconds = boot_time_seconds() + start / ticks;
      stats.virtual_memory_bytes = static_cast<std::uint64_t>(vsize);
      stats.resident_memory_bytes = static_cast<std::uint64_t>(rss * page);
    }
  }
  stats.open_fds = count_open_fds();
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) stats.max_fds = limit.rlim_cur;
  return stats;
}

}  // namespace revgate::metrics
