// The state file's JSON (Boost.JSON values, written by a small printer of our own for a stable,
// indented layout) and its atomic replacement (write a temporary file, fsync, rename, fsync the
// directory: the usual POSIX recipe for a file that a crash must never leave torn).
#include "traffic/state_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace revgate::traffic {

namespace json = boost::json;

namespace {

// ---- writing ----

json::array traffic_json(const std::vector<config::TrafficTarget>& traffic) {
  json::array out;
  for (const config::TrafficTarget& target : traffic) {
    // Knative's TrafficTarget spelling; unset fields are left out, as kubectl shows them.
    json::object o;
    if (!target.revision_name.empty()) o["revisionName"] = target.revision_name;
    if (target.latest_revision) o["latestRevision"] = true;
    o["percent"] = target.percent;
    if (!target.tag.empty()) o["tag"] = target.tag;
    out.push_back(std::move(o));
  }
  return out;
}

json::object rollout_json(const Rollout& rollout) {
  json::object o;
  if (!rollout.tag.empty()) o["tag"] = rollout.tag;
  o["percent"] = rollout.percent;
  json::array revisions;
  for (const RevisionShare& share : rollout.revisions) {
    json::object r;
    r["revisionName"] = share.revision;
    r["percent"] = share.percent;
    revisions.push_back(std::move(r));
  }
  o["revisions"] = std::move(revisions);
  json::object params;
  params["startTimeMs"] = rollout.start_ms;
  params["nextStepTimeMs"] = rollout.next_step_ms;
  params["stepDurationMs"] = rollout.step_duration_ms;
  params["stepSize"] = rollout.step_size;
  o["stepParams"] = std::move(params);
  return o;
}

bool is_container(const json::value& v) { return v.is_object() || v.is_array(); }

// One line when every member is a scalar and it fits; else one member per line, 2 spaces deep.
void print(std::string& out, const json::value& v, int depth) {
  constexpr std::size_t kWidth = 100;
  const std::string inner(2 * (depth + 1), ' ');
  const std::string outer(2 * depth, ' ');
  if (v.is_object()) {
    const json::object& o = v.as_object();
    if (o.empty()) {
      out += "{}";
      return;
    }
    if (std::ranges::none_of(o, [](const auto& kv) { return is_container(kv.value()); })) {
      std::string line = "{";
      for (const auto& kv : o) {
        if (line.size() > 1) line += ", ";
        line += json::serialize(json::string(kv.key())) + ": " + json::serialize(kv.value());
      }
      line += "}";
      if (outer.size() + line.size() <= kWidth) {
        out += line;
        return;
      }
    }
    out += "{\n";
    bool first = true;
    for (const auto& kv : o) {
      if (!first) out += ",\n";
      first = false;
      out += inner + json::serialize(json::string(kv.key())) + ": ";
      print(out, kv.value(), depth + 1);
    }
    out += "\n" + outer + "}";
  } else if (v.is_array()) {
    const json::array& a = v.as_array();
    if (a.empty()) {
      out += "[]";
      return;
    }
    out += "[\n";
    bool first = true;
    for (const json::value& item : a) {
      if (!first) out += ",\n";
      first = false;
      out += inner;
      print(out, item, depth + 1);
    }
    out += "\n" + outer + "]";
  } else {
    out += json::serialize(v);
  }
}

// ---- reading ----

// Thrown inside parse_state only, caught there: the first problem ends the reading.
struct Malformed {
  std::string what;
};

[[noreturn]] void fail(const std::string& where, std::string what) {
  throw Malformed{where.empty() ? std::move(what) : where + ": " + what};
}

std::string_view kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "a value";
}

// A number as a person would write it (Boost.JSON serializes 99.5 as 9.95E1); else its kind.
std::string number_text(const json::value& v) {
  if (v.is_double()) return fmt::format("{}", v.as_double());
  if (v.is_number()) return json::serialize(v);
  return std::string(kind_name(v));
}

std::string at(const std::string& where, std::string_view key) {
  return where.empty() ? std::string(key) : fmt::format("{}.{}", where, key);
}

std::string at(const std::string& where, std::size_t index) {
  return fmt::format("{}[{}]", where, index);
}

const json::object& object_at(const json::value& v, const std::string& where) {
  if (!v.is_object()) fail(where, fmt::format("expected an object, got {}", kind_name(v)));
  return v.as_object();
}

const json::array& array_at(const json::value& v, const std::string& where) {
  if (!v.is_array()) fail(where, fmt::format("expected an array, got {}", kind_name(v)));
  return v.as_array();
}

