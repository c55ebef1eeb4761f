/* The library's allocator: libc's, plus a failure-injection hook for tests.
 * The hook costs one relaxed atomic load per allocation when disarmed. */
#include "tardis/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Allocations left before the injected failure; -1: disarmed. */
static atomic_long g_fail_in = -1;
static atomic_bool g_failed;

void td_alloc_fail_after(long n) {
  atomic_store(&g_failed, false);
  atomic_store(&g_fail_in, n < 0 ? -1 : n);
}

bool td_alloc_failed(void) { return atomic_load(&g_failed); }

bool td__alloc_inject(void) {
  long left = atomic_load_explicit(&g_fail_in, memory_order_relaxed);
  while (left >= 0) {
    /* Count down with a CAS so that concurrent allocations each take one
     * step and exactly one of them sees 0. */
    if (atomic_compare_exchange_weak(&g_fail_in, &left, left - 1)) {
      if (left != 0)
        return false;
      atomic_store(&g_failed, true);
      return true;
    }
  }
  return false;
}

void *td_malloc(size_t size) {
  return td__alloc_inject() ? NULL : malloc(size);
}

void *td_calloc(size_t count, size_t size) {
  return td__alloc_inject() ? NULL : calloc(count, size);
}

void *td_realloc(void *ptr, size_t size) {
  return td__alloc_inject() ? NULL : realloc(ptr, size);
}

char *td_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = td_malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

void td_free(void *ptr) { free(ptr); }
