/* tardis/parallel.h — a parallel-for over index ranges.
 *
 * The callback receives a half-open range [begin, end) and the id of the
 * thread running it (0 .. nthreads-1), so each thread can own its scratch
 * memory without locks:
 *
 *     static void rows_cb(void *ctx, int64_t begin, int64_t end, int tid) {..}
 *     td_parallel_for(n_rows, 256, rows_cb, &ctx);
 *
 * Work is handed out in chunks of `grain` indices through an atomic counter.
 * The number of threads is td_threads() (set once by the front end with
 * td_set_threads; default: the number of online CPUs).
 */
#ifndef TARDIS_PARALLEL_H
#define TARDIS_PARALLEL_H

#include <stdint.h>

typedef void (*td_range_cb)(void *ctx, int64_t begin, int64_t end, int tid);

/* Sets the thread count used by tardis (and by OpenBLAS). n <= 0: all CPUs. */
void td_set_threads(int n);
/* td_set_threads's count, or on first use TD_THREADS from the environment
 * (unset or <= 0: all CPUs). Thread-safe. */
int td_threads(void);
/* Overrides td_threads() for the calling thread only (n <= 0: back to the
 * process's count). Live mode runs its low-priority projections on a
 * thread of their own with 1, so that none of their work lands on the
 * shared pool's workers (which keep the process's priority). */
void td_set_thread_threads(int n);

/* OpenBLAS's thread count is process-wide. Code that calls BLAS from inside
 * td_parallel_for (where the callers' threads are the parallelism, and
 * OpenBLAS threads would oversubscribe the CPUs) brackets the region with
 * these. The scopes nest and may overlap across threads: the first begin
 * saves the count and sets 1, the last end restores it. Every begin needs
 * its end on all paths. */
void td_blas_single_begin(void);
void td_blas_single_end(void);
/* Internal, for tests: how many single-thread scopes are open. */
int td__blas_single_depth(void);

/* Runs cb over [0, n) in chunks of `grain` on td_threads() threads (the
 * caller's thread included) and returns when all are done. With one thread,
 * or n <= grain, it runs inline. Deterministic chunking; nondeterministic
 * assignment of chunks to threads, so callbacks must not depend on tid for
 * anything but scratch space. */
void td_parallel_for(int64_t n, int64_t grain, td_range_cb cb, void *ctx);

/* Monotonic wall clock in seconds. */
double td_now(void);

#endif