// An object whose keys are all known; which of them are required is up to the caller.
class Fields {
 public:
  Fields(const json::value& v, std::string where, std::initializer_list<std::string_view> known)
      : object_(object_at(v, where)), where_(std::move(where)) {
    for (const auto& kv : object_) {
      if (std::ranges::find(known, std::string_view(kv.key())) == known.end()) {
        fail(where_, fmt::format("unknown key {}", json::serialize(json::string(kv.key()))));
      }
    }
  }

  const json::value* find(std::string_view key) const { return object_.if_contains(key); }

  const json::value& require(std::string_view key) const {
    const json::value* v = find(key);
    if (v == nullptr) fail(where_, fmt::format("\"{}\" is required", key));
    return *v;
  }

  std::string string(std::string_view key, bool required, bool non_empty = false) const {
    const json::value* v = required ? &require(key) : find(key);
    if (v == nullptr) return {};
    if (!v->is_string()) {
      fail(at(where_, key), fmt::format("expected a string, got {}", kind_name(*v)));
    }
    if (non_empty && v->as_string().empty()) fail(at(where_, key), "must not be empty");
    return std::string(v->as_string());
  }

  bool boolean(std::string_view key) const {
    const json::value* v = find(key);
    if (v == nullptr) return false;
    if (!v->is_bool()) {
      fail(at(where_, key), fmt::format("expected a boolean, got {}", kind_name(*v)));
    }
    return v->as_bool();
  }

  std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max) const {
    const json::value& v = require(key);
    const auto range = [&] {
      return max == std::numeric_limits<std::int64_t>::max()
                 ? fmt::format("an integer of at least {}", min)
                 : fmt::format("an integer from {} to {}", min, max);
    };
    if (!v.is_int64() || v.as_int64() < min || v.as_int64() > max) {
      fail(at(where_, key), fmt::format("expected {}, got {}", range(), number_text(v)));
    }
    return v.as_int64();
  }

 private:
  const json::object& object_;
  std::string where_;
};

constexpr std::int64_t kAnyTime = std::numeric_limits<std::int64_t>::max();

std::vector<config::TrafficTarget> read_traffic(const json::value& v, const std::string& where) {
  std::vector<config::TrafficTarget> traffic;
  const json::array& items = array_at(v, where);
  for (std::size_t i = 0; i < items.size(); ++i) {
    // Kinds and rules (target-kind, revision-exists, ...) are config::check_traffic's, applied
    // against each config file; here only the shape.
    Fields f(items[i], at(where, i), {"revisionName", "latestRevision", "percent", "tag"});
    config::TrafficTarget target;
    target.revision_name = f.string("revisionName", false);
    target.latest_revision = f.boolean("latestRevision");
    target.percent = static_cast<int>(f.integer("percent", 0, 100));
    target.tag = f.string("tag", false);
    traffic.push_back(std::move(target));
  }
  return traffic;
}

// What makes a rollout impossible to continue (Knative's Rollout.Validate, and more).
std::optional<std::string> rollout_problem(const Rollout& rollout) {
  if (rollout.revisions.size() < 2) {
    return "a rollout in progress has at least two revisions";
  }
  std::set<std::string_view> names;
  int sum = 0;
  for (const RevisionShare& share : rollout.revisions) {
    if (share.revision.empty()) return "a revision's name is empty";
    if (!names.insert(share.revision).second) {
      return fmt::format("revision \"{}\" is listed twice", share.revision);
    }
    if (share.percent < 1) {
      return fmt::format("revision \"{}\" has {}%; a share in a rollout has at least 1%",
                         share.revision, share.percent);
    }
    sum += share.percent;
  }
  if (sum != rollout.percent) {
    return fmt::format("the revisions' percents sum to {}, not the rollout's percent {}", sum,
                       rollout.percent);
  }
  if (rollout.step_size < 1) return "stepSize must be at least 1";
  if (rollout.step_duration_ms < 1) return "stepDurationMs must be at least 1";
  return std::nullopt;
}

Rollout read_rollout(const json::value& v, const std::string& where) {
  Fields f(v, where, {"tag", "percent", "revisions", "stepParams"});
  Rollout rollout;
  rollout.tag = f.string("tag", false);
  rollout.percent = static_cast<int>(f.integer("percent", 0, 100));
  const std::string revisions_at = at(where, "revisions");
  const json::array& revisions = array_at(f.require("revisions"), revisions_at);
  for (std::size_t i = 0; i < revisions.size(); ++i) {
    Fields r(revisions[i], at(revisions_at, i), {"revisionName", "percent"});
    rollout.revisions.push_back(
        {r.string("revisionName", true, true), static_cast<int>(r.integer("percent", 0, 100))});
  }
  Fields p(f.require("stepParams"), at(where, "stepParams"),
           {"startTimeMs", "nextStepTimeMs", "stepDurationMs", "stepSize"});
  rollout.start_ms = p.integer("startTimeMs", 0, kAnyTime);
  rollout.next_step_ms = p.integer("nextStepTimeMs", 0, kAnyTime);
  rollout.step_duration_ms = p.integer("stepDurationMs", 0, kAnyTime);
  rollout.step_size = static_cast<int>(p.integer("stepSize", 0, 100));
  if (auto problem = rollout_problem(rollout)) fail(where, *problem);
  return rollout;
}

