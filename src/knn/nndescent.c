/* Approximate k nearest neighbours by NN-descent (Dong, Charikar & Li,
 * WWW 2011), started from random-projection-tree leaves.
 *
 * Shape of one run:
 *  1. A few random-projection trees (split by the hyperplane halfway between
 *     two random points) give leaves of ~leaf_size points; all pairs inside
 *     a leaf seed the heaps. Within one tree every point is in one leaf, so
 *     the leaves of a tree are joined in parallel without locks.
 *  2. Each iteration samples, per point, up to ceil(sample_rate·k) "new"
 *     and "old" candidates from its forward and reverse neighbours, then
 *     joins new×new and new×old pairs. Joins only read the heaps; proposed
 *     edges go to per-thread buffers bucketed by the owner of the target row
 *     and are applied by owner, again without locks.
 *  3. Stop when an iteration adds fewer than delta·n·k edges.
 *
 * Determinism: every random choice is a hash of (seed, what, ids), the join
 * runs over fixed chunks, and the heaps keep the k smallest (dist, idx)
 * pairs offered, which does not depend on the order of offers, so the
 * result is the same for any thread count. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "knn_internal.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

/* Rows joined between two applies of the buffered updates: fresher heap
 * roots prune more, and the buffers stay small. Fixed (not per thread) so
 * that results do not depend on the thread count. */
#define NND_CHUNK 8192

static int g_leaf_size; /* 0: default, see leaf_size_for */
static int g_verbose;
static int g_extra = -1; /* -1: default, see td_knn_nndescent */

void td__nnd_set_extra(int extra) { g_extra = extra; }

void td__nnd_set_verbose(int v) { g_verbose = v; }

void td__nnd_set_leaf_size(int leaf) { g_leaf_size = leaf > 0 ? leaf : 0; }

void td_nnd_params_default(td_nnd_params *p) {
  p->n_iters = 10;
  p->delta = 0.001f;
  p->sample_rate = 2.0f;
  p->n_trees = 8;
  p->seed = 42;
}

static inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Squared distance of two padded rows (dp a multiple of 16, 64-byte
 * aligned), inlined here because the join calls it tens of millions of
 * times. dist_pad4 gives bit-identical results to dist_pad (one accumulator
 * per pair, the same order), so a distance does not depend on which kernel
 * or which end of the pair computed it: that keeps runs deterministic. */
#if defined(__AVX512F__)
static inline float dist_pad(const float *a, const float *b, int dp) {
  __m512 acc = _mm512_setzero_ps();
  for (int i = 0; i < dp; i += 16) {
    __m512 u = _mm512_sub_ps(_mm512_load_ps(a + i), _mm512_load_ps(b + i));
    acc = _mm512_fmadd_ps(u, u, acc);
  }
  return _mm512_reduce_add_ps(acc);
}

static inline void dist_pad4(const float *p, const float *q0, const float *q1,
                             const float *q2, const float *q3, int dp,
                             float *out) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int i = 0; i < dp; i += 16) {
    __m512 vp = _mm512_load_ps(p + i);
    __m512 u0 = _mm512_sub_ps(vp, _mm512_load_ps(q0 + i));
    __m512 u1 = _mm512_sub_ps(vp, _mm512_load_ps(q1 + i));
    __m512 u2 = _mm512_sub_ps(vp, _mm512_load_ps(q2 + i));
    __m512 u3 = _mm512_sub_ps(vp, _mm512_load_ps(q3 + i));
    a0 = _mm512_fmadd_ps(u0, u0, a0);
    a1 = _mm512_fmadd_ps(u1, u1, a1);
    a2 = _mm512_fmadd_ps(u2, u2, a2);
    a3 = _mm512_fmadd_ps(u3, u3, a3);
  }
  out[0] = _mm512_reduce_add_ps(a0);
  out[1] = _mm512_reduce_add_ps(a1);
  out[2] = _mm512_reduce_add_ps(a2);
  out[3] = _mm512_reduce_add_ps(a3);
}
#else
static inline float dist_pad(const float *a, const float *b, int dp) {
  return td__knn_sqdist(a, b, dp);
}

static inline void dist_pad4(const float *p, const float *q0, const float *q1,
                             const float *q2, const float *q3, int dp,
                             float *out) {
  out[0] = td__knn_sqdist(p, q0, dp);
  out[1] = td__knn_sqdist(p, q1, dp);
  out[2] = td__knn_sqdist(p, q2, dp);
  out[3] = td__knn_sqdist(p, q3, dp);
}
#endif

