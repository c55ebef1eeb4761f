/* The engine's layer kinds (convolution, max and global average pooling,
 * batch normalisation, dropout): forward passes against naive references,
 * backward passes against finite differences, batchnorm's running
 * statistics and their combination over replicas, dropout masks, CNN
 * inference and checkpoints of version 2. The comparison with PyTorch is in
 * test_nn_torch.c. */
#include "harness.h"
#include "nn/net_internal.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/nn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

static void fill_uniform(td_rng *r, float *v, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++)
    v[i] = lo + (hi - lo) * td_rng_uniform(r);
}

static td_net *make_cnn(int c, int h, int w, int n, const td_layer_spec *s,
                        uint64_t seed) {
  td_net *net = td_net_new_layers(c, h, w, n, s);
  td_rng r;
  td_rng_seed(&r, seed);
  td_net_init(net, &r);
  /* Non-trivial batchnorm parameters and running statistics, so the tests
   * see gamma, beta and the running values at work. */
  for (int l = 0; l < n; l++)
    if (s[l].kind == TD_LAYER_BATCHNORM) {
      size_t C = td_net_layer_n_params(net, l) / 2;
      fill_uniform(&r, td_net_weight(net, l), C, 0.5f, 1.5f);
      fill_uniform(&r, td_net_bias(net, l), C, -0.5f, 0.5f);
      fill_uniform(&r, td_net_running_mean(net, l), C, -0.3f, 0.3f);
      fill_uniform(&r, td_net_running_var(net, l), C, 0.5f, 2.0f);
    }
  return net;
}

static float *rand_floats(size_t n, uint64_t seed, float lo, float hi) {
  float *v = malloc(sizeof(float) * n);
  td_rng r;
  td_rng_seed(&r, seed);
  fill_uniform(&r, v, n, lo, hi);
  return v;
}

/* ---- naive references --------------------------------------------------- */

static float relu_if(float v, td_act a) {
  return a == TD_ACT_RELU && !(v > 0.0f) ? 0.0f : v;
}

/* Direct 7-loop convolution with double accumulation. */
static void ref_conv(const float *x, int N, int ic, int ih, int iw,
                     const float *w, const float *b, int oc, int k, int s,
                     int p, td_act act, float *y) {
  int oh = (ih + 2 * p - k) / s + 1, ow = (iw + 2 * p - k) / s + 1;
  for (int n = 0; n < N; n++)
    for (int o = 0; o < oc; o++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
          double acc = (double)b[o];
          for (int c = 0; c < ic; c++)
            for (int ki = 0; ki < k; ki++)
              for (int kj = 0; kj < k; kj++) {
                int iy = oy * s - p + ki, ix = ox * s - p + kj;
                if (iy < 0 || iy >= ih || ix < 0 || ix >= iw)
                  continue;
                acc += (double)x[((n * ic + c) * ih + iy) * iw + ix] *
                       (double)w[((o * ic + c) * k + ki) * k + kj];
              }
          y[((n * oc + o) * oh + oy) * ow + ox] = relu_if((float)acc, act);
        }
}

static void ref_maxpool(const float *x, int N, int C, int ih, int iw, int k,
                        int s, int p, float *y) {
  int oh = (ih + 2 * p - k) / s + 1, ow = (iw + 2 * p - k) / s + 1;
  for (int pl = 0; pl < N * C; pl++)
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++) {
        float m = -INFINITY;
        for (int ki = 0; ki < k; ki++)
          for (int kj = 0; kj < k; kj++) {
            int iy = oy * s - p + ki, ix = ox * s - p + kj;
            if (iy >= 0 && iy < ih && ix >= 0 && ix < iw &&
                x[(pl * ih + iy) * iw + ix] > m)
              m = x[(pl * ih + iy) * iw + ix];
          }
        y[(pl * oh + oy) * ow + ox] = m;
      }
}

/* Batchnorm with the given per-channel mean and variance (biased). */
static void ref_bn(const float *x, int N, int C, int hw, const double *mean,
                   const double *var, const float *g, const float *b,
                   td_act act, float *y) {
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      for (int j = 0; j < hw; j++) {
        size_t i = ((size_t)n * C + c) * hw + j;
        double h = ((double)x[i] - mean[c]) / sqrt(var[c] + 1e-5);
        y[i] = relu_if((float)(h * (double)g[c] + (double)b[c]), act);
      }
}

