// A YAML stream's first document as a compact tree, built from libyaml's events in one pass.
// Private to config/ (the loader walks it). Built and read on the loading thread; once parsed a
// YamlDocument is immutable, and its YamlNode handles are valid while it lives and stays put.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace revgate::config::detail {

// A plain untagged `~`, `null`, `Null`, `NULL` or nothing at all is null (YAML 1.2 core schema);
// every other scalar, quoted "" included, is a scalar.
enum class YamlKind : std::uint8_t { null, scalar, sequence, map };

class YamlDocument;

// One node of a YamlDocument: a handle of 16 bytes, copied freely. The default handle is an
// absent node: null, at {0, 0}, without children.
class YamlNode {
 public:
  YamlNode() = default;

  YamlKind kind() const;
  bool is_null() const { return kind() == YamlKind::null; }
  bool is_scalar() const { return kind() == YamlKind::scalar; }
  bool is_sequence() const { return kind() == YamlKind::sequence; }
  bool is_map() const { return kind() == YamlKind::map; }
  // Written plain and without a tag: only such a scalar may read as a number or a boolean.
  bool is_plain() const;
  // The explicit tag, resolved ("tag:yaml.org,2002:str" for !!str, "!" for the non-specific
  // tag), or "" for none.
  std::string_view tag() const;
  // A scalar's text; "" for every other kind.
  std::string_view scalar() const;
  // Where the node starts, 1-based (an alias: where the alias is written).
  SourcePos pos() const;
  // A sequence's items, a map's entries; 0 for every other kind.
  std::size_t size() const;
  YamlNode item(std::size_t i) const;   // a sequence's i-th item
  YamlNode key(std::size_t i) const;    // a map's i-th key
  YamlNode value(std::size_t i) const;  // a map's i-th value

  // A sequence's items for range-for (none for every other kind).
  class Iterator {
   public:
    Iterator(const YamlDocument* doc, const std::uint32_t* at) : doc_(doc), at_(at) {}
    YamlNode operator*() const { return YamlNode(doc_, *at_); }
    Iterator& operator++() {
      ++at_;
      return *this;
    }
    bool operator==(const Iterator& other) const { return at_ == other.at_; }

   private:
    const YamlDocument* doc_;
    const std::uint32_t* at_;
  };
  Iterator begin() const;
  Iterator end() const;

 private:
  friend class YamlDocument;
  YamlNode(const YamlDocument* doc, std::uint32_t index) : doc_(doc), index_(index) {}

  const YamlDocument* doc_ = nullptr;
  std::uint32_t index_ = 0;
};

// Why a stream cannot be read: libyaml's problem (with its context), or an alias that cannot be
// resolved or expands too far.
struct YamlError {
  SourcePos pos;
  std::string message;
};

class YamlDocument {
 public:
  // The stream's first document. The whole stream is read, so that a syntax error anywhere is
  // an error; a second document's start is kept (second_document()) but not its content.
  static std::expected<YamlDocument, YamlError> parse(std::string_view text);

  // A stream without a document (empty, or only comments) has a null root at 1:1.
  YamlNode root() const { return YamlNode(this, root_); }
  // Where a second document starts; {0, 0} when the stream holds at most one.
  SourcePos second_document() const { return second_document_; }
  std::size_t node_count() const { return nodes_.size(); }

 private:
  friend class YamlNode;
  friend class YamlBuilder;

  // 24 bytes a node. Scalars point into text_, collections into children_ (a map's children are
  // key, value, key, value...). An alias copies its target's entry with its own position, so a
  // collection's children are shared, never copied.
  struct Entry {
    YamlKind kind = YamlKind::null;
    bool plain = true;
    std::uint32_t line = 0;
    std::uint32_t column = 0;
    std::uint32_t tag = 0;    // index into tags_; 0 is "no tag"
    std::uint32_t first = 0;  // scalar: offset in text_; collection: offset in children_
    std::uint32_t count = 0;  // scalar: length; collection: number of children
  };

  std::vector<Entry> nodes_;
  std::vector<std::uint32_t> children_;
  std::string text_;
  std::vector<std::string> tags_{std::string()};
  std::uint32_t root_ = 0;
  SourcePos second_document_;
};

// The handle's accessors are inline: the loader calls them for every node of a big file.

inline YamlKind YamlNode::kind() const {
  return doc_ == nullptr ? YamlKind::null : doc_->nodes_[index_].kind;
}

inline bool YamlNode::is_plain() const { return doc_ == nullptr || doc_->nodes_[index_].plain; }

inline std::string_view YamlNode::tag() const {
  return doc_ == nullptr ? std::string_view() : doc_->tags_[doc_->nodes_[index_].tag];
}

inline std::string_view YamlNode::scalar() const {
  if (kind() != YamlKind::scalar) return {};
  const auto& entry = doc_->nodes_[index_];
  return std::string_view(doc_->text_).substr(entry.first, entry.count);
}

inline SourcePos YamlNode::pos() const {
  if (doc_ == nullptr) return {};
  const auto& entry = doc_->nodes_[index_];
  return {int(entry.line), int(entry.column)};
}

inline std::size_t YamlNode::size() const {
  switch (kind()) {
    case YamlKind::sequence:
      return doc_->nodes_[index_].count;
    case YamlKind::map:
      return doc_->nodes_[index_].count / 2;
    default:
      return 0;
  }
}

inline YamlNode YamlNode::item(std::size_t i) const {
  if (!is_sequence() || i >= size()) return {};
  return YamlNode(doc_, doc_->children_[doc_->nodes_[index_].first + i]);
}

inline YamlNode YamlNode::key(std::size_t i) const {
  if (!is_map() || i >= size()) return {};
  return YamlNode(doc_, doc_->children_[doc_->nodes_[index_].first + 2 * i]);
}

inline YamlNode YamlNode::value(std::size_t i) const {
  if (!is_map() || i >= size()) return {};
  return YamlNode(doc_, doc_->children_[doc_->nodes_[index_].first + 2 * i + 1]);
}

inline YamlNode::Iterator YamlNode::begin() const {
  if (!is_sequence()) return Iterator(doc_, nullptr);
  return Iterator(doc_, doc_->children_.data() + doc_->nodes_[index_].first);
}

inline YamlNode::Iterator YamlNode::end() const {
  if (!is_sequence()) return Iterator(doc_, nullptr);
  const auto& entry = doc_->nodes_[index_];
  return Iterator(doc_, doc_->children_.data() + entry.first + entry.count);
}

}  // namespace revgate::config::detail
