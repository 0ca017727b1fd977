#include "config/reader.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "config/traffic.h"
#include "config/values.h"

namespace revgate::config::detail {

using namespace std::string_view_literals;

namespace {

constexpr std::array kTargetKeys = {"revisionName"sv, "latestRevision"sv, "percent"sv, "tag"sv};
constexpr Section kTarget{"traffic target", kTargetKeys};

}  // namespace

// Quoted scalars and explicit !!str (or the non-specific "!") are strings even when they read
// like a number or boolean; another explicit tag (!!int "5") does not make a string.
bool is_string_typed(const YamlNode& node) {
  if (node.is_plain()) return false;
  std::string_view tag = node.tag();
  return tag.empty() || tag == "!" || tag == "tag:yaml.org,2002:str";
}

std::string describe(const YamlNode& node) {
  switch (node.kind()) {
    case YamlKind::sequence:
      return "a list";
    case YamlKind::map:
      return "a map";
    case YamlKind::scalar:
      return is_string_typed(node) ? "the string " + quote(node.scalar()) : quote(node.scalar());
    case YamlKind::null:
      break;
  }
  return "nothing";
}

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

// Unknown keys are mostly typos: name the closest allowed key when it is close enough.
std::string did_you_mean(std::string_view key, std::span<const std::string_view> allowed) {
  std::string lower_key = lowercase(std::string(key));
  std::string_view best;
  std::size_t best_distance = 3;
  for (std::string_view candidate : allowed) {
    std::size_t distance = edit_distance(lower_key, lowercase(std::string(candidate)));
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best);
}

std::string range_text(std::int64_t min, std::int64_t max) {
  if (max == kNoMax) return min == 0 ? "an integer >= 0" : fmt::format("an integer >= {}", min);
  return fmt::format("an integer from {} to {}", min, max);
}

std::optional<std::string> token_problem(std::string_view text) {
  if (text.empty()) return "is empty";
  constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)) || kSymbols.find(c) != kSymbols.npos) {
      continue;
    }
    return fmt::format("contains {}", quote(std::string_view(&c, 1)));
  }
  return std::nullopt;
}

void Reader::add(SourcePos pos, std::string_view rule, std::string message) {
  if (pos.line <= 0) pos = {1, 1};  // only file errors go without a position
  errors_.push_back(ConfigError{.file = file_,
                                .line = pos.line,
                                .column = pos.column,
                                .rule = std::string(rule),
                                .message = std::move(message)});
}

std::optional<Fields> Reader::read_map(YamlNode node, const Section& section) {
  Fields fields;
  fields.pos = node.pos();
  if (!node.is_map()) {
    add(fields.pos, "type", fmt::format("{} must be a map, got {}", section.noun, describe(node)));
    return std::nullopt;
  }
  // One allocation per map: at most one entry per allowed key is kept.
  fields.entries.reserve(section.any_key ? node.size()
                                         : std::min(node.size(), section.keys.size()));
  for (std::size_t i = 0; i < node.size(); ++i) {
    Field field;
    field.key = node.key(i);
    field.value = node.value(i);
    field.key_pos = field.key.pos();
    field.value_pos = field.value.is_null() ? field.key_pos : field.value.pos();
    if (field.value_pos.line == 0) field.value_pos = field.key_pos;
    if (!field.key.is_scalar()) {
      add(field.key_pos, "type",
          fmt::format("a key in {} must be a string, got {}", section.noun, describe(field.key)));
      continue;
    }
    field.name = field.key.scalar();
    if (!section.any_key &&
        std::find(section.keys.begin(), section.keys.end(), field.name) == section.keys.end()) {
      add(field.key_pos, "unknown-key",
          fmt::format("unknown key {} in {}{}; allowed keys: {}", quote(field.name), section.noun,
                      did_you_mean(field.name, section.keys), fmt::join(section.keys, ", ")));
      continue;
    }
    if (const Field* first = fields.find_key(field.name)) {
      add(field.key_pos, "duplicate-key",
          fmt::format("key {} appears twice in {} (first at line {})", quote(field.name),
                      section.noun, first->key_pos.line));
      continue;
    }
    fields.entries.push_back(std::move(field));
  }
  return fields;
}

