/* Large float buffers backed by transparent huge pages. Filling a fresh
 * buffer faults once per page: for the tens of MB of a dataset as float
 * that is thousands of 4 KiB faults, which cost a sixth of a short
 * fine-tuning's CPU time on a virtualised machine (docs/repair.md#time);
 * with 2 MiB pages it is one fault per 2 MiB. */
#include "train/bigbuf.h"

#include <stdlib.h>
#include <sys/mman.h>

float *td__big_floats(int64_t count) {
  size_t bytes = (size_t)(count > 0 ? count : 1) * sizeof(float);
  const size_t huge = (size_t)2 << 20;
  void *p = NULL;
  if (bytes < 2 * huge)
    return malloc(bytes);
  if (posix_memalign(&p, huge, bytes) != 0)
    return NULL;
  /* advice only: without huge pages the buffer works the same */
  (void)madvise(p, bytes & ~(huge - 1), MADV_HUGEPAGE);
  return p;
}
