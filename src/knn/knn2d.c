/* Exact kNN in 2-D (embeddings) through a quantile grid: tens of
 * milliseconds for 60k points where the general sgemm search needs seconds,
 * and the distances are computed directly.
 *
 * The grid's column and row boundaries are quantiles of x and y, so every
 * column and row holds about the same number of points whatever the layout
 * (an outlier cannot squeeze the bulk into a few cells). Each query scans
 * rings of cells around its own until the k-th best distance is below the
 * distance to any cell not yet scanned. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "knn_internal.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"

typedef struct {
  const float *ref, *q;
  int64_t n, m;
  int k, self, G;
  const float *xb, *yb; /* [G + 1] column / row boundaries */
  const int64_t *start; /* [G*G + 1] cell offsets into ids */
  const int32_t *ids;   /* reference ids, grouped by cell, ascending */
  int32_t *idx;         /* [m, k] output */
  float *dist;          /* [m, k] output */
} grid_ctx;

/* Column of v: the last c with b[c] <= v, clamped to [0, G − 1]. */
static int grid_slot(const float *b, int G, float v) {
  int lo = 0, hi = G - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (b[mid] <= v)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static void grid_scan_cell(const grid_ctx *c, int col, int row, float qx,
                           float qy, int64_t self_id, float *hd, int32_t *hi) {
  int64_t cell = (int64_t)row * c->G + col;
  for (int64_t t = c->start[cell]; t < c->start[cell + 1]; t++) {
    int32_t j = c->ids[t];
    if (j == self_id)
      continue;
    float dx = c->ref[2 * (int64_t)j] - qx,
          dy = c->ref[2 * (int64_t)j + 1] - qy;
    float d = dx * dx + dy * dy;
    if (td__heap_less(d, j, hd[0], hi[0]))
      /* each reference point is seen once per query: no duplicate check */
      td__heap_replace_root(hd, hi, NULL, c->k, d, j, 0);
  }
}

static void grid_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const grid_ctx *c = vctx;
  int G = c->G, k = c->k;
  for (int64_t qi = begin; qi < end; qi++) {
    /* Self queries run in cell order, so consecutive queries scan the same
     * cells while they are in cache. */
    int64_t i = c->self ? c->ids[qi] : qi;
    float qx = c->q[2 * i], qy = c->q[2 * i + 1];
    float *hd = c->dist + i * k;
    int32_t *hi = c->idx + i * k;
    for (int t = 0; t < k; t++) {
      hd[t] = INFINITY;
      hi[t] = INT32_MAX;
    }
    int qc = grid_slot(c->xb, G, qx), qr = grid_slot(c->yb, G, qy);
    int64_t self_id = c->self ? i : -1;
    for (int r = 0;; r++) {
      int c0 = qc - r, c1 = qc + r, r0 = qr - r, r1 = qr + r;
      for (int row = r0; row <= r1; row++) {
        if (row < 0 || row >= G)
          continue;
        int edge = row == r0 || row == r1;
        for (int col = c0; col <= c1; col += edge ? 1 : c1 - c0) {
          if (col >= 0 && col < G)
            grid_scan_cell(c, col, row, qx, qy, self_id, hd, hi);
          if (c1 == c0)
            break;
        }
      }
      /* Nearest possible unscanned point: past one of the block's sides
       * that still has cells beyond it. */
      double bound = HUGE_VAL;
      if (c0 > 0 && (double)qx - (double)c->xb[c0] < bound)
        bound = (double)qx - (double)c->xb[c0];
      if (c1 < G - 1 && (double)c->xb[c1 + 1] - (double)qx < bound)
        bound = (double)c->xb[c1 + 1] - (double)qx;
      if (r0 > 0 && (double)qy - (double)c->yb[r0] < bound)
        bound = (double)qy - (double)c->yb[r0];
      if (r1 < G - 1 && (double)c->yb[r1 + 1] - (double)qy < bound)
        bound = (double)c->yb[r1 + 1] - (double)qy;
      if (bound == HUGE_VAL)
        break;
      /* The margin covers float rounding of the heap's squared distances;
       * ties at the bound are scanned, not skipped. */
      if (bound > 0 && (double)hd[0] * (1 + 1e-6) < bound * bound)
        break;
    }
    td__knn_sort_row(hd, hi, k);
    for (int t = 0; t < k; t++)
      hd[t] = sqrtf(hd[t]);
  }
}

/* Exact kNN of q [m, 2] among ref [n, 2] (self excluded when self, then
 * q == ref and m == n). */
