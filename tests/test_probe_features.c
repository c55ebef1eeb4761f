/* The probes' features of several layers at once (td__features_layers,
 * src/repair/probe.c: layers with the same rows share one forward pass)
 * against a td__features pass per layer: the same bytes, for an MLP and a
 * CNN with and without batchnorm (spatial layers averaged over H and W),
 * the first layers with rows of their own in their own order, the last two
 * with every row in order (one shared pass). */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "repair/repair_internal.h"
#include "tardis/rng.h"
#include "tardis/train.h"
#include "train/model.h"

enum { IN = 28 * 28 };
static int N; /* several chunks of 256 rows */

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

static void check_model(const char *model, int batchnorm, int n_rows) {
  N = n_rows;
  td_train_opts o;
  td_train_opts_default(&o);
  o.model = model;
  o.batchnorm = batchnorm;
  td_net *net = NULL;
  td_err err = {0};
  CHECK_OK(td__model_build(&o, 1, 28, 28, 10, &net, &err), &err);
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
  int64_t shape[4] = {N, 1, 28, 28};
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
  free(px);
  td_net_free(net);
}

static void test_features_one_pass_mlp(void) { check_model("mlp", 0, 700); }
static void test_features_one_pass_cnn(void) { check_model("cnn", 0, 300); }
static void test_features_one_pass_cnn_bn(void) { check_model("cnn", 1, 300); }

int main(void) {
  RUN(test_features_one_pass_mlp);
  RUN(test_features_one_pass_cnn);
  RUN(test_features_one_pass_cnn_bn);
  return td_t_finish();
}
