/* Layer probes (DESIGN §3.10 (2)): the features of a hidden layer for
 * chosen samples (spatial activations averaged over H and W), and a linear
 * softmax probe fitted on them with the layers below frozen. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "repair/repair_internal.h"
#include "train/bigbuf.h"

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

/* Features of n layers for the same m rows of a split, from one forward
 * pass of each chunk of FEATURE_CHUNK rows: layer k's into out[k]. */
static int net_features(const td__diag_data *d, int test, int n,
                        const int *layers, const int32_t *rows, int64_t m,
                        float *const *out) {
  const td_array *x = test ? &d->x_test : &d->x_train;
  int in = td_net_in_dim(d->net);
  float *xb = malloc((size_t)FEATURE_CHUNK * in * sizeof *xb);
  float **tap = calloc((size_t)(n > 0 ? n : 1), sizeof *tap);
  td_net_predictor *pr = td_net_predictor_new(d->net); /* one for all chunks */
  int rc = xb && tap && pr ? TD_OK : TD_ENOMEM;
  for (int k = 0; !rc && k < n; k++)
    if (!(tap[k] = td__big_floats((int64_t)FEATURE_CHUNK *
                                  td_net_dim(d->net, layers[k] + 1))))
      rc = TD_ENOMEM; /* a CNN's first taps: tens of MB, on huge pages */
  for (int64_t b = 0; !rc && b < m; b += FEATURE_CHUNK) {
    int64_t kk = m - b < FEATURE_CHUNK ? m - b : FEATURE_CHUNK;
    gather_inputs(x, in, rows + b, kk, xb);
    rc = td_net_predictor_run(pr, xb, kk, NULL, n, layers, (float *const *)tap);
    for (int k = 0; !rc && k < n; k++) {
      int pooled, dim = td__feature_dim(d, layers[k], &pooled);
      int full = td_net_dim(d->net, layers[k] + 1);
      if (pooled)
        pool_rows(tap[k], kk, dim, full / dim, out[k] + b * dim);
      else
        memcpy(out[k] + b * dim, tap[k], (size_t)(kk * dim) * sizeof(float));
    }
  }
  for (int k = 0; tap && k < n; k++)
    free(tap[k]);
  free(tap);
  free(xb);
  td_net_predictor_free(pr);
  return rc;
}

