/* Layer probes (DESIGN §3.10 (2)): the features of a hidden layer for
 * chosen samples (spatial activations averaged over H and W), and a linear
 * softmax probe fitted on them with the layers below frozen. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "repair/repair_internal.h"

#define FEATURE_CHUNK 256

int td__feature_dim(const td__diag_data *d, int layer, int *pooled) {
  *pooled = 0;
  if (!d->net || layer < 0)
    return d->net ? td_net_dim(d->net, td_net_n_layers(d->net) - 1) : d->D;
  int c, h, w;
  td_net_shape(d->net, layer + 1, &c, &h, &w);
  *pooled = h * w > 1;
  return *pooled ? c : c * h * w;
}

/* Rows of the inputs as float (uint8 pixels scaled to [0, 1], as the
 * trainer does). */
static void gather_inputs(const td_array *x, int in, const int32_t *rows,
                          int64_t m, float *out) {
  for (int64_t k = 0; k < m; k++) {
    float *o = out + k * in;
    if (x->dtype == TD_U8) {
      const uint8_t *p = (const uint8_t *)x->data + (int64_t)rows[k] * in;
      for (int j = 0; j < in; j++)
        o[j] = (float)p[j] * (1.0f / 255.0f);
    } else {
      memcpy(o, (const float *)x->data + (int64_t)rows[k] * in,
             (size_t)in * sizeof *o);
    }
  }
}

/* Spatial activations [m, c, h, w] averaged into [m, c]. */
static void pool_rows(const float *a, int64_t m, int c, int hw, float *out) {
  for (int64_t k = 0; k < m; k++)
    for (int j = 0; j < c; j++) {
      const float *p = a + (k * c + j) * hw;
      double s = 0;
      for (int t = 0; t < hw; t++)
        s += (double)p[t];
      out[k * c + j] = (float)(s / hw);
    }
}

static int net_features(const td__diag_data *d, int test, int layer,
                        const int32_t *rows, int64_t m, float *out,
                        td_err *err) {
  const td_array *x = test ? &d->x_test : &d->x_train;
  int in = td_net_in_dim(d->net), full = td_net_dim(d->net, layer + 1);
  int pooled, dim = td__feature_dim(d, layer, &pooled);
  float *xb = malloc((size_t)FEATURE_CHUNK * in * sizeof *xb);
  float *tap = malloc((size_t)FEATURE_CHUNK * full * sizeof *tap);
  int rc = xb && tap ? TD_OK : TD_ENOMEM;
  for (int64_t b = 0; !rc && b < m; b += FEATURE_CHUNK) {
    int64_t k = m - b < FEATURE_CHUNK ? m - b : FEATURE_CHUNK;
    gather_inputs(x, in, rows + b, k, xb);
    if (!(rc = td_net_predict(d->net, xb, k, NULL, layer, tap))) {
      if (pooled)
        pool_rows(tap, k, dim, full / dim, out + b * dim);
      else
        memcpy(out + b * dim, tap, (size_t)(k * dim) * sizeof *out);
    }
  }
  free(xb);
  free(tap);
  return rc ? td_err_set(err, rc,
                         "out of memory computing layer %d's "
                         "features",
                         layer)
            : TD_OK;
}

int td__features(const td__diag_data *d, int test, int layer,
                 const int32_t *rows, int64_t m, float *out, td_err *err) {
  if (d->net)
    return net_features(d, test,
                        layer < 0 ? td_net_n_layers(d->net) - 2 : layer, rows,
                        m, out, err);
  const float *r = test ? d->repr_test : d->repr_train;
  for (int64_t k = 0; k < m; k++)
    memcpy(out + k * d->D, r + (int64_t)rows[k] * d->D,
           (size_t)d->D * sizeof *out);
  return TD_OK;
}

/* Up to max of the n rows (all of them when n <= max), drawn by rng. */
static int32_t *sample_rows(const int32_t *rows, int64_t n, int64_t max,
                            td_rng *rng, int64_t *m) {
  int32_t *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
  if (!v)
    return NULL;
  for (int64_t i = 0; i < n; i++)
    v[i] = rows ? rows[i] : (int32_t)i;
  if (n > max) {
    td_rng_shuffle_i32(rng, v, n);
    n = max;
  }
  *m = n;
  return v;
}

static double probe_acc(const float *f, const int32_t *y, int64_t m, int dim,
                        int C, const float *w, const float *b) {
  if (m == 0)
    return (double)NAN;
  int64_t ok = 0;
  for (int64_t i = 0; i < m; i++) {
    int best = 0;
    double bv = -INFINITY;
    for (int c = 0; c < C; c++) {
      double z = b[c];
      for (int j = 0; j < dim; j++)
        z += (double)f[i * dim + j] * (double)w[c * dim + j];
      if (z > bv)
        bv = z, best = c;
    }
    ok += best == y[i];
  }
  return (double)ok / (double)m;
}

