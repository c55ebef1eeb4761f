/* tardis's layers against PyTorch: small CNNs with the same weights, run
 * through torch 1.13 by tests/python/gen_nn_torch_fixture.py, whose outputs,
 * gradients and running statistics are committed in tests/fixtures/nn_torch
 * (so this test needs no torch). Eval and training mode, forward and
 * backward, batchnorm's running statistics after one step. */
#include "harness.h"
#include "tardis/array.h"
#include "tardis/nn.h"

/* Fixture net a, on 2x8x8 (the same layers as the script's net_a). */
static const td_layer_spec net_a[] = {
    {.kind = TD_LAYER_CONV, .out = 4, .kernel = 3, .pad = 1},
    {.kind = TD_LAYER_BATCHNORM, .act = TD_ACT_RELU},
    {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
    {.kind = TD_LAYER_CONV,
     .out = 6,
     .kernel = 3,
     .stride = 2,
     .pad = 1,
     .act = TD_ACT_RELU},
    {.kind = TD_LAYER_DENSE, .out = 5, .act = TD_ACT_RELU},
    {.kind = TD_LAYER_BATCHNORM},
    {.kind = TD_LAYER_DENSE, .out = 3}};

/* Net b, on 3x7x6. */
static const td_layer_spec net_b[] = {
    {.kind = TD_LAYER_CONV, .out = 5, .kernel = 2, .act = TD_ACT_RELU},
    {.kind = TD_LAYER_MAXPOOL, .kernel = 3, .stride = 2, .pad = 1},
    {.kind = TD_LAYER_CONV, .out = 4, .kernel = 1},
    {.kind = TD_LAYER_AVGPOOL_GLOBAL},
    {.kind = TD_LAYER_DENSE, .out = 2}};

/* Reads fixture array `name` of net `net`, which must hold n float32s. */
static float *load(const char *net, const char *name, size_t n) {
  const char *src = getenv("TD_SRC");
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/fixtures/nn_torch/%s/%s.npy",
           src ? src : ".", net, name);
  td_array a;
  td_err err = {0};
  if (td_npy_load(path, &a, &err) != TD_OK) {
    fprintf(stderr, "  %s\n", err.msg);
    return NULL;
  }
  float *v = malloc(sizeof(float) * (n + 1));
  if (a.dtype != TD_F32 || a.nbytes != n * sizeof(float)) {
    fprintf(stderr, "  %s: expected %zu float32 values\n", path, n);
    free(v);
    v = NULL;
  } else {
    memcpy(v, a.data, a.nbytes);
  }
  td_array_close(&a);
  return v;
}

/* max |a - b| / (1 + |b|) */
static double rel_err(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
    if (!(d <= m))
      m = d;
  }
  return m;
}

static void check_net(const char *name, int c, int h, int w, int n_layers,
                      const td_layer_spec *spec) {
  enum { N = 5 };
  td_net *net = td_net_new_layers(c, h, w, n_layers, spec);
  size_t np = td_net_n_params(net), ns = td_net_n_state(net);
  size_t in = (size_t)td_net_in_dim(net), out = (size_t)td_net_out_dim(net);
  float *params = load(name, "params", np), *state = load(name, "state", ns),
        *x = load(name, "x", N * in), *r = load(name, "r", N * out),
        *y_eval = load(name, "y_eval", N * out),
        *y_train = load(name, "y_train", N * out),
        *grads = load(name, "grads", np), *dx_want = load(name, "dx", N * in),
        *after = load(name, "state_after", ns);
  CHECK(params && state && x && r && y_eval && y_train && grads && dx_want &&
        after);
  memcpy(td_net_params(net), params, np * sizeof(float));
  memcpy(td_net_state(net), state, ns * sizeof(float));
  td_net_ws *ws = td_net_ws_new(net, N);
  float *dx = malloc(sizeof(float) * N * in);

  const float *y = td_net_forward(net, ws, x, N);
  double e = rel_err(y, y_eval, N * out);
  fprintf(stderr, "  %s: eval output rel. error %.2g\n", name, e);
  CHECK(e < 1e-5);

  td_net_ws_set_training(ws, 1, 0);
  y = td_net_forward(net, ws, x, N);
  e = rel_err(y, y_train, N * out);
  fprintf(stderr, "  %s: training output rel. error %.2g\n", name, e);
  CHECK(e < 1e-5);
  td_net_zero_grad(net);
  td_net_backward(net, ws, r, N, dx);
  e = rel_err(td_net_grads(net), grads, np);
  fprintf(stderr, "  %s: parameter gradients rel. error %.2g\n", name, e);
  CHECK(e < 1e-4);
  e = rel_err(dx, dx_want, N * in);
  fprintf(stderr, "  %s: input gradient rel. error %.2g\n", name, e);
  CHECK(e < 1e-4);
  td_net_update_state(net, &ws, 1);
  e = rel_err(td_net_state(net), after, ns);
  CHECK(e < 1e-6);

  td_net_ws_free(ws);
  td_net_free(net);
  free(dx);
  free(params);
  free(state);
  free(x);
  free(r);
  free(y_eval);
  free(y_train);
  free(grads);
  free(dx_want);
  free(after);
}

static void test_torch_net_a(void) { check_net("a", 2, 8, 8, 7, net_a); }
static void test_torch_net_b(void) { check_net("b", 3, 7, 6, 5, net_b); }

int main(void) {
  RUN(test_torch_net_a);
  RUN(test_torch_net_b);
  return td_t_finish();
}
