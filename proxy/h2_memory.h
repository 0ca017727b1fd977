// The heap nghttp2 sessions allocate from (nghttp2_mem). nghttp2 allocates its frames, streams,
// header-table entries and outbound items one by one, about 8 malloc/free pairs per stream on
// each session, so a request proxied HTTP/2 to an h2c revision makes ~18 of each. This heap
// keeps freed blocks in per-thread free lists by size class (32 B to 4 KiB), so a worker's
// sessions reuse their own blocks with no call into malloc and no lock; larger blocks go to
// malloc directly. What a thread keeps is capped per size class; the rest goes back to malloc.
// H2HeapAllocator puts the proxy's own per-stream objects (streams, their map nodes) there too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

#include <nghttp2/nghttp2.h>

namespace revgate::proxy {

// For nghttp2_session_server_new3 / nghttp2_session_client_new3. Valid for the process's life;
// a block may be freed on another thread than the one that allocated it (it joins that
// thread's lists).
nghttp2_mem* h2_session_memory() noexcept;

namespace h2_memory {
// The usable size of a block from h2_session_memory(): at least what was asked for.
std::size_t capacity(const void* block) noexcept;
// Blocks this thread keeps for reuse, all size classes.
std::size_t cached_blocks() noexcept;
}  // namespace h2_memory

template <class T>
class H2HeapAllocator {
 public:
  using value_type = T;
  static_assert(alignof(T) <= 16, "the heap's blocks are 16-byte aligned");

  H2HeapAllocator() noexcept = default;
  template <class U>
  H2HeapAllocator(const H2HeapAllocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    void* block = h2_session_memory()->malloc(n * sizeof(T), nullptr);
    if (block == nullptr) throw std::bad_alloc();
    return static_cast<T*>(block);
  }
  void deallocate(T* block, std::size_t) noexcept { h2_session_memory()->free(block, nullptr); }

  template <class U>
  bool operator==(const H2HeapAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace revgate::proxy
