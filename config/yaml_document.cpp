// libyaml's event stream folded into a YamlDocument: one pass, an explicit stack (no recursion,
// whatever the nesting), aliases resolved to their anchored node, and libyaml's errors turned
// into one positioned line.
#include "config/yaml_document.h"

#include <yaml.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "config/values.h"

namespace revgate::config::detail {
namespace {

// Nodes that aliases may add to a document, counted as if each alias were a copy: a guard
// against a "billion laughs" (ten aliases of ten aliases of ...), which would make the loader
// walk 10^9 nodes. Real configs repeat a block or two.
constexpr std::uint64_t kMaxAliasNodes = 1'000'000;
// libyaml's scanner rescans its stack of possible keys for every token, so its cost grows with
// the square of the flow nesting depth (100,000 '[' take half a minute). A config nests less
// than ten deep; stopping here keeps the work before the error trivial.
constexpr std::size_t kMaxDepth = 1000;
// Offsets are 32 bits; no config file comes near this.
constexpr std::size_t kMaxInput = std::size_t{1} << 30;

std::uint32_t to_u32(std::size_t n) {
  return static_cast<std::uint32_t>(std::min<std::size_t>(n, std::numeric_limits<int>::max()));
}

SourcePos pos_of(const yaml_mark_t& mark) {
  return {int(to_u32(mark.line + 1)), int(to_u32(mark.column + 1))};
}

// A reader error (bad UTF-8, a control character) has a byte offset but no mark.
SourcePos pos_at_offset(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  SourcePos pos{1, 1};
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++pos.line;
      pos.column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) {
      ++pos.column;  // columns count characters, as libyaml's marks do
    }
  }
  return pos;
}

bool is_null_text(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

std::string_view text_of(const yaml_char_t* s) {
  return s == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(s));
}

// libyaml's problem, with its context ("while parsing a flow sequence") and the other mark.
YamlError error_of(const yaml_parser_t& parser, std::string_view text) {
  std::string problem = parser.problem != nullptr ? parser.problem : "cannot be parsed";
  switch (parser.error) {
    case YAML_MEMORY_ERROR:
      return {{1, 1}, "out of memory while parsing"};
    case YAML_READER_ERROR:
      if (parser.problem_value != -1) problem += fmt::format(" (0x{:02x})", parser.problem_value);
      return {pos_at_offset(text, parser.problem_offset), std::move(problem)};
    default:
      break;
  }
  SourcePos problem_pos = pos_of(parser.problem_mark);
  if (parser.context == nullptr) return {problem_pos, std::move(problem)};
  SourcePos context_pos = pos_of(parser.context_mark);
  if (parser.error == YAML_SCANNER_ERROR && context_pos.line < problem_pos.line) {
    // An unclosed quote, a key without ':': the token that began on an earlier line is what the
    // user must fix, not the place (often the end of the file) where libyaml gave up on it.
    return {context_pos, fmt::format("{} at line {}, column {} ({})", problem, problem_pos.line,
                                     problem_pos.column, parser.context)};
  }
  if (context_pos.line == problem_pos.line && context_pos.column == problem_pos.column) {
    return {problem_pos, fmt::format("{} ({})", problem, parser.context)};
  }
  return {problem_pos, fmt::format("{} ({} at line {}, column {})", problem, parser.context,
                                   context_pos.line, context_pos.column)};
}

struct ParserHolder {
  yaml_parser_t parser;
  bool ready = false;
  ~ParserHolder() {
    if (ready) yaml_parser_delete(&parser);
  }
};

struct EventHolder {
  yaml_event_t* event;
  ~EventHolder() { yaml_event_delete(event); }
};

}  // namespace

class YamlBuilder {
 public:
  explicit YamlBuilder(std::string_view text) : text_(text) {}

