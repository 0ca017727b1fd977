// Loading YAML text in config unit tests: the one error as "line:column: message [rule]", a
// config that must load, a template with one value filled in.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "config/config.h"

namespace revgate::config::test_util {

inline std::string_view strip_first_newline(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return yaml;
}

inline LoadResult load(std::string_view yaml, const std::string& source = "test.yaml") {
  return load_string(strip_first_newline(yaml), source);
}

inline std::string all_errors(const LoadResult& result) {
  if (result) return " (none)";
  std::string text;
  for (const ConfigError& error : result.error()) text += "\n  " + error.to_string();
  return text;
}

inline Config must_load(std::string_view yaml, const std::string& source = "test.yaml") {
  LoadResult result = load(yaml, source);
  EXPECT_TRUE(result.has_value()) << "errors:" << all_errors(result);
  return result ? *result : Config{};
}

// The one error of loading `yaml`, as "line:column: message [rule]" without the file name.
inline std::string only_error(std::string_view yaml, const std::string& source = "test.yaml") {
  LoadResult result = load(yaml, source);
  if (result || result.error().size() != 1) return "expected one error, got:" + all_errors(result);
  std::string text = result.error()[0].to_string();
  return text.substr(result.error()[0].file.size() + 1);
}

inline std::string fill(std::string_view yaml, std::string_view value) {
  std::string text(yaml);
  text.replace(text.find('@'), 1, value);
  return text;
}

}  // namespace revgate::config::test_util
