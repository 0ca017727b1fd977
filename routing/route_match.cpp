#include "routing/route_match.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>
#include <re2/re2.h>

namespace revgate::routing {

namespace {

char fold(char c) noexcept { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool equal_folded(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return fold(x) == fold(y); });
}

// Header values looked at per condition; a request repeating one field more often than this is
// matched on its first ones.
constexpr std::size_t kMaxValues = 16;

bool any_value_matches(const MatchFields& request, const MatchCondition& condition) noexcept {
  std::array<std::string_view, kMaxValues> values;
  const std::size_t count = request.header_values(condition.name, values.data(), values.size());
  if (condition.match.kind() == StringMatcher::Kind::present) return count > 0;
  const std::size_t seen = std::min(count, values.size());
  for (std::size_t i = 0; i < seen; ++i) {
    if (condition.match.matches(values[i])) return true;
  }
  return false;
}

}  // namespace

std::expected<StringMatcher, std::string> StringMatcher::compile(Kind kind,
                                                                 std::string_view pattern,
                                                                 bool ignore_case) {
  StringMatcher matcher;
  matcher.kind_ = kind;
  matcher.pattern_ = std::string(pattern);
  matcher.ignore_case_ = ignore_case && (kind == Kind::exact || kind == Kind::prefix);
  if (kind == Kind::regex) {
    RE2::Options options;
    options.set_log_errors(false);
    auto regex = std::make_shared<const RE2>(re2::StringPiece(pattern.data(), pattern.size()),
                                             options);
    if (!regex->ok()) return std::unexpected(regex->error());
    matcher.regex_ = std::move(regex);
  }
  return matcher;
}

bool StringMatcher::matches(std::string_view value) const noexcept {
  switch (kind_) {
    case Kind::exact:
      return ignore_case_ ? equal_folded(value, pattern_) : value == pattern_;
    case Kind::prefix:
      return value.size() >= pattern_.size() &&
             (ignore_case_ ? equal_folded(value.substr(0, pattern_.size()), pattern_)
                           : value.starts_with(pattern_));
    case Kind::regex:
      return RE2::FullMatch(re2::StringPiece(value.data(), value.size()), *regex_);
    case Kind::present:
      return true;
  }
  return false;
}

bool StringMatcher::implies(const StringMatcher& wider) const noexcept {
  if (wider.kind_ == Kind::present) return true;
  if (kind_ == Kind::present || ignore_case_ != wider.ignore_case_) return false;
  if (kind_ == wider.kind_ && pattern_ == wider.pattern_) return true;
  if (wider.kind_ != Kind::prefix || (kind_ != Kind::exact && kind_ != Kind::prefix)) return false;
  return ignore_case_ ? pattern_.size() >= wider.pattern_.size() &&
                            equal_folded(std::string_view(pattern_).substr(0, wider.pattern_.size()),
                                         wider.pattern_)
                      : std::string_view(pattern_).starts_with(wider.pattern_);
}

std::string StringMatcher::describe() const {
  switch (kind_) {
    case Kind::exact:
      return fmt::format("exact '{}'{}", pattern_, ignore_case_ ? " (any case)" : "");
    case Kind::prefix:
      return fmt::format("prefix '{}'{}", pattern_, ignore_case_ ? " (any case)" : "");
    case Kind::regex:
      return fmt::format("regex '{}'", pattern_);
    case Kind::present:
      return "present";
  }
  return "";
}

ListedFields::ListedFields(std::string_view method_, std::string_view target,
                           std::string_view authority_, const List& fields)
    : fields_(fields) {
  method = method_;
  authority = authority_;
  const std::size_t q = std::min(target.find('?'), target.size());
  path = target.substr(0, q);
  query = q < target.size() ? target.substr(q + 1) : std::string_view();
}

std::size_t ListedFields::header_values(std::string_view name, std::string_view* out,
                                        std::size_t capacity) const {
  std::size_t count = 0;
  for (const auto& [field, value] : fields_) {
    if (field != name) continue;
    if (count < capacity) out[count] = value;
    ++count;
  }
  return count;
}

bool MatchCondition::holds(const MatchFields& request) const noexcept {
  switch (field) {
    case Field::uri:
      return match.matches(request.path);
    case Field::method:
      return match.matches(request.method);
    case Field::authority:
      return match.matches(request.authority);
    case Field::header:
      return any_value_matches(request, *this);
    case Field::without_header:
      return !any_value_matches(request, *this);
    case Field::query_param: {
      const auto value = find_query_param(request.query, name);
      return value.has_value() && match.matches(*value);
    }
  }
  return false;
}

std::string MatchCondition::describe() const {
  switch (field) {
    case Field::uri:
      return "uri " + match.describe();
    case Field::method:
      return "method " + match.describe();
    case Field::authority:
      return "authority " + match.describe();
    case Field::header:
      return fmt::format("header {} {}", name, match.describe());
    case Field::without_header:
      return fmt::format("without header {} {}", name, match.describe());
    case Field::query_param:
      return fmt::format("query parameter {} {}", name, match.describe());
  }
  return "";
}

bool RequestMatch::matches(const MatchFields& request) const noexcept {
  return first_mismatch(request) == nullptr;
}

const MatchCondition* RequestMatch::first_mismatch(const MatchFields& request) const noexcept {
  for (const MatchCondition& condition : conditions) {
    if (!condition.holds(request)) return &condition;
  }
  return nullptr;
}

bool covers(const RequestMatch& wide, const RequestMatch& narrow) noexcept {
  return std::all_of(wide.conditions.begin(), wide.conditions.end(), [&](const MatchCondition& w) {
    return std::any_of(narrow.conditions.begin(), narrow.conditions.end(),
                       [&](const MatchCondition& n) {
                         if (n.field != w.field || n.name != w.name) return false;
                         // without_header: the narrow one excludes at least what the wide one does
                         return n.field == MatchCondition::Field::without_header
                                    ? w.match.implies(n.match)
                                    : n.match.implies(w.match);
                       });
  });
}

bool RuleMatch::matches(const MatchFields& request) const noexcept {
  std::size_t which = 0;
  return matches(request, which);
}

bool RuleMatch::matches(const MatchFields& request, std::size_t& which) const noexcept {
  which = any_of.size();
  if (any_of.empty()) return true;
  for (std::size_t i = 0; i < any_of.size(); ++i) {
    if (any_of[i].matches(request)) {
      which = i;
      return true;
    }
  }
  return false;
}

std::optional<std::string_view> find_query_param(std::string_view query,
                                                 std::string_view name) noexcept {
  while (!query.empty()) {
    const std::size_t end = std::min(query.find('&'), query.size());
    const std::string_view pair = query.substr(0, end);
    const std::size_t equals = pair.find('=');
    if (pair.substr(0, equals) == name) {
      return equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1);
    }
    query.remove_prefix(std::min(end + 1, query.size()));
  }
  return std::nullopt;
}

}  // namespace revgate::routing
