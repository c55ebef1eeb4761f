/* DVI's invertible projection (DESIGN §3.5): encoder and decoder MLPs on
 * td_net, trained on a fuzzy complex with UMAP's cross-entropy, a
 * reconstruction loss and the temporal anchors of DVI and SentryCam. */
#include "tardis/vismodel.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/fsutil.h"
#include "tardis/nn.h"
#include "tardis/parallel.h"

/* OpenBLAS's own controls (as in src/nn/net.c). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

#define VIS_FORMAT "tardis-vismodel"
#define VIS_VERSION 1
#define Q_CLAMP 1e-4f

struct td_vismodel {
  int dim;
  td_net *enc, *dec;
  float *mean; /* [dim] centre of the representations */
  float scale; /* 1 / RMS distance to the centre */
  td_vis_params params;
};

void td_vis_params_default(td_vis_params *p, int repr_dim) {
  memset(p, 0, sizeof *p);
  p->hidden = repr_dim >= 256 ? 128 : 64;
  p->n_hidden_layers = 2;
  p->lr = 1e-3f;
  p->lr_min = 1e-4f;
  p->batch_edges = 1000;
  p->n_negatives = 5;
  p->lambda_rec = 1.0f;
  p->rec_fraction = 0.5f;
  p->a = 1.577f;
  p->b = 0.895f;
  p->max_epochs = 0;
  p->pass_edges = 0;
  p->min_improvement = 0.01f;
  p->warm_pass_scale = 0.5f;
  p->temporal = TD_TEMPORAL_DVI;
  p->lambda_temporal = 0.3f;
  p->memory_delta = 0.5f;
  p->layout_epochs = 120;
  p->warm_layout_epochs = 30;
  p->distil_epochs = 60;
  p->warm_distil_epochs = 40;
  p->distil_batch = 512;
  p->seed = 1;
  p->distil_points = 20000;
  p->dec_on_layout = 1;
  p->lambda_head = 3.0f;
  p->warm_alpha = 0.3f;
}

/* ---- model ------------------------------------------------------------------
 */

static td_net *make_mlp(int in, int hidden, int n_hidden, int out) {
  int dims[66];
  td_act acts[65];
  TD_ASSERT(n_hidden >= 0 && n_hidden <= 64 && hidden > 0);
  dims[0] = in;
  for (int l = 0; l < n_hidden; l++) {
    dims[l + 1] = hidden;
    acts[l] = TD_ACT_RELU;
  }
  dims[n_hidden + 1] = out;
  acts[n_hidden] = TD_ACT_NONE;
  return td_net_new(n_hidden + 1, dims, acts);
}

static td_vismodel *vismodel_alloc(int dim, int hidden, int n_hidden) {
  td_vismodel *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  m->dim = dim;
  m->scale = 1.0f;
  m->enc = make_mlp(dim, hidden, n_hidden, 2);
  m->dec = make_mlp(2, hidden, n_hidden, dim);
  m->mean = calloc((size_t)dim, sizeof(float));
  if (!m->enc || !m->dec || !m->mean) {
    td_vismodel_free(m);
    return NULL;
  }
  return m;
}

td_vismodel *td_vismodel_new(int repr_dim, const td_vis_params *p) {
  TD_ASSERT(repr_dim > 0);
  td_vis_params def;
  if (!p) {
    td_vis_params_default(&def, repr_dim);
    p = &def;
  }
  td_vismodel *m = vismodel_alloc(repr_dim, p->hidden, p->n_hidden_layers);
  if (!m)
    return NULL;
  m->params = *p;
  m->params.progress = NULL;
  m->params.progress_ctx = NULL;
  td_rng rng;
  td_rng_seed(&rng, p->seed);
  td_net_init(m->enc, &rng);
  td_net_init(m->dec, &rng);
  return m;
}

void td_vismodel_free(td_vismodel *m) {
  if (!m)
    return;
  td_net_free(m->enc);
  td_net_free(m->dec);
  free(m->mean);
  free(m);
}

int td_vismodel_repr_dim(const td_vismodel *m) { return m->dim; }

static int same_shape(const td_net *a, const td_net *b) {
  if (td_net_n_layers(a) != td_net_n_layers(b))
    return 0;
  for (int i = 0; i <= td_net_n_layers(a); i++)
    if (td_net_dim(a, i) != td_net_dim(b, i))
      return 0;
  return 1;
}

/* ---- inference: normalisation folded into the outer layers ---------------
 */

/* The encoder sees s (x - mean): folding gives W' = s W, b' = b - s W mean,
 * so inference runs on raw rows without a normalised copy of x. */
static td_net *folded_encoder(const td_vismodel *m) {
  td_net *e = td_net_clone(m->enc);
  if (!e)
    return NULL;
  int h = td_net_dim(e, 1), d = m->dim;
  float *w = td_net_weight(e, 0), *b = td_net_bias(e, 0);
  for (int o = 0; o < h; o++) {
    double acc = 0.0;
    for (int i = 0; i < d; i++) {
      w[(size_t)o * d + i] *= m->scale;
      acc += (double)w[(size_t)o * d + i] * (double)m->mean[i];
    }
    b[o] = (float)((double)b[o] - acc);
  }
  return e;
}

/* The decoder's output is in normalised units: x = out / s + mean. */
static td_net *folded_decoder(const td_vismodel *m) {
  td_net *e = td_net_clone(m->dec);
  if (!e)
    return NULL;
  int top = td_net_n_layers(e) - 1, h = td_net_dim(e, top), d = m->dim;
  float *w = td_net_weight(e, top), *b = td_net_bias(e, top);
  float inv = 1.0f / m->scale;
  for (int o = 0; o < d; o++) {
    for (int i = 0; i < h; i++)
      w[(size_t)o * h + i] *= inv;
    b[o] = b[o] * inv + m->mean[o];
  }
  return e;
}

int td_vismodel_encode(const td_vismodel *m, const float *x, int64_t n,
                       float *y) {
  td_net *e = folded_encoder(m);
  if (!e)
    return TD_ENOMEM;
  int rc = td_net_predict(e, x, n, y, -1, NULL);
  td_net_free(e);
  return rc;
}

int td_vismodel_decode(const td_vismodel *m, const float *y, int64_t n,
                       float *x) {
  td_net *d = folded_decoder(m);
  if (!d)
    return TD_ENOMEM;
  int rc = td_net_predict(d, y, n, x, -1, NULL);
  td_net_free(d);
  return rc;
}

/* ---- the UMAP loss ----------------------------------------------------------
 */

/* Adds gscale x the gradient of one pair's loss to de and returns the loss.
 * With s = |e_u - e_v|^2 and q = 1/(1 + a s^b):
 *   positive: L = log(1 + a s^b),            dL/ds = a b s^(b-1) / (1 + a s^b)
 *   negative: L = log(1 + a s^b) - log(a s^b), dL/ds = -b / (s (1 + a s^b))
 * and zero gradient where the clamp of q (or 1 - q) at 1e-4 is active. */
