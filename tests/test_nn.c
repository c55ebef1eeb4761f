/* The neural-network engine: backward passes against finite differences,
 * optimizers against hand-worked updates, training, determinism and
 * checkpoints. */
#include "harness.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/nn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

static void fill_uniform(td_rng *r, float *v, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++)
    v[i] = lo + (hi - lo) * td_rng_uniform(r);
}

static td_net *make_net(int n_layers, const int *dims, const td_act *acts,
                        uint64_t seed) {
  td_net *net = td_net_new(n_layers, dims, acts);
  td_rng r;
  td_rng_seed(&r, seed);
  td_net_init(net, &r);
  return net;
}

/* ---- finite differences
 * ------------------------------------------------------ */

/* The objective for checking a net's backward pass alone: sum(out ⊙ R), whose
 * gradient with respect to the output is R. Accumulated in double. */
typedef struct {
  td_net *net;
  td_net_ws *ws;
  const float *x;
  int batch;
  const float *r;        /* [batch, out] */
  const int32_t *labels; /* if set, the objective is softmax xent instead */
  unsigned char *mask;   /* ReLU on/off pattern of the unperturbed forward */
  size_t mask_len;
} fd_ctx;

static double fd_objective(fd_ctx *c, int *mask_changed) {
  const float *y = td_net_forward(c->net, c->ws, c->x, c->batch);
  int L = td_net_n_layers(c->net);
  size_t k = 0;
  int changed = 0;
  for (int l = 0; l < L; l++) {
    if (td_net_act(c->net, l) != TD_ACT_RELU)
      continue;
    const float *a = td_net_activation(c->ws, l);
    size_t n = (size_t)c->batch * td_net_dim(c->net, l + 1);
    for (size_t i = 0; i < n; i++, k++) {
      unsigned char on = a[i] > 0.0f;
      if (c->mask && mask_changed)
        changed |= on != c->mask[k];
      else if (c->mask)
        c->mask[k] = on;
    }
  }
  if (mask_changed)
    *mask_changed = changed;
  if (c->labels)
    return td_softmax_xent(y, c->labels, c->batch, td_net_out_dim(c->net), NULL,
                           NULL);
  double s = 0.0;
  size_t n = (size_t)c->batch * td_net_out_dim(c->net);
  for (size_t i = 0; i < n; i++)
    s += (double)y[i] * (double)c->r[i];
  return s;
}

static size_t mask_size(const td_net *net, int batch) {
  size_t n = 0;
  for (int l = 0; l < td_net_n_layers(net); l++)
    if (td_net_act(net, l) == TD_ACT_RELU)
      n += (size_t)batch * td_net_dim(net, l + 1);
  return n;
}

/* Central difference of the objective in v[i]; returns 0 when the step
 * crossed a ReLU kink (the difference is meaningless there). */
static int fd_at(fd_ctx *c, float *v, size_t i, float eps, double *out) {
  float saved = v[i];
  int ch1, ch2;
  v[i] = saved + eps;
  double fp = fd_objective(c, &ch1);
  v[i] = saved - eps;
  double fm = fd_objective(c, &ch2);
  v[i] = saved;
  *out = (fp - fm) / (2.0 * (double)eps);
  return !(ch1 || ch2);
}

/* Checks the analytic parameter and input gradients of the net at x against
 * central differences. Returns the number of mismatches (printed). */