// What load_state refuses in a State that parsed (and save_state refuses to write).
std::optional<std::string> state_problem(const State& state) {
  std::set<std::tuple<std::string_view, std::string_view>> overlays;
  for (const Overlay& overlay : state.overlays) {
    if (overlay.namespace_name.empty() || overlay.service.empty()) {
      return "an overlay without a namespace or service name";
    }
    if (!overlays.emplace(overlay.namespace_name, overlay.service).second) {
      return fmt::format("two overlays for service {}/{}", overlay.namespace_name, overlay.service);
    }
  }
  std::set<std::tuple<std::string_view, std::string_view>> services;
  for (const ServiceRollouts& service : state.rollouts) {
    const std::string who = fmt::format("service {}/{}", service.namespace_name, service.service);
    if (service.namespace_name.empty() || service.service.empty()) {
      return "rollouts without a namespace or service name";
    }
    if (!services.emplace(service.namespace_name, service.service).second) {
      return fmt::format("{} has two lists of rollouts", who);
    }
    std::set<std::string_view> tags;
    for (const Rollout& rollout : service.rollouts) {
      if (!tags.insert(rollout.tag).second) {
        return fmt::format("{} has two rollouts for tag \"{}\"", who, rollout.tag);
      }
      if (auto problem = rollout_problem(rollout)) {
        return fmt::format("{}, rollout of tag \"{}\": {}", who, rollout.tag, *problem);
      }
    }
  }
  return std::nullopt;
}

