/* UMAP's stochastic layout of a fuzzy complex directly in 2-D: the
 * deterministic default (td_vis_layout), in which each vertex is moved only
 * by the thread that owns it, reading the others from the previous
 * sub-step, and umap-learn's lock-free Hogwild (td_vis_layout_hogwild). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/vismodel.h"

/* pow(x, y) = exp2(y log2 x) with polynomial log2 (mantissa, degree 5) and
 * exp2 (fraction, degree 4), both Chebyshev fits: relative error < 1e-4,
 * about 4x cheaper than powf, which dominated the layout's time. x > 0. */
static inline float fast_pow(float x, float y) {
  union {
    float f;
    uint32_t u;
  } v = {x < 1e-30f ? 1e-30f : x};
  float e = (float)(int)((v.u >> 23) & 255u) - 127.0f;
  v.u = (v.u & 0x007fffffu) | 0x3f800000u;
  float m = v.f;
  float l2 =
      e +
      (-2.78681295f +
       m * (5.04687604f +
            m * (-3.49249428f +
                 m * (1.59390136f + m * (-0.404867174f + m * 0.0434289078f)))));
  float t = y * l2;
  t = t < -126.0f ? -126.0f : (t > 126.0f ? 126.0f : t);
  float fl = floorf(t), f = t - fl;
  float p2 = 1.00000728f +
             f * (0.692931289f +
                  f * (0.241710262f + f * (0.0516668774f + f * 0.0136765311f)));
  v.u = (uint32_t)((int32_t)fl + 127) << 23;
  return p2 * v.f;
}

static float clip4(float v) {
  return v > 4.0f ? 4.0f : (v < -4.0f ? -4.0f : v);
}

/* UMAP's gradient coefficients (umap-learn's optimize_layout_euclidean):
 * a point at squared distance d2 > 0 from a neighbour moves by
 * clip4(coef x offset) x alpha; from a negative sample likewise. */
static inline float attract_coef(float d2, float a, float b) {
  float pw = fast_pow(d2, b - 1.0f);
  return -2.0f * a * b * pw / (a * pw * d2 + 1.0f);
}

static inline float repel_coef(float d2, float a, float b) {
  return 2.0f * b / ((0.001f + d2) * (a * fast_pow(d2, b) + 1.0f));
}

/* Epochs per use of each edge, max(w) / w_e (UMAP's schedule); [E],
 * caller frees; NULL on out of memory. */
static float *edge_periods(const td_graph *g) {
  int64_t E = g->n_edges;
  float *eps = malloc((size_t)E * sizeof(float));
  if (!eps)
    return NULL;
  float wmax = 0.0f;
  for (int64_t e = 0; e < E; e++)
    if (g->weight[e] > wmax)
      wmax = g->weight[e];
  /* edges too light to be used once in n_epochs are never used (UMAP) */
  for (int64_t e = 0; e < E; e++)
    eps[e] = g->weight[e] > 0.0f ? wmax / g->weight[e] : INFINITY;
  return eps;
}

/* ---- deterministic layout ---------------------------------------------------
 *
 * Hogwild's result depends on how threads interleave their writes. Here an
 * epoch is split into SUBSTEPS sub-steps (edge e belongs to sub-step
 * e mod SUBSTEPS); in each, every vertex applies the updates of its own
 * edges of that sub-step to its own position, reading the other ends (and
 * the negative samples) from the positions the previous sub-step left, and
 * writes the result to a second buffer. Every vertex is owned by whichever
 * thread runs it, so the result is the same at any thread count: the
 * random choices are keyed on (seed, epoch, edge), not on a thread's
 * stream. Both ends of a used edge are attracted (as umap-learn's
 * move_other); the edge's coin gives its negative samples to one end. */

#define SUBSTEPS 8

typedef struct {
  int32_t other; /* the edge's other end */
  int32_t edge;
  float eps; /* epochs per use of the edge */
} inc_entry;

/* Each vertex's edges per sub-step: the entries of vertex v in sub-step s
 * are ent[off[s n + v] .. off[s n + v + 1]), in edge order. */
typedef struct {
  int64_t *off; /* [SUBSTEPS n + 1] */
  inc_entry *ent;
} incidence;

static void incidence_free(incidence *inc) {
  free(inc->off);
  free(inc->ent);
}