static int grad_check(td_net *net, const float *x_in, int batch,
                      const int32_t *labels, float eps, double atol,
                      double rtol, int *n_checked) {
  int in = td_net_in_dim(net), out = td_net_out_dim(net);
  td_rng r;
  td_rng_seed(&r, 7);
  float *x = malloc(sizeof(float) * (size_t)batch * in);
  float *rr = malloc(sizeof(float) * (size_t)batch * out);
  float *dout = malloc(sizeof(float) * (size_t)batch * out);
  float *dx = malloc(sizeof(float) * (size_t)batch * in);
  memcpy(x, x_in, sizeof(float) * (size_t)batch * in);
  fill_uniform(&r, rr, (size_t)batch * out, -1.0f, 1.0f);
  fd_ctx c = {net, td_net_ws_new(net, batch), x, batch, rr, labels, NULL, 0};
  c.mask_len = mask_size(net, batch);
  c.mask = malloc(c.mask_len + 1);

  /* Analytic: forward (recording the mask), then backward from dout. */
  fd_objective(&c, NULL);
  const float *y = td_net_forward(net, c.ws, x, batch);
  if (labels)
    td_softmax_xent(y, labels, batch, out, dout, NULL);
  else
    memcpy(dout, rr, sizeof(float) * (size_t)batch * out);
  td_net_zero_grad(net);
  /* Two backward calls must accumulate: check half of 2×. */
  td_net_backward(net, c.ws, dout, batch, dx);
  td_net_backward(net, c.ws, dout, batch, dx);
  size_t np = td_net_n_params(net);
  float *g = malloc(sizeof(float) * np);
  for (size_t i = 0; i < np; i++)
    g[i] = td_net_grads(net)[i] * 0.5f;

  int bad = 0, checked = 0, skipped = 0;
  for (size_t i = 0; i < np + (size_t)batch * in; i++) {
    int is_x = i >= np;
    float *v = is_x ? x : td_net_params(net);
    size_t j = is_x ? i - np : i;
    double fd, an = is_x ? dx[j] : g[j];
    if (!fd_at(&c, v, j, eps, &fd)) {
      skipped++;
      continue;
    }
    checked++;
    if (!(fabs(fd - an) <= atol + rtol * fabs(an))) {
      if (bad < 5)
        fprintf(stderr, "  %s[%zu]: analytic %.7g, finite difference %.7g\n",
                is_x ? "dx" : "grad", j, an, fd);
      bad++;
    }
  }
  /* The check is only worth something if it looked at almost everything. */
  if (skipped * 10 > checked) {
    fprintf(stderr, "  too many kinks: %d skipped, %d checked\n", skipped,
            checked);
    bad++;
  }
  *n_checked = checked;
  free(g);
  free(c.mask);
  td_net_ws_free(c.ws);
  free(x);
  free(rr);
  free(dout);
  free(dx);
  return bad;
}

static void check_layer_grad(td_act act) {
  int dims[] = {5, 4};
  td_act acts[] = {act};
  td_net *net = make_net(1, dims, acts, 3);
  td_rng r;
  td_rng_seed(&r, 11);
  float x[6 * 5];
  fill_uniform(&r, x, 30, -1.0f, 1.0f);
  int checked;
  /* Piecewise linear in every single value, so the central difference is
   * exact up to float rounding (~1e-6 / eps). */
  int bad = grad_check(net, x, 6, NULL, 1e-2f, 2e-4, 1e-4, &checked);
  CHECK_INT(bad, ==, 0);
  CHECK_INT(checked, >=, 40);
  td_net_free(net);
}

static void test_dense_none_backward(void) { check_layer_grad(TD_ACT_NONE); }
static void test_dense_relu_backward(void) { check_layer_grad(TD_ACT_RELU); }

static void test_net_backward(void) {
  int dims[] = {6, 9, 7, 3};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_NONE};
  td_net *net = make_net(3, dims, acts, 5);
  td_rng r;
  td_rng_seed(&r, 13);
  float x[5 * 6];
  fill_uniform(&r, x, 30, -2.0f, 2.0f);
  int checked;
  int bad = grad_check(net, x, 5, NULL, 1e-2f, 2e-4, 1e-4, &checked);
  CHECK_INT(bad, ==, 0);
  CHECK_INT(checked, >=, 150);
  td_net_free(net);
}

/* A ReLU on the output layer and a linear hidden layer: the other branches. */
static void test_net_backward_odd_acts(void) {
  int dims[] = {4, 5, 6, 3};
  td_act acts[] = {TD_ACT_NONE, TD_ACT_RELU, TD_ACT_RELU};
  td_net *net = make_net(3, dims, acts, 6);
  td_net_bias(net, 2)[0] += 0.5f; /* keep output units mostly active */
  td_net_bias(net, 2)[1] += 0.5f;
  td_net_bias(net, 2)[2] += 0.5f;
  td_rng r;
  td_rng_seed(&r, 17);
  float x[4 * 4];
  fill_uniform(&r, x, 16, -2.0f, 2.0f);
  int checked;
  int bad = grad_check(net, x, 4, NULL, 1e-2f, 2e-4, 1e-4, &checked);
  CHECK_INT(bad, ==, 0);
  CHECK_INT(checked, >=, 80);
  td_net_free(net);
}

static void test_net_xent_backward(void) {
  int dims[] = {5, 8, 4};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_NONE};
  td_net *net = make_net(2, dims, acts, 9);
  td_rng r;
  td_rng_seed(&r, 19);
  float x[6 * 5];
  fill_uniform(&r, x, 30, -2.0f, 2.0f);
  int32_t labels[6] = {0, 3, 2, 1, 3, 0};
  int checked;
  /* Smooth but not linear: truncation error eps²·f'''/6 plus float rounding
   * of a loss of order 1 (~1e-7 / eps). */
  int bad = grad_check(net, x, 6, labels, 5e-3f, 1e-4, 2e-3, &checked);
  CHECK_INT(bad, ==, 0);
  CHECK_INT(checked, >=, 60);
  td_net_free(net);
}