static float pair_loss(const float *e, int32_t u, int32_t v, int negative,
                       float a, float b, float gscale, float *de) {
  float dx = e[2 * u] - e[2 * v], dy = e[2 * u + 1] - e[2 * v + 1];
  float s = dx * dx + dy * dy;
  float sc = s > 1e-12f ? s : 1e-12f;
  float asb = a * powf(sc, b);
  float q = 1.0f / (1.0f + asb);
  float loss, g;
  if (!negative) {
    if (q < Q_CLAMP)
      return -logf(Q_CLAMP);
    loss = log1pf(asb);
    g = asb * b / (sc * (1.0f + asb));
  } else {
    if (1.0f - q < Q_CLAMP)
      return -logf(Q_CLAMP);
    loss = log1pf(asb) - logf(asb);
    g = -b / (sc * (1.0f + asb));
  }
  if (de) {
    /* ds/de_u = 2 (e_u - e_v) = -ds/de_v */
    float gx = 2.0f * gscale * g * dx, gy = 2.0f * gscale * g * dy;
    de[2 * u] += gx;
    de[2 * u + 1] += gy;
    de[2 * v] -= gx;
    de[2 * v + 1] -= gy;
  }
  return loss;
}

double td_vis_umap_loss(const float *e, const int32_t *pu, const int32_t *pv,
                        int64_t n_pos, const int32_t *nu, const int32_t *nv,
                        int64_t n_neg, float a, float b, float *de) {
  int64_t total = n_pos + n_neg;
  if (total <= 0)
    return 0.0;
  float inv = 1.0f / (float)total; /* the loss is a mean over pairs */
  double loss = 0.0;
  for (int64_t i = 0; i < n_pos; i++)
    loss += (double)pair_loss(e, pu[i], pv[i], 0, a, b, inv, de);
  for (int64_t i = 0; i < n_neg; i++)
    loss += (double)pair_loss(e, nu[i], nv[i], 1, a, b, inv, de);
  return loss / (double)total;
}

/* ---- kNN overlap
 * -------------------------------------------------------------
 */

void td_vis_knn_overlap(const td_knn *prev, const td_knn *cur, float *out) {
  int64_t n = prev->n < cur->n ? prev->n : cur->n;
  int k = prev->k < cur->k ? prev->k : cur->k;
  for (int64_t i = 0; i < n; i++) {
    const int32_t *a = prev->idx + i * prev->k, *b = cur->idx + i * cur->k;
    int hit = 0;
    for (int s = 0; s < k; s++)
      for (int t = 0; t < k; t++)
        if (a[s] == b[t]) {
          hit++;
          break;
        }
    out[i] = (float)hit / (float)k;
  }
}

/* ---- UMAP's direct layout
 * ------------------------------------------------------
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

/* The first two principal components of the normalised points, scaled so
 * the largest coordinate is 10 (UMAP's initial extent). Power iteration on
 * the covariance of at most 10,000 rows. */
static void pca_init(const td_vismodel *m, const float *x, int64_t n,
                     float *y) {
  int d = m->dim;
  int64_t step = n > 10000 ? n / 10000 : 1;
  double *cov = calloc((size_t)d * d, sizeof(double));
  float *row = malloc((size_t)d * sizeof(float));
  double v[2][1024];
  TD_ASSERT(cov && row && d <= 1024);
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; i += step, cnt++) {
    for (int j = 0; j < d; j++)
      row[j] = (x[i * d + j] - m->mean[j]) * m->scale;
    for (int j = 0; j < d; j++)
      for (int k = 0; k <= j; k++)
        cov[j * d + k] += (double)row[j] * (double)row[k];
  }
  for (int j = 0; j < d; j++)
    for (int k = 0; k < j; k++)
      cov[k * d + j] = cov[j * d + k];
  td_rng rng;
  td_rng_seed(&rng, 5);
  for (int c = 0; c < 2; c++) {
    for (int j = 0; j < d; j++)
      v[c][j] = (double)td_rng_normal(&rng);
    for (int it = 0; it < 100; it++) {
      double w[1024], norm = 0.0;
      for (int j = 0; j < d; j++) {
        double acc = 0.0;
        for (int k = 0; k < d; k++)
          acc += cov[j * d + k] * v[c][k];
        w[j] = acc;
      }
      if (c == 1) { /* deflate: stay orthogonal to the first component */
        double dot = 0.0;
        for (int j = 0; j < d; j++)
          dot += w[j] * v[0][j];
        for (int j = 0; j < d; j++)
          w[j] -= dot * v[0][j];
      }
      for (int j = 0; j < d; j++)
        norm += w[j] * w[j];
      norm = sqrt(norm);
      if (!(norm > 0.0))
        break;
      for (int j = 0; j < d; j++)
        v[c][j] = w[j] / norm;
    }
  }
  float amax = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    for (int c = 0; c < 2; c++) {
      double acc = 0.0;
      for (int j = 0; j < d; j++)
        acc += ((double)x[i * d + j] - (double)m->mean[j]) * v[c][j];
      y[2 * i + c] = (float)acc;
      if (fabsf(y[2 * i + c]) > amax)
        amax = fabsf(y[2 * i + c]);
    }
  }
  float s = amax > 0.0f ? 10.0f / amax : 1.0f;
  for (int64_t i = 0; i < 2 * n; i++)
    y[i] *= s;
  (void)cnt;
  free(cov);
  free(row);
}

/* ---- training ---------------------------------------------------------------
 */

/* Everything one fit allocates, freed in one place. */
typedef struct {
  td_alias alias;
  td_net_ws *ws_enc, *ws_dec, *ws_mem;
  td_optim *opt_enc, *opt_dec;
  float *xb;     /* [2B, D] normalised endpoint rows */
  int32_t *vid;  /* [2B] their vertex ids */
  float *de;     /* [2B, 2] d(loss)/d(embedding) */
  float *de_rec; /* [2B, 2] the decoder's share of it */
  float *dr;     /* [2B, D] d(loss)/d(reconstruction) */
  int32_t *pu, *pv, *nu, *nv;
  float *prev_enc, *prev_dec; /* DVI anchor: prev's parameters */
  float *xm;                  /* [M, D] normalised memory rows */
  float *dm;                  /* [M, 2] */
  int32_t *mid;               /* [M] memory ids */
  float *target;              /* [n, 2] the layout the encoder distils */
  int32_t *perm;              /* [n] point order of a distillation sweep */
  float *yb;                  /* [P, 2] layout positions of a batch */
  float *xb2;                 /* [P, D] the decoder's batch (own thread) */
  int32_t *perm2;             /* [n] the decoder's point order */
  float *probs;               /* [n, C] softmax(head(x)): head targets */
  float *hw, *hb;             /* head folded onto normalised units */
  float *hz;                  /* [P, C] head logits of a batch's decoding */
} fit_buf;