/* Per-channel mean and biased variance over N and hw. */
static void ref_stats(const float *x, int N, int C, int hw, double *mean,
                      double *var) {
  for (int c = 0; c < C; c++) {
    double s = 0, ss = 0;
    for (int n = 0; n < N; n++)
      for (int j = 0; j < hw; j++)
        s += (double)x[((size_t)n * C + c) * hw + j];
    mean[c] = s / (N * hw);
    for (int n = 0; n < N; n++)
      for (int j = 0; j < hw; j++) {
        double d = (double)x[((size_t)n * C + c) * hw + j] - mean[c];
        ss += d * d;
      }
    var[c] = ss / (N * hw);
  }
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= m))
      m = d;
  }
  return m;
}

/* ---- forward against the references ----------------------------------- */

typedef struct {
  int ic, ih, iw, oc, k, s, p;
} conv_case;

static void test_conv_forward_reference(void) {
  static const conv_case cases[] = {
      {1, 6, 5, 4, 3, 1, 1}, {3, 7, 7, 2, 3, 2, 0}, {2, 5, 8, 3, 2, 2, 1},
      {4, 3, 3, 5, 1, 1, 0}, {2, 4, 6, 3, 5, 1, 2}, {3, 9, 4, 2, 3, 3, 1},
      {2, 1, 1, 3, 1, 1, 0}};
  for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
    const conv_case *c = &cases[t];
    td_layer_spec s = {.kind = TD_LAYER_CONV,
                       .out = c->oc,
                       .kernel = c->k,
                       .stride = c->s,
                       .pad = c->p,
                       .act = t % 2 ? TD_ACT_RELU : TD_ACT_NONE};
    td_net *net = make_cnn(c->ic, c->ih, c->iw, 1, &s, 10 + t);
    int N = 3, in = td_net_in_dim(net), out = td_net_out_dim(net);
    int oh = (c->ih + 2 * c->p - c->k) / c->s + 1;
    int ow = (c->iw + 2 * c->p - c->k) / c->s + 1;
    int sc, sh, sw;
    td_net_shape(net, 1, &sc, &sh, &sw);
    CHECK_INT(sc, ==, c->oc);
    CHECK_INT(sh, ==, oh);
    CHECK_INT(sw, ==, ow);
    CHECK_INT(out, ==, c->oc * oh * ow);
    float *x = rand_floats((size_t)N * in, 100 + t, -1, 1);
    float *want = malloc(sizeof(float) * (size_t)N * out);
    ref_conv(x, N, c->ic, c->ih, c->iw, td_net_weight(net, 0),
             td_net_bias(net, 0), c->oc, c->k, c->s, c->p, s.act, want);
    td_net_ws *ws = td_net_ws_new(net, N);
    const float *y = td_net_forward(net, ws, x, N);
    CHECK_NEAR(max_abs_diff(y, want, (size_t)N * out), 0, 1e-5);
    td_net_ws_free(ws);
    free(x);
    free(want);
    td_net_free(net);
  }
}

static void test_pool_forward_reference(void) {
  static const int cases[][6] = {/* c, h, w, k, s, p */
                                 {2, 6, 6, 2, 2, 0},
                                 {3, 7, 5, 3, 2, 1},
                                 {1, 5, 5, 3, 1, 0},
                                 {2, 4, 7, 2, 1, 1}};
  for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
    const int *c = cases[t];
    td_layer_spec s = {
        .kind = TD_LAYER_MAXPOOL, .kernel = c[3], .stride = c[4], .pad = c[5]};
    td_net *net = td_net_new_layers(c[0], c[1], c[2], 1, &s);
    int N = 2, in = td_net_in_dim(net), out = td_net_out_dim(net);
    float *x = rand_floats((size_t)N * in, 200 + t, -1, 1);
    float *want = malloc(sizeof(float) * (size_t)N * out);
    ref_maxpool(x, N, c[0], c[1], c[2], c[3], c[4], c[5], want);
    td_net_ws *ws = td_net_ws_new(net, N);
    const float *y = td_net_forward(net, ws, x, N);
    CHECK_NEAR(max_abs_diff(y, want, (size_t)N * out), 0, 0);
    td_net_ws_free(ws);
    free(x);
    free(want);
    td_net_free(net);
  }
  /* Default stride = kernel; ties go to the first maximum. */
  td_layer_spec s = {.kind = TD_LAYER_MAXPOOL, .kernel = 2};
  td_net *net = td_net_new_layers(1, 2, 2, 1, &s);
  CHECK_INT(td_net_layer_spec(net, 0)->stride, ==, 2);
  float x[4] = {1, 3, 3, 0}, dy = 1, dx[4];
  td_net_ws *ws = td_net_ws_new(net, 1);
  CHECK_NEAR(td_net_forward(net, ws, x, 1)[0], 3, 0);
  td_net_backward(net, ws, &dy, 1, dx);
  CHECK(dx[0] == 0 && dx[1] == 1 && dx[2] == 0 && dx[3] == 0);
  td_net_ws_free(ws);
  td_net_free(net);

  /* Global average pooling. */
  td_layer_spec g = {.kind = TD_LAYER_AVGPOOL_GLOBAL};
  net = td_net_new_layers(3, 4, 5, 1, &g);
  CHECK_INT(td_net_out_dim(net), ==, 3);
  float *xa = rand_floats(2 * 60, 300, -1, 1);
  ws = td_net_ws_new(net, 2);
  const float *y = td_net_forward(net, ws, xa, 2);
  for (int pl = 0; pl < 6; pl++) {
    double m = 0;
    for (int j = 0; j < 20; j++)
      m += (double)xa[pl * 20 + j];
    CHECK_NEAR(y[pl], m / 20, 1e-6);
  }
  td_net_ws_free(ws);
  td_net_free(net);
  free(xa);
}