/* ---- softmax cross-entropy
 * ----------------------------------------------------- */

static void test_softmax_xent_values(void) {
  const float logits[] = {1, 2, 3, 0, 0, 0};
  const int32_t labels[] = {2, 1};
  float per[2], d[6];
  float loss = td_softmax_xent(logits, labels, 2, 3, d, per);
  double l0 = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3.0;
  double l1 = log(3.0);
  CHECK_NEAR(per[0], l0, 1e-6);
  CHECK_NEAR(per[1], l1, 1e-6);
  CHECK_NEAR(loss, (l0 + l1) / 2, 1e-6);
  double s = exp(1.0) + exp(2.0) + exp(3.0);
  CHECK_NEAR(d[0], exp(1.0) / s / 2, 1e-7);
  CHECK_NEAR(d[2], (exp(3.0) / s - 1) / 2, 1e-7);
  CHECK_NEAR(d[4], (1.0 / 3 - 1) / 2, 1e-7);
  CHECK_NEAR(d[5], (1.0 / 3) / 2, 1e-7);
  /* Huge logits neither overflow nor lose the answer. */
  const float big[] = {1000, 0, -1000};
  const int32_t lb[] = {1};
  CHECK_NEAR(td_softmax_xent(big, lb, 1, 3, NULL, NULL), 1000.0, 1e-3);
  /* dlogits may alias logits. */
  float al[6];
  memcpy(al, logits, sizeof al);
  td_softmax_xent(al, labels, 2, 3, al, NULL);
  for (int i = 0; i < 6; i++)
    CHECK_NEAR(al[i], d[i], 0);
}

static void test_softmax_xent_grad(void) {
  td_rng r;
  td_rng_seed(&r, 23);
  enum { B = 5, C = 7 };
  float z[B * C], d[B * C];
  int32_t y[B] = {0, 6, 3, 3, 1};
  fill_uniform(&r, z, B * C, -3.0f, 3.0f);
  td_softmax_xent(z, y, B, C, d, NULL);
  double sum = 0.0;
  for (int i = 0; i < B * C; i++) {
    float saved = z[i], eps = 1e-2f;
    z[i] = saved + eps;
    double fp = td_softmax_xent(z, y, B, C, NULL, NULL);
    z[i] = saved - eps;
    double fm = td_softmax_xent(z, y, B, C, NULL, NULL);
    z[i] = saved;
    double fd = (fp - fm) / (2.0 * (double)eps);
    CHECK_NEAR(d[i], fd, 1e-4);
    sum += (double)d[i];
  }
  CHECK_NEAR(sum, 0.0, 1e-6); /* each row of softmax − onehot sums to 0 */
}

/* ---- optimizers
 * -------------------------------------------------------------------- */

static void test_sgd_steps(void) {
  /* lr 0.1, momentum 0.9, weight decay 0.01; p = 1 and -2, g = 0.5 and 0.25,
   * then g = -1 and 0. Worked out by hand:
   *   step 1: d = g + 0.01 p = 0.51, 0.23;  v = d;  p -= 0.1 v
   *           p = 0.949, -2.023
   *   step 2: d = -1 + 0.00949 = -0.99051, 0 - 0.02023 = -0.02023
   *           v = 0.9·0.51 + d = -0.53151, 0.9·0.23 + d = 0.18677
   *           p = 0.949 + 0.053151 = 1.002151, -2.023 - 0.018677 = -2.041677 */
  td_optim *o = td_optim_sgd(2, 0.1f, 0.9f, 0.01f);
  float p[2] = {1.0f, -2.0f};
  float g1[2] = {0.5f, 0.25f}, g2[2] = {-1.0f, 0.0f};
  td_optim_step(o, p, g1);
  CHECK_NEAR(p[0], 0.949, 1e-6);
  CHECK_NEAR(p[1], -2.023, 1e-6);
  td_optim_step(o, p, g2);
  CHECK_NEAR(p[0], 1.002151, 1e-6);
  CHECK_NEAR(p[1], -2.041677, 1e-6);
  CHECK_INT(td_optim_steps(o), ==, 2);
  CHECK_NEAR(td_optim_lr(o), 0.1, 1e-7);
  td_optim_set_lr(o, 0.5f);
  CHECK_NEAR(td_optim_lr(o), 0.5, 0);
  td_optim_free(o);
  /* Plain SGD, no momentum: p -= lr g. */
  o = td_optim_sgd(1, 0.5f, 0.0f, 0.0f);
  float q = 3.0f, gq = 2.0f;
  td_optim_step(o, &q, &gq);
  CHECK_NEAR(q, 2.0, 0);
  td_optim_free(o);
}