/* Dot product of two padded rows (for the tree splits). */
static inline float dot_pad(const float *a, const float *b, int dp) {
#if defined(__AVX512F__)
  __m512 acc = _mm512_setzero_ps();
  for (int i = 0; i < dp; i += 16)
    acc = _mm512_fmadd_ps(_mm512_load_ps(a + i), _mm512_load_ps(b + i), acc);
  return _mm512_reduce_add_ps(acc);
#else
  float acc[16] = {0}, s = 0.0f;
  for (int i = 0; i < dp; i += 16)
    for (int t = 0; t < 16; t++)
      acc[t] += a[i + t] * b[i + t];
  for (int t = 0; t < 16; t++)
    s += acc[t];
  return s;
#endif
}

typedef struct {
  int32_t p, q; /* offer q to row p's heap */
  float d;
} nnd_update;

typedef struct {
  nnd_update *u;
  int64_t len, cap;
} nnd_buf;

typedef struct {
  /* data */
  float *x; /* padded, 64-byte aligned copy [n, dp] */
  int64_t n;
  int dp, k, nt;
  uint64_t seed;
  /* graph: max-heaps per row, flag 0 = old, 1 = new, 2 = added this pass */
  float *hd;
  int32_t *hi;
  uint8_t *hf;
  /* random-projection trees */
  int n_trees, leaf;
  int32_t **perm;   /* [tree][n] points, leaves contiguous */
  int32_t **leaves; /* [tree][nleaves + 1] leaf start offsets */
  int *nleaves;
  float **scratch; /* per thread: dp floats */
  int32_t **qbuf;  /* per thread: rows to measure from one row */
  float **dbuf;    /* per thread: their distances */
  int cur_tree;
  /* candidates */
  int mc;         /* capacity of each candidate list */
  int32_t *cnew;  /* [n, mc] */
  int32_t *cold;  /* [n, mc] */
  uint32_t *pnew; /* [n, mc] priorities (max-heap on them) */
  uint32_t *pold; /* [n, mc] */
  int32_t *nnew;  /* [n] fill */
  int32_t *nold;  /* [n] */
  int64_t *roff;  /* [n + 1] reverse-edge offsets */
  int64_t *rfill; /* [n] fill cursors */
  int64_t *rev;   /* [n * k] reverse edges as slots i*k+s */
  int iter;
  /* join */
  int64_t chunk0;
  nnd_buf *bufs; /* [thread][owner] */
  atomic_int oom;
} nnd_ctx;

static inline int owner_of(const nnd_ctx *c, int64_t row) {
  return (int)(row * c->nt / c->n);
}

static inline int64_t owner_lo(const nnd_ctx *c, int o) {
  return (o * c->n + c->nt - 1) / c->nt;
}

/* ---- random-projection trees ------------------------------------------- */

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static int build_tree(nnd_ctx *c, int t, float *w) {
  int64_t n = c->n;
  int dp = c->dp;
  int32_t *perm = c->perm[t];
  td_rng rng;
  td_rng_split(&rng, c->seed ^ 0x7472656573ULL, (uint64_t)t);
  for (int64_t i = 0; i < n; i++)
    perm[i] = (int32_t)i;
  /* pending ranges and leaves are disjoint and non-empty: at most n each */
  int32_t *starts = malloc(sizeof *starts * (size_t)(n + 1));
  int64_t *stack = malloc(sizeof *stack * 2 * (size_t)(n + 1));
  if (!starts || !stack) {
    free(starts);
    free(stack);
    return TD_ENOMEM;
  }
  int64_t sp = 0, nl = 0;
  stack[sp++] = 0;
  stack[sp++] = n;
  while (sp > 0) {
    int64_t hi = stack[--sp], lo = stack[--sp];
    int64_t len = hi - lo;
    if (len <= c->leaf) {
      starts[nl++] = (int32_t)lo;
      continue;
    }
    int64_t ia = lo + (int64_t)td_rng_below(&rng, (uint64_t)len);
    int64_t ib = lo + (int64_t)td_rng_below(&rng, (uint64_t)(len - 1));
    if (ib >= ia)
      ib++;
    const float *xa = c->x + (int64_t)perm[ia] * dp;
    const float *xb = c->x + (int64_t)perm[ib] * dp;
    float off = 0.0f;
    for (int j = 0; j < dp; j++) {
      w[j] = xa[j] - xb[j];
      off += w[j] * 0.5f * (xa[j] + xb[j]);
    }
    /* partition: side > 0 to the front */
    int64_t l = lo, r = hi;
    while (l < r) {
      const float *xi = c->x + (int64_t)perm[l] * dp;
      float s = dot_pad(w, xi, dp) - off;
      int right = s > 0.0f || (s == 0.0f && (td_rng_next(&rng) & 1));
      if (right) {
        l++;
      } else {
        r--;
        int32_t tmp = perm[l];
        perm[l] = perm[r];
        perm[r] = tmp;
      }
    }
    int64_t mid = l;
    if (mid == lo || mid == hi) {
      /* all on one side (duplicates): split a random halving */
      td_rng_shuffle_i32(&rng, perm + lo, len);
      mid = lo + len / 2;
    }
    stack[sp++] = lo;
    stack[sp++] = mid;
    stack[sp++] = mid;
    stack[sp++] = hi;
  }
  free(stack);
  /* leaves were recorded in stack order; sorted offsets give the ranges */
  qsort(starts, (size_t)nl, sizeof *starts, cmp_i32);
  starts[nl] = (int32_t)n;
  c->leaves[t] = starts;
  c->nleaves[t] = (int)nl;
  return TD_OK;
}