/* Batchnorm in both modes, spatial (per channel) and flat (per feature). */
static void test_batchnorm_forward_reference(void) {
  static const int shapes[][3] = {{3, 4, 5}, {6, 1, 1}};
  for (int t = 0; t < 2; t++) {
    int C = shapes[t][0], hw = shapes[t][1] * shapes[t][2], N = 5;
    td_layer_spec s = {.kind = TD_LAYER_BATCHNORM,
                       .act = t ? TD_ACT_RELU : TD_ACT_NONE};
    td_net *net = make_cnn(C, shapes[t][1], shapes[t][2], 1, &s, 40 + t);
    CHECK_INT(td_net_n_state(net), ==, 2 * C);
    CHECK_INT(td_net_layer_n_params(net, 0), ==, 2 * C);
    size_t n = (size_t)N * C * hw;
    float *x = rand_floats(n, 400 + t, -2, 3), *want = malloc(4 * n);
    double mean[8], var[8];
    td_net_ws *ws = td_net_ws_new(net, N);
    /* eval: running statistics */
    for (int c = 0; c < C; c++) {
      mean[c] = td_net_running_mean(net, 0)[c];
      var[c] = td_net_running_var(net, 0)[c];
    }
    ref_bn(x, N, C, hw, mean, var, td_net_weight(net, 0), td_net_bias(net, 0),
           s.act, want);
    CHECK_NEAR(max_abs_diff(td_net_forward(net, ws, x, N), want, n), 0, 1e-5);
    /* training: batch statistics */
    td_net_ws_set_training(ws, 1, 0);
    CHECK_INT(td_net_ws_training(ws), ==, 1);
    ref_stats(x, N, C, hw, mean, var);
    ref_bn(x, N, C, hw, mean, var, td_net_weight(net, 0), td_net_bias(net, 0),
           s.act, want);
    CHECK_NEAR(max_abs_diff(td_net_forward(net, ws, x, N), want, n), 0, 1e-5);
    /* running statistics: PyTorch's momentum 0.1, unbiased variance */
    double rm0 = (double)td_net_running_mean(net, 0)[1],
           rv0 = (double)td_net_running_var(net, 0)[1];
    td_net_update_state(net, &ws, 1);
    double cnt = (double)N * hw;
    CHECK_NEAR(td_net_running_mean(net, 0)[1], 0.9 * rm0 + 0.1 * mean[1], 1e-6);
    CHECK_NEAR(td_net_running_var(net, 0)[1],
               0.9 * rv0 + 0.1 * var[1] * cnt / (cnt - 1), 1e-6);
    /* a second call without a new forward adds nothing */
    float rm1 = td_net_running_mean(net, 0)[1];
    td_net_update_state(net, &ws, 1);
    CHECK(td_net_running_mean(net, 0)[1] == rm1);
    td_net_ws_free(ws);
    free(x);
    free(want);
    td_net_free(net);
  }
}

