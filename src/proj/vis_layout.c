/* UMAP's stochastic layout of a fuzzy complex directly in 2-D
 * (td_vis_layout). */
#include <math.h>
#include <stdlib.h>

#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/vismodel.h"

typedef struct {
  const td_graph *g;
  float *y;
  const float *eps; /* [E] epochs per sample: max(w) / w_e */
  float *next;      /* [E] epoch at which edge e is next used */
  float alpha, a, b;
  int neg, epoch;
  uint64_t seed;
} layout_ctx;

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
      float pw = fast_pow(d2, b - 1.0f);
      float coef = -2.0f * a * b * pw / (a * pw * d2 + 1.0f);
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
        float coef = 2.0f * b / ((0.001f + d2) * (a * fast_pow(d2, b) + 1.0f));
        gx = clip4(coef * dx);
        gy = clip4(coef * dy);
      }
      y[2 * i] += gx * c->alpha;
      y[2 * i + 1] += gy * c->alpha;
    }
  }
}

int td_vis_layout(const td_graph *g, float *y, int n_epochs, float alpha,
                  int n_negatives, float a, float b, uint64_t seed) {
  if (n_epochs <= 0 || g->n_edges <= 0)
    return TD_OK;
  int64_t E = g->n_edges;
  float *eps = malloc((size_t)E * sizeof(float));
  float *next = malloc((size_t)E * sizeof(float));
  if (!eps || !next) {
    free(eps);
    free(next);
    return TD_ENOMEM;
  }
  float wmax = 0.0f;
  for (int64_t e = 0; e < E; e++)
    if (g->weight[e] > wmax)
      wmax = g->weight[e];
  for (int64_t e = 0; e < E; e++) {
    /* edges too light to be used once in n_epochs are never used (UMAP) */
    eps[e] = g->weight[e] > 0.0f ? wmax / g->weight[e] : INFINITY;
    next[e] = eps[e] - 1.0f;
  }
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