static void trees_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  nnd_ctx *c = vctx;
  for (int64_t t = begin; t < end; t++)
    if (build_tree(c, (int)t, c->scratch[tid]) != TD_OK)
      atomic_store(&c->oom, 1);
}

/* Distances from row p to rows qs[0..m), four at a time. */
static void dist_many(const nnd_ctx *c, int32_t p, const int32_t *qs, int m,
                      float *out) {
  const float *xp = c->x + (int64_t)p * c->dp, *x = c->x;
  int dp = c->dp, t = 0;
  for (; t + 4 <= m; t += 4)
    dist_pad4(xp, x + (int64_t)qs[t] * dp, x + (int64_t)qs[t + 1] * dp,
              x + (int64_t)qs[t + 2] * dp, x + (int64_t)qs[t + 3] * dp, dp,
              out + t);
  for (; t < m; t++)
    out[t] = dist_pad(xp, x + (int64_t)qs[t] * dp, dp);
}

static inline void offer(nnd_ctx *c, int64_t p, int32_t q, float d,
                         uint8_t fv) {
  int64_t o = p * c->k;
  td__heap_push(c->hd + o, c->hi + o, c->hf + o, c->k, d, q, fv);
}

/* All pairs inside each leaf of the current tree. */
static void leaves_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  nnd_ctx *c = vctx;
  const int32_t *perm = c->perm[c->cur_tree];
  const int32_t *st = c->leaves[c->cur_tree];
  float *dd = c->dbuf[tid];
  for (int64_t l = begin; l < end; l++)
    for (int32_t a = st[l]; a < st[l + 1]; a++) {
      int32_t p = perm[a], m = st[l + 1] - a - 1;
      const int32_t *qs = perm + a + 1;
      dist_many(c, p, qs, m, dd);
      for (int32_t b = 0; b < m; b++) {
        if (dd[b] <= c->hd[(int64_t)p * c->k])
          offer(c, p, qs[b], dd[b], 2);
        if (dd[b] <= c->hd[(int64_t)qs[b] * c->k])
          offer(c, qs[b], p, dd[b], 2);
      }
    }
}

/* Rows whose leaves held fewer than k others get random neighbours. */
static void fill_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  nnd_ctx *c = vctx;
  for (int64_t i = begin; i < end; i++) {
    if (c->hi[i * c->k] != INT32_MAX)
      continue;
    td_rng rng;
    td_rng_split(&rng, c->seed ^ 0x66696c6cULL, (uint64_t)i);
    while (c->hi[i * c->k] == INT32_MAX) {
      int32_t j = (int32_t)td_rng_below(&rng, (uint64_t)c->n);
      if (j != i)
        offer(c, i, j,
              dist_pad(c->x + i * c->dp, c->x + (int64_t)j * c->dp, c->dp), 2);
    }
  }
}

/* ---- candidates -------------------------------------------------------- */