static void test_dropout(void) {
  td_layer_spec s = {.kind = TD_LAYER_DROPOUT, .p = 0.25f};
  td_net *net = td_net_new_layers(40, 5, 5, 1, &s);
  int N = 10, D = td_net_in_dim(net);
  size_t n = (size_t)N * D;
  float *x = rand_floats(n, 500, 0.5f, 1.5f);
  td_net_ws *ws = td_net_ws_new(net, N);
  /* eval: identity */
  CHECK_NEAR(max_abs_diff(td_net_forward(net, ws, x, N), x, n), 0, 0);
  td_net_ws_set_training(ws, 1, 99);
  float *y1 = malloc(4 * n), *y2 = malloc(4 * n), *dx = malloc(4 * n);
  memcpy(y1, td_net_forward(net, ws, x, N), 4 * n);
  memcpy(y2, td_net_forward(net, ws, x, N), 4 * n);
  size_t dropped = 0, same = 0;
  for (size_t i = 0; i < n; i++) {
    CHECK(y1[i] == 0.0f || y1[i] == x[i] * (1.0f / 0.75f));
    dropped += y1[i] == 0.0f;
    same += (y1[i] == 0.0f) == (y2[i] == 0.0f);
  }
  /* 10000 draws: the dropped share is 0.25 within 5 sigma (0.0217) */
  CHECK_NEAR((double)dropped / (double)n, 0.25, 0.022);
  CHECK(same < n); /* the next forward draws a new mask */
  /* backward: the same mask and scale */
  float *g = rand_floats(n, 501, -1, 1);
  td_net_backward(net, ws, g, N, dx);
  for (size_t i = 0; i < n; i++)
    CHECK(dx[i] == (y2[i] == 0.0f ? 0.0f : g[i] * (1.0f / 0.75f)));
  /* the same seed gives the same masks again */
  td_net_ws_set_training(ws, 1, 99);
  CHECK_NEAR(max_abs_diff(td_net_forward(net, ws, x, N), y1, n), 0, 0);
  td_net_ws_set_training(ws, 1, 100);
  CHECK(max_abs_diff(td_net_forward(net, ws, x, N), y1, n) > 0);
  td_net_ws_free(ws);
  td_net_free(net);
  free(x);
  free(y1);
  free(y2);
  free(dx);
  free(g);
}

/* ---- backward against finite differences -------------------------------- */

/* The objective sum(out ⊙ R) in double, its forward in training mode with
 * the dropout mask reset to the same seed every time; records the pattern
 * of every ReLU and every max-pool argmax, so a step that crosses a kink
 * is recognised and not compared. */
typedef struct {
  td_net *net;
  td_net_ws *ws;
  const float *x, *r;
  int batch, training;
  int32_t *pattern;
  size_t n_pattern;
} fd_ctx;

static double fd_objective(fd_ctx *c, int *changed) {
  td_net_ws_set_training(c->ws, c->training, 7);
  const float *y = td_net_forward(c->net, c->ws, c->x, c->batch);
  size_t k = 0;
  int ch = 0;
  for (int l = 0; l < td_net_n_layers(c->net); l++) {
    const float *a = td_net_activation(c->ws, l);
    size_t n = (size_t)c->batch * td_net_dim(c->net, l + 1);
    int kind = td_net_layer_spec(c->net, l)->kind;
    for (size_t i = 0; i < n; i++) {
      int32_t v;
      if (kind == TD_LAYER_MAXPOOL)
        v = c->ws->arg[l][i];
      else if (td_net_act(c->net, l) == TD_ACT_RELU)
        v = a[i] > 0.0f;
      else
        continue;
      if (changed)
        ch |= c->pattern[k] != v;
      else
        c->pattern[k] = v;
      k++;
    }
  }
  c->n_pattern = k;
  if (changed)
    *changed = ch;
  double s = 0;
  for (size_t i = 0; i < (size_t)c->batch * td_net_out_dim(c->net); i++)
    s += (double)y[i] * (double)c->r[i];
  return s;
}

static size_t pattern_cap(const td_net *net, int batch) {
  size_t n = 0;
  for (int l = 0; l < td_net_n_layers(net); l++)
    n += (size_t)batch * td_net_dim(net, l + 1);
  return n;
}

/* Checks every parameter and input gradient of net at a random x (training
 * mode if asked) against central differences; returns the mismatches. */
