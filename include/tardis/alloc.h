/* tardis/alloc.h — the allocator every library allocation goes through.
 *
 * Out-of-memory policy: a failed allocation is an ordinary error. The
 * function that sees it frees what it had allocated, leaves its outputs
 * untouched (or zeroed, as documented), writes no partial file, and returns
 * TD_ENOMEM with a message naming what it was doing; the library never
 * aborts on a failed allocation. Only the front end decides to exit.
 *
 * td_malloc and friends behave exactly like their libc counterparts (the
 * memory may be released with free(), and td_free accepts memory from
 * malloc()), so code can move to them one file at a time. What they add is a
 * test hook: td_alloc_fail_after(n) makes the n-th next allocation fail
 * (n = 0: the very next one), which lets tests walk every failure path of an
 * operation (tests/test_alloc.c). Memory mappings of input files count as
 * allocations too (a failed mmap is reported as TD_ENOMEM).
 */
#ifndef TARDIS_ALLOC_H
#define TARDIS_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

#include "tardis/error.h"

TD_NODISCARD void *td_malloc(size_t size);
TD_NODISCARD void *td_calloc(size_t count, size_t size);
TD_NODISCARD void *td_realloc(void *ptr,
                              size_t size); /* on failure ptr stays valid */
TD_NODISCARD char *td_strdup(const char *s);
void td_free(void *ptr);

/* Test hook (process-wide, thread-safe): the n-th next allocation through
 * td_malloc/td_calloc/td_realloc/td_strdup, counting from 0, fails; the
 * following ones succeed again. n < 0 disarms the hook. */
void td_alloc_fail_after(long n);
/* Whether an injected failure has fired since the hook was last armed. */
bool td_alloc_failed(void);

/* Internal: counts one allocation against the hook and returns true when it
 * must fail. For allocations that do not go through td_malloc (mmap). */
bool td__alloc_inject(void);

#endif
