/* The probes' features of several layers at once (td__features_layers,
 * src/repair/probe.c: layers with the same rows share one forward pass)
 * against a td__features pass per layer: the same bytes, for an MLP and a
 * CNN with and without batchnorm (spatial layers averaged over H and W),
 * the first layers with rows of their own in their own order, the last two
 * with every row in order (one shared pass); the prediction workspaces
 * kept between calls (td_net_predictor) against fresh ones; and the probes
 * fitted on them (td__probe_fit_layers) against a td__probe_fit per layer. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "repair/repair_internal.h"
#include "tardis/rng.h"
#include "tardis/train.h"
#include "train/model.h"

static int N;  /* rows: several chunks of 256 */
static int S;  /* images of S × S pixels */
static int IN; /* S * S */

/* Layer k's rows: a random subset of 0..N-1 in random order, or (all)
 * every row in order. */
static int32_t *layer_rows(td_rng *rng, int k, int all, int64_t *m) {
  int32_t *v = malloc((size_t)N * sizeof *v);
  for (int i = 0; i < N; i++)
    v[i] = i;
  if (all) {
    *m = N;
    return v;
  }
  td_rng_shuffle_i32(rng, v, N);
  *m = 1 + (97 + 211 * k) % (N - 1);
  return v;
}

/* td__probe_fit_layers against td__probe_fit per layer: the same weights
 * and accuracies, with samples smaller than the sets (each layer its own
 * rows) and larger (every layer the same rows, one shared pass). */
static void check_probes(td__diag_data *d, int n, const int *layers,
                         td_rng *rng) {
  int32_t *y = malloc((size_t)N * sizeof *y),
          *trained = malloc((size_t)N * sizeof *trained);
  for (int i = 0; i < N; i++) {
    y[i] = (int32_t)td_rng_below(rng, 10);
    trained[i] = i;
  }
  d->y_train = d->y_test = y;
  d->trained = trained;
  d->n_trained = N;
  td_diagnose_opts o;
  td_diagnose_opts_default(&o);
  o.probe_epochs = 2;
  for (int pass = 0; pass < 2; pass++) {
    o.probe_max = pass ? N : N / 3;
    float *w[16], b[10];
    double tr[16], te[16];
    td_err err = {0};
    for (int k = 0; k < n; k++) {
      int pooled;
      w[k] = malloc((size_t)10 * td__feature_dim(d, layers[k], &pooled) *
                    sizeof(float));
    }
    CHECK_OK(td__probe_fit_layers(d, n, layers, &o, w, b, tr, te, &err), &err);
    for (int k = 0; k < n; k++) {
      int pooled, dim = td__feature_dim(d, layers[k], &pooled);
      float *w1 = malloc((size_t)10 * dim * sizeof(float));
      double tr1, te1;
      CHECK_OK(td__probe_fit(d, layers[k], &o, w1, b, &tr1, &te1, &err), &err);
      if (memcmp(w1, w[k], (size_t)10 * dim * sizeof(float)) || tr1 != tr[k] ||
          te1 != te[k])
        fprintf(stderr,
                "probe of layer %d (probe_max %lld): accuracies %g %g, per "
                "layer %g %g, weights %s\n",
                layers[k], (long long)o.probe_max, tr[k], te[k], tr1, te1,
                memcmp(w1, w[k], (size_t)10 * dim * sizeof(float)) ? "differ"
                                                                   : "equal");
      CHECK(!memcmp(w1, w[k], (size_t)10 * dim * sizeof(float)));
      CHECK(tr1 == tr[k] && te1 == te[k]);
      free(w1);
      free(w[k]);
    }
  }
  free(y);
  free(trained);
}

/* td_net_predictor_run, its workspaces reused over calls of different
 * sizes, against td_net_predict_taps (fresh workspaces) and td_net_predict:
 * the same logits and taps. */