/* Bounded max-heap on (priority, idx) of capacity mc, ignoring repeats. */
static inline void cand_add(int32_t *ci, uint32_t *cp, int32_t *cnt, int mc,
                            int32_t j, uint32_t pr) {
  int len = *cnt;
  if (len == mc && (pr > cp[0] || (pr == cp[0] && j >= ci[0])))
    return; /* cheap rejection before the repeat scan */
  int seen = 0;
  for (int t = 0; t < len; t++)
    seen |= ci[t] == j;
  if (seen)
    return;
  if (len < mc) {
    int p = len++;
    while (p > 0) { /* sift up */
      int par = (p - 1) / 2;
      if (cp[par] > pr || (cp[par] == pr && ci[par] > j))
        break;
      cp[p] = cp[par];
      ci[p] = ci[par];
      p = par;
    }
    cp[p] = pr;
    ci[p] = j;
    *cnt = len;
    return;
  }
  int p = 0;
  for (;;) { /* sift down */
    int ch = 2 * p + 1;
    if (ch >= len)
      break;
    if (ch + 1 < len &&
        (cp[ch + 1] > cp[ch] || (cp[ch + 1] == cp[ch] && ci[ch + 1] > ci[ch])))
      ch++;
    if (cp[ch] < pr || (cp[ch] == pr && ci[ch] < j))
      break;
    cp[p] = cp[ch];
    ci[p] = ci[ch];
    p = ch;
  }
  cp[p] = pr;
  ci[p] = j;
}

/* Reverse edges as CSR: rev[roff[j] .. roff[j+1]) are the edge slots
 * i*k+s with hi[i*k+s] == j, in ascending i (so the order is fixed).
 * Sequential: two passes over n*k ints, a few milliseconds. */
static void build_reverse(nnd_ctx *c) {
  int64_t n = c->n, nk = n * c->k;
  memset(c->roff, 0, sizeof *c->roff * (size_t)(n + 1));
  for (int64_t e = 0; e < nk; e++)
    c->roff[c->hi[e] + 1]++;
  for (int64_t j = 0; j < n; j++)
    c->roff[j + 1] += c->roff[j];
  memcpy(c->rfill, c->roff, sizeof *c->roff * (size_t)n);
  for (int64_t e = 0; e < nk; e++)
    c->rev[c->rfill[c->hi[e]]++] = e;
}

/* Row r's candidates: its forward neighbours and its reverse neighbours,
 * split by the edge's flag, each list keeping the mc lowest priorities.
 * Priorities hash the unordered pair, so an edge met from both ends competes
 * once. Reads other rows' flags, so marking is a separate pass. */
static void cand_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  nnd_ctx *c = vctx;
  int k = c->k, mc = c->mc;
  uint64_t salt = mix64(c->seed ^ ((uint64_t)c->iter << 40));
  for (int64_t r = begin; r < end; r++) {
    int32_t *nwi = c->cnew + r * mc, *odi = c->cold + r * mc;
    uint32_t *nwp = c->pnew + r * mc, *odp = c->pold + r * mc;
    c->nnew[r] = c->nold[r] = 0;
    for (int s = 0; s < k; s++) {
      int32_t j = c->hi[r * k + s];
      uint64_t a = (uint64_t)(r < j ? r : j), b = (uint64_t)(r < j ? j : r);
      uint32_t pr = (uint32_t)mix64(salt ^ (a << 32 | b));
      if (c->hf[r * k + s])
        cand_add(nwi, nwp, c->nnew + r, mc, j, pr);
      else
        cand_add(odi, odp, c->nold + r, mc, j, pr);
    }
    for (int64_t t = c->roff[r]; t < c->roff[r + 1]; t++) {
      int64_t e = c->rev[t];
      int32_t i = (int32_t)(e / k);
      uint64_t a = (uint64_t)(r < i ? r : i), b = (uint64_t)(r < i ? i : r);
      uint32_t pr = (uint32_t)mix64(salt ^ (a << 32 | b));
      if (c->hf[e])
        cand_add(nwi, nwp, c->nnew + r, mc, i, pr);
      else
        cand_add(odi, odp, c->nold + r, mc, i, pr);
    }
  }
}

/* Sampled new neighbours become old: they get joined this pass. A separate
 * pass, because cand_cb reads every row's flags. */
static void mark_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  nnd_ctx *c = vctx;
  int k = c->k, mc = c->mc;
  for (int64_t i = begin; i < end; i++)
    for (int s = 0; s < k; s++) {
      if (!c->hf[i * k + s])
        continue;
      int32_t j = c->hi[i * k + s];
      for (int t = 0; t < c->nnew[i]; t++)
        if (c->cnew[i * mc + t] == j) {
          c->hf[i * k + s] = 0;
          break;
        }
    }
}

