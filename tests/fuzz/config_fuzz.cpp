// Fuzz target: any bytes as a config file. The loader must return a Config or errors, never
// throw or crash, and every error must carry a rule and a readable position.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view yaml(reinterpret_cast<const char*>(data), size);
  auto result = revgate::config::load_string(yaml, "fuzz.yaml");
  if (!result) {
    if (result.error().empty()) std::abort();  // a failure must say why
    for (const auto& error : result.error()) {
      if (error.rule.empty() || error.message.empty() || error.line < 0 || error.column < 0) {
        std::abort();
      }
    }
  } else {
    // A config that validates has what routing relies on.
    for (const auto& service : result->services) {
      int sum = 0;
      for (const auto& target : service.traffic) sum += target.percent;
      if (sum != 100 || service.revisions.empty()) std::abort();
    }
  }
  return 0;
}
