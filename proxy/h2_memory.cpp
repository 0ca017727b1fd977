#include "proxy/h2_memory.h"

#include <array>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace revgate::proxy {

namespace {

// Each block starts with its header; 16 bytes keep the 16-byte alignment malloc gives.
struct alignas(16) Header {
  std::uint32_t size_class;  // kLarge: straight from malloc, never cached
  std::uint32_t unused;
  std::size_t capacity;  // usable bytes after the header
};
static_assert(sizeof(Header) == 16);

// Size classes in half steps, 32, 48, 64, 96, ... 3072, 4096 bytes, so that a block wastes at
// most a third of itself. Larger blocks (nghttp2's 16 KiB frame buffers, one per session) come
// from malloc: they are per connection, not per request.
constexpr unsigned kClasses = 15;
constexpr std::size_t kSmallest = 32;
constexpr std::size_t kLargestClass = 4096;
constexpr std::uint32_t kLarge = 0xffffffff;
constexpr std::size_t kKeptBytesPerClass = 256 * 1024;
// Under AddressSanitizer every block goes back to malloc, so that a double free or a use after
// free in the sessions' or streams' code is still caught where it happens.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCaching = false;
#else
constexpr bool kCaching = true;
#endif

struct FreeBlock {
  FreeBlock* next;
};

struct Cache {
  struct List {
    FreeBlock* head = nullptr;
    std::size_t count = 0;
  };
  std::array<List, kClasses> lists{};
  ~Cache();
};

// Trivially destructible, so it stays readable while the thread's other thread_locals are
// destroyed: a block freed after the cache has gone goes straight to free().
thread_local bool cache_gone = false;
thread_local Cache cache;

Cache::~Cache() {
  cache_gone = true;
  for (auto& list : lists) {
    while (list.head != nullptr) {
      FreeBlock* block = list.head;
      list.head = block->next;
      std::free(reinterpret_cast<Header*>(block) - 1);
    }
  }
}

// Even classes are powers of two (32 << class / 2), odd ones the steps between (48 << ...).
constexpr std::size_t class_capacity(unsigned size_class) {
  return size_class % 2 == 0 ? kSmallest << (size_class / 2)
                             : (kSmallest * 3 / 2) << (size_class / 2);
}
static_assert(class_capacity(kClasses - 1) == kLargestClass);

// The smallest class that holds `size` (1..kLargestClass).
unsigned class_of(std::size_t size) {
  if (size <= kSmallest) return 0;
  const auto bits = static_cast<unsigned>(std::bit_width(size - 1));  // 2^(bits-1) < size <= 2^bits
  const unsigned power = 2 * (bits - 5);                              // the class of 2^bits
  return size <= (std::size_t{3} << (bits - 2)) ? power - 1 : power;
}
static_assert(kSmallest == 1u << 5);

Header* header_of(void* block) { return static_cast<Header*>(block) - 1; }

void* allocate(std::size_t size, void* /*user*/) {
  if (size > kLargestClass) {
    if (size > SIZE_MAX - sizeof(Header)) return nullptr;
    auto* header = static_cast<Header*>(std::malloc(sizeof(Header) + size));
    if (header == nullptr) return nullptr;
    *header = {kLarge, 0, size};
    return header + 1;
  }
  const unsigned size_class = class_of(size);
  if (kCaching && !cache_gone) {
    auto& list = cache.lists[size_class];
    if (list.head != nullptr) {
      FreeBlock* block = list.head;
      list.head = block->next;
      --list.count;
      return block;
    }
  }
  const std::size_t capacity = class_capacity(size_class);
  auto* header = static_cast<Header*>(std::malloc(sizeof(Header) + capacity));
  if (header == nullptr) return nullptr;
  *header = {size_class, 0, capacity};
  return header + 1;
}

void release(void* block, void* /*user*/) {
  if (block == nullptr) return;
  Header* header = header_of(block);
  if (kCaching && header->size_class != kLarge && !cache_gone) {
    auto& list = cache.lists[header->size_class];
    if (list.count * header->capacity < kKeptBytesPerClass) {
      auto* free_block = static_cast<FreeBlock*>(block);
      free_block->next = list.head;
      list.head = free_block;
      ++list.count;
      return;
    }
  }
  std::free(header);
}

void* allocate_zeroed(std::size_t count, std::size_t size, void* user) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  void* block = allocate(count * size, user);
  if (block != nullptr) std::memset(block, 0, count * size);
  return block;
}

void* reallocate(void* block, std::size_t size, void* user) {
  if (block == nullptr) return allocate(size, user);
  if (size == 0) {
    release(block, user);
    return nullptr;
  }
  const std::size_t old_capacity = header_of(block)->capacity;
  if (size <= old_capacity) return block;
  void* grown = allocate(size, user);
  if (grown == nullptr) return nullptr;  // the old block stays the caller's, as with realloc
  std::memcpy(grown, block, old_capacity);
  release(block, user);
  return grown;
}

nghttp2_mem memory{nullptr, allocate, release, allocate_zeroed, reallocate};

}  // namespace

nghttp2_mem* h2_session_memory() noexcept { return &memory; }

namespace h2_memory {

std::size_t capacity(const void* block) noexcept {
  return (static_cast<const Header*>(block) - 1)->capacity;
}

std::size_t cached_blocks() noexcept {
  std::size_t count = 0;
  if (!cache_gone) {
    for (const auto& list : cache.lists) count += list.count;
  }
  return count;
}

}  // namespace h2_memory

}  // namespace revgate::proxy