static int knn_2d(const float *ref, int64_t n, const float *q, int64_t m, int k,
                  int self, td_knn *out, td_err *err) {
  memset(out, 0, sizeof *out);
  if (n < 1 || m < 1 || n > INT32_MAX || k < 1 || k > TD_KNN_MAX_K ||
      k > n - (self ? 1 : 0))
    return td_err_set(err, TD_EARG, "knn 2-d: n = %lld, k = %d", (long long)n,
                      k);
  for (int64_t i = 0; i < 2 * n; i++)
    if (!isfinite(ref[i]))
      return td_err_set(err, TD_EVALUE, "knn 2-d: point %lld is not finite",
                        (long long)(i / 2));
  for (int64_t i = 0; i < 2 * m && !self; i++)
    if (!isfinite(q[i]))
      return td_err_set(err, TD_EVALUE, "knn 2-d: query %lld is not finite",
                        (long long)(i / 2));
  /* About k/2 points per cell (at least 2): a query then usually finishes
   * after the 3 × 3 or 5 × 5 block around it. */
  double per_cell = k / 2 > 2 ? k / 2 : 2;
  int G = (int)sqrt((double)n / per_cell);
  if (G < 1)
    G = 1;
  if (G > 4096)
    G = 4096;
  float *xs = malloc((size_t)n * sizeof *xs),
        *ys = malloc((size_t)n * sizeof *ys);
  float *xb = malloc(((size_t)G + 1) * sizeof *xb);
  float *yb = malloc(((size_t)G + 1) * sizeof *yb);
  int64_t *start = calloc((size_t)G * G + 1, sizeof *start);
  int32_t *ids = malloc((size_t)n * sizeof *ids);
  int32_t *cell = malloc((size_t)n * sizeof *cell);
  float *pts = malloc((size_t)n * 2 * sizeof *pts);
  int rc = TD_OK;
  if (!xs || !ys || !xb || !yb || !start || !ids || !cell || !pts) {
    rc = td_err_set(err, TD_ENOMEM, "knn 2-d: out of memory");
    goto done;
  }
  for (int64_t i = 0; i < n; i++) {
    xs[i] = ref[2 * i];
    ys[i] = ref[2 * i + 1];
  }
  qsort(xs, (size_t)n, sizeof *xs, cmp_float);
  qsort(ys, (size_t)n, sizeof *ys, cmp_float);
  for (int g = 0; g <= G; g++) {
    int64_t at = g == G ? n - 1 : (int64_t)g * n / G;
    xb[g] = xs[at];
    yb[g] = ys[at];
  }
  for (int64_t i = 0; i < n; i++) {
    int col = grid_slot(xb, G, ref[2 * i]),
        row = grid_slot(yb, G, ref[2 * i + 1]);
    cell[i] = row * G + col;
    start[cell[i] + 1]++;
  }
  for (int64_t g = 0; g < (int64_t)G * G; g++)
    start[g + 1] += start[g];
  {
    /* counting sort, stable: ids within a cell stay ascending */
    int64_t *fill = malloc((size_t)G * G * sizeof *fill);
    if (!fill) {
      rc = td_err_set(err, TD_ENOMEM, "knn 2-d: out of memory");
      goto done;
    }
    memcpy(fill, start, (size_t)G * G * sizeof *fill);
    for (int64_t i = 0; i < n; i++) {
      int64_t at = fill[cell[i]]++;
      ids[at] = (int32_t)i;
      pts[2 * at] = ref[2 * i];
      pts[2 * at + 1] = ref[2 * i + 1];
    }
    free(fill);
  }
  rc = td__knn_alloc(out, m, k, err);
  if (rc)
    goto done;
  grid_ctx c = {.ref = ref,
                .q = q,
                .n = n,
                .m = m,
                .k = k,
                .self = self,
                .G = G,
                .xb = xb,
                .yb = yb,
                .start = start,
                .ids = ids,
                .idx = out->idx,
                .dist = out->dist};
  td_parallel_for(m, 512, grid_cb, &c);
done:
  free(xs), free(ys), free(xb), free(yb), free(start), free(ids), free(cell);
  free(pts);
  return rc;
}

int td_knn_2d(const float *y, int64_t n, int k, td_knn *out, td_err *err) {
  return knn_2d(y, n, y, n, k, 1, out, err);
}

int td_knn_2d_query(const float *ref, int64_t n, const float *q, int64_t m,
                    int k, td_knn *out, td_err *err) {
  return knn_2d(ref, n, q, m, k, 0, out, err);
}