static void fit_buf_free(fit_buf *f) {
  td_alias_free(&f->alias);
  td_net_ws_free(f->ws_enc);
  td_net_ws_free(f->ws_dec);
  td_net_ws_free(f->ws_mem);
  td_optim_free(f->opt_enc);
  td_optim_free(f->opt_dec);
  free(f->xb);
  free(f->vid);
  free(f->de);
  free(f->de_rec);
  free(f->dr);
  free(f->pu);
  free(f->pv);
  free(f->nu);
  free(f->nv);
  free(f->prev_enc);
  free(f->prev_dec);
  free(f->xm);
  free(f->dm);
  free(f->mid);
  free(f->target);
  free(f->perm);
  free(f->yb);
  free(f->xb2);
  free(f->perm2);
  free(f->probs);
  free(f->hw);
  free(f->hb);
  free(f->hz);
}

static void set_normalisation(td_vismodel *m, const float *x, int64_t n) {
  int d = m->dim;
  double *acc = calloc((size_t)d, sizeof(double));
  TD_ASSERT(acc);
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < d; j++)
      acc[j] += (double)x[i * d + j];
  for (int j = 0; j < d; j++)
    m->mean[j] = (float)(acc[j] / (double)n);
  double ss = 0.0;
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < d; j++) {
      double t = (double)x[i * d + j] - (double)m->mean[j];
      ss += t * t;
    }
  double rms = sqrt(ss / (double)n);
  m->scale = rms > 0.0 ? (float)(1.0 / rms) : 1.0f;
  free(acc);
}

static void gather_rows(const td_vismodel *m, const float *x,
                        const int32_t *ids, int64_t cnt, float *out) {
  int d = m->dim;
  float s = m->scale;
  for (int64_t r = 0; r < cnt; r++) {
    const float *src = x + (int64_t)ids[r] * d;
    float *dst = out + r * d;
    for (int j = 0; j < d; j++)
      dst[j] = (src[j] - m->mean[j]) * s;
  }
}

typedef struct {
  td_vismodel *m;
  const float *x;
  const td_graph *g;
  const td_vis_params *p;
  const td_vis_anchor *anc;
  int have_prev;
  fit_buf *f;
  td_rng rng;
  int bsz, nrec, mem_batch;
  const td_vis_fit_io *io;
  int n_classes; /* > 0: the head-consistency term is on */
} fit_state;

/* Squared distance of a net's parameters to an anchor copy; adds
 * 2 coef (W - W_prev) to its gradients. */
static double drift_term(td_net *net, const float *prev, float coef) {
  size_t np = td_net_n_params(net);
  const float *w = td_net_params(net);
  float *g = td_net_grads(net);
  double ss = 0.0;
  for (size_t i = 0; i < np; i++) {
    float t = w[i] - prev[i];
    ss += (double)t * (double)t;
    g[i] += 2.0f * coef * t;
  }
  return ss;
}

/* The SentryCam hinge on a batch of remembered points; returns its loss
 * (already weighted) and adds its gradient to the encoder. */
static double memory_term(fit_state *s) {
  const td_vis_anchor *a = s->anc;
  fit_buf *f = s->f;
  int mb = s->mem_batch;
  for (int r = 0; r < mb; r++)
    f->mid[r] = (int32_t)td_rng_below(&s->rng, (uint64_t)a->n_memory);
  gather_rows(s->m, a->mem_x, f->mid, mb, f->xm);
  const float *e = td_net_forward(s->m->enc, f->ws_mem, f->xm, mb);
  double loss = 0.0;
  float w = s->p->lambda_temporal / (float)mb;
  for (int r = 0; r < mb; r++) {
    int32_t id = f->mid[r];
    float dx = e[2 * r] - a->mem_y[2 * id];
    float dy = e[2 * r + 1] - a->mem_y[2 * id + 1];
    float dist = sqrtf(dx * dx + dy * dy);
    float delta = a->mem_delta ? a->mem_delta[id] : s->p->memory_delta;
    f->dm[2 * r] = f->dm[2 * r + 1] = 0.0f;
    if (dist > delta && dist > 0.0f) {
      loss += (double)(w * (dist - delta));
      f->dm[2 * r] = w * dx / dist;
      f->dm[2 * r + 1] = w * dy / dist;
    }
  }
  td_net_backward(s->m->enc, f->ws_mem, f->dm, mb, NULL);
  return loss;
}

static double temporal_terms(fit_state *s, const int32_t *ids, int cnt);

/* One optimisation step on a fresh batch; returns its loss. */
static double fit_step(fit_state *s) {
  td_vismodel *m = s->m;
  fit_buf *f = s->f;
  const td_graph *g = s->g;
  const td_vis_params *p = s->p;
  int B = s->bsz, V = 2 * B, d = m->dim;
  /* Endpoints in random order within each edge, so that the decoded prefix
   * of the batch is not biased towards heads (lower vertex ids). */
  for (int i = 0; i < B; i++) {
    int64_t e = td_alias_draw(&f->alias, &s->rng);
    int flip = (int)(td_rng_next(&s->rng) >> 63);
    f->vid[2 * i + flip] = g->head[e];
    f->vid[2 * i + 1 - flip] = g->tail[e];
    f->pu[i] = 2 * i;
    f->pv[i] = 2 * i + 1;
  }
  int nneg = B * p->n_negatives;
  for (int i = 0; i < nneg; i++) {
    int32_t u = f->pu[i / p->n_negatives], w;
    do
      w = (int32_t)td_rng_below(&s->rng, (uint64_t)V);
    while ((w >> 1) == (u >> 1));
    f->nu[i] = u;
    f->nv[i] = w;
  }
  gather_rows(m, s->x, f->vid, V, f->xb);
  td_net_zero_grad(m->enc);
  td_net_zero_grad(m->dec);
  const float *e = td_net_forward(m->enc, f->ws_enc, f->xb, V);
  memset(f->de, 0, (size_t)V * 2 * sizeof(float));
  double loss = td_vis_umap_loss(e, f->pu, f->pv, B, f->nu, f->nv, nneg, p->a,
                                 p->b, f->de);
  int R = s->nrec;
  if (R > 0 && p->lambda_rec > 0.0f) {
    /* The decoder reads e (the encoder's output) in place; it stays valid
     * until the encoder's backward below. */
    const float *r = td_net_forward(m->dec, f->ws_dec, e, R);
    double ss = 0.0;
    float c = 2.0f * p->lambda_rec / ((float)R * (float)d);
    for (int64_t i = 0; i < (int64_t)R * d; i++) {
      float t = r[i] - f->xb[i];
      ss += (double)t * (double)t;
      f->dr[i] = c * t;
    }
    loss += (double)p->lambda_rec * ss / ((double)R * d);
    td_net_backward(m->dec, f->ws_dec, f->dr, R, f->de_rec);
    for (int i = 0; i < 2 * R; i++)
      f->de[i] += f->de_rec[i];
  }
  td_net_backward(m->enc, f->ws_enc, f->de, V, NULL);
  /* DVI scales the drift by the overlap of the batch's tail vertices. */
  for (int i = 0; i < B; i++)
    f->pv[i] = f->vid[2 * i + 1];
  loss += temporal_terms(s, f->pv, B);
  td_optim_step(f->opt_enc, td_net_params(m->enc), td_net_grads(m->enc));
  td_optim_step(f->opt_dec, td_net_params(m->dec), td_net_grads(m->dec));
  return loss;
}

