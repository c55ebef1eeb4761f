/* Internal to src/knn: helpers shared by the builders (defined in
 * knn_common.c), the bounded heap they all keep per row, and the tuning
 * hooks of tests and bench_knn. */
#ifndef TD_KNN_KNN_INTERNAL_H
#define TD_KNN_KNN_INTERNAL_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/knn.h"

/* Validates the arguments common to the self-kNN builders. */
TD_NODISCARD int td__knn_check(const float *x, int64_t n, int d, int k,
                               td_err *err);
/* Allocates out->idx/dist for [n, k]; TD_ENOMEM leaves *out zeroed. */
TD_NODISCARD int td__knn_alloc(td_knn *out, int64_t n, int k, td_err *err);
/* Squared Euclidean distance, computed directly (no cancellation). */
float td__knn_sqdist(const float *a, const float *b, int d);
/* Sorts one row of (dist, idx) pairs ascending by dist, then idx. */
void td__knn_sort_row(float *dist, int32_t *idx, int k);
/* TD_EVALUE naming `what` and the element when x[0 .. count) holds a
 * non-finite value. */
TD_NODISCARD int td__knn_check_finite(const float *x, int64_t count,
                                      const char *what, td_err *err);

/* Tuning hooks for tests and bench_knn (process-wide, not thread-safe: set
 * them before building graphs). 0 or -1 restore the defaults. */
void td__knn_set_block(int rows);     /* exact: rows per sgemm block */
void td__nnd_set_leaf_size(int leaf); /* NN-descent: rp-tree leaf size */
void td__nnd_set_extra(int extra);    /* NN-descent: kw - k (-1: k/5) */
void td__nnd_set_verbose(int on);     /* NN-descent: phase times to stderr */

/* A bounded max-heap of (dist, idx), root = the current k-th best. The
 * order is lexicographic on (dist, idx), so the kept set does not depend on
 * the order of insertion. Empty slots hold (+inf, INT32_MAX). */
static inline int td__heap_less(float da, int32_t ia, float db, int32_t ib) {
  return da < db || (da == db && ia < ib);
}

/* Replaces the root with (d, j) and sifts it down; flag (may be NULL) moves
 * along and gets `fv` at the new entry's slot. */
static inline void td__heap_replace_root(float *hd, int32_t *hi, uint8_t *flag,
                                         int k, float d, int32_t j,
                                         uint8_t fv) {
  int p = 0;
  for (;;) {
    int c = 2 * p + 1;
    if (c >= k)
      break;
    if (c + 1 < k && td__heap_less(hd[c], hi[c], hd[c + 1], hi[c + 1]))
      c++;
    if (!td__heap_less(d, j, hd[c], hi[c]))
      break;
    hd[p] = hd[c];
    hi[p] = hi[c];
    if (flag)
      flag[p] = flag[c];
    p = c;
  }
  hd[p] = d;
  hi[p] = j;
  if (flag)
    flag[p] = fv;
}

/* Inserts (d, j) if it beats the root and is not present. Returns 1 when the
 * heap changed. flag (may be NULL) gets `fv` for the inserted entry. */
static inline int td__heap_push(float *hd, int32_t *hi, uint8_t *flag, int k,
                                float d, int32_t j, uint8_t fv) {
  if (!td__heap_less(d, j, hd[0], hi[0]))
    return 0;
  for (int t = 0; t < k; t++)
    if (hi[t] == j)
      return 0;
  td__heap_replace_root(hd, hi, flag, k, d, j, fv);
  return 1;
}

#endif
