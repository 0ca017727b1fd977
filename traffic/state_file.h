// The state file: every overlay and every rollout in progress, one JSON document (version 1)
// that survives a restart, replaced atomically and durably on each save. Blocking file I/O, no
// global state: call it from the control thread (or any one thread at a time).
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "traffic/overlay.h"
#include "traffic/rollout.h"

namespace revgate::traffic {

inline constexpr int kStateVersion = 1;

struct State {
  std::vector<Overlay> overlays;
  std::vector<ServiceRollouts> rollouts;
  friend bool operator==(const State&, const State&) = default;
};

// A missing file is an empty state. Any other failure (unreadable, not JSON, another version,
// an unknown key, a wrong type, an inconsistent rollout, a service twice) is an error that
// names the path and says what and where ("services[0].overlay.traffic[1].percent: ...").
// A leftover "<path>.tmp" from a crash during save is never read.
std::expected<State, std::string> load_state(const std::string& path);

// Writes the whole document to "<path>.tmp" in the same directory (replacing a leftover one),
// fsyncs it, renames it over `path` and fsyncs the directory: a crash at any point leaves the
// old or the new complete file. On failure the temporary file is removed, `path` is untouched,
// and the error names the file and the errno text (only when the directory's fsync fails is the
// new file in place already, though a crash might still bring the old one back). A state that
// load_state would refuse is not written.
std::expected<void, std::string> save_state(const std::string& path, const State& state);

// The document's text: indented, keys in a fixed order, services sorted by namespace then name,
// each with its overlay and its rollouts; traffic targets in Knative's spelling.
std::string format_state(const State& state);

// The document's text back; `source` names it in messages (load_state passes the path).
std::expected<State, std::string> parse_state(std::string_view text, std::string_view source);

}  // namespace revgate::traffic
