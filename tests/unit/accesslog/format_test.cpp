// Unit tests of access log lines: JSON lines parse (Boost.JSON) and carry every field, escaping
// of every kind of byte, Envoy's default text layout, timestamps, and no allocation per line.
#include "accesslog/format.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

// Counts heap allocations while `g_counting` is set: the formatters must make none beyond
// growing their output.
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace revgate::accesslog {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// 2016-04-15T20:17:00.310Z, the time of Envoy's documented example line.
std::chrono::system_clock::time_point envoy_example_time() {
  using namespace std::chrono;
  return sys_days{year{2016} / April / 15} + 20h + 17min + 0s + 310ms;
}

Entry full_entry() {
  Entry entry;
  entry.start_time = envoy_example_time();
  entry.method = "POST";
  entry.path = "/api/v1/locations?x=1";
  entry.protocol = "HTTP/1.1";
  entry.response_code = 204;
  entry.response_flags = "UF,UC";
  entry.bytes_received = 154;
  entry.bytes_sent = 7;
  entry.duration_ms = 226;
  entry.upstream_service_time_ms = 100;
  entry.upstream_host = "127.0.0.1:9001";
  entry.service = "hello";
  entry.namespace_name = "default";
  entry.revision = "hello-00001";
  entry.authority = "hello.default.example.com";
  entry.x_forwarded_for = "10.0.35.28";
  entry.user_agent = "curl/7.88.1";
  entry.request_id = "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2";
  return entry;
}

json::object parse_line(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line only: " << line;
  json::error_code ec;
  json::value value = json::parse(line, ec);
  EXPECT_FALSE(ec) << ec.message() << ": " << line;
  EXPECT_TRUE(value.is_object()) << line;
  return value.is_object() ? value.as_object() : json::object{};
}

TEST(AppendJson, CarriesEveryField) {
  std::string line;
  append_json(full_entry(), line);
  json::object o = parse_line(line);
  EXPECT_EQ(o.size(), 18u) << line;
  EXPECT_EQ(o.at("start_time"), "2016-04-15T20:17:00.310Z");
  EXPECT_EQ(o.at("method"), "POST");
  EXPECT_EQ(o.at("path"), "/api/v1/locations?x=1");
  EXPECT_EQ(o.at("protocol"), "HTTP/1.1");
  EXPECT_EQ(o.at("response_code").as_int64(), 204);
  EXPECT_EQ(o.at("response_flags"), "UF,UC");
  EXPECT_EQ(o.at("bytes_received").as_int64(), 154);
  EXPECT_EQ(o.at("bytes_sent").as_int64(), 7);
  EXPECT_EQ(o.at("duration").as_int64(), 226);
  EXPECT_EQ(o.at("upstream_service_time").as_int64(), 100);
  EXPECT_EQ(o.at("upstream_host"), "127.0.0.1:9001");
  EXPECT_EQ(o.at("x_forwarded_for"), "10.0.35.28");
  EXPECT_EQ(o.at("user_agent"), "curl/7.88.1");
  EXPECT_EQ(o.at("request_id"), "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2");
  EXPECT_EQ(o.at("authority"), "hello.default.example.com");
  EXPECT_EQ(o.at("service"), "hello");
  EXPECT_EQ(o.at("namespace"), "default");
  EXPECT_EQ(o.at("revision"), "hello-00001");
}

TEST(AppendJson, ExactLayout) {
  std::string line;
  append_json(full_entry(), line);
  EXPECT_EQ(line,
            "{\"start_time\":\"2016-04-15T20:17:00.310Z\",\"method\":\"POST\",\"path\":\"/api/v1/"
            "locations?x=1\",\"protocol\":\"HTTP/1.1\",\"response_code\":204,\"response_flags\":"
            "\"UF,UC\",\"bytes_received\":154,\"bytes_sent\":7,\"duration\":226,\"upstream_"
            "service_time\":100,\"upstream_host\":\"127.0.0.1:9001\",\"x_forwarded_for\":\"10.0."
            "35.28\",\"user_agent\":\"curl/7.88.1\",\"request_id\":\"cc21d9b0-cf5c-432b-8c7e-"
            "98aeb7988cd2\",\"authority\":\"hello.default.example.com\",\"service\":\"hello\","
            "\"namespace\":\"default\",\"revision\":\"hello-00001\"}\n");
}

TEST(AppendJson, UnsetValuesAreNull) {
  Entry entry;  // a 404 before any route: no service, no upstream
  entry.method = "GET";
  entry.path = "/";
  entry.protocol = "HTTP/1.1";
  entry.response_code = 404;
  entry.response_flags = "NR";
  std::string line;
  append_json(entry, line);
  json::object o = parse_line(line);
  EXPECT_EQ(o.at("start_time"), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(o.at("response_flags"), "NR");
  for (const char* key : {"upstream_service_time", "upstream_host", "x_forwarded_for", "user_agent",
                          "request_id", "authority", "service", "namespace", "revision"}) {
    EXPECT_TRUE(o.at(key).is_null()) << key << " in " << line;
  }
  EXPECT_EQ(o.at("bytes_sent").as_int64(), 0);
  entry.response_flags = "";
  line.clear();
  append_json(entry, line);
  EXPECT_EQ(parse_line(line).at("response_flags"), "-");  // Envoy's "no flags"
}

TEST(AppendJson, LargeNumbers) {
  Entry entry;
  entry.bytes_received = 18'446'744'073'709'551'615ull;
  entry.bytes_sent = 1ull << 40;
  std::string line;
  append_json(entry, line);
  json::object o = parse_line(line);
  EXPECT_EQ(o.at("bytes_received").as_uint64(), 18'446'744'073'709'551'615ull);
  EXPECT_EQ(o.at("bytes_sent").as_int64(), 1ll << 40);
}

TEST(AppendJson, EscapesQuotesBackslashesAndControlCharacters) {
  const std::string nasty = std::string("a\"b\\c\nd\re\tf\bg\fh") + '\x01' + '\x1f' + '\x7f' +
                            std::string(1, '\0') + "/</script>";
  Entry entry;
  entry.user_agent = nasty;
  entry.path = "/\"quoted\"";
  std::string line;
  append_json(entry, line);
  EXPECT_NE(line.find(R"("user_agent":"a\"b\\c\nd\re\tf\bg\fh\u0001\u001f\u007f\u0000/</script>")"),
            std::string::npos)
      << line;
  json::object o = parse_line(line);
  EXPECT_EQ(o.at("user_agent").as_string(), nasty);  // round trip
  EXPECT_EQ(o.at("path").as_string(), "/\"quoted\"");
}

TEST(AppendJson, KeepsValidUtf8) {
  const std::string text =
      "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf";
  Entry entry;
  entry.user_agent = text;
  std::string line;
  append_json(entry, line);
  EXPECT_NE(line.find(text), std::string::npos) << "written as is";
  EXPECT_EQ(parse_line(line).at("user_agent").as_string(), text);
}

TEST(AppendJson, ReplacesInvalidUtf8) {
  const std::string replacement = "\xef\xbf\xbd";  // U+FFFD
  struct Case {
    std::string in;
    std::string out;
  };
  const Case cases[] = {
      {"a\xff"
       "b",
       "a" + replacement + "b"},                                  // never valid
      {"\x80", replacement},                                      // lone continuation
      {"\xc0\xaf", replacement + replacement},                    // overlong '/'
      {"\xe0\x80\xaf", replacement + replacement + replacement},  // overlong
      {"\xed\xa0\x80", replacement + replacement + replacement},  // surrogate D800
      {"\xf4\x90\x80\x80", replacement + replacement + replacement + replacement},  // > U+10FFFF
      {"\xe2\x9c", replacement + replacement},  // truncated at the end
      {"\xe2\x9c"
       "x",
       replacement + replacement + "x"},  // truncated in the middle
      {"\xc3", replacement},
      {"ok\xc3\xa9\xc3", "ok\xc3\xa9" + replacement},
  };
  for (const Case& c : cases) {
    Entry entry;
    entry.path = c.in;
    std::string line;
    append_json(entry, line);
    json::object o = parse_line(line);  // Boost.JSON rejects invalid UTF-8: it parsed
    EXPECT_EQ(o.at("path").as_string(), c.out) << line;
  }
}

TEST(AppendText, MatchesEnvoysDocumentedExample) {
  // Envoy's documentation of the default format shows this line (HTTP/2, tcp:// upstream).
  Entry entry;
  entry.start_time = envoy_example_time();
  entry.method = "POST";
  entry.path = "/api/v1/locations";
  entry.protocol = "HTTP/2";
  entry.response_code = 204;
  entry.bytes_received = 154;
  entry.bytes_sent = 0;
  entry.duration_ms = 226;
  entry.upstream_service_time_ms = 100;
  entry.x_forwarded_for = "10.0.35.28";
  entry.user_agent = "nsq2http";
  entry.request_id = "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2";
  entry.authority = "locations";
  entry.upstream_host = "tcp://10.0.2.1:80";
  std::string line;
  append_text(entry, line);
  EXPECT_EQ(line,
            "[2016-04-15T20:17:00.310Z] \"POST /api/v1/locations HTTP/2\" 204 - 154 0 226 100 "
            "\"10.0.35.28\" \"nsq2http\" \"cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2\" \"locations\" "
            "\"tcp://10.0.2.1:80\"\n");
}

TEST(AppendText, FullEntry) {
  std::string line;
  append_text(full_entry(), line);
  EXPECT_EQ(line,
            "[2016-04-15T20:17:00.310Z] \"POST /api/v1/locations?x=1 HTTP/1.1\" 204 UF,UC 154 7 "
            "226 100 \"10.0.35.28\" \"curl/7.88.1\" \"cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2\" "
            "\"hello.default.example.com\" \"127.0.0.1:9001\"\n");
}

TEST(AppendText, UnsetValuesAreDashes) {
  Entry entry;
  entry.start_time = envoy_example_time();
  entry.method = "GET";
  entry.path = "/";
  entry.protocol = "HTTP/1.1";
  entry.response_code = 0;  // the client went away before a response
  entry.duration_ms = 3;
  std::string line;
  append_text(entry, line);
  EXPECT_EQ(line,
            "[2016-04-15T20:17:00.310Z] \"GET / HTTP/1.1\" 0 - 0 0 3 - \"-\" \"-\" \"-\" \"-\" "
            "\"-\"\n");
  line.clear();
  append_text(Entry{}, line);
  EXPECT_EQ(line,
            "[1970-01-01T00:00:00.000Z] \"- - -\" 0 - 0 0 0 - \"-\" \"-\" \"-\" \"-\" \"-\"\n");
}

TEST(AppendText, ControlCharactersCannotBreakTheLine) {
  Entry entry;
  entry.user_agent = "evil\n[2016-01-01T00:00:00.000Z] \"GET /forged\x7f\t";
  std::string line;
  append_text(entry, line);
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  EXPECT_NE(line.find("\"evil\\x0a[2016-01-01T00:00:00.000Z] \"GET /forged\\x7f\\x09\""),
            std::string::npos)
      << line;
  // Other bytes pass as they are, as in Envoy.
  line.clear();
  entry.user_agent = "caf\xc3\xa9 \xff";
  append_text(entry, line);
  EXPECT_NE(line.find("\"caf\xc3\xa9 \xff\""), std::string::npos) << line;
}

TEST(AppendRfc3339, Timestamps) {
  using namespace std::chrono;
  auto text = [](system_clock::time_point t) {
    std::string out;
    append_rfc3339(t, out);
    return out;
  };
  EXPECT_EQ(text(system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(text(sys_days{year{2024} / February / 29} + 23h + 59min + 59s + 999ms),
            "2024-02-29T23:59:59.999Z");
  EXPECT_EQ(text(sys_days{year{2000} / January / 1} + 1ms + 999us),  // rounded down
            "2000-01-01T00:00:00.001Z");
  EXPECT_EQ(text(sys_days{year{1969} / December / 31} + 23h + 59min + 59s + 500ms),
            "1969-12-31T23:59:59.500Z");
  EXPECT_EQ(text(sys_days{year{2038} / January / 19} + 3h + 14min + 8s),
            "2038-01-19T03:14:08.000Z");
  std::string now = text(system_clock::now());
  EXPECT_EQ(now.size(), 24u);
  EXPECT_EQ(now.back(), 'Z');
}

TEST(AppendLine, NoAllocationBeyondGrowingTheOutput) {
  Entry entry = full_entry();
  const std::string long_agent(300, 'x');
  entry.user_agent = long_agent;
  entry.path = "/caf\xc3\xa9\xff\"\n";
  std::string out;
  out.reserve(1024 * 1024);  // room for every line: any allocation is a temporary
  const char* data = out.data();
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < 100; ++i) {
    append_json(entry, out);
    append_text(entry, out);
  }
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0);
  EXPECT_EQ(out.data(), data);
}

}  // namespace
}  // namespace revgate::accesslog