/* Softmax regression by Adam on f / s (s: the features' RMS, so every
 * layer trains at the same rate); the weights returned are for f. */
static int fit(const float *f, const int32_t *y, int64_t m, int dim, int C,
               const td_diagnose_opts *o, td_rng *rng, float *w, float *b) {
  double ss = 0;
  for (int64_t i = 0; i < m * dim; i++)
    ss += (double)f[i] * (double)f[i];
  float s = ss > 0 ? (float)sqrt(ss / (double)(m * dim)) : 1.0f;
  int dims[2] = {dim, C};
  td_act act = TD_ACT_NONE;
  td_net *net = td_net_new(1, dims, &act);
  td_net_ws *ws = net ? td_net_ws_new(net, 128) : NULL;
  td_optim *opt =
      td_optim_adam((size_t)dim * C + C, 0.01f, 0.9f, 0.999f, 1e-8f);
  float *xb = malloc((size_t)128 * dim * sizeof *xb);
  float *dl = malloc((size_t)128 * C * sizeof *dl);
  int32_t *perm = malloc((size_t)m * sizeof *perm), yb[128];
  int rc = net && ws && opt && xb && dl && perm ? TD_OK : TD_ENOMEM;
  if (!rc) {
    td_net_init(net, rng);
    for (int64_t i = 0; i < m; i++)
      perm[i] = (int32_t)i;
  }
  for (int e = 0; !rc && e < o->probe_epochs; e++) {
    td_rng_shuffle_i32(rng, perm, m);
    for (int64_t b0 = 0; b0 < m; b0 += 128) {
      int k = (int)(m - b0 < 128 ? m - b0 : 128);
      for (int i = 0; i < k; i++) {
        for (int j = 0; j < dim; j++)
          xb[i * dim + j] = f[(int64_t)perm[b0 + i] * dim + j] / s;
        yb[i] = y[perm[b0 + i]];
      }
      const float *z = td_net_forward(net, ws, xb, k);
      td_softmax_xent(z, yb, k, C, dl, NULL);
      td_net_zero_grad(net);
      td_net_backward(net, ws, dl, k, NULL);
      td_optim_step(opt, td_net_params(net), td_net_grads(net));
    }
  }
  if (!rc) {
    const float *W = td_net_weight(net, 0), *B = td_net_bias(net, 0);
    for (int i = 0; i < C * dim; i++)
      w[i] = W[i] / s;
    memcpy(b, B, (size_t)C * sizeof *b);
  }
  free(xb);
  free(dl);
  free(perm);
  td_optim_free(opt);
  td_net_ws_free(ws);
  td_net_free(net);
  return rc;
}

int td__probe_fit(const td__diag_data *d, int layer, const td_diagnose_opts *o,
                  float *w, float *b, double *train_acc, double *test_acc,
                  td_err *err) {
  td_rng rng;
  td_rng_split(&rng, o->seed, (uint64_t)(layer + 2));
  int pooled, dim = td__feature_dim(d, layer, &pooled), C = d->C;
  int64_t mtr = 0, mte = 0;
  int32_t *rtr =
      sample_rows(d->trained, d->n_trained, o->probe_max, &rng, &mtr);
  int32_t *rte = sample_rows(NULL, d->n_test, o->probe_max, &rng, &mte);
  float *ftr = malloc((size_t)(mtr ? mtr : 1) * dim * sizeof *ftr);
  float *fte = malloc((size_t)(mte ? mte : 1) * dim * sizeof *fte);
  int32_t *ytr = malloc((size_t)(mtr ? mtr : 1) * sizeof *ytr);
  int32_t *yte = malloc((size_t)(mte ? mte : 1) * sizeof *yte);
  int rc = rtr && rte && ftr && fte && ytr && yte
               ? TD_OK
               : td_err_set(err, TD_ENOMEM, "out of memory fitting a probe");
  if (!rc)
    rc = td__features(d, 0, layer, rtr, mtr, ftr, err);
  if (!rc)
    rc = td__features(d, 1, layer, rte, mte, fte, err);
  if (!rc) {
    for (int64_t i = 0; i < mtr; i++)
      ytr[i] = d->y_train[rtr[i]];
    for (int64_t i = 0; i < mte; i++)
      yte[i] = d->y_test[rte[i]];
    if (fit(ftr, ytr, mtr, dim, C, o, &rng, w, b))
      rc = td_err_set(err, TD_ENOMEM, "out of memory fitting a probe");
  }
  if (!rc) {
    *train_acc = probe_acc(ftr, ytr, mtr, dim, C, w, b);
    *test_acc = probe_acc(fte, yte, mte, dim, C, w, b);
  }
  free(rtr);
  free(rte);
  free(ftr);
  free(fte);
  free(ytr);
  free(yte);
  return rc;
}