/* Temporal terms shared by both phases; returns their loss. */
static double temporal_terms(fit_state *s, const int32_t *ids, int cnt) {
  const td_vis_params *p = s->p;
  double loss = 0.0;
  if (s->have_prev && p->temporal == TD_TEMPORAL_DVI &&
      p->lambda_temporal > 0.0f) {
    double ov = 0.0;
    for (int i = 0; i < cnt; i++)
      ov += s->anc && s->anc->knn_overlap ? (double)s->anc->knn_overlap[ids[i]]
                                          : 1.0;
    float coef = p->lambda_temporal * (float)(ov / cnt);
    double ss = drift_term(s->m->enc, s->f->prev_enc, coef) +
                drift_term(s->m->dec, s->f->prev_dec, coef);
    loss += (double)coef * ss;
  }
  if (s->mem_batch > 0)
    loss += memory_term(s);
  return loss;
}

/* The head-consistency term on a batch's decoding r [P, D] (normalised
 * units): soft cross-entropy of softmax(head(r)) against softmax(head(x)) of
 * the batch's points. Adds lambda_head x its gradient to dr; returns the
 * weighted loss. The head is linear, so d(logits)/dr = W' (folded). */
static double head_term(fit_state *s, const int32_t *ids, int P, const float *r,
                        float *dr) {
  fit_buf *f = s->f;
  int C = s->n_classes, d = s->m->dim;
  float lam = s->p->lambda_head;
  for (int i = 0; i < P; i++)
    memcpy(f->hz + (size_t)i * C, f->hb, (size_t)C * sizeof(float));
  td_gemm(0, 1, P, C, d, 1.0f, r, d, f->hw, d, 1.0f, f->hz, C);
  double loss = 0.0;
  for (int i = 0; i < P; i++) {
    float *z = f->hz + (size_t)i * C;
    const float *t = f->probs + (size_t)ids[i] * C;
    float zmax = z[0];
    for (int c = 1; c < C; c++)
      zmax = z[c] > zmax ? z[c] : zmax;
    double sum = 0.0;
    for (int c = 0; c < C; c++)
      sum += exp((double)(z[c] - zmax));
    double lse = (double)zmax + log(sum);
    for (int c = 0; c < C; c++) {
      double q = exp((double)z[c] - lse);
      loss -= (double)t[c] * ((double)z[c] - lse);
      z[c] = lam * (float)(q - (double)t[c]) / (float)P;
    }
  }
  td_gemm(0, 0, P, d, C, 1.0f, f->hz, C, f->hw, d, 1.0f, dr, d);
  return (double)lam * loss / (double)P;
}

/* One distillation step on points ids[0..P): the encoder regresses the
 * layout (MSE per point, summed over the two coordinates) and the decoder
 * reconstructs the points, from their layout positions (dec_on_layout) or
 * from the encoder's output, plus the head-consistency term. The
 * reconstruction is not propagated into the encoder here: the layout alone
 * decides where a point goes. */
static double distil_step(fit_state *s, const int32_t *ids, int P) {
  td_vismodel *m = s->m;
  fit_buf *f = s->f;
  int d = m->dim;
  gather_rows(m, s->x, ids, P, f->xb);
  td_net_zero_grad(m->enc);
  td_net_zero_grad(m->dec);
  const float *e = td_net_forward(m->enc, f->ws_enc, f->xb, P);
  double loss = 0.0;
  for (int i = 0; i < P; i++)
    for (int c = 0; c < 2; c++) {
      float t = e[2 * i + c] - f->target[2 * (int64_t)ids[i] + c];
      loss += (double)t * (double)t;
      f->de[2 * i + c] = 2.0f * t / (float)P;
      f->yb[2 * i + c] = f->target[2 * (int64_t)ids[i] + c];
    }
  loss /= P;
  if (s->p->lambda_rec > 0.0f || s->n_classes > 0) {
    const float *r =
        td_net_forward(m->dec, f->ws_dec, s->p->dec_on_layout ? f->yb : e, P);
    double ss = 0.0;
    float c = 2.0f * s->p->lambda_rec / ((float)P * (float)d);
    for (int64_t i = 0; i < (int64_t)P * d; i++) {
      float t = r[i] - f->xb[i];
      ss += (double)t * (double)t;
      f->dr[i] = c * t;
    }
    loss += (double)s->p->lambda_rec * ss / ((double)P * d);
    if (s->n_classes > 0)
      loss += head_term(s, ids, P, r, f->dr);
    td_net_backward(m->dec, f->ws_dec, f->dr, P, NULL);
  }
  td_net_backward(m->enc, f->ws_enc, f->de, P, NULL);
  loss += temporal_terms(s, ids, P);
  td_optim_step(f->opt_enc, td_net_params(m->enc), td_net_grads(m->enc));
  td_optim_step(f->opt_dec, td_net_params(m->dec), td_net_grads(m->dec));
  return loss;
}

/* The temporal terms of one net (0: encoder, 1: decoder). */
static double temporal_net(fit_state *s, const int32_t *ids, int cnt,
                           int which) {
  const td_vis_params *p = s->p;
  double loss = 0.0;
  if (s->have_prev && p->temporal == TD_TEMPORAL_DVI &&
      p->lambda_temporal > 0.0f) {
    double ov = 0.0;
    for (int i = 0; i < cnt; i++)
      ov += s->anc && s->anc->knn_overlap ? (double)s->anc->knn_overlap[ids[i]]
                                          : 1.0;
    float coef = p->lambda_temporal * (float)(ov / cnt);
    double ss = which == 0 ? drift_term(s->m->enc, s->f->prev_enc, coef)
                           : drift_term(s->m->dec, s->f->prev_dec, coef);
    loss += (double)coef * ss;
  }
  if (which == 0 && s->mem_batch > 0)
    loss += memory_term(s);
  return loss;
}

/* Distillation with the decoder on the layout: the encoder's and the
 * decoder's steps are independent, so they run on two threads (each with
 * single-threaded BLAS: at these widths a GEMM is too small to split). */
