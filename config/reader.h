// The YAML readers every config section's parser shares (config.cpp's Loader, routes.cpp):
// typed reads of map fields, each reporting its own error with file, line, column and rule and
// returning nullopt, so that one pass over a file finds every mistake. Loading thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/yaml_document.h"

namespace revgate::config::detail {

// A YAML map that the loader knows: its name in messages and the keys it may hold.
struct Section {
  std::string_view noun;
  std::span<const std::string_view> keys;
  bool any_key = false;  // keys are the user's (header names, parameters): `keys` unused
};

// One key of a map, with positions ready for messages. Valid while the document lives.
struct Field {
  std::string_view name;
  YamlNode key;
  YamlNode value;
  SourcePos key_pos;
  // The value's position, or the key's when the value is empty (null): `key:` is what a user
  // points at, not the place after it where the parser notices the value is missing.
  SourcePos value_pos;
};

struct Fields {
  SourcePos pos;  // the map itself
  std::vector<Field> entries;

  // The field named `name` unless absent or empty: `key:` and `key: ~` mean "the default".
  const Field* find(std::string_view name) const {
    const Field* field = find_key(name);
    return field != nullptr && !field->value.is_null() ? field : nullptr;
  }
  // The same, empty values included: to point at `listeners:` when it is present but empty.
  const Field* find_key(std::string_view name) const {
    for (const Field& field : entries) {
      if (field.name == name) return &field;
    }
    return nullptr;
  }
};

inline constexpr std::int64_t kNoMax = std::numeric_limits<std::int64_t>::max();

bool is_string_typed(const YamlNode& node);  // quoted or !!str: a string even if it reads "5"
std::string describe(const YamlNode& node);  // "a list", "the string '5'", "'5'", "nothing"
std::string lowercase(std::string text);
// " (did you mean 'x'?)" for the allowed key closest to a mistyped one, or "".
std::string did_you_mean(std::string_view key, std::span<const std::string_view> allowed);
std::string range_text(std::int64_t min, std::int64_t max);  // "an integer from 1 to 5"
// Why `text` is not an HTTP token (RFC 9110 5.6.2: field names, upgrade tokens), or nullopt.
std::optional<std::string> token_problem(std::string_view text);

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  void add(SourcePos pos, std::string_view rule, std::string message);

  // The map's keys checked against `section`; nullopt (and an error) when it is not a map.
  std::optional<Fields> read_map(YamlNode node, const Section& section);

  // A top-level section such as `limits:`; nullopt when absent, empty or not a map.
  std::optional<Fields> read_section(const Fields& top, std::string_view key,
                                     const Section& section);

  // The field, or nullptr after reporting that `section` needs it.
  const Field* require(const Fields& fields, std::string_view key, const Section& section);

  // The list to iterate: the value itself, or no items after reporting that it is not a list.
  YamlNode read_list(const Field& field);

  std::optional<std::string> read_string(const Field& field);

  // Integers are plain scalars: a quoted "5" is a string, as in Kubernetes. A number that is not
  // an integer in range breaks `range_rule`; anything else is a type error.
  std::optional<std::int64_t> read_int(const Field& field, std::int64_t min, std::int64_t max,
                                       std::string_view range_rule = "range");

  // A plain decimal number such as 0.01, 1 or 1e-3 (a quoted "0.5" is a string, as for integers).
  // A number outside [min, max] breaks `range_rule`; anything else is a type error.
  std::optional<double> read_number(const Field& field, double min, double max,
                                    std::string_view range_rule);

  // YAML 1.2 booleans only: "yes", "on" and friends are the Norway problem.
  std::optional<bool> read_bool(const Field& field);

  // `allow_zero`: 0 (written "0", "0s", "0ms", ...) is a value, "off", rather than an error.
  std::optional<std::chrono::milliseconds> read_duration(const Field& field,
                                                         bool allow_zero = false);

  // Names are DNS-1123 labels (Kubernetes object names); false after reporting one that is not.
  bool check_name(const std::string& name, SourcePos pos, std::string_view what);

  // A traffic list (a service's, a route rule's), checked against `service`'s revisions: types
  // are read here, Knative's rules are check_traffic's (one wording for YAML and JSON).
  std::vector<TrafficTarget> read_traffic_list(const Field& field, const Service& service);

 protected:
  std::string file_;
  std::vector<ConfigError> errors_;

 private:
  // Where a target's fields stand, so that check_traffic's problems (which name a field) are
  // reported at the field.
  struct TargetPlaces {
    SourcePos target;
    SourcePos revision_name;    // its value
    SourcePos latest_revision;  // its key
    SourcePos percent;          // its value
    SourcePos tag;              // its value
    bool kind_known = true;     // revisionName and latestRevision could be read
  };
  TrafficTarget read_target(const Fields& fields, TargetPlaces& at, bool& percents_known);
  std::optional<int> read_percent(const Field& field);
};

}  // namespace revgate::config::detail
