// LD_PRELOAD heap-call counter for bench/allocs.sh: counts malloc, calloc, realloc and
// aligned allocations (operator new goes through malloc) and writes the count to stderr on
// SIGUSR1. Build: cc -O2 -shared -fPIC -o alloc_counter.so alloc_counter.c
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <signal.h>
#include <unistd.h>
#include <string.h>
extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
static volatile unsigned long count;
void* malloc(size_t n) { __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED); return __libc_malloc(n); }
void* calloc(size_t a, size_t b) { __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED); return __libc_calloc(a, b); }
void* realloc(void* p, size_t n) { __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED); return __libc_realloc(p, n); }
extern void* __libc_memalign(size_t, size_t);
void* aligned_alloc(size_t a, size_t n) { __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED); return __libc_memalign(a, n); }
int posix_memalign(void** out, size_t a, size_t n) {
  __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
  *out = __libc_memalign(a, n);
  return *out ? 0 : 12;  // ENOMEM
}
static void dump(int s) { char buf[64]; int len = snprintf(buf, sizeof buf, "mallocs %lu\n", count); write(2, buf, len); }
__attribute__((constructor)) static void init(void) { signal(SIGUSR1, dump); }