// 1-based line and column of `offset` in `text`.
std::pair<int, int> line_column(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  int line = 1;
  int column = 1;
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

std::string errno_text(int error) { return std::generic_category().message(error); }

// ---- the file ----

// Closes on scope exit; release() keeps the descriptor open for an explicit, checked close.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // close(2) reports write-back errors (NFS, quotas): check it rather than lose it.
  int close() {
    const int result = ::close(fd_);
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

}  // namespace

std::string format_state(const State& state) {
  // One entry per service, holding both its overlay and its rollouts.
  using Key = std::tuple<std::string, std::string>;
  std::map<Key, std::pair<const Overlay*, const ServiceRollouts*>> services;
  for (const Overlay& overlay : state.overlays) {
    services[{overlay.namespace_name, overlay.service}].first = &overlay;
  }
  for (const ServiceRollouts& service : state.rollouts) {
    if (service.rollouts.empty()) continue;
    services[{service.namespace_name, service.service}].second = &service;
  }
  json::array entries;
  for (const auto& [key, parts] : services) {
    json::object entry;
    entry["namespace"] = std::get<0>(key);
    entry["name"] = std::get<1>(key);
    if (const Overlay* overlay = parts.first) {
      json::object o;
      o["traffic"] = traffic_json(overlay->traffic);
      o["base"] = traffic_json(overlay->base);
      o["updatedMs"] = overlay->updated_ms;
      entry["overlay"] = std::move(o);
    }
    if (const ServiceRollouts* rollouts = parts.second) {
      std::vector<const Rollout*> sorted;
      for (const Rollout& rollout : rollouts->rollouts) sorted.push_back(&rollout);
      std::ranges::sort(sorted, {}, [](const Rollout* r) { return r->tag; });
      json::array list;
      for (const Rollout* rollout : sorted) list.push_back(rollout_json(*rollout));
      entry["rollouts"] = std::move(list);
    }
    entries.push_back(std::move(entry));
  }
  json::object document;
  document["version"] = kStateVersion;
  document["services"] = std::move(entries);
  std::string text;
  print(text, document, 0);
  text += "\n";
  return text;
}

std::expected<State, std::string> parse_state(std::string_view text, std::string_view source) {
  json::parser parser;
  boost::system::error_code ec;
  const std::size_t consumed = parser.write(text.data(), text.size(), ec);
  if (ec) {
    const auto [line, column] = line_column(text, consumed);
    return std::unexpected(
        fmt::format("{}:{}:{}: not valid JSON: {}", source, line, column, ec.message()));
  }
  const json::value document = parser.release();
  try {
    // The version first: a newer file is named as such, not as a list of unknown keys.
    const json::object& top = object_at(document, "");
    const json::value* version = top.if_contains("version");
    if (version == nullptr) fail("", "\"version\" is required");
    if (!version->is_int64() || version->as_int64() != kStateVersion) {
      fail("version", fmt::format("unsupported version {} (this revgate reads version {})",
                                  json::serialize(*version), kStateVersion));
    }
    Fields f(document, "", {"version", "services"});
    State state;
    const json::array& services = array_at(f.require("services"), "services");
    for (std::size_t i = 0; i < services.size(); ++i) {
      const std::string where = at("services", i);
      Fields s(services[i], where, {"namespace", "name", "overlay", "rollouts"});
      const std::string namespace_name = s.string("namespace", true, true);
      const std::string name = s.string("name", true, true);
      const json::value* overlay = s.find("overlay");
      const json::value* rollouts = s.find("rollouts");
      if (overlay == nullptr && rollouts == nullptr) {
        fail(where, "has neither \"overlay\" nor \"rollouts\"");
      }
      if (overlay != nullptr) {
        const std::string overlay_at = at(where, "overlay");
        Fields o(*overlay, overlay_at, {"traffic", "base", "updatedMs"});
        Overlay entry;
        entry.namespace_name = namespace_name;
        entry.service = name;
        entry.traffic = read_traffic(o.require("traffic"), at(overlay_at, "traffic"));
        entry.base = read_traffic(o.require("base"), at(overlay_at, "base"));
        entry.updated_ms = o.integer("updatedMs", 0, kAnyTime);
        state.overlays.push_back(std::move(entry));
      }
      if (rollouts != nullptr) {
        const std::string rollouts_at = at(where, "rollouts");
        const json::array& list = array_at(*rollouts, rollouts_at);
        if (list.empty()) fail(rollouts_at, "is empty (leave it out)");
        ServiceRollouts entry{namespace_name, name, {}};
        for (std::size_t j = 0; j < list.size(); ++j) {
          entry.rollouts.push_back(read_rollout(list[j], at(rollouts_at, j)));
        }
        state.rollouts.push_back(std::move(entry));
      }
      // Duplicates and tags checked here, where the entry can still be named by its index.
      if (auto problem = state_problem(state)) fail(where, *problem);
    }
    return state;
  } catch (const Malformed& malformed) {
    return std::unexpected(fmt::format("{}: {}", source, malformed.what));
  }
}

std::expected<State, std::string> load_state(const std::string& path) {
  if (path.empty()) return std::unexpected(std::string("no state file path given"));
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return State{};  // never saved yet
    return std::unexpected(fmt::format("cannot open {}: {}", path, errno_text(errno)));
  }
  std::string text;
  char buffer[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::unexpected(fmt::format("cannot read {}: {}", path, errno_text(errno)));
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  return parse_state(text, path);
}

std::expected<void, std::string> save_state(const std::string& path, const State& state) {
  if (path.empty()) return std::unexpected(std::string("no state file path given"));
  if (auto problem = state_problem(state)) {
    return std::unexpected(fmt::format("not saving {}: {}", path, *problem));
  }
  const std::string text = format_state(state);
  const std::string tmp = path + ".tmp";
  const auto failed = [&](const std::string& step, int error) {
    return std::unexpected(fmt::format("cannot save {}: {}: {}", path, step, errno_text(error)));
  };

  // A leftover from a crash is replaced: unlinked first, so that O_EXCL never writes through a
  // symlink or into a file another process still holds. (A directory there is not removed.)
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) return failed("remove " + tmp, errno);
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return failed("create " + tmp, errno);
  // From here on a failure removes the temporary file; `path` has not been touched.
  const auto abandon = [&](const std::string& step, int error) {
    ::unlink(tmp.c_str());
    return failed(step, error);
  };
  for (std::size_t written = 0; written < text.size();) {
    const ssize_t n = ::write(fd.get(), text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return abandon("write " + tmp, errno);
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return abandon("fsync " + tmp, errno);
  if (fd.close() != 0) return abandon("close " + tmp, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return abandon(fmt::format("rename {} to {}", tmp, path), errno);
  }

  // The rename is durable only once the directory entry is. Failing here, the new file is in
  // place already, but a crash might still bring the old one back.
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid()) return failed("open directory " + dir.string(), errno);
  if (::fsync(dir_fd.get()) != 0) return failed("fsync directory " + dir.string(), errno);
  return {};
}

}  // namespace revgate::traffic
