/* tardis/knn.h — k nearest neighbour graphs (Euclidean).
 *
 * Two ways to build the graph of each row's k nearest *other* rows:
 *
 *  - td_knn_exact: brute force, tiled through sgemm (‖x‖² + ‖y‖² − 2x·y),
 *    each distance tile computed once and used for both of its block rows
 *    (the distance is symmetric), a bounded max-heap per row, parallel over
 *    pairs of row blocks. Distances of the final k are recomputed directly,
 *    so they carry no cancellation error.
 *  - td_knn_nndescent: approximate, NN-descent (Dong et al., 2011) started
 *    from random-projection-tree leaves, run on a working list of
 *    kw = k + k/5 neighbours and cut to k (the longer list converges to a
 *    markedly better top k); recall ≥ 0.99 at k = 15 on 60k × 128.
 *
 * td_knn_auto picks one by size (exact below TD_KNN_AUTO_EXACT_MAX rows).
 * td_knn_2d is an exact search specialised to two dimensions (embeddings),
 * through a quantile grid.
 *
 *     td_knn g;
 *     td_err err;
 *     if (td_knn_auto(x, n, d, 15, seed, &g, &err) != TD_OK) { ... }
 *     // g.idx[i * 15 + j]: j-th nearest neighbour of row i (self excluded),
 *     // g.dist[i * 15 + j]: its Euclidean distance, ascending in j.
 *     td_knn_free(&g);
 *
 * Ties are broken by the smaller index, so results do not depend on the
 * thread count. Inputs must be finite (TD_EVALUE otherwise). Thread count:
 * td_threads(); OpenBLAS runs single-threaded inside the workers and its
 * thread count is restored on return.
 */
#ifndef TARDIS_KNN_H
#define TARDIS_KNN_H

#include <stdint.h>

#include "tardis/error.h"

/* Largest k accepted by every function here. */
#define TD_KNN_MAX_K 1024
/* td_knn_auto uses exact search up to this many rows (measured crossover on
 * 2 cores, d = 128; see bench/bench_knn.c). */
#define TD_KNN_AUTO_EXACT_MAX 15000

/* A k-NN graph. Row-major [n, k]: idx[i*k + j] and dist[i*k + j] are the j-th
 * neighbour of row i and its Euclidean (not squared) distance, ascending.
 * Both arrays are malloc'd by the builder; release with td_knn_free. */
typedef struct td_knn {
  int64_t n;
  int k;
  int32_t *idx;
  float *dist;
} td_knn;

/* Frees both arrays and zeroes *g; safe on a zeroed or freed graph. */
void td_knn_free(td_knn *g);

/* Exact kNN of every row of x[n, d] among the other rows.
 * Requires n >= 2, d >= 1, 1 <= k <= min(n - 1, TD_KNN_MAX_K), n < 2^31.
 * On error *out is zeroed. */
TD_NODISCARD int td_knn_exact(const float *x, int64_t n, int d, int k,
                              td_knn *out, td_err *err);

/* Exact kNN of each query row q[m, d] among the reference rows x[n, d]; no
 * self exclusion (a query equal to a reference row finds it at distance 0).
 * out->n == m; indices refer to rows of x. Requires 1 <= k <= min(n,
 * TD_KNN_MAX_K), m >= 1. */
TD_NODISCARD int td_knn_query_exact(const float *x, int64_t n, const float *q,
                                    int64_t m, int d, int k, td_knn *out,
                                    td_err *err);

/* NN-descent parameters. */
typedef struct td_nnd_params {
  int n_iters;       /* maximum local-join iterations (default 10) */
  float delta;       /* stop when an iteration adds < delta*n*kw edges
                        (default 0.001) */
  float sample_rate; /* new/old candidates per row = ceil(sample_rate * kw)
                        (default 2) */
  int n_trees;       /* random-projection trees for the start (default 8;
                        0: random start) */
  uint64_t seed;     /* every random choice derives from it (default 42) */
} td_nnd_params;

/* Fills the defaults tuned for recall >= 0.99 at k = 15. */
void td_nnd_params_default(td_nnd_params *p);

/* Approximate kNN of every row of x[n, d] among the other rows. Same
 * preconditions and output as td_knn_exact; p may be NULL for defaults.
 * Deterministic for a given seed, whatever the thread count. */
TD_NODISCARD int td_knn_nndescent(const float *x, int64_t n, int d, int k,
                                  const td_nnd_params *p, td_knn *out,
                                  td_err *err);

/* Exact for n <= TD_KNN_AUTO_EXACT_MAX, otherwise NN-descent with default
 * parameters and the given seed. */
TD_NODISCARD int td_knn_auto(const float *x, int64_t n, int d, int k,
                             uint64_t seed, td_knn *out, td_err *err);

/* Exact kNN in 2-D: every row of y [n, 2] among the other rows, through a
 * quantile grid; tens of milliseconds for 60k points where td_knn_exact
 * needs seconds. Same output, ordering and tie-breaking as td_knn_exact
 * (distances are Euclidean, computed directly). Requires finite y,
 * 1 <= k <= min(n − 1, TD_KNN_MAX_K). Free with td_knn_free. */
TD_NODISCARD int td_knn_2d(const float *y, int64_t n, int k, td_knn *out,
                           td_err *err);
/* The same for query rows q [m, 2] among reference rows ref [n, 2], no self
 * exclusion (1 <= k <= n). */
TD_NODISCARD int td_knn_2d_query(const float *ref, int64_t n, const float *q,
                                 int64_t m, int k, td_knn *out, td_err *err);

/* Fraction of the exact graph's neighbours that the approximate graph also
 * lists (mean over rows of |approx_i ∩ exact_i| / k). Both graphs must have
 * the same n; the smaller k of the two is used for both. */
double td_knn_recall(const td_knn *approx, const td_knn *exact);

#endif
