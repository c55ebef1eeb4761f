/* Exact k nearest neighbours through sgemm tiles.
 *
 * Self kNN: the rows are cut into blocks of TD_KNN_BLOCK. Every unordered
 * pair of blocks (I, J) is computed once, as the tile −2·X_I·X_Jᵀ, and each
 * tile entry feeds both row i's heap and row j's heap, which halves the
 * sgemm work. To let threads update heaps without locks, the pairs are
 * scheduled as a round-robin tournament: within one round no block appears
 * twice, so the rounds run in parallel and meet at a barrier.
 *
 * The expansion ‖x‖² + ‖y‖² − 2x·y loses precision when the norms are large
 * next to the distances, so the data are centred first (distances do not
 * change, norms shrink), negatives are clamped to 0, and the distances of
 * the k survivors are recomputed directly before sorting. */
#include "tardis/knn.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "knn_internal.h"
#include "tardis/parallel.h"

/* Rows per block: a 512 × 512 float tile (1 MiB) stays in L2 on the machines
 * we measured, and sgemm reaches its plateau there (bench_knn --block). */
#ifndef TD_KNN_BLOCK
#define TD_KNN_BLOCK 512
#endif

static int g_block = TD_KNN_BLOCK;

void td__knn_set_block(int b) { g_block = b > 0 ? b : TD_KNN_BLOCK; }

/* ---- exact search ------------------------------------------------------ */

typedef struct {
  float *hd;   /* [rows, k] heap distances (squared, from the expansion) */
  int32_t *hi; /* [rows, k] heap indices */
  float *thr;  /* [rows] heap root, mirrored contiguously for SIMD tests */
  int k;
} heaps;

static int heaps_init(heaps *h, int64_t rows, int k) {
  h->k = k;
  h->hd = malloc(sizeof *h->hd * (size_t)rows * (size_t)k);
  h->hi = malloc(sizeof *h->hi * (size_t)rows * (size_t)k);
  h->thr = malloc(sizeof *h->thr * (size_t)rows);
  if (!h->hd || !h->hi || !h->thr)
    return TD_ENOMEM;
  for (int64_t i = 0; i < rows * k; i++) {
    h->hd[i] = INFINITY;
    h->hi[i] = INT32_MAX;
  }
  for (int64_t i = 0; i < rows; i++)
    h->thr[i] = INFINITY;
  return TD_OK;
}

static void heaps_close(heaps *h) {
  free(h->hd);
  free(h->hi);
  free(h->thr);
}

static inline void heaps_offer(heaps *h, int64_t row, int32_t col, float d) {
  if (d <= h->thr[row]) {
    float *hd = h->hd + row * h->k;
    if (td__heap_push(hd, h->hi + row * h->k, NULL, h->k, d, col, 0))
      h->thr[row] = hd[0];
  }
}

/* One row of a tile: g[b] = −2·x_i·y_(j0+b). Offers each distance to row i's
 * heap and, when `both`, to row (j0+b)'s heap (self kNN, same heaps). The
 * SIMD path only tests; heap work happens for the few entries that pass. */
static void scan_row(heaps *h, const float *g, int64_t i, float ni,
                     const float *nj, int64_t j0, int cnt, int both) {
  int b = 0;
#if defined(__AVX512F__)
  const __m512 vni = _mm512_set1_ps(ni), zero = _mm512_setzero_ps();
  for (; b + 16 <= cnt; b += 16) {
    __m512 v = _mm512_add_ps(_mm512_add_ps(vni, _mm512_loadu_ps(nj + b)),
                             _mm512_loadu_ps(g + b));
    v = _mm512_max_ps(v, zero);
    __mmask16 m = _mm512_cmp_ps_mask(v, _mm512_set1_ps(h->thr[i]), _CMP_LE_OQ);
    if (both)
      m |= _mm512_cmp_ps_mask(v, _mm512_loadu_ps(h->thr + j0 + b), _CMP_LE_OQ);
    if (m) {
      float tmp[16];
      _mm512_storeu_ps(tmp, v);
      while (m) {
        int t = __builtin_ctz(m);
        m &= (__mmask16)(m - 1);
        heaps_offer(h, i, (int32_t)(j0 + b + t), tmp[t]);
        if (both)
          heaps_offer(h, j0 + b + t, (int32_t)i, tmp[t]);
      }
    }
  }
#endif
  for (; b < cnt; b++) {
    float v = (ni + nj[b]) + g[b];
    v = v > 0.0f ? v : 0.0f;
    heaps_offer(h, i, (int32_t)(j0 + b), v);
    if (both)
      heaps_offer(h, j0 + b, (int32_t)i, v);
  }
}

typedef struct {
  const float *x; /* centred reference rows [n, d] */
  const float *q; /* centred query rows [m, d] (== x for self kNN) */
  const float *nx, *nq;
  int64_t n, m;
  int d, bs, nb;
  heaps h;
  float **tile;         /* per thread, bs × bs */
  const int32_t *pairs; /* current round: (I, J) block pairs */
} exact_ctx;