static void check_predictor(const td_net *net, const uint8_t *px, int n,
                            const int *layers) {
  int C = td_net_out_dim(net);
  float *x = malloc((size_t)N * IN * sizeof *x);
  for (int64_t i = 0; i < (int64_t)N * IN; i++)
    x[i] = (float)px[i] / 255.0f;
  td_net_predictor *pr = td_net_predictor_new(net);
  CHECK(pr != NULL);
  const int64_t sizes[3] = {N / 2, 7, N}; /* grows, shrinks, grows */
  for (int c = 0; pr && c < 3; c++) {
    int64_t m = sizes[c];
    float *taps[16], *ref[16];
    float *z = malloc((size_t)m * C * sizeof *z);
    float *z1 = malloc((size_t)m * C * sizeof *z1);
    for (int k = 0; k < n; k++) {
      size_t w = (size_t)td_net_dim(net, layers[k] + 1);
      taps[k] = malloc((size_t)m * w * sizeof(float));
      ref[k] = malloc((size_t)m * w * sizeof(float));
    }
    CHECK(td_net_predictor_run(pr, x, m, z, n, layers, taps) == TD_OK);
    CHECK(td_net_predict_taps(net, x, m, NULL, n, layers, ref) == TD_OK);
    CHECK(td_net_predict(net, x, m, z1, -1, NULL) == TD_OK);
    CHECK(!memcmp(z, z1, (size_t)m * C * sizeof *z));
    for (int k = 0; k < n; k++) {
      size_t w = (size_t)td_net_dim(net, layers[k] + 1);
      if (memcmp(taps[k], ref[k], (size_t)m * w * sizeof(float)))
        fprintf(stderr, "predictor: layer %d differs on %lld rows\n", layers[k],
                (long long)m);
      CHECK(!memcmp(taps[k], ref[k], (size_t)m * w * sizeof(float)));
      free(taps[k]);
      free(ref[k]);
    }
    free(z);
    free(z1);
  }
  td_net_predictor_free(pr);
  free(x);
}

static void check_model(const char *model, int batchnorm, int n_rows,
                        int side) {
  N = n_rows;
  S = side;
  IN = side * side;
  td_train_opts o;
  td_train_opts_default(&o);
  o.model = model;
  o.batchnorm = batchnorm;
  td_net *net = NULL;
  td_err err = {0};
  CHECK_OK(td__model_build(&o, 1, S, S, 10, &net, &err), &err);
  td_rng rng;
  td_rng_seed(&rng, 11);
  td_net_init(net, &rng);
  uint8_t *px = malloc((size_t)N * IN);
  for (int64_t i = 0; i < (int64_t)N * IN; i++)
    px[i] = (uint8_t)td_rng_below(&rng, 256);
  td__diag_data d;
  memset(&d, 0, sizeof d);
  d.net = net;
  d.C = 10;
  d.n_train = d.n_test = N;
  int64_t shape[4] = {N, 1, S, S};
  td_array_wrap(&d.x_train, TD_U8, 4, shape, px);
  td_array_wrap(&d.x_test, TD_U8, 4, shape, px);
  int n = td_net_n_layers(net) - 1; /* every hidden layer */
  int layers[16];
  int32_t *rows[16];
  int64_t m[16];
  float *one[16];
  for (int k = 0; k < n; k++) {
    int pooled;
    layers[k] = k;
    rows[k] = layer_rows(&rng, k, k >= n - 2, &m[k]);
    one[k] =
        malloc((size_t)m[k] * td__feature_dim(&d, k, &pooled) * sizeof(float));
  }
  for (int test = 0; test < 2; test++) {
    CHECK_OK(td__features_layers(&d, test, n, layers, rows, m, one, &err),
             &err);
    for (int k = 0; k < n; k++) {
      int pooled, dim = td__feature_dim(&d, k, &pooled);
      size_t bytes = (size_t)m[k] * dim * sizeof(float);
      float *each = malloc(bytes);
      CHECK_OK(td__features(&d, test, k, rows[k], m[k], each, &err), &err);
      if (memcmp(each, one[k], bytes) != 0) {
        int64_t bad = 0;
        for (int64_t i = 0; i < m[k] * dim; i++)
          bad += memcmp(&each[i], &one[k][i], sizeof(float)) != 0;
        fprintf(stderr,
                "%s%s layer %d (%s split, %lld rows of %d): %lld of %lld "
                "values differ\n",
                model, batchnorm ? " bn" : "", k, test ? "test" : "train",
                (long long)m[k], dim, (long long)bad, (long long)(m[k] * dim));
        CHECK(0);
      }
      free(each);
    }
  }
  for (int k = 0; k < n; k++) {
    free(rows[k]);
    free(one[k]);
  }
  check_predictor(net, px, n, layers);
  check_probes(&d, n, layers, &rng);
  free(px);
  td_net_free(net);
}

static void test_features_one_pass_mlp(void) { check_model("mlp", 0, 700, 28); }
static void test_features_one_pass_cnn(void) { check_model("cnn", 0, 300, 12); }
static void test_features_one_pass_cnn_bn(void) {
  check_model("cnn", 1, 300, 12);
}

int main(void) {
  RUN(test_features_one_pass_mlp);
  RUN(test_features_one_pass_cnn);
  RUN(test_features_one_pass_cnn_bn);
  return td_t_finish();
}