static double enc_step(fit_state *s, const int32_t *ids, int P) {
  td_vismodel *m = s->m;
  fit_buf *f = s->f;
  gather_rows(m, s->x, ids, P, f->xb);
  td_net_zero_grad(m->enc);
  const float *e = td_net_forward(m->enc, f->ws_enc, f->xb, P);
  double loss = 0.0;
  for (int i = 0; i < P; i++)
    for (int c = 0; c < 2; c++) {
      float t = e[2 * i + c] - f->target[2 * (int64_t)ids[i] + c];
      loss += (double)t * (double)t;
      f->de[2 * i + c] = 2.0f * t / (float)P;
    }
  loss /= P;
  td_net_backward(m->enc, f->ws_enc, f->de, P, NULL);
  loss += temporal_net(s, ids, P, 0);
  td_optim_step(f->opt_enc, td_net_params(m->enc), td_net_grads(m->enc));
  return loss;
}

static double dec_step(fit_state *s, const int32_t *ids, int P) {
  td_vismodel *m = s->m;
  fit_buf *f = s->f;
  int d = m->dim;
  gather_rows(m, s->x, ids, P, f->xb2);
  td_net_zero_grad(m->dec);
  for (int i = 0; i < P; i++) {
    f->yb[2 * i] = f->target[2 * (int64_t)ids[i]];
    f->yb[2 * i + 1] = f->target[2 * (int64_t)ids[i] + 1];
  }
  const float *r = td_net_forward(m->dec, f->ws_dec, f->yb, P);
  double ss = 0.0;
  float c = 2.0f * s->p->lambda_rec / ((float)P * (float)d);
  for (int64_t i = 0; i < (int64_t)P * d; i++) {
    float t = r[i] - f->xb2[i];
    ss += (double)t * (double)t;
    f->dr[i] = c * t;
  }
  double loss = (double)s->p->lambda_rec * ss / ((double)P * d);
  if (s->n_classes > 0)
    loss += head_term(s, ids, P, r, f->dr);
  td_net_backward(m->dec, f->ws_dec, f->dr, P, NULL);
  loss += temporal_net(s, ids, P, 1);
  td_optim_step(f->opt_dec, td_net_params(m->dec), td_net_grads(m->dec));
  return loss;
}

typedef struct {
  fit_state *s;
  int64_t n, per;
  int epochs;
  double loss[2];
} split_ctx;

static void split_cb(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  split_ctx *c = vctx;
  fit_state *s = c->s;
  int P = s->p->distil_batch;
  for (int64_t which = begin; which < end; which++) {
    int32_t *perm = which == 0 ? s->f->perm : s->f->perm2;
    td_rng rng;
    td_rng_split(&rng, s->p->seed ^ 0x5bd1e995ull, (uint64_t)which);
    td_rng_shuffle_i32(&rng, perm, c->n);
    int64_t at = 0;
    double tot = 0.0;
    int64_t steps = 0;
    for (int ep = 0; ep < c->epochs; ep++)
      for (int64_t done = 0; done < c->per; done += P) {
        if (at + P > c->n) {
          td_rng_shuffle_i32(&rng, perm, c->n);
          at = 0;
        }
        int cnt = (int)(c->n < P ? c->n : P);
        tot += which == 0 ? enc_step(s, perm + at, cnt)
                          : dec_step(s, perm + at, cnt);
        at += cnt;
        steps++;
      }
    c->loss[which] = steps ? tot / (double)steps : 0.0;
  }
}

/* Head targets softmax(W x + b) of every vertex, and the head folded onto
 * the model's normalised units: x = r / s + mean gives W' = W / s,
 * b' = b + W mean. */
static int head_setup(fit_state *s, int64_t n) {
  const td_vis_head *h = s->io ? s->io->head : NULL;
  if (!h || s->p->lambda_head <= 0.0f || h->n_classes < 1)
    return TD_OK;
  fit_buf *f = s->f;
  int C = h->n_classes, d = s->m->dim, P = s->p->distil_batch;
  f->probs = malloc((size_t)n * C * sizeof(float));
  f->hw = malloc((size_t)C * d * sizeof(float));
  f->hb = malloc((size_t)C * sizeof(float));
  f->hz = malloc((size_t)P * C * sizeof(float));
  if (!f->probs || !f->hw || !f->hb || !f->hz)
    return TD_ENOMEM;
  for (int c = 0; c < C; c++) {
    double acc = (double)h->b[c];
    for (int j = 0; j < d; j++) {
      f->hw[(size_t)c * d + j] = h->w[(size_t)c * d + j] / s->m->scale;
      acc += (double)h->w[(size_t)c * d + j] * (double)s->m->mean[j];
    }
    f->hb[c] = (float)acc;
  }
  for (int64_t i = 0; i < n; i++)
    memcpy(f->probs + i * C, h->b, (size_t)C * sizeof(float));
  td_gemm(0, 1, (int)n, C, d, 1.0f, s->x, d, h->w, d, 1.0f, f->probs, C);
  for (int64_t i = 0; i < n; i++) {
    float *z = f->probs + i * C, zmax = z[0];
    for (int c = 1; c < C; c++)
      zmax = z[c] > zmax ? z[c] : zmax;
    double sum = 0.0;
    for (int c = 0; c < C; c++)
      sum += exp((double)(z[c] - zmax));
    for (int c = 0; c < C; c++)
      z[c] = (float)(exp((double)(z[c] - zmax)) / sum);
  }
  s->n_classes = C;
  return TD_OK;
}

/* Lays the complex out (from io->init_y for its vertices, prev's encoding
 * or PCA for the rest), hands the layout to io->y_out, then distils it into
 * the encoder and decoder. */