static void tile_gemm(const exact_ctx *c, float *tile, const float *a, int ra,
                      const float *b, int rb) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ra, rb, c->d, -2.0f, a,
              c->d, b, c->d, 0.0f, tile, rb);
}

/* Diagonal blocks: the tile's upper triangle, both directions. */
static void diag_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  exact_ctx *c = vctx;
  for (int64_t bI = begin; bI < end; bI++) {
    int64_t r0 = bI * c->bs;
    int rows = (int)(r0 + c->bs <= c->n ? c->bs : c->n - r0);
    const float *xb = c->x + r0 * c->d;
    tile_gemm(c, c->tile[tid], xb, rows, xb, rows);
    for (int a = 0; a + 1 < rows; a++)
      scan_row(&c->h, c->tile[tid] + (int64_t)a * rows + a + 1, r0 + a,
               c->nx[r0 + a], c->nx + r0 + a + 1, r0 + a + 1, rows - a - 1, 1);
  }
}

static void pair_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  exact_ctx *c = vctx;
  for (int64_t p = begin; p < end; p++) {
    int64_t i0 = (int64_t)c->pairs[2 * p] * c->bs;
    int64_t j0 = (int64_t)c->pairs[2 * p + 1] * c->bs;
    int ri = (int)(i0 + c->bs <= c->n ? c->bs : c->n - i0);
    int rj = (int)(j0 + c->bs <= c->n ? c->bs : c->n - j0);
    tile_gemm(c, c->tile[tid], c->x + i0 * c->d, ri, c->x + j0 * c->d, rj);
    for (int a = 0; a < ri; a++)
      scan_row(&c->h, c->tile[tid] + (int64_t)a * rj, i0 + a, c->nx[i0 + a],
               c->nx + j0, j0, rj, 1);
  }
}

/* Query kNN: each query block against every reference block, rows only. */
static void query_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  exact_ctx *c = vctx;
  for (int64_t bQ = begin; bQ < end; bQ++) {
    int64_t i0 = bQ * c->bs;
    int ri = (int)(i0 + c->bs <= c->m ? c->bs : c->m - i0);
    for (int64_t j0 = 0; j0 < c->n; j0 += c->bs) {
      int rj = (int)(j0 + c->bs <= c->n ? c->bs : c->n - j0);
      tile_gemm(c, c->tile[tid], c->q + i0 * c->d, ri, c->x + j0 * c->d, rj);
      for (int a = 0; a < ri; a++)
        scan_row(&c->h, c->tile[tid] + (int64_t)a * rj, i0 + a, c->nq[i0 + a],
                 c->nx + j0, j0, rj, 0);
    }
  }
}

typedef struct {
  const float *x, *q; /* original (uncentred) rows */
  int d, k;
  const heaps *h;
  td_knn *out;
} final_ctx;

/* Recomputes the survivors' distances directly, sorts, takes the root. */
static void final_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  final_ctx *c = vctx;
  int k = c->k;
  for (int64_t i = begin; i < end; i++) {
    float *dist = c->out->dist + i * k;
    int32_t *idx = c->out->idx + i * k;
    memcpy(idx, c->h->hi + i * k, sizeof *idx * (size_t)k);
    for (int t = 0; t < k; t++)
      dist[t] =
          td__knn_sqdist(c->q + i * c->d, c->x + (int64_t)idx[t] * c->d, c->d);
    td__knn_sort_row(dist, idx, k);
    for (int t = 0; t < k; t++)
      dist[t] = sqrtf(dist[t]);
  }
}

/* Centred copy of rows (mean taken over ref) and their squared norms. */
static int centre(const float *rows, int64_t n, int d, const double *mean,
                  float **out, float **norms) {
  *out = malloc(sizeof **out * (size_t)n * (size_t)d);
  *norms = malloc(sizeof **norms * (size_t)n);
  if (!*out || !*norms)
    return TD_ENOMEM;
  for (int64_t i = 0; i < n; i++) {
    float s = 0.0f;
    for (int j = 0; j < d; j++) {
      float v = (float)((double)rows[i * d + j] - mean[j]);
      (*out)[i * d + j] = v;
      s += v * v;
    }
    (*norms)[i] = s;
  }
  return TD_OK;
}

static double *column_mean(const float *x, int64_t n, int d) {
  double *mean = calloc((size_t)d, sizeof *mean);
  if (!mean)
    return NULL;
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < d; j++)
      mean[j] += (double)x[i * d + j];
  for (int j = 0; j < d; j++)
    mean[j] /= (double)n;
  return mean;
}

static int alloc_tiles(exact_ctx *c, int nt) {
  c->tile = calloc((size_t)nt, sizeof *c->tile);
  if (!c->tile)
    return TD_ENOMEM;
  for (int t = 0; t < nt; t++)
    if (!(c->tile[t] = malloc(sizeof(float) * (size_t)c->bs * (size_t)c->bs)))
      return TD_ENOMEM;
  return TD_OK;
}