int td__features(const td__diag_data *d, int test, int layer,
                 const int32_t *rows, int64_t m, float *out, td_err *err) {
  if (d->net) {
    int at = layer < 0 ? td_net_n_layers(d->net) - 2 : layer;
    return net_features(d, test, 1, &at, rows, m, &out)
               ? td_err_set(err, TD_ENOMEM,
                            "out of memory computing layer %d's features",
                            layer)
               : TD_OK;
  }
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

/* td__features_layers with a net: the layers whose rows are the same (the
 * same samples in the same order, as every layer's test rows are when the
 * test set is no larger than the probes' sample) share a pass, so each
 * chunk a layer sees is the chunk td__features would give it: the same
 * bytes (a row's GEMM result may depend on where it sits in its chunk). */
static int net_features_layers(const td__diag_data *d, int test, int n,
                               const int *layers, int32_t *const *rows,
                               const int64_t *m, float *const *out) {
  int *grp = malloc((size_t)(n > 0 ? n : 1) * sizeof *grp);
  char *done = calloc((size_t)(n > 0 ? n : 1), 1);
  float **go = malloc((size_t)(n > 0 ? n : 1) * sizeof *go);
  int rc = grp && done && go ? TD_OK : TD_ENOMEM;
  for (int k = 0; !rc && k < n; k++) {
    if (done[k])
      continue;
    int ng = 0;
    for (int j = k; j < n; j++)
      if (!done[j] && m[j] == m[k] &&
          !memcmp(rows[j], rows[k], (size_t)m[k] * sizeof *rows[k])) {
        done[j] = 1;
        grp[ng] = layers[j];
        go[ng++] = out[j];
      }
    rc = net_features(d, test, ng, grp, rows[k], m[k], go);
  }
  free(grp);
  free(done);
  free(go);
  return rc;
}

int td__features_layers(const td__diag_data *d, int test, int n,
                        const int *layers, int32_t *const *rows,
                        const int64_t *m, float *const *out, td_err *err) {
  int rc = TD_OK, *at = malloc((size_t)(n > 0 ? n : 1) * sizeof *at);
  for (int k = 0; at && k < n; k++)
    at[k] = layers[k] < 0 && d->net ? td_net_n_layers(d->net) - 2 : layers[k];
  if (!at)
    rc = TD_ENOMEM;
  else if (d->net)
    rc = net_features_layers(d, test, n, at, rows, m, out);
  for (int k = 0; !d->net && !rc && k < n; k++)
    rc = td__features(d, test, layers[k], rows[k], m[k], out[k], err);
  free(at);
  return rc == TD_ENOMEM ? td_err_set(err, rc,
                                      "out of memory computing the layers' "
                                      "features")
                         : rc;
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

/* One layer's probe data: its random stream (sampling, then fitting), and
 * per split (0: trained-on, 1: test) its rows, labels and features. */
typedef struct probe_set {
  td_rng rng;
  int dim;
  int32_t *rows[2], *y[2];
  int64_t m[2];
  float *f[2];
} probe_set;

static int probe_set_init(const td__diag_data *d, int layer,
                          const td_diagnose_opts *o, probe_set *p) {
  int pooled;
  td_rng_split(&p->rng, o->seed, (uint64_t)(layer + 2));
  p->dim = td__feature_dim(d, layer, &pooled);
  p->rows[0] =
      sample_rows(d->trained, d->n_trained, o->probe_max, &p->rng, &p->m[0]);
  p->rows[1] = sample_rows(NULL, d->n_test, o->probe_max, &p->rng, &p->m[1]);
  for (int s = 0; s < 2; s++) {
    int64_t m = p->rows[s] && p->m[s] ? p->m[s] : 1;
    p->f[s] = td__big_floats(m * p->dim); /* few page faults */
    p->y[s] = malloc((size_t)m * sizeof(int32_t));
    if (!p->rows[s] || !p->f[s] || !p->y[s])
      return TD_ENOMEM;
    for (int64_t i = 0; i < p->m[s]; i++)
      p->y[s][i] = s ? d->y_test[p->rows[s][i]] : d->y_train[p->rows[s][i]];
  }
  return TD_OK;
}

static void probe_set_free(probe_set *p) {
  for (int s = 0; s < 2; s++) {
    free(p->rows[s]);
    free(p->y[s]);
    free(p->f[s]);
  }
}

/* The features of every layer's probe rows, one pass per split. */
static int probe_features(const td__diag_data *d, int n, const int *layers,
                          probe_set *ps, td_err *err) {
  int32_t **rows = malloc((size_t)n * sizeof *rows); /* n >= 1 */
  float **f = malloc((size_t)n * sizeof *f);
  int64_t *m = malloc((size_t)n * sizeof *m);
  int rc = rows && f && m
               ? TD_OK
               : td_err_set(err, TD_ENOMEM, "out of memory fitting the probes");
  for (int s = 0; !rc && s < 2; s++) {
    for (int k = 0; k < n; k++) {
      rows[k] = ps[k].rows[s];
      f[k] = ps[k].f[s];
      m[k] = ps[k].m[s];
    }
    rc = td__features_layers(d, s, n, layers, rows, m, f, err);
  }
  free(rows);
  free(f);
  free(m);
  return rc;
}

/* The probes of layers[0..n): their samples, one shared set of passes for
 * their features, then each fit. */
static int fit_group(const td__diag_data *d, int n, const int *layers,
                     const td_diagnose_opts *o, float *const *w, float *b,
                     double *train_acc, double *test_acc, td_err *err) {
  probe_set *ps = calloc((size_t)n, sizeof *ps);
  int rc = ps ? TD_OK : TD_ENOMEM;
  for (int k = 0; !rc && k < n; k++)
    rc = probe_set_init(d, layers[k], o, &ps[k]);
  if (rc)
    rc = td_err_set(err, TD_ENOMEM, "out of memory fitting the probes");
  if (!rc)
    rc = probe_features(d, n, layers, ps, err);
  for (int k = 0; !rc && k < n; k++) {
    probe_set *p = &ps[k];
    if (fit(p->f[0], p->y[0], p->m[0], p->dim, d->C, o, &p->rng, w[k], b))
      rc = td_err_set(err, TD_ENOMEM, "out of memory fitting a probe");
    if (!rc) {
      train_acc[k] =
          probe_acc(p->f[0], p->y[0], p->m[0], p->dim, d->C, w[k], b);
      test_acc[k] = probe_acc(p->f[1], p->y[1], p->m[1], p->dim, d->C, w[k], b);
    }
  }
  for (int k = 0; ps && k < n; k++)
    probe_set_free(&ps[k]);
  free(ps);
  return rc;
}

/* The features of the layers fitted together are held at once: groups of
 * consecutive layers up to this many bytes of them (a wide net's layers go
 * a few at a time; each layer's random stream is its own, so the grouping
 * changes nothing in the results). */
#define PROBE_GROUP_BYTES ((int64_t)256 << 20)

int td__probe_fit_layers(const td__diag_data *d, int n, const int *layers,
                         const td_diagnose_opts *o, float *const *w, float *b,
                         double *train_acc, double *test_acc, td_err *err) {
  int64_t rows = (d->n_trained < o->probe_max ? d->n_trained : o->probe_max) +
                 (d->n_test < o->probe_max ? d->n_test : o->probe_max);
  int rc = TD_OK;
  for (int k0 = 0, k1; !rc && k0 < n; k0 = k1) {
    int64_t bytes = 0;
    for (k1 = k0; k1 < n; k1++) {
      int pooled;
      int64_t more = rows * td__feature_dim(d, layers[k1], &pooled) * 4;
      if (k1 > k0 && bytes + more > PROBE_GROUP_BYTES)
        break;
      bytes += more;
    }
    rc = fit_group(d, k1 - k0, layers + k0, o, w + k0, b, train_acc + k0,
                   test_acc + k0, err);
  }
  return rc;
}

int td__probe_fit(const td__diag_data *d, int layer, const td_diagnose_opts *o,
                  float *w, float *b, double *train_acc, double *test_acc,
                  td_err *err) {
  return td__probe_fit_layers(d, 1, &layer, o, &w, b, train_acc, test_acc, err);
}
