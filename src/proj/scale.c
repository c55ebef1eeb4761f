/* Projection at scale: the sample's size from SentryCam's relative-density
 * curve, the sample itself, and the placement of the points outside it
 * (docs/scale.md). */
#include "proj/scale.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/alloc.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

#define PROXY_MAX 40000 /* rows of the proxy the curve is measured on */
#define PROBES 1000
#define DENSITY_K 15
#define SLOPE_MAX 0.25 /* DESIGN §3.11 */

/* Candidates on the canvas and neighbours kept by td__scale_refine. */
#define REFINE_CAND 48
#define REFINE_K 3
/* the search over the sample's kNN graph: its beam, its seeds near the
 * point's encoder position and of the point's predicted class, and a cap
 * on the distances one point costs */
#define SEARCH_BEAM 16
#define SEARCH_CANVAS_SEEDS 16
#define SEARCH_CLASS_SEEDS 8
#define SEARCH_MAX_EVALS 640
#define REFINE_CHUNK 65536

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* A seeded permutation of 0..n-1 whose first s entries are a uniform
 * sample (partial Fisher-Yates). */
static int64_t *shuffled(int64_t n, int64_t s, uint64_t seed) {
  int64_t *perm = td_malloc((size_t)(n ? n : 1) * sizeof *perm);
  if (!perm)
    return NULL;
  for (int64_t i = 0; i < n; i++)
    perm[i] = i;
  td_rng r;
  td_rng_seed(&r, seed);
  for (int64_t i = 0; i < s && i < n - 1; i++) {
    int64_t j = i + (int64_t)td_rng_below(&r, (uint64_t)(n - i));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

int64_t *td__scale_sample_rows(int64_t n, int64_t s, uint64_t seed) {
  if (s > n)
    s = n;
  int64_t *perm = shuffled(n, s, seed);
  if (perm)
    qsort(perm, (size_t)s, sizeof *perm, cmp_i64);
  return perm;
}

static void gather(const float *x, int d, const int64_t *rows, int64_t m,
                   float *out) {
  for (int64_t i = 0; i < m; i++)
    memcpy(out + i * d, x + rows[i] * d, (size_t)d * sizeof *out);
}

/* Mean distance of the probes q [PROBES, d] to their DENSITY_K nearest
 * rows of ref [m, d]. */
static int mean_knn_dist(const float *ref, int64_t m, const float *q,
                         int64_t nq, int d, double *out, td_err *err) {
  td_knn g;
  int rc = td_knn_query_exact(ref, m, q, nq, d, DENSITY_K, &g, err);
  if (rc)
    return rc;
  double s = 0;
  for (int64_t i = 0; i < nq * DENSITY_K; i++)
    s += (double)g.dist[i];
  td_knn_free(&g);
  *out = s / (double)(nq * DENSITY_K);
  return TD_OK;
}

int td__scale_density_ratio(const float *x, int64_t n, int d, uint64_t seed,
                            td__scale_density *out, td_err *err) {
  memset(out, 0, sizeof *out);
  out->ratio = 0.5;
  int64_t nq = PROBES, p = n - nq < PROXY_MAX ? n - nq : PROXY_MAX;
  if (p < 10 * DENSITY_K)
    return td_err_set(err, TD_EARG, "density rule: %lld rows are too few",
                      (long long)n);
  /* the first p of the shuffle are the proxy (nested subsets: its first
   * r * p rows), the next nq the probes */
  int64_t *perm = shuffled(n, p + nq, seed ^ 0x5eedc0deULL);
  float *px = perm ? td_malloc((size_t)(p * d) * sizeof *px) : NULL;
  float *qx = px ? td_malloc((size_t)(nq * d) * sizeof *qx) : NULL;
  int rc =
      qx ? TD_OK : td_err_set(err, TD_ENOMEM, "density rule: out of memory");
  double full = 0, part[5] = {0};
  if (rc == TD_OK) {
    gather(x, d, perm, p, px);
    gather(x, d, perm + p, nq, qx);
    rc = mean_knn_dist(px, p, qx, nq, d, &full, err);
  }
  for (int i = 0; i < 5 && rc == TD_OK; i++)
    rc = mean_knn_dist(px, (int64_t)((double)p * 0.1 * (i + 1)), qx, nq, d,
                       &part[i], err);
  td_free(perm);
  td_free(px);
  td_free(qx);
  if (rc)
    return rc;
  for (int i = 0; i < 5; i++)
    out->density[i] = part[i] > 0 ? full / part[i] : 1.0;
  /* the smallest qualifying ratio: scan up from 10 % */
  for (int i = 0; i < 5; i++) {
    double r = 0.1 * (i + 1);
    if ((1.0 - out->density[i]) / (1.0 - r) <= SLOPE_MAX) {
      out->ratio = r;
      break;
    }
  }
  return TD_OK;
}

/* ---- placement of the points outside the sample ---------------------- */

typedef struct refine_ctx {
  const float *x, *pos;
  int d;
  const int64_t *rows; /* the sample, ascending */
  int64_t s;
  const float *xs;      /* [s, d] the sample's rows of x, contiguous, or NULL */
  const uint8_t *qs;    /* [s, d] the same rows on the search's grid, or NULL */
  const float *lo;      /* [d] the grid's origin per coordinate */
  float step;           /* the inverse of the grid's step (one for all) */
  uint8_t *qx;          /* per thread: [d] the query's row on the grid */
  const int64_t *query; /* the chunk's non-sample rows */
  const td_knn *cand;   /* their canvas candidates among the sample */
  const int32_t *pred;  /* [n] predicted classes, or NULL */
  float *y, *alt;
  const td_knn *graph;  /* the sample's kNN graph (indices into it), or NULL */
  const int32_t *seeds; /* [C][SEARCH_CLASS_SEEDS] sample indices, or -1 */
  int n_classes;
  uint32_t **stamp; /* per thread: [s] the query that last saw the vertex */
  uint32_t *gen;    /* per thread: that query's stamp */
} refine_ctx;

/* Insertion into the ascending list (dist, idx) of at most REFINE_K. */
static int keep_nearest(float *dist, int32_t *idx, int cnt, float dv,
                        int32_t v) {
  if (cnt == REFINE_K && dv >= dist[cnt - 1])
    return cnt;
  int j = cnt < REFINE_K ? cnt++ : cnt - 1;
  while (j > 0 && dist[j - 1] > dv) {
    dist[j] = dist[j - 1];
    idx[j] = idx[j - 1];
    j--;
  }
  dist[j] = dv;
  idx[j] = v;
  return cnt;
}

/* Euclidean distance from xi to sample point v, in 8 interleaved partial
 * sums (a fixed order, so the compiler can vectorise it and the result
 * does not depend on the machine's thread count). */
/* Sample point v's row: in the contiguous copy when there is one. */
static const float *row_of(const refine_ctx *c, int32_t v) {
  return c->xs ? c->xs + (int64_t)v * c->d : c->x + c->rows[v] * c->d;
}

/* The squared distance summed over eight lanes, added pairwise. */
static float lanes_total(const float part[8]) {
  return ((part[0] + part[1]) + (part[2] + part[3])) +
         ((part[4] + part[5]) + (part[6] + part[7]));
}

static float dist_to(const refine_ctx *c, const float *xi, int32_t v) {
  const float *xv = row_of(c, v);
  float part[8] = {0};
  int t = 0;
  for (; t + 8 <= c->d; t += 8)
    for (int l = 0; l < 8; l++) {
      float df = xi[t + l] - xv[t + l];
      part[l] += df * df;
    }
  for (; t < c->d; t++) {
    float df = xi[t] - xv[t];
    part[0] += df * df;
  }
  return sqrtf(lanes_total(part));
}

/* ---- the graph search's grid ---------------------------------------- */

/* The search compares the point with sample points by their rows on a grid
 * of 256 steps per coordinate, one byte each: a quarter of the floats'
 * bytes, so the sample's copy it reads at random (12.8 MB at 100,000 x 128,
 * against 51 MB of floats) stays in the caches far more often, and the
 * search, bound by memory latency, costs less. One step for every
 * coordinate (the widest range over 255), so a grid distance is the
 * Euclidean one up to rounding, half a step per coordinate at most; the
 * search's final beam is ranked again by the exact distances, so only
 * which sample points reach the beam can differ, not how they rank.
 * Integer sums are exact in any order: deterministic everywhere. */
/* coordinates summed in 16 uint32 lanes (at most 16 squares of 255 each:
 * no overflow) before the partial sum is compared with the bound */
#define GRID_BLOCK 256

/* A coordinate on the grid: rounded, clamped to [0, 255] (NaN to 0). */
static uint8_t to_grid(float v, float lo, float inv_step) {
  float t = (v - lo) * inv_step + 0.5f;
  if (!(t > 0.0f))
    return 0;
  return t >= 255.0f ? 255 : (uint8_t)t;
}

/* The squared grid distance from a to b [d], or any value >= bound once
 * it is known to reach it: the sums only grow, so a partial sum that
 * reaches bound ends at a distance that does too, and the caller rejects
 * both alike. Most of the search's candidates are rejected; this reads
 * part of their row only. */
static uint64_t grid_dist_below(const uint8_t *a, const uint8_t *b, int d,
                                uint64_t bound) {
  uint64_t total = 0;
  int t = 0;
  while (t < d) {
    uint32_t part[16] = {0};
    int stop = t + GRID_BLOCK <= d ? t + GRID_BLOCK : d;
    for (; t + 16 <= stop; t += 16)
      for (int l = 0; l < 16; l++) {
        int32_t df = (int32_t)a[t + l] - (int32_t)b[t + l];
        part[l] += (uint32_t)(df * df);
      }
    for (; t < stop; t++) {
      int32_t df = (int32_t)a[t] - (int32_t)b[t];
      part[0] += (uint32_t)(df * df);
    }
    uint32_t block = 0;
    for (int l = 0; l < 16; l++)
      block += part[l];
    total += block;
    if (total >= bound)
      return bound;
  }
  return total;
}

/* The grid of the sample's rows xs [s, d]: its origin lo [d] (each
 * coordinate's minimum) and its step (the widest coordinate's range over
 * 255); non-finite values are left out of both. Returns the step's
 * inverse. */
static float grid_fit(const float *xs, int64_t s, int d, float *lo) {
  float wide = 0;
  for (int t = 0; t < d; t++) {
    float a = INFINITY, b = -INFINITY;
    for (int64_t v = 0; v < s; v++) {
      float x = xs[v * d + t];
      if (isfinite(x)) {
        a = x < a ? x : a;
        b = x > b ? x : b;
      }
    }
    lo[t] = a <= b ? a : 0.0f;
    wide = a <= b && b - a > wide ? b - a : wide;
  }
  return wide > 0 && isfinite(wide) ? 255.0f / wide : 1.0f;
}

static void grid_row(const float *x, int d, const float *lo, float inv,
                     uint8_t *out) {
  for (int t = 0; t < d; t++)
    out[t] = to_grid(x[t], lo[t], inv);
}

/* Asks for the rows of sample point v ahead of their distances: the
 * search reads rows of a sample larger than the caches at random, and a
 * vertex's neighbours' rows fetched together cost one memory latency, not
 * k. grid: its row on the grid; else its float row. */
static void prefetch_row(const refine_ctx *c, int32_t v, int grid) {
  const char *p = grid ? (const char *)(c->qs + (int64_t)v * c->d)
                       : (const char *)row_of(c, v);
  int64_t bytes = (int64_t)c->d * (grid ? 1 : (int64_t)sizeof(float));
  for (int64_t b = 0; b < bytes; b += 64)
    __builtin_prefetch(p + b);
}

/* The search's beam: at most SEARCH_BEAM sample points, ascending by grid
 * distance (ties: the first found first), and whether each is expanded. */
typedef struct beam {
  uint64_t dist[SEARCH_BEAM];
  int32_t idx[SEARCH_BEAM];
  uint8_t done[SEARCH_BEAM];
  int cnt;
} beam;

static uint64_t beam_bound(const beam *b) {
  return b->cnt == SEARCH_BEAM ? b->dist[SEARCH_BEAM - 1] : UINT64_MAX;
}

static void beam_insert(beam *b, uint64_t dv, int32_t v) {
  if (b->cnt == SEARCH_BEAM && dv >= b->dist[SEARCH_BEAM - 1])
    return;
  int at = b->cnt < SEARCH_BEAM ? b->cnt++ : b->cnt - 1;
  for (; at > 0 && b->dist[at - 1] > dv; at--) {
    b->dist[at] = b->dist[at - 1];
    b->idx[at] = b->idx[at - 1];
    b->done[at] = b->done[at - 1];
  }
  b->dist[at] = dv, b->idx[at] = v, b->done[at] = 0;
}

/* Puts sample point v into the beam unless it was seen already; returns
 * 1 when its distance was taken. */
static int beam_visit(const refine_ctx *c, beam *b, const uint8_t *qi,
                      uint32_t *seen, uint32_t g, int32_t v) {
  if (v < 0 || v >= c->s || seen[v] == g)
    return 0;
  seen[v] = g;
  beam_insert(
      b, grid_dist_below(qi, c->qs + (int64_t)v * c->d, c->d, beam_bound(b)),
      v);
  return 1;
}

/* The beam's sample points ranked by their exact distance to xi (ties by
 * index): dist/idx, ascending. */
static void rerank(const refine_ctx *c, const float *xi, const beam *b,
                   float *dist, int32_t *idx) {
  for (int j = 0; j < b->cnt; j++)
    prefetch_row(c, b->idx[j], 0);
  for (int j = 0; j < b->cnt; j++) {
    float dv = dist_to(c, xi, b->idx[j]);
    int32_t v = b->idx[j];
    int at = j;
    for (; at > 0 &&
           (dist[at - 1] > dv || (dist[at - 1] == dv && idx[at - 1] > v));
         at--) {
      dist[at] = dist[at - 1];
      idx[at] = idx[at - 1];
    }
    dist[at] = dv, idx[at] = v;
  }
}

/* Best-first search of the sample's kNN graph for the nearest sample points
 * of row q, on the grid: seeded by its canvas candidates and by a few fixed
 * sample points of its predicted class (the canvas may put it in the wrong
 * cluster), it expands the nearest unexpanded vertex of the beam until
 * every vertex of the beam is expanded (or the cap is reached). The beam,
 * ranked by exact distance, is left in dist/idx; returns its length. */
static int graph_search(const refine_ctx *c, int64_t i, int tid,
                        float dist[SEARCH_BEAM], int32_t idx[SEARCH_BEAM]) {
  const float *xi = c->x + c->query[i] * c->d;
  uint8_t *qi = c->qx + (int64_t)tid * c->d;
  uint32_t *seen = c->stamp[tid], g = ++c->gen[tid];
  int kc = c->cand->k, k = c->graph->k;
  int32_t want = c->pred ? c->pred[c->query[i]] : -1;
  for (int j = 0; j < kc; j++)
    if (c->cand->idx[i * kc + j] >= 0)
      prefetch_row(c, c->cand->idx[i * kc + j], 1);
  grid_row(xi, c->d, c->lo, c->step, qi);
  beam b = {.cnt = 0};
  int evals = 0;
  for (int j = 0; j < kc + SEARCH_CLASS_SEEDS; j++)
    evals += beam_visit(c, &b, qi, seen, g,
                        j < kc ? c->cand->idx[i * kc + j]
                        : want >= 0 && want < c->n_classes
                            ? c->seeds[want * SEARCH_CLASS_SEEDS + j - kc]
                            : -1);
  for (;;) {
    int u = 0;
    while (u < b.cnt && b.done[u])
      u++;
    if (u == b.cnt || evals >= SEARCH_MAX_EVALS)
      break;
    b.done[u] = 1;
    if (b.idx[u] >= c->graph->n)
      continue;
    const int32_t *nb = c->graph->idx + (int64_t)b.idx[u] * k;
    for (int j = 0; j < k; j++)
      if (nb[j] >= 0 && nb[j] < c->s && seen[nb[j]] != g)
        prefetch_row(c, nb[j], 1);
    for (int j = 0; j < k; j++)
      evals += beam_visit(c, &b, qi, seen, g, nb[j]);
  }
  rerank(c, xi, &b, dist, idx);
  return b.cnt;
}

/* The REFINE_K nearest of the graph search's beam, of the point's
 * predicted class when the beam holds any. */
static int nearest_of_beam(const refine_ctx *c, int64_t i, int tid,
                           float dist[REFINE_K], int32_t idx[REFINE_K]) {
  float bd[SEARCH_BEAM];
  int32_t bi[SEARCH_BEAM];
  int nb = graph_search(c, i, tid, bd, bi), cnt = 0, any = 0;
  int32_t want = c->pred ? c->pred[c->query[i]] : -1;
  for (int j = 0; want >= 0 && j < nb && !any; j++)
    any = c->pred[c->rows[bi[j]]] == want;
  for (int j = 0; j < nb && cnt < REFINE_K; j++)
    if (!any || c->pred[c->rows[bi[j]]] == want) {
      dist[cnt] = bd[j];
      idx[cnt++] = bi[j];
    }
  return cnt;
}

/* The REFINE_K nearest in the representation space among the canvas
 * candidates (no graph: the first placement). */
static int nearest_of_candidates(const refine_ctx *c, int64_t i,
                                 float dist[REFINE_K], int32_t idx[REFINE_K]) {
  int kc = c->cand->k, cnt = 0;
  const float *xi = c->x + c->query[i] * c->d;
  /* the candidates of the point's predicted class, as the class-aware
   * complex draws them (all of them when none is) */
  int32_t want = c->pred ? c->pred[c->query[i]] : -1, any = 0;
  for (int j = 0; want >= 0 && j < kc && !any; j++)
    any = c->pred[c->rows[c->cand->idx[i * kc + j]]] == want;
  for (int j = 0; j < kc; j++) {
    int32_t v = c->cand->idx[i * kc + j];
    if (any && c->pred[c->rows[v]] != want)
      continue;
    cnt = keep_nearest(dist, idx, cnt, dist_to(c, xi, v), v);
  }
  return cnt;
}

/* Asks for the row of the query LOOKAHEAD places ahead: the queries come
 * in canvas order, so their rows lie anywhere in the run's array. */
#define LOOKAHEAD 4

static void refine_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  const refine_ctx *c = vctx;
  for (int64_t i = begin; i < end; i++) {
    if (i + LOOKAHEAD < end) {
      const char *p = (const char *)(c->x + c->query[i + LOOKAHEAD] * c->d);
      for (int64_t b = 0; b < (int64_t)c->d * (int64_t)sizeof(float); b += 64)
        __builtin_prefetch(p + b);
    }
    float dist[REFINE_K];
    int32_t idx[REFINE_K];
    int cnt = c->graph ? nearest_of_beam(c, i, tid, dist, idx)
                       : nearest_of_candidates(c, i, dist, idx);
    double spread = 0;
    for (int j = 0; j < cnt; j++)
      spread += (double)(dist[j] - dist[0]);
    spread = cnt > 1 ? spread / (cnt - 1) : 0;
    double wx = 0, wy = 0, ws = 0;
    for (int j = 0; j < cnt; j++) {
      double w = spread > 0 ? exp(-(double)(dist[j] - dist[0]) / spread) : 1.0;
      wx += w * (double)c->pos[2 * idx[j]];
      wy += w * (double)c->pos[2 * idx[j] + 1];
      ws += w;
    }
    if (ws > 0) {
      c->y[2 * c->query[i]] = (float)(wx / ws);
      c->y[2 * c->query[i] + 1] = (float)(wy / ws);
    }
    if (c->alt && cnt > 0) { /* beside the nearest, as relocate_changed */
      float a = (float)(c->query[i] % 628) * 0.01f;
      c->alt[2 * c->query[i]] = c->pos[2 * idx[0]] + 0.05f * cosf(a);
      c->alt[2 * c->query[i] + 1] = c->pos[2 * idx[0] + 1] + 0.05f * sinf(a);
    }
  }
}

/* The rows not in the (ascending) sample, m of them; td_malloc'd. */
static int64_t *outside(int64_t n, const int64_t *rows, int64_t s, int64_t *m) {
  int64_t *q = td_malloc((size_t)(n - s > 0 ? n - s : 1) * sizeof *q);
  if (!q)
    return NULL;
  int64_t k = 0, j = 0;
  for (int64_t i = 0; i < n; i++) {
    if (j < s && rows[j] == i)
      j++;
    else
      q[k++] = i;
  }
  *m = k;
  return q;
}

/* Interleaves the bits of a 16-bit x and y: the Z-order curve. */
static uint32_t morton(uint32_t x, uint32_t y) {
  uint32_t r = 0;
  for (int b = 0; b < 16; b++)
    r |= ((x >> b) & 1u) << (2 * b) | ((y >> b) & 1u) << (2 * b + 1);
  return r;
}

typedef struct {
  uint32_t key;
  int64_t row;
} keyed_row;

static int cmp_keyed(const void *a, const void *b) {
  const keyed_row *p = a, *q = b;
  if (p->key != q->key)
    return p->key < q->key ? -1 : 1;
  return (p->row > q->row) - (p->row < q->row);
}

/* Reorders the m rows of query along the Z-order curve of their positions
 * y [n, 2] on the canvas: neighbours on the canvas are mostly neighbours in
 * the representation space, so consecutive rows search the same part of
 * the sample and find its rows in the cache. Each row's result does not
 * depend on the order (a total one: ties by row), only the time does.
 * Returns 0, or -1 when out of memory (query unchanged). */
static int locality_order(int64_t *query, int64_t m, const float *y) {
  keyed_row *k = td_malloc((size_t)(m ? m : 1) * sizeof *k);
  if (!k)
    return -1;
  float lo[2] = {0, 0}, hi[2] = {0, 0};
  for (int64_t i = 0; i < m; i++)
    for (int a = 0; a < 2; a++) {
      float v = y[2 * query[i] + a];
      lo[a] = i == 0 || v < lo[a] ? v : lo[a];
      hi[a] = i == 0 || v > hi[a] ? v : hi[a];
    }
  for (int64_t i = 0; i < m; i++) {
    uint32_t g[2];
    for (int a = 0; a < 2; a++) {
      double t = hi[a] > lo[a] ? ((double)y[2 * query[i] + a] - (double)lo[a]) /
                                     ((double)hi[a] - (double)lo[a])
                               : 0.0;
      t = t >= 0 ? (t <= 1 ? t : 1) : 0; /* NaN to 0 */
      g[a] = (uint32_t)(t * 65535.0);
    }
    k[i].key = morton(g[0], g[1]);
    k[i].row = query[i];
  }
  qsort(k, (size_t)m, sizeof *k, cmp_keyed);
  for (int64_t i = 0; i < m; i++)
    query[i] = k[i].row;
  td_free(k);
  return 0;
}

/* SEARCH_CLASS_SEEDS sample points of each class (-1 where a class has
 * fewer), evenly spaced among its sample points (the sample is uniform, so
 * that is a spread of the class). */
static int32_t *class_seeds(const int64_t *rows, int64_t s, const int32_t *pred,
                            int C) {
  int32_t *seeds = td_malloc((size_t)C * SEARCH_CLASS_SEEDS * sizeof *seeds);
  int64_t *count = td_calloc((size_t)C, sizeof *count);
  int64_t *seen = td_calloc((size_t)C, sizeof *seen);
  if (seeds && count && seen) {
    for (int64_t i = 0; i < C * SEARCH_CLASS_SEEDS; i++)
      seeds[i] = -1;
    for (int64_t v = 0; v < s; v++)
      count[pred[rows[v]]]++;
    int got[256] = {0};
    for (int64_t v = 0; v < s; v++) {
      int k = pred[rows[v]];
      int64_t j = seen[k]++;
      /* the j-th of count[k] is the got[k]-th seed when it reaches the
       * seed's even spacing */
      if (got[k] < SEARCH_CLASS_SEEDS &&
          j == (int64_t)(((double)got[k] + 0.5) * (double)count[k] /
                         SEARCH_CLASS_SEEDS))
        seeds[k * SEARCH_CLASS_SEEDS + got[k]++] = (int32_t)v;
    }
  } else {
    td_free(seeds);
    seeds = NULL;
  }
  td_free(count);
  td_free(seen);
  return seeds;
}

/* The graph search's scratch: a stamp array of the sample per thread. */
static uint32_t **stamps_new(int64_t s, int t) {
  uint32_t **st = td_calloc((size_t)t, sizeof *st);
  for (int i = 0; st && i < t; i++)
    if (!(st[i] = td_calloc((size_t)(s ? s : 1), sizeof **st))) {
      while (i-- > 0)
        td_free(st[i]);
      td_free(st);
      return NULL;
    }
  return st;
}

/* What the graph search reads: the sample in its own order (below), its
 * kNN graph, rows (floats for the exact ranking, bytes on the grid for
 * the search), positions and class seeds in that order; a stamp array and
 * a grid row per thread. */
typedef struct search_data {
  int64_t *rows; /* [s] the run's row of each sample point, in search order */
  float *pos;    /* [s, 2] its drawn position */
  td_knn graph;  /* [s, k] its neighbours, in search order (-1: none) */
  int32_t *seeds;
  uint32_t **stamp, *gen;
  float *xs, *lo, inv_step;
  uint8_t *qs, *qx;
  int64_t nt;
} search_data;

static void search_free(search_data *sd) {
  for (int64_t i = 0; sd->stamp && i < sd->nt; i++)
    td_free(sd->stamp[i]);
  td_free(sd->stamp);
  td_free(sd->gen);
  td_free(sd->seeds);
  td_free(sd->rows);
  td_free(sd->pos);
  td_free(sd->graph.idx);
  td_free(sd->xs);
  td_free(sd->lo);
  td_free(sd->qs);
  td_free(sd->qx);
  memset(sd, 0, sizeof *sd);
}

/* The search order of the sample: the Z-order of its drawn positions,
 * the order the queries come in (locality_order). A query's canvas
 * candidates and, mostly, its graph neighbours then lie in a few stretches
 * of the sample's copies, and the next queries read the same stretches:
 * far fewer cache misses than in the order of the run's rows, whose
 * neighbours are scattered over the whole sample. perm [s]: the sample
 * index at each place; inv [s] its inverse. */
static int search_order(const float *pos, int64_t s, int64_t *perm,
                        int32_t *inv) {
  for (int64_t v = 0; v < s; v++)
    perm[v] = v;
  if (locality_order(perm, s, pos))
    return -1;
  for (int64_t j = 0; j < s; j++)
    inv[perm[j]] = (int32_t)j;
  return 0;
}

/* The sample's rows, positions and graph put in search order. */
static void search_permute(search_data *sd, const float *x, int d,
                           const int64_t *rows, const float *pos,
                           const td_knn *g, int64_t s, const int64_t *perm,
                           const int32_t *inv) {
  int k = g->k;
  for (int64_t j = 0; j < s; j++) {
    int64_t v = perm[j];
    sd->rows[j] = rows[v];
    sd->pos[2 * j] = pos[2 * v];
    sd->pos[2 * j + 1] = pos[2 * v + 1];
    memcpy(sd->xs + j * d, x + rows[v] * d, (size_t)d * sizeof *sd->xs);
    for (int l = 0; l < k; l++) {
      int32_t u = v < g->n ? g->idx[v * k + l] : -1;
      sd->graph.idx[j * k + l] = u >= 0 && u < s ? inv[u] : -1;
    }
  }
}

/* Fills sd for the sample rows [s] of x [n, d] drawn at pos [s, 2] with
 * the kNN graph g; -1 when out of memory. */
static int search_new(search_data *sd, const float *x, int d,
                      const int64_t *rows, const float *pos, const td_knn *g,
                      int64_t s, const int32_t *pred, int n_classes,
                      int64_t nt) {
  memset(sd, 0, sizeof *sd);
  sd->nt = nt;
  int64_t *perm = td_malloc((size_t)s * sizeof *perm);
  int32_t *inv = td_malloc((size_t)s * sizeof *inv);
  sd->rows = td_malloc((size_t)s * sizeof *sd->rows);
  sd->pos = td_malloc((size_t)s * 2 * sizeof *sd->pos);
  sd->graph.idx = td_malloc((size_t)s * g->k * sizeof *sd->graph.idx);
  sd->stamp = stamps_new(s, (int)nt);
  sd->gen = td_calloc((size_t)nt, sizeof *sd->gen);
  sd->xs = td_malloc((size_t)s * d * sizeof *sd->xs);
  sd->lo = td_malloc((size_t)d * sizeof *sd->lo);
  sd->qs = td_malloc((size_t)s * d);
  sd->qx = td_malloc((size_t)nt * d);
  int ok = perm && inv && sd->rows && sd->pos && sd->graph.idx && sd->stamp &&
           sd->gen && sd->xs && sd->lo && sd->qs && sd->qx &&
           !search_order(pos, s, perm, inv);
  if (ok) {
    sd->graph.n = s, sd->graph.k = g->k;
    search_permute(sd, x, d, rows, pos, g, s, perm, inv);
    sd->seeds = class_seeds(sd->rows, s, pred, n_classes);
    ok = sd->seeds != NULL;
  }
  td_free(perm);
  td_free(inv);
  if (!ok) {
    search_free(sd);
    return -1;
  }
  sd->inv_step = grid_fit(sd->xs, s, d, sd->lo);
  for (int64_t i = 0; i < s; i++)
    grid_row(sd->xs + i * d, d, sd->lo, sd->inv_step, sd->qs + i * d);
  return 0;
}

int td__scale_refine(const float *x, int64_t n, int d, const int64_t *rows,
                     int64_t s, const float *pos, const int32_t *pred,
                     int n_classes, const td_knn *graph, float *y, float *alt,
                     td_err *err) {
  if (!pred || n_classes < 1 || n_classes > 256)
    graph = NULL; /* the class seeds need the classes */
  int want = graph ? SEARCH_CANVAS_SEEDS : REFINE_CAND;
  int kc = s < want ? (int)s : want;
  if (kc < 1)
    return TD_OK;
  int64_t m = 0, nt = td_threads();
  int64_t *query = outside(n, rows, s, &m);
  if (query && locality_order(query, m, y)) {
    td_free(query);
    query = NULL;
  }
  float *q = query ? td_malloc((size_t)REFINE_CHUNK * 2 * sizeof *q) : NULL;
  search_data sd = {0};
  int rc = q && (!graph || !search_new(&sd, x, d, rows, pos, graph, s, pred,
                                       n_classes, nt))
               ? TD_OK
               : td_err_set(err, TD_ENOMEM, "placing: out of memory");
  for (int64_t b = 0; b < m && rc == TD_OK; b += REFINE_CHUNK) {
    int64_t cm = m - b < REFINE_CHUNK ? m - b : REFINE_CHUNK;
    for (int64_t i = 0; i < cm; i++) {
      q[2 * i] = y[2 * query[b + i]];
      q[2 * i + 1] = y[2 * query[b + i] + 1];
    }
    td_knn cand;
    rc = td_knn_2d_query(graph ? sd.pos : pos, s, q, cm, kc, &cand, err);
    if (rc)
      break;
    /* with the graph, sample indices are in the search's order */
    refine_ctx c = {.x = x,
                    .pos = graph ? sd.pos : pos,
                    .d = d,
                    .rows = graph ? sd.rows : rows,
                    .s = s,
                    .xs = sd.xs,
                    .qs = sd.qs,
                    .lo = sd.lo,
                    .step = sd.inv_step,
                    .qx = sd.qx,
                    .query = query + b,
                    .cand = &cand,
                    .pred = pred,
                    .y = y,
                    .alt = alt,
                    .graph = graph ? &sd.graph : NULL,
                    .seeds = sd.seeds,
                    .n_classes = n_classes,
                    .stamp = sd.stamp,
                    .gen = sd.gen};
    td_parallel_for(cm, 1024, refine_rows, &c);
    td_knn_free(&cand);
  }
  search_free(&sd);
  td_free(q);
  td_free(query);
  return rc;
}