static int layout_and_distil(fit_state *s, const td_vismodel *prev, int64_t n) {
  const td_vis_params *p = s->p;
  const td_vis_fit_io *io = s->io;
  fit_buf *f = s->f;
  int lay = prev ? p->warm_layout_epochs : p->layout_epochs;
  int dis = prev ? p->warm_distil_epochs : p->distil_epochs;
  if (lay <= 0 && dis <= 0 && !(io && io->y_out))
    return TD_OK;
  int P = p->distil_batch > 0 ? p->distil_batch : 1;
  f->target = malloc((size_t)n * 2 * sizeof(float));
  f->perm = malloc((size_t)n * sizeof(int32_t));
  f->yb = malloc((size_t)P * 2 * sizeof(float));
  if (!f->target || !f->perm || !f->yb)
    return TD_ENOMEM;
  int rc = head_setup(s, n);
  if (rc)
    return rc;
  int64_t n_init = io && io->init_y ? io->n_init : 0;
  if (n_init > n)
    n_init = n;
  if (prev)
    rc = td_vismodel_encode(prev, s->x, n, f->target);
  else if (n_init < n)
    pca_init(s->m, s->x, n, f->target);
  if (rc)
    return rc;
  if (n_init > 0)
    memcpy(f->target, io->init_y, (size_t)n_init * 2 * sizeof(float));
  /* A warm layout starts from a good place: a smaller step keeps it there. */
  float alpha = prev || n_init > 0 ? p->warm_alpha : 1.0f;
  rc = td_vis_layout(s->g, f->target, lay, alpha, p->n_negatives, p->a, p->b,
                     p->seed);
  if (rc)
    return rc;
  if (io && io->y_out)
    memcpy(io->y_out, f->target, (size_t)n * 2 * sizeof(float));
  /* A distillation "epoch" is min(n, distil_points) rows, drawn by walking
   * a shuffled order of all points: the nets see every point over the fit
   * but the cost no longer grows with n. */
  int64_t per = p->distil_points > 0 && p->distil_points < n
                    ? (int64_t)p->distil_points
                    : n;
  for (int64_t i = 0; i < n; i++)
    f->perm[i] = (int32_t)i;
  if (p->dec_on_layout && dis > 0) {
    f->perm2 = malloc((size_t)n * sizeof(int32_t));
    f->xb2 = malloc((size_t)P * s->m->dim * sizeof(float));
    if (!f->perm2 || !f->xb2)
      return TD_ENOMEM;
    memcpy(f->perm2, f->perm, (size_t)n * sizeof(int32_t));
    split_ctx sc = {s, n, per, dis, {0.0, 0.0}};
    int saved = openblas_get_num_threads();
    openblas_set_num_threads(1);
    td_parallel_for(2, 1, split_cb, &sc);
    openblas_set_num_threads(saved);
    if (p->progress &&
        p->progress(p->progress_ctx, -dis, sc.loss[0] + sc.loss[1]))
      return TD_EINTERRUPTED;
    return TD_OK;
  }
  td_rng_shuffle_i32(&s->rng, f->perm, n);
  int64_t at = 0;
  for (int ep = 0; ep < dis; ep++) {
    double tot = 0.0;
    int64_t steps = 0;
    for (int64_t done = 0; done < per; done += P) {
      if (at + P > n) {
        td_rng_shuffle_i32(&s->rng, f->perm, n);
        at = 0;
      }
      int cnt = (int)(n < P ? n : P);
      tot += distil_step(s, f->perm + at, cnt);
      at += cnt;
      steps++;
    }
    if (p->progress &&
        p->progress(p->progress_ctx, -(ep + 1), tot / (double)steps))
      return TD_EINTERRUPTED;
  }
  return TD_OK;
}

static int fit_check(const td_vismodel *m, const float *x, int64_t n,
                     const td_graph *g, const td_vismodel *prev,
                     const td_vis_params *p, const td_vis_anchor *anc,
                     td_err *err) {
  if (!x || n < 2 || !g || g->n_vertices != n || g->n_edges < 1)
    return td_err_set(err, TD_EARG,
                      "vismodel: need >= 2 points and a graph over them "
                      "(%lld points, graph over %lld vertices, %lld edges)",
                      (long long)n, g ? (long long)g->n_vertices : 0LL,
                      g ? (long long)g->n_edges : 0LL);
  if (n >= INT32_MAX)
    return td_err_set(err, TD_EARG, "vismodel: too many points");
  if (p->batch_edges < 1 || p->n_negatives < 0 || p->max_epochs < 0 ||
      (p->distil_batch < 1 &&
       (p->distil_epochs > 0 || p->warm_distil_epochs > 0)) ||
      p->rec_fraction < 0.0f || p->rec_fraction > 1.0f || p->temporal < 0 ||
      p->temporal >= TD_TEMPORAL_COUNT)
    return td_err_set(err, TD_EARG, "vismodel: invalid parameters");
  if (prev && (prev->dim != m->dim || !same_shape(prev->enc, m->enc) ||
               !same_shape(prev->dec, m->dec)))
    return td_err_set(err, TD_EARG,
                      "vismodel: previous model has another shape");
  if (anc && anc->n_memory > 0 && (!anc->mem_x || !anc->mem_y))
    return td_err_set(err, TD_EARG, "vismodel: memory without points");
  return TD_OK;
}

static int fit_alloc(fit_state *s, const td_vismodel *prev, int64_t nmem) {
  fit_buf *f = s->f;
  td_vismodel *m = s->m;
  int V = 2 * s->bsz, d = m->dim;
  size_t nneg = (size_t)s->bsz * (size_t)s->p->n_negatives;
  /* only DVI's own passes sample edges by weight */
  if (s->p->max_epochs > 0 &&
      td_alias_build(s->g->weight, s->g->n_edges, &f->alias) != TD_OK)
    return TD_ENOMEM;
  int P = s->p->distil_batch > 0 ? s->p->distil_batch : 1;
  int rows = V > P ? V : P;
  f->ws_enc = td_net_ws_new(m->enc, rows);
  f->ws_dec = td_net_ws_new(m->dec, s->nrec > P ? s->nrec : P);
  f->opt_enc =
      td_optim_adam(td_net_n_params(m->enc), s->p->lr, 0.9f, 0.999f, 1e-7f);
  f->opt_dec =
      td_optim_adam(td_net_n_params(m->dec), s->p->lr, 0.9f, 0.999f, 1e-7f);
  f->xb = malloc((size_t)rows * d * sizeof(float));
  f->vid = malloc((size_t)rows * sizeof(int32_t));
  f->de = malloc((size_t)rows * 2 * sizeof(float));
  f->de_rec = malloc((size_t)rows * 2 * sizeof(float));
  f->dr = malloc((size_t)rows * d * sizeof(float));
  f->pu = malloc((size_t)s->bsz * sizeof(int32_t));
  f->pv = malloc((size_t)s->bsz * sizeof(int32_t));
  f->nu = malloc((nneg ? nneg : 1) * sizeof(int32_t));
  f->nv = malloc((nneg ? nneg : 1) * sizeof(int32_t));
  if (!f->ws_enc || !f->ws_dec || !f->opt_enc || !f->opt_dec || !f->xb ||
      !f->vid || !f->de || !f->de_rec || !f->dr || !f->pu || !f->pv || !f->nu ||
      !f->nv)
    return TD_ENOMEM;
  if (prev && s->p->temporal == TD_TEMPORAL_DVI) {
    size_t ne = td_net_n_params(m->enc), nd = td_net_n_params(m->dec);
    f->prev_enc = malloc(ne * sizeof(float));
    f->prev_dec = malloc(nd * sizeof(float));
    if (!f->prev_enc || !f->prev_dec)
      return TD_ENOMEM;
    memcpy(f->prev_enc, td_net_params_const(prev->enc), ne * sizeof(float));
    memcpy(f->prev_dec, td_net_params_const(prev->dec), nd * sizeof(float));
  }
  if (s->mem_batch > 0) {
    (void)nmem;
    f->ws_mem = td_net_ws_new(m->enc, s->mem_batch);
    f->xm = malloc((size_t)s->mem_batch * d * sizeof(float));
    f->dm = malloc((size_t)s->mem_batch * 2 * sizeof(float));
    f->mid = malloc((size_t)s->mem_batch * sizeof(int32_t));
    if (!f->ws_mem || !f->xm || !f->dm || !f->mid)
      return TD_ENOMEM;
  }
  return TD_OK;
}