static void test_adam_steps(void) {
  /* lr 0.1, b1 0.9, b2 0.999, eps 1e-8; p = 1, g = 0.5 then -0.25:
   *   step 1: m = 0.05, v = 0.00025; m̂ = 0.5, v̂ = 0.25
   *           p = 1 - 0.1·0.5/(0.5 + 1e-8) = 0.900000002
   *   step 2: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225
   *           m̂ = 0.02/0.19 = 0.105263158, v̂ = 0.00031225/0.001999 =
   * 0.156203102 p = 0.9 - 0.1·0.105263158/(0.395225381 + 1e-8) = 0.873366...
   * The second parameter has g = 0: it must not move. */
  td_optim *o = td_optim_adam(2, 0.1f, 0.9f, 0.999f, 1e-8f);
  float p[2] = {1.0f, 4.0f};
  float g1[2] = {0.5f, 0.0f}, g2[2] = {-0.25f, 0.0f};
  td_optim_step(o, p, g1);
  CHECK_NEAR(p[0], 0.900000002, 1e-6);
  CHECK_NEAR(p[1], 4.0, 0);
  td_optim_step(o, p, g2);
  double m_hat = 0.02 / 0.19, v_hat = 0.00031225 / (1 - 0.999 * 0.999);
  CHECK_NEAR(p[0], 0.900000002 - 0.1 * m_hat / (sqrt(v_hat) + 1e-8), 2e-6);
  CHECK_NEAR(p[0], 0.873366, 2e-6);
  /* After a reset the first step is again lr·sign(g). */
  td_optim_reset(o);
  CHECK_INT(td_optim_steps(o), ==, 0);
  float q[2] = {0.0f, 0.0f}, gq[2] = {-3.0f, 7.0f};
  td_optim_step(o, q, gq);
  CHECK_NEAR(q[0], 0.1, 1e-6);
  CHECK_NEAR(q[1], -0.1, 1e-6);
  td_optim_free(o);
}

/* ---- training
 * ------------------------------------------------------------------------ */

/* Four Gaussian blobs in 8-d, well separated: any working trainer gets to
 * accuracy 1. */
static void make_blobs(td_rng *r, float *x, int32_t *y, int n, int d) {
  float centres[4][8];
  for (int c = 0; c < 4; c++)
    for (int j = 0; j < d; j++)
      centres[c][j] = (j == c ? 3.0f : 0.0f) - (j == c + 4 ? 3.0f : 0.0f);
  for (int i = 0; i < n; i++) {
    int c = (int)td_rng_below(r, 4);
    y[i] = c;
    for (int j = 0; j < d; j++)
      x[(size_t)i * d + j] = centres[c][j] + 0.7f * td_rng_normal(r);
  }
}

static double accuracy(const float *logits, const int32_t *y, int n, int c) {
  int ok = 0;
  for (int i = 0; i < n; i++) {
    int best = 0;
    for (int j = 1; j < c; j++)
      if (logits[(size_t)i * c + j] > logits[(size_t)i * c + best])
        best = j;
    ok += best == y[i];
  }
  return (double)ok / n;
}

/* Trains for `steps` minibatches; returns the final full-data loss. */
static float train(td_net *net, td_optim *opt, const float *x, const int32_t *y,
                   int n, int batch, int steps, float *acc) {
  int d = td_net_in_dim(net), c = td_net_out_dim(net);
  td_net_ws *ws = td_net_ws_new(net, batch);
  float *dl = malloc(sizeof(float) * (size_t)batch * c);
  for (int s = 0; s < steps; s++) {
    int start = (s * batch) % (n - batch + 1);
    const float *logits = td_net_forward(net, ws, x + (size_t)start * d, batch);
    td_softmax_xent(logits, y + start, batch, c, dl, NULL);
    td_net_zero_grad(net);
    td_net_backward(net, ws, dl, batch, NULL);
    td_optim_step(opt, td_net_params(net), td_net_grads(net));
  }
  float *all = malloc(sizeof(float) * (size_t)n * c);
  TD_ASSERT(td_net_predict(net, x, n, all, -1, NULL) == TD_OK);
  float loss = td_softmax_xent(all, y, n, c, NULL, NULL);
  *acc = (float)accuracy(all, y, n, c);
  free(all);
  free(dl);
  td_net_ws_free(ws);
  return loss;
}