  std::expected<YamlDocument, YamlError> run() {
    if (text_.size() > kMaxInput) {
      return std::unexpected(YamlError{{1, 1}, "the file is larger than 1 GiB"});
    }
    ParserHolder holder;
    if (yaml_parser_initialize(&holder.parser) == 0) {
      return std::unexpected(YamlError{{1, 1}, "out of memory while parsing"});
    }
    holder.ready = true;
    yaml_parser_set_input_string(
        &holder.parser, reinterpret_cast<const unsigned char*>(text_.data()), text_.size());
    // Roughly one node per 12 bytes of a typical config; saves the vectors' regrowth.
    doc_.nodes_.reserve(text_.size() / 12 + 1);
    doc_.children_.reserve(text_.size() / 12 + 1);
    doc_.text_.reserve(text_.size() / 3 + 1);
    for (;;) {
      yaml_event_t event;
      if (yaml_parser_parse(&holder.parser, &event) == 0) {
        return std::unexpected(error_of(holder.parser, text_));
      }
      EventHolder guard{&event};
      if (event.type == YAML_STREAM_END_EVENT) break;
      if (auto error = handle(event)) return std::unexpected(std::move(*error));
    }
    if (!has_root_) {
      doc_.root_ = add(YamlDocument::Entry{.kind = YamlKind::null, .line = 1, .column = 1});
    }
    return std::move(doc_);
  }

 private:
  using Entry = YamlDocument::Entry;

  struct Open {  // a sequence or map whose end has not come yet
    std::uint32_t node;
    std::size_t pending_start;   // its children so far are pending_[pending_start...]
    std::uint64_t expanded = 1;  // its size with aliases counted as copies
    std::string anchor;
  };
  struct Anchor {
    std::uint32_t node;
    std::uint64_t expanded;
  };