static int grad_check(td_net *net, int batch, int training, uint64_t seed,
                      float eps, int *n_checked) {
  int in = td_net_in_dim(net), out = td_net_out_dim(net);
  float *x = rand_floats((size_t)batch * in, seed, -1, 1);
  float *rr = rand_floats((size_t)batch * out, seed + 1, -1, 1);
  float *dx = malloc(sizeof(float) * (size_t)batch * in);
  fd_ctx c = {net, td_net_ws_new(net, batch), x, rr, batch, training, NULL, 0};
  c.pattern = malloc(sizeof(int32_t) * (pattern_cap(net, batch) + 1));
  fd_objective(&c, NULL);
  td_net_zero_grad(net);
  /* Two backward calls must accumulate the parameter gradients: check half
   * of twice. */
  td_net_backward(net, c.ws, rr, batch, dx);
  td_net_backward(net, c.ws, rr, batch, dx);
  size_t np = td_net_n_params(net);
  float *g = malloc(sizeof(float) * (np + 1));
  for (size_t i = 0; i < np; i++)
    g[i] = td_net_grads(net)[i] * 0.5f;
  int bad = 0, checked = 0, skipped = 0;
  for (size_t i = 0; i < np + (size_t)batch * in; i++) {
    int is_x = i >= np;
    float *v = is_x ? x : td_net_params(net);
    size_t j = is_x ? i - np : i;
    float saved = v[j];
    int ch1, ch2;
    v[j] = saved + eps;
    double fp = fd_objective(&c, &ch1);
    v[j] = saved - eps;
    double fm = fd_objective(&c, &ch2);
    v[j] = saved;
    if (ch1 || ch2) {
      skipped++;
      continue;
    }
    double fd = (fp - fm) / (2.0 * (double)eps), an = is_x ? dx[j] : g[j];
    checked++;
    if (!(fabs(fd - an) <= 2e-3 + 5e-3 * fabs(an))) {
      if (bad < 5)
        fprintf(stderr, "  %s[%zu]: analytic %.7g, finite difference %.7g\n",
                is_x ? "dx" : "param", j, an, fd);
      bad++;
    }
  }
  /* kinks may be skipped, but not so many that little is left to check */
  if (skipped > checked / 10) {
    fprintf(stderr, "  %d of %d steps crossed a kink\n", skipped,
            skipped + checked);
    bad++;
  }
  *n_checked = checked;
  td_net_ws_free(c.ws);
  free(c.pattern);
  free(x);
  free(rr);
  free(dx);
  free(g);
  return bad;
}

#define GRAD_CHECK(net, batch, training, seed, eps)                            \
  do {                                                                         \
    int n_checked_ = 0;                                                        \
    CHECK_INT(grad_check(net, batch, training, seed, eps, &n_checked_), ==,    \
              0);                                                              \
    CHECK(n_checked_ > 0);                                                     \
  } while (0)

static void test_conv_backward(void) {
  td_layer_spec a[] = {{.kind = TD_LAYER_CONV,
                        .out = 3,
                        .kernel = 3,
                        .pad = 1,
                        .act = TD_ACT_NONE}};
  td_net *net = make_cnn(2, 5, 4, 1, a, 1);
  GRAD_CHECK(net, 3, 0, 11, 1e-2f);
  td_net_free(net);
  td_layer_spec b[] = {{.kind = TD_LAYER_CONV,
                        .out = 2,
                        .kernel = 2,
                        .stride = 2,
                        .pad = 1,
                        .act = TD_ACT_NONE}};
  net = make_cnn(3, 5, 6, 1, b, 2);
  GRAD_CHECK(net, 2, 0, 12, 1e-2f);
  td_net_free(net);
  td_layer_spec c[] = {
      {.kind = TD_LAYER_CONV, .out = 4, .kernel = 1, .act = TD_ACT_NONE}};
  net = make_cnn(3, 3, 3, 1, c, 3);
  GRAD_CHECK(net, 2, 0, 13, 1e-2f);
  td_net_free(net);
}

static void test_pool_backward(void) {
  td_layer_spec a[] = {
      {.kind = TD_LAYER_MAXPOOL, .kernel = 3, .stride = 2, .pad = 1}};
  td_net *net = make_cnn(2, 6, 5, 1, a, 4);
  GRAD_CHECK(net, 3, 0, 14, 1e-2f);
  td_net_free(net);
  /* the vectorised 2x2 path: full lanes, a padded tail, odd sizes */
  td_layer_spec c[] = {{.kind = TD_LAYER_MAXPOOL, .kernel = 2}};
  net = make_cnn(2, 5, 21, 1, c, 4);
  GRAD_CHECK(net, 2, 0, 24, 1e-2f);
  td_net_free(net);
  td_layer_spec b[] = {{.kind = TD_LAYER_AVGPOOL_GLOBAL}};
  net = make_cnn(3, 4, 2, 1, b, 5);
  GRAD_CHECK(net, 2, 0, 15, 1e-2f);
  td_net_free(net);
}

static void test_batchnorm_backward(void) {
  for (int training = 0; training < 2; training++) {
    td_layer_spec a[] = {{.kind = TD_LAYER_BATCHNORM}};
    td_net *net = make_cnn(3, 3, 2, 1, a, 6);
    GRAD_CHECK(net, 4, training, 16, 1e-2f);
    td_net_free(net);
    td_layer_spec b[] = {{.kind = TD_LAYER_DENSE, .out = 5},
                         {.kind = TD_LAYER_BATCHNORM}};
    net = make_cnn(4, 1, 1, 2, b, 7);
    GRAD_CHECK(net, 6, training, 17, 1e-2f);
    td_net_free(net);
  }
}