/* ---- local join -------------------------------------------------------- */

static void buf_push(nnd_ctx *c, int tid, int32_t p, int32_t q, float d) {
  nnd_buf *b = &c->bufs[(int64_t)tid * c->nt + owner_of(c, p)];
  if (b->len == b->cap) {
    int64_t cap = b->cap ? 2 * b->cap : 4096;
    nnd_update *u = realloc(b->u, sizeof *u * (size_t)cap);
    if (!u) {
      atomic_store(&c->oom, 1);
      return;
    }
    b->u = u;
    b->cap = cap;
  }
  b->u[b->len++] = (nnd_update){p, q, d};
}

static void join_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  nnd_ctx *c = vctx;
  int mc = c->mc;
  int32_t *qs = c->qbuf[tid];
  float *dd = c->dbuf[tid];
  for (int64_t r = c->chunk0 + begin; r < c->chunk0 + end; r++) {
    const int32_t *nw = c->cnew + r * mc, *od = c->cold + r * mc;
    int nn = c->nnew[r], no = c->nold[r];
    if (r + 1 < c->chunk0 + end) {
      /* the next row's candidates are scattered rows of x: start loading */
      const int32_t *nx = c->cnew + (r + 1) * mc;
      for (int a = 0; a < c->nnew[r + 1]; a++) {
        const float *row = c->x + (int64_t)nx[a] * c->dp;
        for (int j = 0; j < c->dp; j += 16)
          __builtin_prefetch(row + j);
        __builtin_prefetch(c->hd + (int64_t)nx[a] * c->k);
      }
    }
    for (int a = 0; a < nn; a++) {
      int32_t p = nw[a];
      int m = 0;
      for (int b = a + 1; b < nn; b++)
        qs[m++] = nw[b];
      for (int b = 0; b < no; b++)
        if (od[b] != p)
          qs[m++] = od[b];
      dist_many(c, p, qs, m, dd);
      float tp = c->hd[(int64_t)p * c->k];
      for (int b = 0; b < m; b++) {
        if (dd[b] <= tp)
          buf_push(c, tid, p, qs[b], dd[b]);
        if (dd[b] <= c->hd[(int64_t)qs[b] * c->k])
          buf_push(c, tid, qs[b], p, dd[b]);
      }
    }
  }
}

static void apply_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  nnd_ctx *c = vctx;
  for (int64_t o = begin; o < end; o++)
    for (int g = 0; g < c->nt; g++) {
      nnd_buf *b = &c->bufs[(int64_t)g * c->nt + o];
      for (int64_t e = 0; e < b->len; e++) {
        /* heap rows are scattered: fetch a few updates ahead */
        if (e + 8 < b->len) {
          int64_t ahead = (int64_t)b->u[e + 8].p * c->k;
          __builtin_prefetch(c->hd + ahead);
          __builtin_prefetch(c->hi + ahead);
        }
        if (b->u[e].d <= c->hd[(int64_t)b->u[e].p * c->k])
          offer(c, b->u[e].p, b->u[e].q, b->u[e].d, 2);
      }
      b->len = 0;
    }
}

/* ---- driver ------------------------------------------------------------ */

static int leaf_size_for(int k) {
  if (g_leaf_size > 0)
    return g_leaf_size > k + 1 ? g_leaf_size : k + 1;
  return k + 1 > 32 ? k + 1 : 32;
}

static void nnd_free(nnd_ctx *c) {
  free(c->x);
  free(c->hd);
  free(c->hi);
  free(c->hf);
  for (int t = 0; t < c->n_trees; t++) {
    if (c->perm)
      free(c->perm[t]);
    if (c->leaves)
      free(c->leaves[t]);
  }
  free(c->perm);
  free(c->leaves);
  free(c->nleaves);
  for (int t = 0; t < c->nt; t++) {
    if (c->scratch)
      free(c->scratch[t]);
    if (c->qbuf)
      free(c->qbuf[t]);
    if (c->dbuf)
      free(c->dbuf[t]);
  }
  free(c->scratch);
  free(c->qbuf);
  free(c->dbuf);
  free(c->cnew);
  free(c->cold);
  free(c->pnew);
  free(c->pold);
  free(c->nnew);
  free(c->nold);
  free(c->roff);
  free(c->rfill);
  free(c->rev);
  if (c->bufs)
    for (int64_t b = 0; b < (int64_t)c->nt * c->nt; b++)
      free(c->bufs[b].u);
  free(c->bufs);
}