  std::optional<YamlError> handle(const yaml_event_t& event) {
    if (event.type == YAML_DOCUMENT_START_EVENT) {
      if (++documents_ == 2) doc_.second_document_ = pos_of(event.start_mark);
      return std::nullopt;
    }
    if (documents_ > 1) return std::nullopt;  // only read on, for syntax errors
    switch (event.type) {
      case YAML_SCALAR_EVENT: {
        const auto& scalar = event.data.scalar;
        std::string_view value(reinterpret_cast<const char*>(scalar.value), scalar.length);
        Entry entry = start(event, scalar.tag);
        entry.plain = scalar.style == YAML_PLAIN_SCALAR_STYLE && scalar.tag == nullptr;
        if (entry.plain && is_null_text(value)) {
          entry.kind = YamlKind::null;
        } else {
          entry.kind = YamlKind::scalar;
          entry.first = to_u32(doc_.text_.size());
          entry.count = to_u32(value.size());
          doc_.text_ += value;
        }
        std::uint32_t node = add(entry);
        if (scalar.anchor != nullptr) define(text_of(scalar.anchor), node, 1);
        attach(node, 1);
        return std::nullopt;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT:
        if (open_.size() == kMaxDepth) {
          return YamlError{pos_of(event.start_mark),
                           fmt::format("lists and maps nest deeper than {} levels", kMaxDepth)};
        }
        if (event.type == YAML_SEQUENCE_START_EVENT) {
          open(event, YamlKind::sequence, event.data.sequence_start.tag,
               event.data.sequence_start.anchor);
        } else {
          open(event, YamlKind::map, event.data.mapping_start.tag, event.data.mapping_start.anchor);
        }
        return std::nullopt;
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        close();
        return std::nullopt;
      case YAML_ALIAS_EVENT:
        return alias(event);
      default:
        return std::nullopt;
    }
  }

  Entry start(const yaml_event_t& event, const yaml_char_t* tag) {
    Entry entry;
    SourcePos pos = pos_of(event.start_mark);
    entry.line = std::uint32_t(pos.line);
    entry.column = std::uint32_t(pos.column);
    if (tag != nullptr) {
      entry.tag = to_u32(doc_.tags_.size());
      doc_.tags_.emplace_back(text_of(tag));
    }
    return entry;
  }

  std::uint32_t add(const Entry& entry) {
    doc_.nodes_.push_back(entry);
    return to_u32(doc_.nodes_.size() - 1);
  }

  void open(const yaml_event_t& event, YamlKind kind, const yaml_char_t* tag,
            const yaml_char_t* anchor) {
    Entry entry = start(event, tag);
    entry.kind = kind;
    entry.plain = tag == nullptr;
    Open frame{.node = add(entry), .pending_start = pending_.size(), .expanded = 1, .anchor = {}};
    if (anchor != nullptr) {
      frame.anchor = text_of(anchor);
      ++open_anchors_[frame.anchor];
    }
    open_.push_back(std::move(frame));
  }

  void close() {
    if (open_.empty()) return;  // libyaml pairs start and end events; never taken
    Open frame = std::move(open_.back());
    open_.pop_back();
    Entry& entry = doc_.nodes_[frame.node];
    entry.first = to_u32(doc_.children_.size());
    entry.count = to_u32(pending_.size() - frame.pending_start);
    doc_.children_.insert(doc_.children_.end(),
                          pending_.begin() + std::ptrdiff_t(frame.pending_start), pending_.end());
    pending_.resize(frame.pending_start);
    if (!frame.anchor.empty()) {
      // Defined once complete, so an alias inside its own anchored node finds nothing: the tree
      // stays acyclic and the loader's walk ends.
      if (auto it = open_anchors_.find(frame.anchor);
          it != open_anchors_.end() && --it->second == 0) {
        open_anchors_.erase(it);
      }
      define(frame.anchor, frame.node, frame.expanded);
    }
    attach(frame.node, frame.expanded);
  }

  std::optional<YamlError> alias(const yaml_event_t& event) {
    std::string_view name = text_of(event.data.alias.anchor);
    SourcePos pos = pos_of(event.start_mark);
    auto it = anchors_.find(std::string(name));
    if (it == anchors_.end()) {
      std::string shown = quote(fmt::format("*{}", name));
      if (open_anchors_.contains(std::string(name))) {
        return YamlError{pos, fmt::format("alias {} is inside the node it names; a node cannot "
                                          "contain itself",
                                          shown)};
      }
      return YamlError{pos, fmt::format("alias {} names no anchor; {} must come before it", shown,
                                        quote(fmt::format("&{}", name)))};
    }
    const Anchor target = it->second;
    alias_nodes_ += target.expanded;
    if (alias_nodes_ > kMaxAliasNodes) {
      return YamlError{
          pos, fmt::format("aliases expand the document by more than {} nodes", kMaxAliasNodes)};
    }
    Entry entry = doc_.nodes_[target.node];  // the same content (children shared), ...
    entry.line = std::uint32_t(pos.line);    // ... placed where the alias is written
    entry.column = std::uint32_t(pos.column);
    attach(add(entry), target.expanded);
    return std::nullopt;
  }

  void define(std::string_view anchor, std::uint32_t node, std::uint64_t expanded) {
    anchors_.insert_or_assign(std::string(anchor), Anchor{node, expanded});  // a redefinition wins
  }

  void attach(std::uint32_t node, std::uint64_t expanded) {
    if (open_.empty()) {
      if (!has_root_) doc_.root_ = node;
      has_root_ = true;
      return;
    }
    pending_.push_back(node);
    open_.back().expanded += expanded;
  }

  std::string_view text_;
  YamlDocument doc_;
  std::vector<Open> open_;
  std::vector<std::uint32_t> pending_;  // children of the open collections, innermost last
  std::unordered_map<std::string, Anchor> anchors_;
  std::unordered_map<std::string, int> open_anchors_;  // anchors of open collections
  std::uint64_t alias_nodes_ = 0;
  int documents_ = 0;
  bool has_root_ = false;
};

std::expected<YamlDocument, YamlError> YamlDocument::parse(std::string_view text) {
  return YamlBuilder(text).run();
}

}  // namespace revgate::config::detail
