/* The projection model (tardis/vismodel.h): parameters, construction, and
 * inference with the normalisation folded into the outer layers; also the
 * kNN overlap that scales DVI's temporal term. */
#include <stdlib.h>
#include <string.h>

#include "vismodel_internal.h"

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
  p->polish_ppr = 0.99f;
  p->polish_rounds = 8;
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

int td__vis_same_shape(const td_net *a, const td_net *b) {
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