static int nnd_alloc(nnd_ctx *c, const float *x, int d) {
  int64_t n = c->n;
  size_t nk = (size_t)n * (size_t)c->k, nm = (size_t)n * (size_t)c->mc;
  size_t xbytes = sizeof(float) * (size_t)n * (size_t)c->dp;
  float *xp = aligned_alloc(64, (xbytes + 63) / 64 * 64);
  c->x = xp;
  c->hd = malloc(sizeof *c->hd * nk);
  c->hi = malloc(sizeof *c->hi * nk);
  c->hf = malloc(nk);
  c->cnew = malloc(sizeof *c->cnew * nm);
  c->cold = malloc(sizeof *c->cold * nm);
  c->pnew = malloc(sizeof *c->pnew * nm);
  c->pold = malloc(sizeof *c->pold * nm);
  c->nnew = malloc(sizeof *c->nnew * (size_t)n);
  c->nold = malloc(sizeof *c->nold * (size_t)n);
  c->roff = malloc(sizeof *c->roff * (size_t)(n + 1));
  c->rfill = malloc(sizeof *c->rfill * (size_t)n);
  c->rev = malloc(sizeof *c->rev * nk);
  c->bufs = calloc((size_t)c->nt * (size_t)c->nt, sizeof *c->bufs);
  c->scratch = calloc((size_t)c->nt, sizeof *c->scratch);
  c->qbuf = calloc((size_t)c->nt, sizeof *c->qbuf);
  c->dbuf = calloc((size_t)c->nt, sizeof *c->dbuf);
  c->perm = calloc((size_t)(c->n_trees + 1), sizeof *c->perm);
  c->leaves = calloc((size_t)(c->n_trees + 1), sizeof *c->leaves);
  c->nleaves = calloc((size_t)(c->n_trees + 1), sizeof *c->nleaves);
  if (!xp || !c->hd || !c->hi || !c->hf || !c->cnew || !c->cold || !c->pnew ||
      !c->pold || !c->nnew || !c->nold || !c->roff || !c->rfill || !c->rev ||
      !c->bufs || !c->scratch || !c->qbuf || !c->dbuf || !c->perm ||
      !c->leaves || !c->nleaves)
    return TD_ENOMEM;
  int icap = 2 * c->mc > c->leaf ? 2 * c->mc : c->leaf;
  size_t cap = (size_t)(icap > c->k ? icap : c->k);
  for (int t = 0; t < c->nt; t++) {
    c->scratch[t] = aligned_alloc(64, sizeof(float) * (size_t)c->dp);
    c->qbuf[t] = malloc(sizeof(int32_t) * cap);
    c->dbuf[t] = malloc(sizeof(float) * cap);
    if (!c->scratch[t] || !c->qbuf[t] || !c->dbuf[t])
      return TD_ENOMEM;
  }
  for (int t = 0; t < c->n_trees; t++)
    if (!(c->perm[t] = malloc(sizeof(int32_t) * (size_t)n)))
      return TD_ENOMEM;
  for (int64_t i = 0; i < n; i++) {
    memcpy(xp + i * c->dp, x + i * d, sizeof(float) * (size_t)d);
    memset(xp + i * c->dp + d, 0, sizeof(float) * (size_t)(c->dp - d));
  }
  for (size_t i = 0; i < nk; i++) {
    c->hd[i] = INFINITY;
    c->hi[i] = INT32_MAX;
    c->hf[i] = 0;
  }
  return TD_OK;
}

/* Sorts each working row and keeps its first k_out. */
static void output_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  void **a = vctx;
  nnd_ctx *c = a[0];
  td_knn *out = a[1];
  int k = c->k, ko = out->k;
  float *dd = c->dbuf[tid];
  int32_t *qs = c->qbuf[tid];
  for (int64_t i = begin; i < end; i++) {
    memcpy(dd, c->hd + i * k, sizeof *dd * (size_t)k);
    memcpy(qs, c->hi + i * k, sizeof *qs * (size_t)k);
    td__knn_sort_row(dd, qs, k);
    for (int t = 0; t < ko; t++) {
      out->dist[i * ko + t] = sqrtf(dd[t]);
      out->idx[i * ko + t] = qs[t];
    }
  }
}

