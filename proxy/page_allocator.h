// An allocator of whole pages for the client read buffers: blocks come from mmap and go back
// with munmap, so the buffers that idle connections give back (Session::park) leave the
// process's resident size at once, with no heap fragments left behind. A small per-thread
// cache of the usual 16 KiB block keeps busy connections (and connection churn) free of system
// calls. Stateless; the cache is per thread, so per worker.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <new>
#include <vector>

namespace revgate::proxy {

namespace page_blocks {
inline constexpr std::size_t kPage = 4096;
inline constexpr std::size_t kCachedSize = 16 * 1024;  // Session's read size
inline constexpr std::size_t kCachedMax = 64;
inline thread_local std::vector<void*> cache;

inline std::size_t rounded(std::size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }

inline void* allocate(std::size_t bytes) {
  bytes = rounded(bytes);
  if (bytes == kCachedSize && !cache.empty()) {
    void* p = cache.back();
    cache.pop_back();
    return p;
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

inline void deallocate(void* p, std::size_t bytes) noexcept {
  bytes = rounded(bytes);
  if (bytes == kCachedSize && cache.size() < kCachedMax) {
    cache.push_back(p);
    return;
  }
  munmap(p, bytes);
}
}  // namespace page_blocks

template <class T>
class PageAllocator {
 public:
  using value_type = T;

  PageAllocator() noexcept = default;
  template <class U>
  PageAllocator(const PageAllocator<U>&) noexcept {}

  T* allocate(std::size_t n) { return static_cast<T*>(page_blocks::allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { page_blocks::deallocate(p, n * sizeof(T)); }

  template <class U>
  bool operator==(const PageAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace revgate::proxy