static void free_tiles(exact_ctx *c, int nt) {
  if (c->tile)
    for (int t = 0; t < nt; t++)
      free(c->tile[t]);
  free(c->tile);
}

/* Runs every unordered pair of distinct blocks, one tournament round at a
 * time (circle method; an odd count gets a bye). */
static int run_rounds(exact_ctx *c) {
  int nb = c->nb;
  int m = nb + (nb & 1);
  if (nb < 2)
    return TD_OK;
  int32_t *pairs = malloc(sizeof *pairs * (size_t)m);
  if (!pairs)
    return TD_ENOMEM;
  c->pairs = pairs;
  for (int r = 0; r < m - 1; r++) {
    int np = 0;
    for (int s = 0; s < m / 2; s++) {
      int a = s == 0 ? m - 1 : (r + s) % (m - 1);
      int b = (r - s + m - 1) % (m - 1);
      if (a >= nb || b >= nb)
        continue; /* bye */
      pairs[2 * np] = a;
      pairs[2 * np + 1] = b;
      np++;
    }
    td_parallel_for(np, 1, pair_cb, c);
  }
  free(pairs);
  return TD_OK;
}

static int exact_run(const float *x, int64_t n, const float *q, int64_t m,
                     int d, int k, td_knn *out, td_err *err) {
  int self = q == NULL;
  int nt = td_threads();
  exact_ctx c = {.n = n, .m = self ? n : m, .d = d, .bs = g_block};
  float *xc = NULL, *nx = NULL, *qc = NULL, *nq = NULL;
  double *mean = column_mean(x, n, d);
  int rc = mean ? TD_OK : TD_ENOMEM;
  if (rc == TD_OK)
    rc = centre(x, n, d, mean, &xc, &nx);
  if (rc == TD_OK && !self)
    rc = centre(q, m, d, mean, &qc, &nq);
  memset(&c.h, 0, sizeof c.h);
  if (rc == TD_OK)
    rc = heaps_init(&c.h, c.m, k);
  if (rc == TD_OK)
    rc = alloc_tiles(&c, nt);
  if (rc == TD_OK)
    rc = td__knn_alloc(out, c.m, k, err);
  if (rc == TD_OK) {
    td_blas_single_begin();
    c.x = xc;
    c.nx = nx;
    c.q = self ? xc : qc;
    c.nq = self ? nx : nq;
    if (self) {
      c.nb = (int)((n + c.bs - 1) / c.bs);
      td_parallel_for(c.nb, 1, diag_cb, &c);
      rc = run_rounds(&c);
    } else {
      td_parallel_for((c.m + c.bs - 1) / c.bs, 1, query_cb, &c);
    }
    td_blas_single_end();
    if (rc == TD_OK) {
      final_ctx f = {
          .x = xc, .q = self ? xc : qc, .d = d, .k = k, .h = &c.h, .out = out};
      td_parallel_for(c.m, 1024, final_cb, &f);
    } else {
      td_knn_free(out);
    }
  }
  if (rc == TD_ENOMEM)
    td_err_set(err, TD_ENOMEM, "knn: out of memory (%lld x %d, k = %d)",
               (long long)n, d, k);
  free_tiles(&c, nt);
  heaps_close(&c.h);
  free(mean);
  free(xc);
  free(nx);
  free(qc);
  free(nq);
  return rc;
}

int td_knn_exact(const float *x, int64_t n, int d, int k, td_knn *out,
                 td_err *err) {
  TD_ASSERT(out != NULL);
  memset(out, 0, sizeof *out);
  int rc = td__knn_check(x, n, d, k, err);
  if (rc != TD_OK)
    return rc;
  return exact_run(x, n, NULL, 0, d, k, out, err);
}

int td_knn_query_exact(const float *x, int64_t n, const float *q, int64_t m,
                       int d, int k, td_knn *out, td_err *err) {
  TD_ASSERT(out != NULL);
  memset(out, 0, sizeof *out);
  if (!x || !q)
    return td_err_set(err, TD_EARG, "knn: data or queries NULL");
  if (d < 1)
    return td_err_set(err, TD_EARG, "knn: dimension %d < 1", d);
  if (n < 1 || n > INT32_MAX || m < 1)
    return td_err_set(err, TD_EARG, "knn: %lld references, %lld queries",
                      (long long)n, (long long)m);
  if (k < 1 || k > TD_KNN_MAX_K || k > n)
    return td_err_set(err, TD_EARG,
                      "knn: k = %d out of range (1 .. min(n = %lld, %d))", k,
                      (long long)n, TD_KNN_MAX_K);
  int rc = td__knn_check_finite(x, n * (int64_t)d, "data", err);
  if (rc == TD_OK)
    rc = td__knn_check_finite(q, m * (int64_t)d, "query", err);
  if (rc != TD_OK)
    return rc;
  return exact_run(x, n, q, m, d, k, out, err);
}
