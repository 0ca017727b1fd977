// Unit tests of the YAML front end: config/yaml_document.h's tree (kinds, scalars, tags,
// positions, aliases) and libyaml's errors, then what the loader makes of them (nulls, quoted
// strings, aliases in a config, one document per file, syntax errors as yaml-syntax).
#include "config/yaml_document.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "config/config.h"

namespace revgate::config {

void PrintTo(const SourcePos& pos, std::ostream* out) { *out << pos.line << ":" << pos.column; }

namespace {

using detail::YamlDocument;
using detail::YamlKind;
using detail::YamlNode;

std::string_view strip_first_newline(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return yaml;
}

YamlDocument parse(std::string_view yaml) {
  auto document = YamlDocument::parse(strip_first_newline(yaml));
  EXPECT_TRUE(document.has_value()) << (document ? "" : document.error().message);
  return document ? std::move(*document) : *YamlDocument::parse("");
}

detail::YamlError parse_error(std::string_view yaml) {
  auto document = YamlDocument::parse(strip_first_newline(yaml));
  EXPECT_FALSE(document.has_value());
  return document ? detail::YamlError{} : document.error();
}

// The map's value for `key`, or an absent node.
YamlNode get(YamlNode map, std::string_view key) {
  for (std::size_t i = 0; i < map.size(); ++i) {
    if (map.key(i).scalar() == key) return map.value(i);
  }
  return {};
}

TEST(YamlDocument, KindsScalarsAndPositions) {
  YamlDocument doc = parse(R"(
name: hello
list: [a, "b", 'c']
nested:
  - x: 1
)");
  YamlNode root = doc.root();
  ASSERT_TRUE(root.is_map());
  EXPECT_EQ(root.size(), 3u);
  EXPECT_EQ(root.pos(), (SourcePos{1, 1}));
  EXPECT_EQ(root.key(0).scalar(), "name");
  EXPECT_EQ(root.key(0).pos(), (SourcePos{1, 1}));
  EXPECT_EQ(get(root, "name").scalar(), "hello");
  EXPECT_EQ(get(root, "name").pos(), (SourcePos{1, 7}));
  YamlNode list = get(root, "list");
  ASSERT_TRUE(list.is_sequence());
  EXPECT_EQ(list.pos(), (SourcePos{2, 7}));
  std::vector<std::string> items;
  for (YamlNode item : list) items.emplace_back(item.scalar());
  EXPECT_EQ(items, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(list.item(0).is_plain());
  EXPECT_FALSE(list.item(1).is_plain());  // quoted
  EXPECT_FALSE(list.item(2).is_plain());
  EXPECT_EQ(list.item(1).pos(), (SourcePos{2, 11}));  // at the quote
  YamlNode nested = get(root, "nested");
  EXPECT_EQ(nested.pos(), (SourcePos{4, 3}));          // the '-'
  EXPECT_EQ(nested.item(0).pos(), (SourcePos{4, 5}));  // the map starts at its first key
  EXPECT_EQ(get(nested.item(0), "x").scalar(), "1");
  // Out of range and wrong kinds give absent nodes, not crashes.
  EXPECT_EQ(list.item(3).kind(), YamlKind::null);
  EXPECT_EQ(list.key(0).kind(), YamlKind::null);
  EXPECT_EQ(get(root, "name").size(), 0u);
  EXPECT_EQ(YamlNode().pos(), (SourcePos{0, 0}));
  int none = 0;
  for (YamlNode item : get(root, "name")) none += item.is_null() ? 1 : 2;
  EXPECT_EQ(none, 0);
}

TEST(YamlDocument, NullIsPlainTildeNullOrNothing) {
  YamlDocument doc = parse(R"(
a: ~
b: null
c: Null
d: NULL
e:
f: ""
g: "null"
h: nULL
i: !!str
)");
  YamlNode root = doc.root();
  for (std::string_view key : {"a", "b", "c", "d", "e"}) {
    EXPECT_TRUE(get(root, key).is_null()) << key;
  }
  EXPECT_TRUE(get(root, "f").is_scalar());  // a quoted "" is an empty string
  EXPECT_EQ(get(root, "f").scalar(), "");
  EXPECT_TRUE(get(root, "g").is_scalar());
  EXPECT_EQ(get(root, "g").scalar(), "null");
  EXPECT_TRUE(get(root, "h").is_scalar());  // not one of the four spellings
  EXPECT_TRUE(get(root, "i").is_scalar());  // tagged: a string, though empty
  EXPECT_EQ(get(root, "i").tag(), "tag:yaml.org,2002:str");
}

TEST(YamlDocument, TagsAreResolved) {
  YamlDocument doc = parse(R"(
a: !!str 5
b: ! 5
c: !custom 5
d: 5
e: !!map {x: 1}
)");
  YamlNode root = doc.root();
  EXPECT_EQ(get(root, "a").tag(), "tag:yaml.org,2002:str");
  EXPECT_FALSE(get(root, "a").is_plain());
  EXPECT_EQ(get(root, "b").tag(), "!");
  EXPECT_EQ(get(root, "c").tag(), "!custom");
  EXPECT_EQ(get(root, "d").tag(), "");
  EXPECT_TRUE(get(root, "d").is_plain());
  EXPECT_EQ(get(root, "e").tag(), "tag:yaml.org,2002:map");
  EXPECT_TRUE(get(root, "e").is_map());
}

TEST(YamlDocument, AliasesResolveToTheAnchoredNode) {
  YamlDocument doc = parse(R"(
base: &eps ["127.0.0.1:1", "127.0.0.1:2"]
copy: *eps
port: &p 80
again: *p
)");
  YamlNode root = doc.root();
  YamlNode copy = get(root, "copy");
  ASSERT_TRUE(copy.is_sequence());
  ASSERT_EQ(copy.size(), 2u);
  EXPECT_EQ(copy.item(1).scalar(), "127.0.0.1:2");
  EXPECT_EQ(copy.pos(), (SourcePos{2, 7}));           // where the alias is written
  EXPECT_EQ(copy.item(0).pos(), (SourcePos{1, 13}));  // its content stays where it is written
  EXPECT_EQ(get(root, "again").scalar(), "80");
  EXPECT_TRUE(get(root, "again").is_plain());
  EXPECT_EQ(get(root, "again").pos(), (SourcePos{4, 8}));
}

TEST(YamlDocument, EmptyStreamHasANullRoot) {
  for (std::string_view text : {"", "# only a comment\n"}) {
    auto doc = YamlDocument::parse(text);
    ASSERT_TRUE(doc.has_value()) << text;
    EXPECT_TRUE(doc->root().is_null()) << text;
    EXPECT_EQ(doc->root().pos(), (SourcePos{1, 1})) << text;
    EXPECT_EQ(doc->second_document(), (SourcePos{0, 0}));
  }
  // A document with nothing in it: its empty node is null too.
  auto doc = YamlDocument::parse("---\n");
  ASSERT_TRUE(doc.has_value());
  EXPECT_TRUE(doc->root().is_null());
  EXPECT_EQ(doc->second_document(), (SourcePos{0, 0}));
}

TEST(YamlDocument, ASecondDocumentIsNotedNotKept) {
  YamlDocument doc = parse(R"(
a: 1
---
b: 2
--- [c]
)");
  EXPECT_EQ(doc.second_document(), (SourcePos{2, 1}));
  EXPECT_EQ(doc.root().size(), 1u);
  EXPECT_EQ(doc.root().key(0).scalar(), "a");
  // A syntax error in a later document is still an error.
  EXPECT_EQ(parse_error("a: 1\n---\nb: [\n").pos.line, 4);
}

TEST(YamlDocument, SyntaxErrorsCarryLibyamlsProblemAndPosition) {
  auto error = parse_error(R"(
listeners: [{name: http}
workers: 2
)");
  EXPECT_EQ(error.pos, (SourcePos{2, 1}));
  EXPECT_EQ(
      error.message,
      "did not find expected ',' or ']' (while parsing a flow sequence at line 1, column 12)");
  // A key without ':' is reported where the key is, not where libyaml gave up on it.
  error = parse_error("a: b\nc\nd: e\n");
  EXPECT_EQ(error.pos, (SourcePos{2, 1}));
  EXPECT_EQ(error.message,
            "could not find expected ':' at line 3, column 1 (while scanning a "
            "simple key)");
  // So is an unclosed quote.
  error = parse_error("a: \"abc\nb: c\n");
  EXPECT_EQ(error.pos, (SourcePos{1, 4}));
  EXPECT_EQ(error.message.rfind("found unexpected end of stream", 0), 0u) << error.message;
  // Reader errors have no mark; the position is counted from the byte offset.
  error = parse_error("a: b\nc: d\xff\n");
  EXPECT_EQ(error.pos, (SourcePos{2, 5}));
  EXPECT_EQ(error.message, "invalid leading UTF-8 octet (0xff)");
  error = parse_error("a: \x01\n");
  EXPECT_EQ(error.message, "control characters are not allowed (0x01)");
}

TEST(YamlDocument, BadAliases) {
  auto error = parse_error("a: *nowhere\n");
  EXPECT_EQ(error.pos, (SourcePos{1, 4}));
  EXPECT_EQ(error.message, "alias '*nowhere' names no anchor; '&nowhere' must come before it");
  error = parse_error("a: &loop [1, *loop]\n");
  EXPECT_EQ(error.pos, (SourcePos{1, 14}));
  EXPECT_EQ(error.message,
            "alias '*loop' is inside the node it names; a node cannot contain itself");
}

TEST(YamlDocument, ABillionLaughsIsRefused) {
  // Each level holds ten aliases of the one above: 10^9 nodes if expanded.
  std::string yaml = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level <= 9; ++level) {
    yaml.append(fmt::format("l{0}: &l{0} [", level));
    for (int i = 0; i < 10; ++i) yaml.append(fmt::format("{}*l{}", i > 0 ? ", " : "", level - 1));
    yaml.append("]\n");
  }
  auto document = YamlDocument::parse(yaml);
  ASSERT_FALSE(document.has_value());
  EXPECT_EQ(document.error().message, "aliases expand the document by more than 1000000 nodes");
  EXPECT_EQ(document.error().pos.line, 6);  // level 5: 10^5 per alias crosses the limit
}

TEST(YamlDocument, NestingIsBounded) {
  // 1,000 levels are read without recursion; deeper is refused at once, not after libyaml's
  // quadratic rescans (100,000 '[' would take it half a minute).
  std::string yaml = std::string(1000, '[') + std::string(1000, ']');
  auto document = YamlDocument::parse(yaml);
  ASSERT_TRUE(document.has_value()) << document.error().message;
  YamlNode node = document->root();
  int depth = 1;
  while (node.size() == 1) {
    node = node.item(0);
    ++depth;
  }
  EXPECT_EQ(depth, 1000);
  EXPECT_TRUE(node.is_sequence());
  std::string block;  // the same in block style: one "-" deeper on each line
  for (int i = 0; i < 1001; ++i) block.append(std::string(std::size_t(i), ' ')).append("-\n");
  for (const std::string& deeper : {std::string(100'000, '[') + std::string(100'000, ']'), block}) {
    document = YamlDocument::parse(deeper);
    ASSERT_FALSE(document.has_value());
    EXPECT_EQ(document.error().message, "lists and maps nest deeper than 1000 levels");
    EXPECT_EQ(document.error().pos.line, deeper[0] == '[' ? 1 : 1001);
  }
}

// ---------------------------------------------------------------------------------------------
// Through the loader

LoadResult load(std::string_view yaml) {
  return load_string(strip_first_newline(yaml), "test.yaml");
}

std::string all_errors(const LoadResult& result) {
  if (result) return " (none)";
  std::string text;
  for (const ConfigError& error : result.error()) text += "\n  " + error.to_string();
  return text;
}

TEST(YamlFrontEnd, AliasesWorkInAConfig) {
  LoadResult result = load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services:
  - name: a
    revisions: [{name: a-1, endpoints: &eps ["127.0.0.1:9001", "127.0.0.1:9002"]}]
    traffic: &all [{latestRevision: true, percent: 100}]
  - name: b
    revisions: [{name: b-1, endpoints: *eps}]
    traffic: *all
)");
  ASSERT_TRUE(result.has_value()) << all_errors(result);
  ASSERT_EQ(result->services.size(), 2u);
  ASSERT_EQ(result->services[1].revisions[0].endpoints.size(), 2u);
  EXPECT_EQ(result->services[1].revisions[0].endpoints[1].port, 9002);
  EXPECT_EQ(result->services[1].traffic.at(0).percent, 100);
}

TEST(YamlFrontEnd, AnErrorThroughAnAliasIsReportedAtTheAlias) {
  // The alias is what the user put in the wrong place.
  LoadResult result = load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
x: &m {a: 1}
workers: *m
)");
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 2u) << all_errors(result);
  EXPECT_EQ(result.error()[0].rule, "unknown-key");  // x
  EXPECT_EQ(result.error()[1].to_string(),
            "test.yaml:3:10: workers must be an integer from 0 to 1024, got a map [type]");
}

TEST(YamlFrontEnd, QuotedAndTaggedScalarsAreStrings) {
  const char* cases[] = {"\"2\"", "'2'", "!!str 2", "! 2"};
  for (const char* value : cases) {
    LoadResult result =
        load(std::string("\nlisteners: [{name: http, address: \"127.0.0.1:0\"}]\nworkers: ") +
             value + "\n");
    ASSERT_FALSE(result.has_value()) << value;
    EXPECT_EQ(result.error()[0].rule, "type") << value;
    EXPECT_NE(result.error()[0].message.find("the string '2'"), std::string::npos)
        << result.error()[0].message;
  }
  // Another explicit tag does not make a string.
  LoadResult result =
      load("\nlisteners: [{name: http, address: \"127.0.0.1:0\"}]\nworkers: !!int \"2\"\n");
  ASSERT_TRUE(result.has_value()) << all_errors(result);
  EXPECT_EQ(result->workers, 2);
}

TEST(YamlFrontEnd, Yaml12BooleansOnly) {
  for (const char* value : {"true", "True", "TRUE"}) {
    LoadResult result = load(std::string(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services: [{name: a, debugHeaders: )") +
                             value +
                             R"(, revisions: [{name: a-1, endpoints: ["127.0.0.1:1"]}]}]
)");
    ASSERT_TRUE(result.has_value()) << value << all_errors(result);
    EXPECT_TRUE(result->services[0].debug_headers) << value;
  }
  for (const char* value : {"yes", "on", "y", "tRUE", "'true'"}) {
    LoadResult result = load(std::string(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
services: [{name: a, debugHeaders: )") +
                             value +
                             R"(, revisions: [{name: a-1, endpoints: ["127.0.0.1:1"]}]}]
)");
    ASSERT_FALSE(result.has_value()) << value;
    EXPECT_EQ(result.error()[0].rule, "type") << value;
  }
}

TEST(YamlFrontEnd, NullMeansTheDefault) {
  LoadResult result = load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
workers: ~
domain: null
timeouts: NULL
tracing:
)");
  ASSERT_TRUE(result.has_value()) << all_errors(result);
  EXPECT_EQ(result->workers, 0);
  EXPECT_EQ(result->domain, "example.com");
}

TEST(YamlFrontEnd, JsonLoads) {
  // GET /config's JSON is fed back to the loader; JSON is YAML's flow style.
  LoadResult result = load(R"({"listeners":[{"name":"http","address":"127.0.0.1:0"}],"workers":3,)"
                           R"("tracing":{"sampleRate":2.5E-1}})");
  ASSERT_TRUE(result.has_value()) << all_errors(result);
  EXPECT_EQ(result->workers, 3);
  EXPECT_DOUBLE_EQ(result->tracing.sample_rate, 0.25);
}

TEST(YamlFrontEnd, SecondDocumentStillValidatesTheFirst) {
  LoadResult result = load(R"(
listeners: [{name: http, address: "127.0.0.1:0"}]
workers: many
---
workers: 2
)");
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 2u) << all_errors(result);
  EXPECT_EQ(result.error()[0].to_string(),
            "test.yaml:2:10: workers must be an integer from 0 to 1024, got 'many' [type]");
  EXPECT_EQ(result.error()[1].to_string(),
            "test.yaml:3:1: a config file holds one YAML document; this is a second one "
            "[yaml-syntax]");
}

TEST(YamlFrontEnd, SyntaxErrorIsTheOnlyError) {
  LoadResult result = load(R"(
workers: many
listeners: [{name: http
)");
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 1u) << all_errors(result);
  EXPECT_EQ(result.error()[0].rule, "yaml-syntax");
  EXPECT_EQ(result.error()[0].line, 3);
  EXPECT_EQ(result.error()[0].column, 1);
  EXPECT_NE(result.error()[0].message.find("while parsing a flow mapping at line 2, column 13"),
            std::string::npos)
      << result.error()[0].message;
}

}  // namespace
}  // namespace revgate::config