std::optional<Fields> Reader::read_section(const Fields& top, std::string_view key,
                                           const Section& section) {
  const Field* field = top.find(key);
  if (field == nullptr) return std::nullopt;
  return read_map(field->value, section);
}

const Field* Reader::require(const Fields& fields, std::string_view key, const Section& section) {
  if (const Field* field = fields.find(key)) return field;
  const Field* empty = fields.find_key(key);
  add(empty != nullptr ? empty->key_pos : fields.pos, "required",
      fmt::format("{} needs {}", section.noun, quote(key)));
  return nullptr;
}

YamlNode Reader::read_list(const Field& field) {
  if (!field.value.is_sequence()) {
    add(field.value_pos, "type",
        fmt::format("{} must be a list, got {}", field.name, describe(field.value)));
    return {};
  }
  return field.value;
}

std::optional<std::string> Reader::read_string(const Field& field) {
  if (!field.value.is_scalar()) {
    add(field.value_pos, "type",
        fmt::format("{} must be a string, got {}", field.name, describe(field.value)));
    return std::nullopt;
  }
  return std::string(field.value.scalar());
}

std::optional<std::int64_t> Reader::read_int(const Field& field, std::int64_t min, std::int64_t max,
                                             std::string_view range_rule) {
  std::string expected = range_text(min, max);
  if (!field.value.is_scalar() || is_string_typed(field.value)) {
    add(field.value_pos, "type",
        fmt::format("{} must be {}, got {}", field.name, expected, describe(field.value)));
    return std::nullopt;
  }
  std::string_view text = field.value.scalar();
  auto value = detail::parse_int(text);
  if (value && *value >= min && *value <= max) return *value;
  bool numeric = value.has_value() || value.error() == detail::IntError::out_of_range ||
                 detail::looks_like_number(text);
  add(field.value_pos, numeric ? range_rule : "type",
      fmt::format("{} must be {}, got {}", field.name, expected, quote(text)));
  return std::nullopt;
}

std::optional<double> Reader::read_number(const Field& field, double min, double max,
                                          std::string_view range_rule) {
  std::string expected = fmt::format("a number from {} to {}", min, max);
  if (!field.value.is_scalar() || is_string_typed(field.value)) {
    add(field.value_pos, "type",
        fmt::format("{} must be {}, got {}", field.name, expected, describe(field.value)));
    return std::nullopt;
  }
  std::string_view text = field.value.scalar();
  std::string_view digits = text;
  if (digits.starts_with('+')) digits.remove_prefix(1);
  double value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  bool whole = end == digits.data() + digits.size() && !digits.empty();
  if (whole && ec == std::errc{} && std::isfinite(value) && value >= min && value <= max) {
    return value;
  }
  bool numeric = whole && (ec == std::errc{} || ec == std::errc::result_out_of_range);
  add(field.value_pos, numeric ? range_rule : "type",
      fmt::format("{} must be {}, got {}", field.name, expected, quote(text)));
  return std::nullopt;
}