static int64_t count_added(nnd_ctx *c) {
  int64_t added = 0, nk = c->n * c->k;
  for (int64_t i = 0; i < nk; i++)
    if (c->hf[i] == 2) {
      c->hf[i] = 1;
      added++;
    }
  return added;
}

int td_knn_nndescent(const float *x, int64_t n, int d, int k,
                     const td_nnd_params *params, td_knn *out, td_err *err) {
  TD_ASSERT(out != NULL);
  memset(out, 0, sizeof *out);
  td_nnd_params p;
  if (params)
    p = *params;
  else
    td_nnd_params_default(&p);
  int rc = td__knn_check(x, n, d, k, err);
  if (rc != TD_OK)
    return rc;
  if (p.n_iters < 0 || p.n_trees < 0 || p.n_trees > 1024 ||
      !(p.sample_rate > 0.0f) || !(p.delta >= 0.0f))
    return td_err_set(err, TD_EARG,
                      "nndescent: bad parameters (n_iters %d, n_trees %d, "
                      "sample_rate %g, delta %g)",
                      p.n_iters, p.n_trees, (double)p.sample_rate,
                      (double)p.delta);
  nnd_ctx c;
  memset(&c, 0, sizeof c);
  c.n = n;
  /* a slightly longer working list converges to a better top k */
  c.k = k + (g_extra >= 0 ? g_extra : k / 5);
  if (c.k > n - 1)
    c.k = (int)(n - 1);
  c.dp = (d + 15) / 16 * 16;
  c.nt = td_threads();
  c.seed = p.seed;
  c.n_trees = p.n_trees;
  c.leaf = leaf_size_for(c.k);
  double mcd = ceil((double)p.sample_rate * c.k);
  c.mc = mcd < 1 ? 1 : mcd > 4 * TD_KNN_MAX_K ? 4 * TD_KNN_MAX_K : (int)mcd;
  atomic_init(&c.oom, 0);
  rc = nnd_alloc(&c, x, d);
  double t0 = td_now();
  if (rc == TD_OK) {
    td_parallel_for(c.n_trees, 1, trees_cb, &c);
    if (g_verbose)
      fprintf(stderr, "nnd: trees built %.3f s\n", td_now() - t0);
    if (atomic_load(&c.oom))
      rc = TD_ENOMEM;
  }
  if (rc == TD_OK) {
    for (c.cur_tree = 0; c.cur_tree < c.n_trees; c.cur_tree++)
      td_parallel_for(c.nleaves[c.cur_tree], 64, leaves_cb, &c);
    td_parallel_for(n, 1024, fill_cb, &c);
    int64_t init = count_added(&c);
    if (g_verbose)
      fprintf(stderr, "nnd: leaves joined %.3f s (%lld edges)\n", td_now() - t0,
              (long long)init);
    int64_t stop = (int64_t)((double)p.delta * (double)n * c.k);
    for (c.iter = 0; c.iter < p.n_iters; c.iter++) {
      build_reverse(&c);
      td_parallel_for(n, 512, cand_cb, &c);
      td_parallel_for(n, 512, mark_cb, &c);
      for (c.chunk0 = 0; c.chunk0 < n; c.chunk0 += NND_CHUNK) {
        int64_t len = n - c.chunk0 < NND_CHUNK ? n - c.chunk0 : NND_CHUNK;
        td_parallel_for(len, 64, join_cb, &c);
        td_parallel_for(c.nt, 1, apply_cb, &c);
      }
      if (atomic_load(&c.oom))
        break;
      int64_t added = count_added(&c);
      if (g_verbose)
        fprintf(stderr, "nnd: iteration %d %.3f s (%lld updates)\n", c.iter,
                td_now() - t0, (long long)added);
      if (added <= stop)
        break;
    }
    if (atomic_load(&c.oom))
      rc = TD_ENOMEM;
  }
  if (rc == TD_OK)
    rc = td__knn_alloc(out, n, k, err);
  if (rc == TD_OK) {
    void *a[2] = {&c, out};
    td_parallel_for(n, 1024, output_cb, a);
  }
  if (rc == TD_ENOMEM)
    td_err_set(err, TD_ENOMEM, "nndescent: out of memory (%lld x %d, k = %d)",
               (long long)n, d, k);
  nnd_free(&c);
  return rc;
}
