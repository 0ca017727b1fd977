// The match half of route rules (Istio's HTTPMatchRequest and StringMatch), compiled once into
// immutable matchers that the request path evaluates without allocating. Regexes are RE2 (linear
// time, no backtracking: a hostile value cannot make a match slow) and must match the whole
// value, as in Envoy. Shared read-only by all threads once built.
#pragma once

#include <cstddef>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace re2 {
class RE2;
}

namespace revgate::routing {

// Istio StringMatch: `exact`, `prefix`, `regex`, or present (`{}`: the field exists, any value).
class StringMatcher {
 public:
  enum class Kind { exact, prefix, regex, present };

  // `ignore_case` folds ASCII case for exact and prefix (Istio's ignoreUriCase: not for regex,
  // which says its own case rules, e.g. "(?i)"). An invalid regex: RE2's message.
  static std::expected<StringMatcher, std::string> compile(Kind kind, std::string_view pattern,
                                                           bool ignore_case = false);
  StringMatcher() = default;  // present: any value

  bool matches(std::string_view value) const noexcept;
  Kind kind() const noexcept { return kind_; }
  const std::string& pattern() const noexcept { return pattern_; }
  bool ignore_case() const noexcept { return ignore_case_; }
  // Whether every value this matcher accepts is accepted by `wider` too, as far as can be
  // told without running regexes: equal matchers, a prefix of a prefix or of an exact value,
  // and `present` accepting anything. False when it cannot tell.
  bool implies(const StringMatcher& wider) const noexcept;
  // "exact 'x'", "prefix '/v2/'", "regex 'a.*'", "present": for explanations.
  std::string describe() const;

 private:
  Kind kind_ = Kind::present;
  std::string pattern_;
  bool ignore_case_ = false;
  std::shared_ptr<const re2::RE2> regex_;  // shared: matchers are copied while compiling
};

// The request fields a match looks at. Views into the caller's request; nothing is copied.
class MatchFields {
 public:
  virtual ~MatchFields() = default;
  // The values of every header field named `name` (lowercase), in order, into `out` (at most
  // `capacity`); returns how many there are (may exceed capacity: the rest are not given).
  virtual std::size_t header_values(std::string_view name, std::string_view* out,
                                    std::size_t capacity) const = 0;

  std::string_view method;
  std::string_view path;       // the request target up to '?' (Istio's `uri`)
  std::string_view query;      // after '?', without it; empty when there is none
  std::string_view authority;  // Host / :authority as the client sent it
};

// MatchFields over a list of (lowercase name, value) fields: for `revgate route`, tests and
// benchmarks, where there is no parsed head. `target` is "/path?query"; the list and the
// target must outlive it.
class ListedFields : public MatchFields {
 public:
  using List = std::vector<std::pair<std::string, std::string>>;
  ListedFields(std::string_view method, std::string_view target, std::string_view authority,
               const List& fields);
  std::size_t header_values(std::string_view name, std::string_view* out,
                            std::size_t capacity) const override;

 private:
  const List& fields_;
};

// One condition of a match: which field, and for headers and query parameters which name.
struct MatchCondition {
  enum class Field { uri, method, authority, header, query_param, without_header };
  Field field = Field::uri;
  std::string name;  // header (lowercase) or query parameter name; empty for the others
  StringMatcher match;

  bool holds(const MatchFields& request) const noexcept;
  std::string describe() const;  // "uri prefix '/v2/'", "header x-canary exact '1'", ...
};

// One HTTPMatchRequest: every condition holds (AND). No condition: matches every request.
struct RequestMatch {
  std::string name;  // Istio's match `name`, optional
  std::vector<MatchCondition> conditions;

  bool matches(const MatchFields& request) const noexcept;
  // The first condition that does not hold, or nullptr when the request matches.
  const MatchCondition* first_mismatch(const MatchFields& request) const noexcept;
};

// Whether every request `narrow` matches is matched by `wide` too (each of wide's conditions
// is implied by one of narrow's), as far as StringMatcher::implies can tell.
bool covers(const RequestMatch& wide, const RequestMatch& narrow) noexcept;

// A rule's `match` list: any entry matches (OR). An empty list matches every request.
struct RuleMatch {
  std::vector<RequestMatch> any_of;

  bool matches(const MatchFields& request) const noexcept;
  // The same, and which entry matched (any_of.size() for an empty list).
  bool matches(const MatchFields& request, std::size_t& which) const noexcept;
};

// The value of query parameter `name` in `query` ("a=1&b=2"), the first when repeated; nullopt
// when absent ("a" alone is present with an empty value). Raw: no percent-decoding, as Envoy's
// query parameter matcher. No allocation.
std::optional<std::string_view> find_query_param(std::string_view query,
                                                 std::string_view name) noexcept;

}  // namespace revgate::routing