int td_vismodel_fit(td_vismodel *m, const float *x, int64_t n,
                    const td_graph *g, const td_vismodel *prev,
                    const td_vis_params *p, const td_vis_anchor *anc,
                    td_err *err) {
  return td_vismodel_fit_ex(m, x, n, g, prev, p, anc, NULL, err);
}

int td_vismodel_fit_ex(td_vismodel *m, const float *x, int64_t n,
                       const td_graph *g, const td_vismodel *prev,
                       const td_vis_params *p, const td_vis_anchor *anc,
                       const td_vis_fit_io *io, td_err *err) {
  td_vis_params def;
  if (!p) {
    td_vis_params_default(&def, m->dim);
    p = &def;
  }
  int rc = fit_check(m, x, n, g, prev, p, anc, err);
  if (rc)
    return rc;
  if (io &&
      ((io->init_y && io->n_init < 0) ||
       (io->head && (io->head->n_classes < 1 || !io->head->w || !io->head->b))))
    return td_err_set(err, TD_EARG, "vismodel: invalid fit options");
  if (prev) {
    memcpy(td_net_params(m->enc), td_net_params_const(prev->enc),
           td_net_n_params(m->enc) * sizeof(float));
    memcpy(td_net_params(m->dec), td_net_params_const(prev->dec),
           td_net_n_params(m->dec) * sizeof(float));
    memcpy(m->mean, prev->mean, (size_t)m->dim * sizeof(float));
    m->scale = prev->scale;
  } else {
    set_normalisation(m, x, n);
  }
  fit_buf f;
  memset(&f, 0, sizeof f);
  fit_state s = {m, x, g, p, anc, prev != NULL, &f, {{0}}, 0, 0, 0, NULL, 0};
  td_rng_seed(&s.rng, p->seed ^ 0x9e3779b97f4a7c15ull);
  s.io = io;
  s.bsz = p->batch_edges;
  s.nrec = (int)lroundf(p->rec_fraction * (float)(2 * s.bsz));
  int64_t nmem = anc ? anc->n_memory : 0;
  if (prev && p->temporal == TD_TEMPORAL_MEMORY && nmem > 0 &&
      p->lambda_temporal > 0.0f)
    s.mem_batch = (int)(nmem < s.bsz / 4 ? nmem : s.bsz / 4 + 1);
  if (fit_alloc(&s, prev, nmem) != TD_OK) {
    fit_buf_free(&f);
    return td_err_set(err, TD_ENOMEM, "vismodel: out of memory");
  }
  rc = layout_and_distil(&s, prev, n);
  if (rc) {
    fit_buf_free(&f);
    return rc == TD_EINTERRUPTED
               ? td_err_set(err, rc, "vismodel: stopped while distilling")
               : td_err_set(err, rc, "vismodel: out of memory");
  }
  int64_t pass_edges = p->pass_edges > 0 ? p->pass_edges : 20 * n;
  if (prev)
    pass_edges = (int64_t)((double)pass_edges * (double)p->warm_pass_scale);
  int64_t steps = (pass_edges + s.bsz - 1) / s.bsz;
  if (steps < 1)
    steps = 1;
  double best = INFINITY;
  int dropped = 0;
  for (int pass = 1; pass <= p->max_epochs; pass++) {
    double tot = 0.0;
    for (int64_t st = 0; st < steps; st++)
      tot += fit_step(&s);
    double mean = tot / (double)steps;
    if (p->progress && p->progress(p->progress_ctx, pass, mean)) {
      rc = td_err_set(err, TD_EINTERRUPTED, "vismodel: stopped at pass %d",
                      pass);
      break;
    }
    if (mean < best * (1.0 - (double)p->min_improvement)) {
      best = mean;
      continue;
    }
    if (mean < best)
      best = mean;
    if (dropped || p->lr_min >= p->lr)
      break;
    dropped = 1;
    td_optim_set_lr(f.opt_enc, p->lr_min);
    td_optim_set_lr(f.opt_dec, p->lr_min);
  }
  m->params = *p;
  m->params.progress = NULL;
  m->params.progress_ctx = NULL;
  fit_buf_free(&f);
  return rc;
}

/* ---- save / load
 * --------------------------------------------------------------
 */

static json_t *model_to_json(const td_vismodel *m) {
  const td_vis_params *p = &m->params;
  json_t *mean = json_array();
  for (int j = 0; mean && j < m->dim; j++)
    if (json_array_append_new(mean, json_real((double)m->mean[j]))) {
      json_decref(mean);
      return NULL;
    }
  if (!mean)
    return NULL;
  return json_pack(
      "{s:s, s:i, s:i, s:i, s:i, s:f, s:o, s:{s:f, s:f, s:i, s:i, s:f, s:f, "
      "s:f, s:f, s:i, s:I, s:f, s:i, s:f, s:I}}",
      "format", VIS_FORMAT, "version", VIS_VERSION, "repr_dim", m->dim,
      "hidden", td_net_dim(m->enc, 1), "n_hidden_layers",
      td_net_n_layers(m->enc) - 1, "scale", (double)m->scale, "mean", mean,
      "params", "lr", (double)p->lr, "lr_min", (double)p->lr_min, "batch_edges",
      p->batch_edges, "n_negatives", p->n_negatives, "lambda_rec",
      (double)p->lambda_rec, "rec_fraction", (double)p->rec_fraction, "a",
      (double)p->a, "b", (double)p->b, "max_epochs", p->max_epochs,
      "pass_edges", (json_int_t)p->pass_edges, "min_improvement",
      (double)p->min_improvement, "temporal", p->temporal, "lambda_temporal",
      (double)p->lambda_temporal, "seed", (json_int_t)p->seed);
}

static int write_model(const td_vismodel *m, const char *tmp, td_err *err) {
  char path[4200];
  int rc = td_mkdirs(tmp, err);
  if (rc)
    return rc;
  if (td_path_join(path, sizeof path, tmp, "encoder") ||
      (rc = td_net_save(m->enc, path, err)))
    return rc ? rc : td_err_set(err, TD_ERANGE, "%s: path too long", tmp);
  if (td_path_join(path, sizeof path, tmp, "decoder") ||
      (rc = td_net_save(m->dec, path, err)))
    return rc ? rc : td_err_set(err, TD_ERANGE, "%s: path too long", tmp);
  json_t *j = model_to_json(m);
  char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
  json_decref(j);
  if (!text)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", tmp);
  if (td_path_join(path, sizeof path, tmp, "vismodel.json"))
    rc = td_err_set(err, TD_ERANGE, "%s: path too long", tmp);
  else
    rc = td_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return rc;
}

