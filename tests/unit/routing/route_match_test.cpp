// Route rule matchers (routing/route_match.h): every StringMatch kind on every field, Istio's
// AND within a match and OR across matches, withoutHeaders, ignoreUriCase, query parameters,
// and RE2's whole-value semantics.
#include "routing/route_match.h"

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace revgate::routing {
namespace {

using Kind = StringMatcher::Kind;
using Field = MatchCondition::Field;

// A request: method, target ("/path?query", a literal), authority and header fields
// (lowercase names), held for ListedFields.
struct FieldStore {
  ListedFields::List list;
};
class Request : private FieldStore, public ListedFields {
 public:
  Request(std::string_view method_, std::string_view target, std::string_view authority_,
          ListedFields::List fields = {})
      : FieldStore{std::move(fields)}, ListedFields(method_, target, authority_, list) {}
};

StringMatcher make(Kind kind, std::string_view pattern = "", bool ignore_case = false) {
  auto matcher = StringMatcher::compile(kind, pattern, ignore_case);
  EXPECT_TRUE(matcher.has_value()) << pattern;
  return matcher.value_or(StringMatcher());
}

MatchCondition condition(Field field, StringMatcher match, std::string name = "") {
  return MatchCondition{field, std::move(name), std::move(match)};
}

TEST(StringMatcher, ExactPrefixRegexPresent) {
  EXPECT_TRUE(make(Kind::exact, "/v2").matches("/v2"));
  EXPECT_FALSE(make(Kind::exact, "/v2").matches("/v2/"));
  EXPECT_FALSE(make(Kind::exact, "/v2").matches("/V2"));
  EXPECT_TRUE(make(Kind::prefix, "/v2/").matches("/v2/users"));
  EXPECT_TRUE(make(Kind::prefix, "/v2/").matches("/v2/"));
  EXPECT_FALSE(make(Kind::prefix, "/v2/").matches("/v2"));
  EXPECT_TRUE(make(Kind::prefix, "").matches("anything"));
  EXPECT_TRUE(make(Kind::present).matches(""));
}

TEST(StringMatcher, RegexMustMatchTheWholeValue) {
  const auto regex = make(Kind::regex, "/users/[0-9]+");
  EXPECT_TRUE(regex.matches("/users/42"));
  EXPECT_FALSE(regex.matches("/users/42/edit")) << "a partial match is no match";
  EXPECT_FALSE(regex.matches("x/users/42"));
  EXPECT_TRUE(make(Kind::regex, "(?i)/API/.*").matches("/api/x")) << "RE2's own case flag";
}

TEST(StringMatcher, AnInvalidRegexSaysWhy) {
  auto bad = StringMatcher::compile(Kind::regex, "/users/(");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().find("missing )"), std::string::npos) << bad.error();
  // RE2 has no backreferences (no exponential backtracking): rejected, not slow.
  EXPECT_FALSE(StringMatcher::compile(Kind::regex, "(a)\\1").has_value());
}

TEST(StringMatcher, IgnoreCaseFoldsExactAndPrefixOnly) {
  EXPECT_TRUE(make(Kind::exact, "/Login", true).matches("/lOGIN"));
  EXPECT_TRUE(make(Kind::prefix, "/API/", true).matches("/api/v1"));
  EXPECT_FALSE(make(Kind::prefix, "/API/", true).matches("/ap"));
  EXPECT_FALSE(make(Kind::regex, "/API/.*", true).matches("/api/v1"))
      << "Istio: ignoreUriCase does not apply to regex";
  EXPECT_EQ(make(Kind::prefix, "/API/", true).describe(), "prefix '/API/' (any case)");
}

TEST(MatchCondition, EachField) {
  const Request request("POST", "/v2/users?debug=1&user=ann", "shop.example.com",
                        {{"x-canary", "1"}, {"cookie", "a=1"}});
  EXPECT_TRUE(condition(Field::uri, make(Kind::prefix, "/v2/")).holds(request));
  EXPECT_FALSE(condition(Field::uri, make(Kind::exact, "/v2/users?debug=1&user=ann")).holds(request))
      << "uri is the path without the query";
  EXPECT_TRUE(condition(Field::method, make(Kind::exact, "POST")).holds(request));
  EXPECT_FALSE(condition(Field::method, make(Kind::exact, "GET")).holds(request));
  EXPECT_TRUE(condition(Field::authority, make(Kind::regex, ".*\\.example\\.com")).holds(request));
  EXPECT_TRUE(condition(Field::header, make(Kind::exact, "1"), "x-canary").holds(request));
  EXPECT_FALSE(condition(Field::header, make(Kind::exact, "2"), "x-canary").holds(request));
  EXPECT_TRUE(condition(Field::header, make(Kind::present), "x-canary").holds(request));
  EXPECT_FALSE(condition(Field::header, make(Kind::present), "x-absent").holds(request));
  EXPECT_TRUE(condition(Field::query_param, make(Kind::exact, "ann"), "user").holds(request));
  EXPECT_TRUE(condition(Field::query_param, make(Kind::regex, "[0-9]"), "debug").holds(request));
  EXPECT_FALSE(condition(Field::query_param, make(Kind::exact, "ann"), "nobody").holds(request));
}

TEST(MatchCondition, WithoutHeaderIsTheOpposite) {
  const Request with("GET", "/", "h", {{"x-internal", "yes"}});
  const Request without("GET", "/", "h");
  const auto absent = condition(Field::without_header, make(Kind::present), "x-internal");
  EXPECT_FALSE(absent.holds(with));
  EXPECT_TRUE(absent.holds(without));
  const auto not_yes = condition(Field::without_header, make(Kind::exact, "yes"), "x-internal");
  EXPECT_FALSE(not_yes.holds(with));
  EXPECT_TRUE(not_yes.holds(Request("GET", "/", "h", {{"x-internal", "no"}})));
  EXPECT_TRUE(not_yes.holds(without));
}

TEST(MatchCondition, ARepeatedHeaderMatchesWhenAnyValueDoes) {
  const Request request("GET", "/", "h", {{"x-group", "a"}, {"x-group", "beta"}});
  EXPECT_TRUE(condition(Field::header, make(Kind::exact, "beta"), "x-group").holds(request));
  EXPECT_FALSE(condition(Field::without_header, make(Kind::exact, "beta"), "x-group").holds(request));
}

TEST(RequestMatch, EveryConditionMustHold) {
  RequestMatch match;
  match.conditions.push_back(condition(Field::uri, make(Kind::prefix, "/v2/")));
  match.conditions.push_back(condition(Field::header, make(Kind::exact, "1"), "x-canary"));
  EXPECT_TRUE(match.matches(Request("GET", "/v2/a", "h", {{"x-canary", "1"}})));
  const Request no_header("GET", "/v2/a", "h");
  EXPECT_FALSE(match.matches(no_header));
  ASSERT_NE(match.first_mismatch(no_header), nullptr);
  EXPECT_EQ(match.first_mismatch(no_header)->describe(), "header x-canary exact '1'");
  EXPECT_EQ(match.first_mismatch(Request("GET", "/v1/a", "h"))->describe(), "uri prefix '/v2/'");
  EXPECT_TRUE(RequestMatch{}.matches(no_header)) << "no condition: every request";
}

TEST(RuleMatch, AnyEntryMatches) {
  RuleMatch rule;
  EXPECT_TRUE(rule.matches(Request("GET", "/", "h"))) << "no match list: every request";
  RequestMatch by_path;
  by_path.conditions.push_back(condition(Field::uri, make(Kind::exact, "/robots.txt")));
  RequestMatch by_header;
  by_header.conditions.push_back(condition(Field::header, make(Kind::present), "x-canary"));
  rule.any_of = {by_path, by_header};
  EXPECT_TRUE(rule.matches(Request("GET", "/robots.txt", "h")));
  EXPECT_TRUE(rule.matches(Request("GET", "/x", "h", {{"x-canary", ""}})));
  EXPECT_FALSE(rule.matches(Request("GET", "/x", "h")));
}

TEST(FindQueryParam, FirstValueRawAndPresenceWithoutValue) {
  EXPECT_EQ(find_query_param("a=1&b=2&a=3", "a"), "1");
  EXPECT_EQ(find_query_param("a=1&b=2", "b"), "2");
  EXPECT_EQ(find_query_param("flag&b=2", "flag"), "");
  EXPECT_EQ(find_query_param("q=a%20b", "q"), "a%20b") << "not percent-decoded";
  EXPECT_EQ(find_query_param("ab=1", "a"), std::nullopt);
  EXPECT_EQ(find_query_param("", "a"), std::nullopt);
  EXPECT_EQ(find_query_param("a=1&", "b"), std::nullopt);
  EXPECT_EQ(find_query_param("x=1=2", "x"), "1=2");
}

}  // namespace
}  // namespace revgate::routing