/* Entries for the edges used at least once in n_epochs. */
static int incidence_build(const td_graph *g, const float *eps, int n_epochs,
                           incidence *inc) {
  int64_t n = g->n_vertices, E = g->n_edges, slots = SUBSTEPS * n;
  inc->off = calloc((size_t)slots + 1, sizeof(int64_t));
  inc->ent = malloc((size_t)(2 * E) * sizeof(inc_entry));
  int64_t *at = malloc((size_t)slots * sizeof(int64_t));
  if (!inc->off || !inc->ent || !at) {
    free(at);
    incidence_free(inc);
    return TD_ENOMEM;
  }
  for (int64_t e = 0; e < E; e++) {
    if (!(eps[e] <= (float)n_epochs))
      continue;
    int64_t s = (e % SUBSTEPS) * n;
    inc->off[s + g->head[e] + 1]++;
    inc->off[s + g->tail[e] + 1]++;
  }
  for (int64_t k = 0; k < slots; k++) {
    inc->off[k + 1] += inc->off[k];
    at[k] = inc->off[k];
  }
  for (int64_t e = 0; e < E; e++) {
    if (!(eps[e] <= (float)n_epochs))
      continue;
    int64_t s = (e % SUBSTEPS) * n;
    int32_t h = g->head[e], t = g->tail[e];
    inc->ent[at[s + h]++] = (inc_entry){t, (int32_t)e, eps[e]};
    inc->ent[at[s + t]++] = (inc_entry){h, (int32_t)e, eps[e]};
  }
  free(at);
  return TD_OK;
}

/* UMAP's schedule (next use at eps - 1, then every eps epochs) in closed
 * form: floor((ep + 1) / eps) uses up to epoch ep. */
static inline int edge_used(float eps, int ep) {
  return floorf((float)(ep + 1) / eps) > floorf((float)ep / eps);
}

/* splitmix64's finaliser: the counter-based random numbers. */
static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

typedef struct {
  const incidence *inc;
  const float *cur; /* positions after the previous sub-step (read only) */
  float *nxt;       /* positions after this one */
  int64_t n;
  int sub, epoch, neg;
  float alpha, a, b;
  uint64_t key; /* of (seed, epoch) */
} det_ctx;

/* Moves vertex i (at *px, *py) along its entries of this sub-step. */
static void det_vertex(const det_ctx *c, int32_t i, float *px, float *py) {
  const int64_t *off = c->inc->off + (int64_t)c->sub * c->n;
  const float *cur = c->cur;
  float xi = *px, yi = *py, a = c->a, b = c->b, al = c->alpha;
  for (int64_t k = off[i]; k < off[i + 1]; k++) {
    const inc_entry *en = &c->inc->ent[k];
    if (!edge_used(en->eps, c->epoch))
      continue;
    int32_t j = en->other;
    float dx = xi - cur[2 * j], dy = yi - cur[2 * j + 1];
    float d2 = dx * dx + dy * dy;
    if (d2 > 0.0f) {
      float coef = attract_coef(d2, a, b);
      xi += clip4(coef * dx) * al;
      yi += clip4(coef * dy) * al;
    }
    uint64_t r = mix64(c->key ^ ((uint64_t)en->edge * 0x9e3779b97f4a7c15ull));
    int32_t lo = i < j ? i : j, hi = i < j ? j : i;
    if (((r >> 63) ? hi : lo) != i)
      continue; /* the negatives go to the other end */
    for (int q = 1; q <= c->neg; q++) {
      uint64_t rq = mix64(r + (uint64_t)q * 0xd1b54a32d192ed03ull);
      int32_t w = (int32_t)(((rq >> 32) * (uint64_t)c->n) >> 32);
      if (w == i)
        continue;
      dx = xi - cur[2 * w];
      dy = yi - cur[2 * w + 1];
      d2 = dx * dx + dy * dy;
      float gx = 4.0f, gy = 4.0f;
      if (d2 > 0.0f) {
        float coef = repel_coef(d2, a, b);
        gx = clip4(coef * dx);
        gy = clip4(coef * dy);
      }
      xi += gx * al;
      yi += gy * al;
    }
  }
  *px = xi;
  *py = yi;
}

static void det_vertices(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const det_ctx *c = vctx;
  for (int64_t i = begin; i < end; i++) {
    float x = c->cur[2 * i], y = c->cur[2 * i + 1];
    det_vertex(c, (int32_t)i, &x, &y);
    c->nxt[2 * i] = x;
    c->nxt[2 * i + 1] = y;
  }
}

