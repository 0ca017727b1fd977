// Header memory of one request: a bump allocator over blocks borrowed from the worker, handed to
// Beast's basic_fields so that parsing and rewriting heads allocates nothing in steady state.
// Everything is returned at once when the request ends. One worker thread only.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include <boost/beast/http/fields.hpp>

namespace revgate::proxy {

// Free blocks of one worker, reused by every request's arena.
class BlockPool {
 public:
  static constexpr std::size_t kBlockSize = 4096;
  std::unique_ptr<std::byte[]> acquire() {
    if (free_.empty()) return std::make_unique_for_overwrite<std::byte[]>(kBlockSize);
    auto block = std::move(free_.back());
    free_.pop_back();
    return block;
  }
  void release(std::unique_ptr<std::byte[]> block) {
    constexpr std::size_t kMaxKept = 4096;  // 16 MiB: more requests than that are never in flight
    if (free_.size() < kMaxKept) free_.push_back(std::move(block));
  }

 private:
  std::vector<std::unique_ptr<std::byte[]>> free_;
};

class HeaderArena {
 public:
  explicit HeaderArena(BlockPool& pool) : pool_(pool) {}
  HeaderArena(const HeaderArena&) = delete;
  HeaderArena& operator=(const HeaderArena&) = delete;
  ~HeaderArena() { reset(); }

  void* allocate(std::size_t bytes, std::size_t alignment) {
    std::size_t offset = (used_ + alignment - 1) & ~(alignment - 1);
    if (blocks_.empty() || offset + bytes > BlockPool::kBlockSize) {
      if (bytes > BlockPool::kBlockSize) {
        // A huge field (up to the head limit): its own allocation, freed with the arena.
        large_.push_back(std::make_unique_for_overwrite<std::byte[]>(bytes));
        return large_.back().get();
      }
      blocks_.push_back(pool_.acquire());
      offset = 0;
    }
    used_ = offset + bytes;
    return blocks_.back().get() + offset;
  }

  // Everything allocated since the last reset is released: call once no header uses it.
  void reset() {
    for (auto& block : blocks_) pool_.release(std::move(block));
    blocks_.clear();
    large_.clear();
    used_ = 0;
  }

 private:
  BlockPool& pool_;
  std::vector<std::unique_ptr<std::byte[]>> blocks_;
  std::vector<std::unique_ptr<std::byte[]>> large_;
  std::size_t used_ = 0;  // bytes used in blocks_.back()
};

// The standard allocator interface over a HeaderArena; deallocation is a no-op (the arena
// frees everything at reset).
template <class T>
class ArenaAllocator {
 public:
  using value_type = T;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;

  explicit ArenaAllocator(HeaderArena* arena) noexcept : arena_(arena) {}
  template <class U>
  ArenaAllocator(const ArenaAllocator<U>& other) noexcept : arena_(other.arena()) {}

  T* allocate(std::size_t n) {
    return static_cast<T*>(arena_->allocate(n * sizeof(T), alignof(T)));
  }
  void deallocate(T*, std::size_t) noexcept {}
  HeaderArena* arena() const noexcept { return arena_; }

  template <class U>
  bool operator==(const ArenaAllocator<U>& other) const noexcept {
    return arena_ == other.arena();
  }

 private:
  HeaderArena* arena_;
};

using Fields = boost::beast::http::basic_fields<ArenaAllocator<char>>;

}  // namespace revgate::proxy