static void check_training(int adam) {
  enum { N = 1024, D = 8 };
  td_rng r;
  td_rng_seed(&r, 31);
  float *x = malloc(sizeof(float) * N * D);
  int32_t *y = malloc(sizeof(int32_t) * N);
  make_blobs(&r, x, y, N, D);
  int dims[] = {D, 32, 16, 4};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_NONE};
  td_net *net = make_net(3, dims, acts, 1);
  float *logits = malloc(sizeof(float) * N * 4);
  CHECK_OK(td_net_predict(net, x, N, logits, -1, NULL), NULL);
  float loss0 = td_softmax_xent(logits, y, N, 4, NULL, NULL);
  td_optim *opt =
      adam ? td_optim_adam(td_net_n_params(net), 1e-2f, 0.9f, 0.999f, 1e-8f)
           : td_optim_sgd(td_net_n_params(net), 0.05f, 0.9f, 0.0f);
  float acc;
  float loss = train(net, opt, x, y, N, 32, 300, &acc);
  fprintf(stderr, "  %s: loss %.4f -> %.4f, accuracy %.4f\n",
          adam ? "adam" : "sgd", (double)loss0, (double)loss, (double)acc);
  CHECK(loss0 > 1.0f);
  CHECK(loss < 0.05f);
  CHECK(acc >= 0.995f);
  td_optim_free(opt);
  td_net_free(net);
  free(logits);
  free(x);
  free(y);
}

static void test_train_sgd(void) { check_training(0); }
static void test_train_adam(void) { check_training(1); }

/* Same seed, same thread count: bit-identical parameters. */
static void test_determinism(void) {
  enum { N = 2048, D = 8 };
  td_rng r;
  td_rng_seed(&r, 37);
  float *x = malloc(sizeof(float) * N * D);
  int32_t *y = malloc(sizeof(int32_t) * N);
  make_blobs(&r, x, y, N, D);
  int dims[] = {D, 64, 48, 4};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_NONE};
  float *p[2];
  size_t np = 0;
  for (int run = 0; run < 2; run++) {
    td_net *net = make_net(3, dims, acts, 99);
    td_optim *opt = td_optim_sgd(td_net_n_params(net), 0.01f, 0.9f, 1e-4f);
    float acc;
    train(net, opt, x, y, N, 128, 40, &acc);
    np = td_net_n_params(net);
    p[run] = malloc(sizeof(float) * np);
    memcpy(p[run], td_net_params(net), sizeof(float) * np);
    td_optim_free(opt);
    td_net_free(net);
  }
  CHECK(memcmp(p[0], p[1], sizeof(float) * np) == 0);
  /* A different seed gives a different net (the test can fail). */
  td_net *other = make_net(3, dims, acts, 100);
  CHECK(memcmp(td_net_params(other), p[0], sizeof(float) * np) != 0);
  td_net_free(other);
  free(p[0]);
  free(p[1]);
  free(x);
  free(y);
}

/* ---- shape, init, predict
 * ---------------------------------------------------------------- */

static void test_net_shape_and_init(void) {
  int dims[] = {784, 256, 128, 10};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_NONE};
  td_net *net = make_net(3, dims, acts, 1);
  CHECK_INT(td_net_n_layers(net), ==, 3);
  CHECK_INT(td_net_in_dim(net), ==, 784);
  CHECK_INT(td_net_out_dim(net), ==, 10);
  CHECK_INT(td_net_dim(net, 2), ==, 128);
  CHECK_INT(td_net_n_params(net), ==,
            784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
  CHECK(td_net_weight(net, 1) == td_net_params(net) + 784 * 256 + 256);
  CHECK(td_net_bias(net, 1) == td_net_weight(net, 1) + 256 * 128);
  CHECK(td_net_weight_grad(net, 2) ==
        td_net_grads(net) + td_net_layer_offset(net, 2));
  /* U(-1/sqrt(in), 1/sqrt(in)): bounded, roughly zero-mean, std b/sqrt(3). */
  for (int l = 0; l < 3; l++) {
    double b = 1.0 / sqrt((double)dims[l]), s = 0, s2 = 0, mx = 0;
    size_t n = (size_t)dims[l] * dims[l + 1];
    const float *w = td_net_weight(net, l);
    for (size_t i = 0; i < n; i++) {
      s += (double)w[i];
      s2 += (double)w[i] * (double)w[i];
      mx = fmax(mx, fabs((double)w[i]));
    }
    CHECK(mx <= b);
    CHECK(mx > 0.95 * b);
    CHECK_NEAR(s / n, 0.0, 0.05 * b);
    CHECK_NEAR(sqrt(s2 / n), b / sqrt(3.0), 0.05 * b);
    for (int i = 0; i < dims[l + 1]; i++)
      CHECK(fabs((double)td_net_bias(net, l)[i]) <= b);
  }
  for (size_t i = 0; i < td_net_n_params(net); i++)
    CHECK(td_net_grads(net)[i] == 0.0f);
  CHECK(strcmp(td_act_name(TD_ACT_RELU), "relu") == 0);
  CHECK_INT(td_act_parse("none"), ==, TD_ACT_NONE);
  CHECK_INT(td_act_parse("tanh"), ==, TD_ACT_COUNT);
  td_net_free(net);
}