int td_vis_layout(const td_graph *g, float *y, int n_epochs, float alpha,
                  int n_negatives, float a, float b, uint64_t seed) {
  if (n_epochs <= 0 || g->n_edges <= 0)
    return TD_OK;
  int64_t n = g->n_vertices;
  incidence inc = {NULL, NULL};
  float *eps = edge_periods(g);
  float *buf = malloc((size_t)n * 2 * sizeof(float));
  int rc = eps && buf ? incidence_build(g, eps, n_epochs, &inc) : TD_ENOMEM;
  free(eps);
  if (rc) {
    free(buf);
    return rc;
  }
  det_ctx c = {&inc, y, buf, n, 0, 0, n_negatives, alpha, a, b, 0};
  float *cur = y, *nxt = buf;
  for (int ep = 0; ep < n_epochs; ep++) {
    c.epoch = ep;
    c.alpha = alpha * (1.0f - (float)ep / (float)n_epochs);
    c.key = mix64(seed ^ mix64((uint64_t)ep + 0x632be59bd9b4e019ull));
    for (c.sub = 0; c.sub < SUBSTEPS; c.sub++) {
      c.cur = cur;
      c.nxt = nxt;
      td_parallel_for(n, 1024, det_vertices, &c);
      nxt = cur; /* this sub-step's result is the next one's input */
      cur = c.nxt;
    }
  }
  if (cur != y)
    memcpy(y, cur, (size_t)n * 2 * sizeof(float));
  free(buf);
  incidence_free(&inc);
  return TD_OK;
}

/* ---- Hogwild (umap-learn's scheme) -----------------------------------------
 */

typedef struct {
  const td_graph *g;
  float *y;
  const float *eps; /* [E] epochs per sample: max(w) / w_e */
  float *next;      /* [E] epoch at which edge e is next used */
  float alpha, a, b;
  int neg, epoch;
  uint64_t seed;
} layout_ctx;

static void layout_edges(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  layout_ctx *c = vctx;
  /* The stream depends on the chunk, not the thread, so the random choices
   * are the same whatever the scheduling. */
  td_rng rng;
  td_rng_split(&rng, c->seed + (uint64_t)c->epoch * 0x100000001ull,
               (uint64_t)begin);
  float *y = c->y, a = c->a, b = c->b;
  uint64_t nv = (uint64_t)c->g->n_vertices;
  for (int64_t e = begin; e < end; e++) {
    if (c->next[e] > (float)c->epoch)
      continue;
    c->next[e] += c->eps[e];
    int32_t i = c->g->head[e], j = c->g->tail[e];
    if (td_rng_next(&rng) >> 63) { /* either end may be the moving head */
      int32_t t = i;
      i = j;
      j = t;
    }
    float dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
    float d2 = dx * dx + dy * dy;
    if (d2 > 0.0f) {
      float coef = attract_coef(d2, a, b);
      float gx = clip4(coef * dx) * c->alpha, gy = clip4(coef * dy) * c->alpha;
      y[2 * i] += gx;
      y[2 * i + 1] += gy;
      y[2 * j] -= gx;
      y[2 * j + 1] -= gy;
    }
    for (int k = 0; k < c->neg; k++) {
      int32_t w = (int32_t)td_rng_below(&rng, nv);
      if (w == i)
        continue;
      dx = y[2 * i] - y[2 * w];
      dy = y[2 * i + 1] - y[2 * w + 1];
      d2 = dx * dx + dy * dy;
      float gx = 4.0f, gy = 4.0f;
      if (d2 > 0.0f) {
        float coef = repel_coef(d2, a, b);
        gx = clip4(coef * dx);
        gy = clip4(coef * dy);
      }
      y[2 * i] += gx * c->alpha;
      y[2 * i + 1] += gy * c->alpha;
    }
  }
}

int td_vis_layout_hogwild(const td_graph *g, float *y, int n_epochs,
                          float alpha, int n_negatives, float a, float b,
                          uint64_t seed) {
  if (n_epochs <= 0 || g->n_edges <= 0)
    return TD_OK;
  int64_t E = g->n_edges;
  float *eps = edge_periods(g);
  float *next = malloc((size_t)E * sizeof(float));
  if (!eps || !next) {
    free(eps);
    free(next);
    return TD_ENOMEM;
  }
  for (int64_t e = 0; e < E; e++)
    next[e] = eps[e] - 1.0f;
  layout_ctx c = {g, y, eps, next, alpha, a, b, n_negatives, 0, seed};
  for (int ep = 0; ep < n_epochs; ep++) {
    c.epoch = ep;
    c.alpha = alpha * (1.0f - (float)ep / (float)n_epochs);
    td_parallel_for(E, 8192, layout_edges, &c);
  }
  free(eps);
  free(next);
  return TD_OK;
}