/* A small CNN with every kind, in training mode. */
static const td_layer_spec small_cnn[] = {
    {.kind = TD_LAYER_CONV, .out = 3, .kernel = 3, .pad = 1},
    {.kind = TD_LAYER_BATCHNORM, .act = TD_ACT_RELU},
    {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
    {.kind = TD_LAYER_CONV, .out = 4, .kernel = 2, .act = TD_ACT_RELU},
    {.kind = TD_LAYER_DROPOUT, .p = 0.3f},
    {.kind = TD_LAYER_DENSE, .out = 5, .act = TD_ACT_RELU},
    {.kind = TD_LAYER_DENSE, .out = 3}};
#define SMALL_CNN_N 7

static void test_cnn_backward(void) {
  td_net *net = make_cnn(2, 6, 6, SMALL_CNN_N, small_cnn, 8);
  GRAD_CHECK(net, 3, 1, 18, 2e-3f);
  td_layer_spec g[] = {
      {.kind = TD_LAYER_CONV, .out = 3, .kernel = 3, .act = TD_ACT_RELU},
      {.kind = TD_LAYER_AVGPOOL_GLOBAL},
      {.kind = TD_LAYER_DENSE, .out = 2}};
  td_net_free(net);
  net = make_cnn(2, 5, 5, 3, g, 9);
  GRAD_CHECK(net, 3, 0, 19, 1e-2f);
  td_net_free(net);
}

/* ---- replicas, inference, shapes ---------------------------------------- */

/* Two replicas on the halves of a batch: gradients sum as for dense nets
 * when there is no batchnorm, and the running statistics folded from both
 * slices equal those of the whole batch in one workspace. */
static void test_replica_batchnorm(void) {
  td_net *net = make_cnn(2, 6, 6, SMALL_CNN_N, small_cnn, 21);
  td_net *one = td_net_clone(net);
  td_net *r0 = td_net_replica(net), *r1 = td_net_replica(net);
  CHECK(r0 && r1 && one);
  CHECK(td_net_state(r0) == td_net_state(net));
  enum { B = 8 };
  int in = td_net_in_dim(net);
  float *x = rand_floats((size_t)B * in, 600, -1, 1);
  td_net_ws *w0 = td_net_ws_new(r0, B / 2), *w1 = td_net_ws_new(r1, B / 2),
            *wf = td_net_ws_new(one, B);
  td_net_ws_set_training(w0, 1, 1);
  td_net_ws_set_training(w1, 1, 2);
  td_net_ws_set_training(wf, 1, 3);
  td_net_forward(r0, w0, x, B / 2);
  td_net_forward(r1, w1, x + (size_t)(B / 2) * in, B / 2);
  td_net_forward(one, wf, x, B);
  td_net_ws *pair[2] = {w0, w1};
  td_net_update_state(net, pair, 2);
  td_net_update_state(one, &wf, 1);
  CHECK(td_net_n_state(net) == 2 * 3);
  for (size_t i = 0; i < td_net_n_state(net); i++)
    CHECK_NEAR(td_net_state(net)[i], td_net_state(one)[i], 1e-6);
  /* the replicas read the folded statistics */
  CHECK(td_net_running_mean(r0, 1)[0] == td_net_running_mean(net, 1)[0]);
  td_net_ws_free(w0);
  td_net_ws_free(w1);
  td_net_ws_free(wf);
  td_net_free(r0);
  td_net_free(r1);
  td_net_free(one);
  td_net_free(net);
  free(x);
}

/* td_net_predict on a CNN equals the eval forward (output and the tapped
 * representation, the layer before the head) and is bit-identical at any
 * thread count. */
static void test_cnn_predict(void) {
  td_net *net = make_cnn(2, 6, 6, SMALL_CNN_N, small_cnn, 31);
  int n = 1300, in = td_net_in_dim(net), out = td_net_out_dim(net);
  int tap = SMALL_CNN_N - 2, td = td_net_dim(net, tap + 1);
  float *x = rand_floats((size_t)n * in, 700, -1, 1);
  float *o1 = malloc(4 * (size_t)n * out), *t1 = malloc(4 * (size_t)n * td);
  float *o4 = malloc(4 * (size_t)n * out), *t4 = malloc(4 * (size_t)n * td);
  int saved = td_threads();
  td_set_threads(1);
  CHECK_OK(td_net_predict(net, x, n, o1, tap, t1), NULL);
  td_set_threads(4);
  CHECK_OK(td_net_predict(net, x, n, o4, tap, t4), NULL);
  td_set_threads(saved);
  CHECK(memcmp(o1, o4, 4 * (size_t)n * out) == 0);
  CHECK(memcmp(t1, t4, 4 * (size_t)n * td) == 0);
  td_net_ws *ws = td_net_ws_new(net, 7);
  const float *y = td_net_forward(net, ws, x + (size_t)1000 * in, 7);
  CHECK_NEAR(max_abs_diff(y, o1 + (size_t)1000 * out, 7 * (size_t)out), 0,
             1e-5);
  CHECK_NEAR(max_abs_diff(td_net_activation(ws, tap), t1 + (size_t)1000 * td,
                          7 * (size_t)td),
             0, 1e-5);
  td_net_ws_free(ws);
  free(x);
  free(o1);
  free(t1);
  free(o4);
  free(t4);
  td_net_free(net);
}

static void test_check_layers(void) {
  td_err err = {0};
  td_layer_spec big[] = {{.kind = TD_LAYER_MAXPOOL, .kernel = 2},
                         {.kind = TD_LAYER_MAXPOOL, .kernel = 3}};
  CHECK_INT(td_net_check_layers(1, 3, 3, 2, big, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "layer 1 (maxpool)");
  td_layer_spec stride_on_dense[] = {
      {.kind = TD_LAYER_DENSE, .out = 3, .stride = 2}};
  CHECK_INT(td_net_check_layers(4, 1, 1, 1, stride_on_dense, &err), ==,
            TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "layer 0 (dense)");
  td_layer_spec p1[] = {{.kind = TD_LAYER_DROPOUT, .p = 1.0f}};
  CHECK_INT(td_net_check_layers(4, 1, 1, 1, p1, &err), ==, TD_EARG);
  td_layer_spec relu_pool[] = {
      {.kind = TD_LAYER_MAXPOOL, .kernel = 2, .act = TD_ACT_RELU}};
  CHECK_INT(td_net_check_layers(1, 4, 4, 1, relu_pool, &err), ==, TD_EARG);
  td_layer_spec no_out[] = {{.kind = TD_LAYER_CONV, .kernel = 3}};
  CHECK_INT(td_net_check_layers(1, 4, 4, 1, no_out, &err), ==, TD_EARG);
  CHECK_INT(td_net_check_layers(2, 6, 6, SMALL_CNN_N, small_cnn, &err), ==,
            TD_OK);
  CHECK(strcmp(td_layer_kind_name(TD_LAYER_AVGPOOL_GLOBAL), "avgpool_global") ==
        0);
  CHECK(td_layer_kind_parse("batchnorm") == TD_LAYER_BATCHNORM);
  CHECK(td_layer_kind_parse("pool") == TD_LAYER_KIND_COUNT);
  /* td_net_new builds dense specs */
  int dims[] = {5, 4, 3};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_NONE};
  td_net *mlp = td_net_new(2, dims, acts);
  CHECK(td_net_layer_spec(mlp, 1)->kind == TD_LAYER_DENSE);
  CHECK_INT(td_net_layer_spec(mlp, 1)->out, ==, 3);
  CHECK_INT(td_net_n_state(mlp), ==, 0);
  td_net_free(mlp);
}

/* ---- checkpoints of version 2 ------------------------------------------- */

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static void test_checkpoint_v2(void) {
  const char *tmp = td_t_tmpdir("nn_layers_ckpt");
  char dir[4200], path[4300];
  snprintf(dir, sizeof dir, "%s/cnn", tmp);
  td_err err = {0};
  td_net *net = make_cnn(2, 6, 6, SMALL_CNN_N, small_cnn, 41), *back = NULL;
  CHECK_OK(td_net_save(net, dir, &err), &err);
  CHECK_OK(td_net_load(dir, &back, &err), &err);
  CHECK_INT(td_net_n_layers(back), ==, SMALL_CNN_N);
  for (int l = 0; l < SMALL_CNN_N; l++) {
    const td_layer_spec *a = td_net_layer_spec(net, l),
                        *b = td_net_layer_spec(back, l);
    CHECK(a->kind == b->kind && a->out == b->out && a->kernel == b->kernel &&
          a->stride == b->stride && a->pad == b->pad && a->p == b->p &&
          a->act == b->act);
  }
  CHECK(td_net_n_params(back) == td_net_n_params(net));
  CHECK(memcmp(td_net_params(back), td_net_params(net),
               4 * td_net_n_params(net)) == 0);
  CHECK(td_net_n_state(back) == td_net_n_state(net));
  CHECK(memcmp(td_net_state(back), td_net_state(net),
               4 * td_net_n_state(net)) == 0);
  td_net_free(back);
  back = NULL;
  /* the arrays are plain .npy files of PyTorch's shapes */
  td_array a;
  snprintf(path, sizeof path, "%s/layer_0_w.npy", dir);
  CHECK_OK(td_npy_load(path, &a, &err), &err);
  CHECK(a.ndim == 4 && a.shape[0] == 3 && a.shape[1] == 2 && a.shape[2] == 3 &&
        a.shape[3] == 3);
  td_array_close(&a);
  snprintf(path, sizeof path, "%s/layer_1_rv.npy", dir);
  CHECK_OK(td_npy_load(path, &a, &err), &err);
  CHECK(a.ndim == 1 && a.shape[0] == 3);
  td_array_close(&a);

  /* malformed version-2 files */
  static const struct {
    const char *json, *msg;
  } bad[] = {
      {"{\"format\":\"tardis-net\",\"version\":2,\"input\":[1,4,4],"
       "\"layers\":[{\"kind\":\"pool\"}]}",
       "unknown kind pool"},
      {"{\"format\":\"tardis-net\",\"version\":2,\"input\":[1,4,4],"
       "\"layers\":[{\"kind\":\"maxpool\",\"kernel\":2,\"size\":3}]}",
       "unknown field \"size\""},
      {"{\"format\":\"tardis-net\",\"version\":2,\"input\":[1,4,4],"
       "\"layers\":[{\"kind\":\"maxpool\",\"kernel\":9}]}",
       "kernel 9 larger"},
      {"{\"format\":\"tardis-net\",\"version\":2,\"input\":[1,4],"
       "\"layers\":[{\"kind\":\"maxpool\",\"kernel\":2}]}",
       "\"input\""},
      {"{\"format\":\"tardis-net\",\"version\":2,\"input\":[1,4,4],"
       "\"layers\":[{\"kind\":\"maxpool\",\"kernel\":-2}]}",
       "layers[0].kernel"},
      {"{\"format\":\"tardis-net\",\"version\":2,\"input\":[1,4,4],"
       "\"dims\":[16,5],\"layers\":[{\"kind\":\"maxpool\",\"kernel\":2}]}",
       "dims[1] should be 4"},
      {"{\"format\":\"tardis-net\",\"version\":2,\"input\":[1,4,4],"
       "\"layers\":[{\"kind\":\"dropout\",\"p\":\"x\"}]}",
       "layers[0].p"},
      {"{\"format\":\"tardis-net\",\"version\":2,\"input\":[1,4,4],"
       "\"layers\":[]}",
       "\"layers\""}};
  snprintf(path, sizeof path, "%s/net.json", dir);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    write_text(path, bad[i].json);
    CHECK_INT(td_net_load(dir, &back, &err), ==, TD_EFORMAT);
    CHECK(back == NULL);
    CHECK_STR_CONTAINS(err.msg, "net.json");
    CHECK_STR_CONTAINS(err.msg, bad[i].msg);
  }
  /* a wrong conv weight shape, a negative running variance */
  CHECK_OK(td_net_save(net, dir, &err), &err);
  snprintf(path, sizeof path, "%s/layer_0_w.npy", dir);
  int64_t shape[2] = {3, 18};
  float zeros[54] = {0};
  CHECK_OK(td_npy_save_raw(path, TD_F32, 2, shape, zeros, &err), &err);
  CHECK_INT(td_net_load(dir, &back, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "expected float32 3×2×3×3");
  CHECK_OK(td_net_save(net, dir, &err), &err);
  td_net_running_var(net, 1)[2] = -1.0f;
  CHECK_OK(td_net_save(net, dir, &err), &err);
  CHECK_INT(td_net_load(dir, &back, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "layer_1_rv.npy");
  td_net_free(net);

  /* an MLP still writes version 1 */
  int dims[] = {4, 3, 2};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_NONE};
  net = td_net_new(2, dims, acts);
  CHECK_OK(td_net_save(net, dir, &err), &err);
  snprintf(path, sizeof path, "%s/net.json", dir);
  char *text = NULL;
  size_t len = 0;
  CHECK_OK(td_read_file(path, &text, &len, &err), &err);
  CHECK_STR_CONTAINS(text, "\"version\": 1");
  free(text);
  td_net_free(net);
}

int main(void) {
  RUN(test_conv_forward_reference);
  RUN(test_pool_forward_reference);
  RUN(test_batchnorm_forward_reference);
  RUN(test_dropout);
  RUN(test_conv_backward);
  RUN(test_pool_backward);
  RUN(test_batchnorm_backward);
  RUN(test_cnn_backward);
  RUN(test_replica_batchnorm);
  RUN(test_cnn_predict);
  RUN(test_check_layers);
  RUN(test_checkpoint_v2);
  return td_t_finish();
}