/* A forward pass by hand: y = relu(W x + b). */
static void test_forward_by_hand(void) {
  int dims[] = {2, 3};
  td_act acts[] = {TD_ACT_RELU};
  td_net *net = td_net_new(1, dims, acts);
  const float w[] = {1, 2, -1, 0, 0.5f, 0.5f}, b[] = {0.5f, 0, -10};
  memcpy(td_net_weight(net, 0), w, sizeof w);
  memcpy(td_net_bias(net, 0), b, sizeof b);
  td_net_ws *ws = td_net_ws_new(net, 4);
  const float x[] = {1, 1, -2, 3};
  const float *y = td_net_forward(net, ws, x, 2);
  /* x0: [3.5, -1 → 0, -9 → 0];  x1: [4.5, 2, -9.5 → 0] */
  const float want[] = {3.5f, 0, 0, 4.5f, 2, 0};
  for (int i = 0; i < 6; i++)
    CHECK_NEAR(y[i], want[i], 1e-6);
  CHECK(td_net_activation(ws, 0) == y);
  td_net_ws_free(ws);
  td_net_free(net);
}

/* td_net_predict (chunked, threaded) agrees with one big forward. */
static void test_predict_matches_forward(void) {
  enum { N = 1300 };
  int dims[] = {20, 33, 17, 5};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_NONE};
  td_net *net = make_net(3, dims, acts, 4);
  td_rng r;
  td_rng_seed(&r, 41);
  float *x = malloc(sizeof(float) * N * 20);
  fill_uniform(&r, x, (size_t)N * 20, -1.0f, 1.0f);
  td_net_ws *ws = td_net_ws_new(net, N);
  const float *y = td_net_forward(net, ws, x, N);
  const float *rep = td_net_activation(ws, 1);
  float *out = malloc(sizeof(float) * N * 5),
        *tap = malloc(sizeof(float) * N * 17);
  for (int threads = 1; threads <= 3; threads += 2) {
    td_set_threads(threads);
    memset(out, 0xff, sizeof(float) * N * 5);
    CHECK_INT(td_net_predict(net, x, N, out, 1, tap), ==, TD_OK);
    for (int i = 0; i < N * 5; i++)
      CHECK_NEAR(out[i], y[i], 1e-5);
    for (int i = 0; i < N * 17; i++)
      CHECK_NEAR(tap[i], rep[i], 1e-5);
  }
  td_set_threads(0);
  /* Tap only, and a tiny n. */
  CHECK_INT(td_net_predict(net, x, 3, NULL, 0, tap), ==, TD_OK);
  CHECK_NEAR(tap[0], td_net_activation(ws, 0)[0], 1e-5);
  free(out);
  free(tap);
  free(x);
  td_net_ws_free(ws);
  td_net_free(net);
}

static void test_clone(void) {
  int dims[] = {3, 4, 2};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_NONE};
  td_net *a = make_net(2, dims, acts, 8);
  td_net *b = td_net_clone(a);
  CHECK(memcmp(td_net_params(a), td_net_params(b),
               sizeof(float) * td_net_n_params(a)) == 0);
  CHECK(td_net_params(a) != td_net_params(b));
  td_net_free(a);
  td_net_free(b);
}

/* ---- checkpoints
 * ----------------------------------------------------------------------- */