int td_vismodel_save(const td_vismodel *m, const char *dir, td_err *err) {
  char tmp[4200], old[4200];
  if (!dir || !*dir ||
      snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= (int)sizeof tmp - 16)
    return td_err_set(err, TD_EARG, "vismodel: bad directory name");
  snprintf(old, sizeof old, "%s.old", dir);
  int rc = td_remove_tree(tmp, err);
  if (rc == TD_OK)
    rc = write_model(m, tmp, err);
  /* Move an existing model aside rather than delete it first, so a crash
   * leaves either the old or the new one in place. */
  if (rc == TD_OK && td_path_exists(dir)) {
    if ((rc = td_remove_tree(old, err)) == TD_OK && rename(dir, old) != 0)
      rc = td_err_set(err, TD_EIO, "%s: cannot move aside", dir);
  }
  if (rc == TD_OK && rename(tmp, dir) != 0) {
    rename(old, dir);
    rc = td_err_set(err, TD_EIO, "%s: cannot rename into place", dir);
  }
  if (rc != TD_OK) {
    td_remove_tree(tmp, NULL);
    return rc;
  }
  td_remove_tree(old, NULL);
  return TD_OK;
}

static double jnum(json_t *o, const char *key, double def) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : def;
}

static int parse_model(json_t *root, const char *path, td_vismodel *m,
                       td_err *err) {
  json_t *mean = json_object_get(root, "mean");
  if (!json_is_array(mean) || (int)json_array_size(mean) != m->dim)
    return td_err_set(err, TD_EFORMAT, "%s: \"mean\" must hold %d numbers",
                      path, m->dim);
  for (int j = 0; j < m->dim; j++) {
    json_t *v = json_array_get(mean, (size_t)j);
    if (!json_is_number(v))
      return td_err_set(err, TD_EFORMAT, "%s: \"mean\" must hold numbers",
                        path);
    m->mean[j] = (float)json_number_value(v);
  }
  m->scale = (float)jnum(root, "scale", 1.0);
  if (!(m->scale > 0.0f) || !isfinite(m->scale))
    return td_err_set(err, TD_EFORMAT, "%s: bad \"scale\"", path);
  td_vis_params *p = &m->params;
  td_vis_params_default(p, m->dim);
  p->hidden = td_net_dim(m->enc, 1);
  p->n_hidden_layers = td_net_n_layers(m->enc) - 1;
  json_t *o = json_object_get(root, "params");
  if (json_is_object(o)) {
    p->lr = (float)jnum(o, "lr", (double)p->lr);
    p->lr_min = (float)jnum(o, "lr_min", (double)p->lr_min);
    p->batch_edges = (int)jnum(o, "batch_edges", p->batch_edges);
    p->n_negatives = (int)jnum(o, "n_negatives", p->n_negatives);
    p->lambda_rec = (float)jnum(o, "lambda_rec", (double)p->lambda_rec);
    p->rec_fraction = (float)jnum(o, "rec_fraction", (double)p->rec_fraction);
    p->a = (float)jnum(o, "a", (double)p->a);
    p->b = (float)jnum(o, "b", (double)p->b);
    p->max_epochs = (int)jnum(o, "max_epochs", p->max_epochs);
    p->pass_edges = (int64_t)jnum(o, "pass_edges", (double)p->pass_edges);
    p->min_improvement =
        (float)jnum(o, "min_improvement", (double)p->min_improvement);
    p->temporal = (int)jnum(o, "temporal", p->temporal);
    p->lambda_temporal =
        (float)jnum(o, "lambda_temporal", (double)p->lambda_temporal);
    p->seed = (uint64_t)jnum(o, "seed", (double)p->seed);
  }
  return TD_OK;
}

int td_vismodel_load(const char *dir, td_vismodel **out, td_err *err) {
  *out = NULL;
  char path[4200];
  if (td_path_join(path, sizeof path, dir, "vismodel.json"))
    return td_err_set(err, TD_ERANGE, "%s: path too long", dir);
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (!root)
    return td_err_set(err, td_path_exists(path) ? TD_EFORMAT : TD_ENOENT,
                      "%s: %s", path, jerr.text);
  int rc = TD_OK;
  td_net *enc = NULL, *dec = NULL;
  td_vismodel *m = NULL;
  json_t *fmt = json_object_get(root, "format");
  json_t *ver = json_object_get(root, "version");
  json_t *dim = json_object_get(root, "repr_dim");
  if (!json_is_string(fmt) || strcmp(json_string_value(fmt), VIS_FORMAT) ||
      !json_is_integer(ver) || !json_is_integer(dim) ||
      json_integer_value(dim) < 1) {
    rc = td_err_set(err, TD_EFORMAT, "%s: not a tardis projection model", path);
    goto done;
  }
  if (json_integer_value(ver) > VIS_VERSION) {
    rc = td_err_set(err, TD_EVERSION,
                    "%s: version %lld is newer than this tardis (%d)", path,
                    (long long)json_integer_value(ver), VIS_VERSION);
    goto done;
  }
  int d = (int)json_integer_value(dim);
  char sub[4200];
  td_path_join(sub, sizeof sub, dir, "encoder"); /* fits: path did */
  if ((rc = td_net_load(sub, &enc, err)))
    goto done;
  td_path_join(sub, sizeof sub, dir, "decoder");
  if ((rc = td_net_load(sub, &dec, err)))
    goto done;
  int L = td_net_n_layers(enc);
  if (td_net_in_dim(enc) != d || td_net_out_dim(enc) != 2 ||
      td_net_in_dim(dec) != 2 || td_net_out_dim(dec) != d ||
      td_net_n_layers(dec) != L || L < 1) {
    rc =
        td_err_set(err, TD_EFORMAT, "%s: encoder/decoder shapes disagree", dir);
    goto done;
  }
  m = calloc(1, sizeof *m);
  if (!m || !(m->mean = calloc((size_t)d, sizeof(float)))) {
    rc = td_err_set(err, TD_ENOMEM, "%s: out of memory", dir);
    goto done;
  }
  m->dim = d;
  m->enc = enc;
  m->dec = dec;
  enc = dec = NULL;
  rc = parse_model(root, path, m, err);
done:
  json_decref(root);
  td_net_free(enc);
  td_net_free(dec);
  if (rc) {
    td_vismodel_free(m);
    return rc;
  }
  *out = m;
  return TD_OK;
}