std::optional<bool> Reader::read_bool(const Field& field) {
  if (field.value.is_scalar() && !is_string_typed(field.value)) {
    std::string_view text = field.value.scalar();
    if (text == "true" || text == "True" || text == "TRUE") return true;
    if (text == "false" || text == "False" || text == "FALSE") return false;
  }
  add(field.value_pos, "type",
      fmt::format("{} must be true or false, got {}", field.name, describe(field.value)));
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> Reader::read_duration(const Field& field,
                                                               bool allow_zero) {
  if (!field.value.is_scalar()) {
    add(field.value_pos, "type",
        fmt::format("{} must be a duration such as 500ms, 30s, 5m or 1h, got {}", field.name,
                    describe(field.value)));
    return std::nullopt;
  }
  auto value = detail::parse_duration(field.value.scalar(), allow_zero);
  if (!value) {
    add(field.value_pos, "duration",
        fmt::format("{} {} {}", field.name, quote(field.value.scalar()), value.error()));
    return std::nullopt;
  }
  return *value;
}

bool Reader::check_name(const std::string& name, SourcePos pos, std::string_view what) {
  auto problem = detail::dns1123_label_problem(name);
  if (!problem) return true;
  add(pos, "name",
      fmt::format("{} {} is not a DNS-1123 label: it {}", what, quote(name), *problem));
  return false;
}

std::vector<TrafficTarget> Reader::read_traffic_list(const Field& field_ref,
                                                     const Service& service) {
  const Field* field = &field_ref;
  std::vector<TrafficTarget> traffic;
  std::vector<TargetPlaces> places;
  bool percents_known = field->value.is_sequence();
  for (YamlNode item : read_list(*field)) {
    auto target_fields = read_map(item, kTarget);
    if (!target_fields) {
      percents_known = false;
      continue;
    }
    traffic.push_back(read_target(*target_fields, places.emplace_back(), percents_known));
  }
  for (const TrafficProblem& problem : check_traffic(service, traffic)) {
    if (problem.field == TrafficField::list) {
      // Only a sum of readable percents is worth reporting; a bad one has its own error.
      if (percents_known) add(field->key_pos, problem.rule, problem.message);
      continue;
    }
    const TargetPlaces& at = places[problem.index];
    // A revisionName or latestRevision that could not be read has its own error; the kind of
    // the target is unknown, not wrong.
    if (problem.rule == "target-kind" && !at.kind_known) continue;
    SourcePos pos = at.target;
    switch (problem.field) {
      case TrafficField::revision_name:
        pos = at.revision_name;
        break;
      case TrafficField::latest_revision:
        pos = at.latest_revision;
        break;
      case TrafficField::percent:
        pos = at.percent;
        break;
      case TrafficField::tag:
        pos = at.tag;
        break;
      case TrafficField::list:
      case TrafficField::target:
        break;
    }
    add(pos.line > 0 ? pos : at.target, problem.rule, problem.message);
  }
  return traffic;
}

// The target as written; a field that cannot be read keeps its default after its error.
TrafficTarget Reader::read_target(const Fields& fields, TargetPlaces& at, bool& percents_known) {
  TrafficTarget target;
  target.pos = fields.pos;
  at.target = fields.pos;
  if (const Field* field = fields.find("revisionName")) {
    at.revision_name = field->value_pos;
    if (auto value = read_string(*field)) {
      target.revision_name = std::move(*value);
    } else {
      at.kind_known = false;
    }
  }
  if (const Field* field = fields.find("latestRevision")) {
    at.latest_revision = field->key_pos;
    if (auto value = read_bool(*field)) {
      target.latest_revision = *value;
    } else {
      at.kind_known = false;
    }
  }
  if (const Field* field = fields.find("percent")) {
    at.percent = field->value_pos;
    if (auto percent = read_percent(*field)) {
      target.percent = *percent;
    } else {
      percents_known = false;
    }
  }
  if (const Field* field = fields.find("tag")) {
    at.tag = field->value_pos;
    if (auto value = read_string(*field)) target.tag = std::move(*value);
  }
  return target;
}

// A percent is an integer, read here; whether it lies in 0..100 is check_traffic's
// percent-range. A number that is not an int (99.5, 1e3) breaks percent-range here, in the
// same words.
std::optional<int> Reader::read_percent(const Field& field) {
  if (!field.value.is_scalar() || is_string_typed(field.value)) {
    add(field.value_pos, "type", percent_problem_message(describe(field.value)));
    return std::nullopt;
  }
  std::string_view text = field.value.scalar();
  auto value = detail::parse_int(text);
  if (value && *value >= std::numeric_limits<int>::min() &&
      *value <= std::numeric_limits<int>::max()) {
    return int(*value);
  }
  bool numeric = value.has_value() || value.error() == detail::IntError::out_of_range ||
                 detail::looks_like_number(text);
  add(field.value_pos, numeric ? "percent-range" : "type", percent_problem_message(quote(text)));
  return std::nullopt;
}

}  // namespace revgate::config::detail