static void test_checkpoint_round_trip(void) {
  const char *tmp = td_t_tmpdir("nn_ckpt");
  CHECK(tmp);
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/model", tmp);
  int dims[] = {7, 5, 3, 2};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_NONE, TD_ACT_RELU};
  td_net *net = make_net(3, dims, acts, 12);
  td_err err = {0};
  CHECK_OK(td_net_save(net, dir, &err), &err);
  td_net *back = NULL;
  CHECK_OK(td_net_load(dir, &back, &err), &err);
  CHECK_INT(td_net_n_layers(back), ==, 3);
  for (int i = 0; i <= 3; i++)
    CHECK_INT(td_net_dim(back, i), ==, dims[i]);
  for (int l = 0; l < 3; l++)
    CHECK_INT(td_net_act(back, l), ==, acts[l]);
  CHECK(memcmp(td_net_params(net), td_net_params(back),
               sizeof(float) * td_net_n_params(net)) == 0);
  td_net_free(back);

  /* numpy-readable layout: layer_1_w.npy is float32 [3, 5]. */
  char path[4300];
  snprintf(path, sizeof path, "%s/layer_1_w.npy", dir);
  td_array a;
  CHECK_OK(td_npy_load(path, &a, &err), &err);
  CHECK_INT(a.ndim, ==, 2);
  CHECK_INT(a.shape[0], ==, 3);
  CHECK_INT(a.shape[1], ==, 5);
  CHECK(memcmp(a.data, td_net_weight(net, 1), 15 * sizeof(float)) == 0);
  td_array_close(&a);

  /* Saving over an existing checkpoint replaces it and leaves no temp dir. */
  td_rng r;
  td_rng_seed(&r, 77);
  td_net_init(net, &r);
  CHECK_OK(td_net_save(net, dir, &err), &err);
  CHECK_OK(td_net_load(dir, &back, &err), &err);
  CHECK(memcmp(td_net_params(net), td_net_params(back),
               sizeof(float) * td_net_n_params(net)) == 0);
  snprintf(path, sizeof path, "%s.tmp", dir);
  CHECK(!td_path_exists(path));
  snprintf(path, sizeof path, "%s.old", dir);
  CHECK(!td_path_exists(path));
  td_net_free(back);
  td_net_free(net);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static void test_checkpoint_errors(void) {
  const char *tmp = td_t_tmpdir("nn_ckpt_bad");
  CHECK(tmp);
  char dir[4200], path[4300];
  snprintf(dir, sizeof dir, "%s/model", tmp);
  td_err err = {0};
  td_net *net = (td_net *)&err; /* must be reset to NULL on failure */

  /* Missing directory. */
  CHECK_INT(td_net_load(dir, &net, &err), ==, TD_ENOENT);
  CHECK(net == NULL);
  CHECK_STR_CONTAINS(err.msg, "model");
  CHECK_STR_CONTAINS(err.msg, "no such checkpoint");

  int dims[] = {4, 3, 2};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_NONE};
  td_net *good = make_net(2, dims, acts, 2);
  CHECK_OK(td_net_save(good, dir, &err), &err);

  /* Missing weight file. */
  snprintf(path, sizeof path, "%s/layer_1_b.npy", dir);
  remove(path);
  CHECK(td_net_load(dir, &net, &err) != TD_OK);
  CHECK(net == NULL);
  CHECK_STR_CONTAINS(err.msg, "layer_1_b.npy");

  /* Wrong shape. */
  CHECK_OK(td_net_save(good, dir, &err), &err);
  snprintf(path, sizeof path, "%s/layer_0_w.npy", dir);
  int64_t shape[2] = {4, 3};
  float zeros[12] = {0};
  CHECK_OK(td_npy_save_raw(path, TD_F32, 2, shape, zeros, &err), &err);
  CHECK_INT(td_net_load(dir, &net, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "layer_0_w.npy");
  CHECK_STR_CONTAINS(err.msg, "expected float32 3×4");

  /* Truncated .npy. */
  CHECK_OK(td_net_save(good, dir, &err), &err);
  snprintf(path, sizeof path, "%s/layer_0_w.npy", dir);
  CHECK(truncate(path, 100) == 0);
  CHECK(td_net_load(dir, &net, &err) != TD_OK);
  CHECK_STR_CONTAINS(err.msg, "layer_0_w.npy");

  /* Garbage JSON, wrong format, newer version, bad activation. */
  CHECK_OK(td_net_save(good, dir, &err), &err);
  snprintf(path, sizeof path, "%s/net.json", dir);
  write_text(path,
             "{\"format\": \"tardis-net\", \"version\": 1, \"dims\": [4,");
  CHECK_INT(td_net_load(dir, &net, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "net.json");
  write_text(path, "{\"format\": \"something\", \"version\": 1}");
  CHECK_INT(td_net_load(dir, &net, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "not a tardis network");
  write_text(path, "{\"format\": \"tardis-net\", \"version\": 3, \"dims\": "
                   "[4, 3, 2], \"acts\": [\"relu\", \"none\"]}");
  CHECK_INT(td_net_load(dir, &net, &err), ==, TD_EVERSION);
  CHECK_STR_CONTAINS(err.msg, "version 3");
  write_text(path, "{\"format\": \"tardis-net\", \"version\": 1, \"dims\": "
                   "[4, 3, 2], \"acts\": [\"relu\", \"gelu\"]}");
  CHECK_INT(td_net_load(dir, &net, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "gelu");
  write_text(path, "{\"format\": \"tardis-net\", \"version\": 1, \"dims\": "
                   "[4, 0, 2], \"acts\": [\"relu\", \"none\"]}");
  CHECK_INT(td_net_load(dir, &net, &err), ==, TD_EFORMAT);
  CHECK_STR_CONTAINS(err.msg, "dims[1]");

  /* No net.json at all. */
  remove(path);
  CHECK_INT(td_net_load(dir, &net, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "net.json");
  CHECK(net == NULL);

  /* NaN weights are refused. */
  CHECK_OK(td_net_save(good, dir, &err), &err);
  td_net_weight(good, 0)[3] = NAN;
  CHECK_OK(td_net_save(good, dir, &err), &err);
  CHECK_INT(td_net_load(dir, &net, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "layer_0_w.npy");
  td_net_free(good);
}

/* Two replicas on the two halves of a batch, with their loss gradients
 * weighted by the halves' shares, sum to the full batch's gradient. */
static void test_replica_data_parallel(void) {
  int dims[] = {7, 9, 5, 3};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_NONE};
  td_net *net = make_net(3, dims, acts, 21);
  td_net *r0 = td_net_replica(net), *r1 = td_net_replica(net);
  CHECK(r0 && r1);
  CHECK(td_net_params(r0) == td_net_params(net));
  CHECK(td_net_grads(r0) != td_net_grads(net));
  enum { B = 10 };
  float x[B * 7], dl[B * 3], dl0[5 * 3], dl1[5 * 3];
  int32_t y[B];
  td_rng rng;
  td_rng_seed(&rng, 4);
  fill_uniform(&rng, x, B * 7, -1, 1);
  for (int i = 0; i < B; i++)
    y[i] = i % 3;
  td_net_ws *ws = td_net_ws_new(net, B), *w0 = td_net_ws_new(net, 5),
            *w1 = td_net_ws_new(net, 5);
  const float *z = td_net_forward(net, ws, x, B);
  td_softmax_xent(z, y, B, 3, dl, NULL);
  td_net_zero_grad(net);
  td_net_backward(net, ws, dl, B, NULL);
  td_net_zero_grad(r0);
  td_net_zero_grad(r1);
  z = td_net_forward(r0, w0, x, 5);
  td_softmax_xent(z, y, 5, 3, dl0, NULL);
  z = td_net_forward(r1, w1, x + 5 * 7, 5);
  td_softmax_xent(z, y + 5, 5, 3, dl1, NULL);
  for (int i = 0; i < 15; i++) {
    dl0[i] *= 0.5f;
    dl1[i] *= 0.5f;
  }
  td_net_backward(r0, w0, dl0, 5, NULL);
  td_net_backward(r1, w1, dl1, 5, NULL);
  const float *g = td_net_grads(net), *g0 = td_net_grads(r0),
              *g1 = td_net_grads(r1);
  for (size_t i = 0; i < td_net_n_params(net); i++)
    CHECK_NEAR(g0[i] + g1[i], g[i], 1e-5);
  td_net_ws_free(ws);
  td_net_ws_free(w0);
  td_net_ws_free(w1);
  td_net_free(r0);
  td_net_free(r1);
  td_net_free(net);
}

int main(void) {
  RUN(test_forward_by_hand);
  RUN(test_net_shape_and_init);
  RUN(test_dense_none_backward);
  RUN(test_dense_relu_backward);
  RUN(test_net_backward);
  RUN(test_net_backward_odd_acts);
  RUN(test_net_xent_backward);
  RUN(test_softmax_xent_values);
  RUN(test_softmax_xent_grad);
  RUN(test_sgd_steps);
  RUN(test_adam_steps);
  RUN(test_train_sgd);
  RUN(test_train_adam);
  RUN(test_determinism);
  RUN(test_predict_matches_forward);
  RUN(test_clone);
  RUN(test_replica_data_parallel);
  RUN(test_checkpoint_round_trip);
  RUN(test_checkpoint_errors);
  return td_t_finish();
}
