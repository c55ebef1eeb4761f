/* The inference path (td_net_infer, the recorder's forward pass) against the
 * plain eval-mode forward pass (td_net_predict): equal within float tolerance
 * on nets that take every branch (Winograd convolutions with and without the
 * fused pooling, odd planes, padding 0 and 1, strided and 1-channel
 * convolutions left to im2col, batchnorm with running statistics, dropout,
 * global average pooling, taps inside and after the convolutional part),
 * bit-identical for dense-only nets, bit-identical at 1 and 2 threads, and
 * following the net's weights from one run to the next; Winograd F(4x4, 3x3)
 * also against a convolution in double. */
#include "harness.h"
#include "nn/net_internal.h"
#include "tardis/nn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

/* The documented tolerance (docs/engine.md): |infer - predict| <= TOL
 * times (1 + the largest |value| of the array). */
#define TOL 1e-5

static td_net *fashion_cnn(void) {
  td_layer_spec L[] = {{.kind = TD_LAYER_CONV,
                        .out = 32,
                        .kernel = 3,
                        .pad = 1,
                        .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
                       {.kind = TD_LAYER_CONV,
                        .out = 64,
                        .kernel = 3,
                        .pad = 1,
                        .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
                       {.kind = TD_LAYER_DENSE, .out = 128, .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_DENSE, .out = 10}};
  return td_net_new_layers(1, 28, 28, 6, L);
}

/* The CNN as --batchnorm builds it: each convolution without activation,
 * then batchnorm with ReLU, then pooling (the inference path folds the
 * batchnorm into the convolution and fuses the pooling). */
static td_net *fashion_bn_cnn(void) {
  td_layer_spec L[] = {
      {.kind = TD_LAYER_CONV, .out = 32, .kernel = 3, .pad = 1},
      {.kind = TD_LAYER_BATCHNORM, .act = TD_ACT_RELU},
      {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
      {.kind = TD_LAYER_CONV, .out = 64, .kernel = 3, .pad = 1},
      {.kind = TD_LAYER_BATCHNORM, .act = TD_ACT_RELU},
      {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
      {.kind = TD_LAYER_DENSE, .out = 128, .act = TD_ACT_RELU},
      {.kind = TD_LAYER_DENSE, .out = 10}};
  return td_net_new_layers(1, 28, 28, 8, L);
}

/* Odd planes, padding 0, batchnorm (running statistics set below), a
 * strided convolution, dropout and global average pooling. */
static td_net *odd_cnn(void) {
  td_layer_spec L[] = {{.kind = TD_LAYER_CONV, .out = 6, .kernel = 3, .pad = 1},
                       {.kind = TD_LAYER_BATCHNORM, .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_CONV,
                        .out = 8,
                        .kernel = 3,
                        .pad = 0,
                        .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
                       {.kind = TD_LAYER_CONV, .out = 7, .kernel = 3, .pad = 1},
                       {.kind = TD_LAYER_BATCHNORM, .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_DROPOUT, .p = 0.5f},
                       {.kind = TD_LAYER_CONV,
                        .out = 9,
                        .kernel = 3,
                        .stride = 2,
                        .pad = 1,
                        .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_AVGPOOL_GLOBAL},
                       {.kind = TD_LAYER_DENSE, .out = 5, .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_DENSE, .out = 3}};
  return td_net_new_layers(5, 11, 9, 11, L);
}

/* Convolutions of 1 to 3 input channels (the direct 3x3 kernel): pooled
 * with ReLU and without, over planes of partial vector blocks (18 and 9
 * pooled columns), and unpooled on odd planes with padding 0. */
static td_net *few_channels_pooled(void) {
  td_layer_spec L[] = {{.kind = TD_LAYER_CONV,
                        .out = 3,
                        .kernel = 3,
                        .pad = 1,
                        .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
                       {.kind = TD_LAYER_CONV, .out = 2, .kernel = 3, .pad = 1},
                       {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
                       {.kind = TD_LAYER_DENSE, .out = 3}};
  return td_net_new_layers(2, 20, 36, 5, L);
}

static td_net *few_channels_odd(void) {
  td_layer_spec L[] = {{.kind = TD_LAYER_CONV,
                        .out = 2,
                        .kernel = 3,
                        .pad = 0,
                        .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
                       {.kind = TD_LAYER_CONV, .out = 4, .kernel = 3, .pad = 1},
                       {.kind = TD_LAYER_DENSE, .out = 4, .act = TD_ACT_RELU},
                       {.kind = TD_LAYER_DENSE, .out = 3}};
  return td_net_new_layers(3, 13, 21, 5, L);
}

/* A dense layer after an F(4x4) Winograd convolution (16 -> 16 channels,
 * unpooled, its output channels innermost for the AVX-512 dense kernel)
 * whose width (48) is not a multiple of that kernel's 64 outputs, over
 * 1296 inputs (not a multiple of its 128-input slices). */
static td_net *conv_wide_dense(void) {
  td_layer_spec L[] = {
      {.kind = TD_LAYER_CONV, .out = 16, .kernel = 3, .pad = 1},
      {.kind = TD_LAYER_DENSE, .out = 48, .act = TD_ACT_RELU},
      {.kind = TD_LAYER_DENSE, .out = 5}};
  return td_net_new_layers(16, 9, 9, 3, L);
}

static td_net *mlp(void) {
  int dims[] = {40, 32, 16, 4};
  td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_NONE};
  return td_net_new(3, dims, acts);
}

static void init(td_net *net, uint64_t seed) {
  td_rng r;
  td_rng_seed(&r, seed);
  td_net_init(net, &r);
  for (int l = 0; l < td_net_n_layers(net); l++)
    if (td_net_layer_spec(net, l)->kind == TD_LAYER_BATCHNORM) {
      int c;
      td_net_shape(net, l, &c, NULL, NULL);
      for (int i = 0; i < c; i++) {
        td_net_running_mean(net, l)[i] = 0.3f * td_rng_uniform(&r) - 0.1f;
        td_net_running_var(net, l)[i] = 0.5f + td_rng_uniform(&r);
        td_net_weight(net, l)[i] = 0.5f + td_rng_uniform(&r);
        td_net_bias(net, l)[i] = 0.2f * td_rng_uniform(&r) - 0.1f;
      }
    }
}

static float *inputs(int64_t n, int d, uint64_t seed) {
  td_rng r;
  td_rng_seed(&r, seed);
  float *x = malloc(sizeof(float) * (size_t)(n * d));
  for (int64_t i = 0; i < n * d; i++)
    x[i] = td_rng_uniform(&r);
  return x;
}

/* max |a - b| / (1 + max |a|) */
static double rel_diff(const float *a, const float *b, size_t n) {
  double m = 0, d = 0;
  for (size_t i = 0; i < n; i++) {
    m = fmax(m, fabs((double)a[i]));
    d = fmax(d, fabs((double)a[i] - (double)b[i]));
  }
  return d / (1.0 + m);
}

/* infer and predict on n samples, tapping layer tap; returns the larger
 * relative difference of the outputs and the taps (-1: not equal shapes). */
static double compare(td_net *net, int64_t n, int tap, int exact) {
  int in = td_net_in_dim(net), out = td_net_out_dim(net);
  int td = td_net_dim(net, tap + 1);
  float *x = inputs(n, in, 11);
  float *o1 = malloc(sizeof(float) * (size_t)(n * out)),
        *o2 = malloc(sizeof(float) * (size_t)(n * out)),
        *t1 = malloc(sizeof(float) * (size_t)(n * td)),
        *t2 = malloc(sizeof(float) * (size_t)(n * td));
  td_net_infer *inf = td_net_infer_new(net);
  double r = -1;
  if (inf && td_net_predict(net, x, n, o1, tap, t1) == TD_OK &&
      td_net_infer_run(inf, x, n, o2, tap, t2) == TD_OK) {
    r = fmax(rel_diff(o1, o2, (size_t)(n * out)),
             rel_diff(t1, t2, (size_t)(n * td)));
    if (exact && (memcmp(o1, o2, sizeof(float) * (size_t)(n * out)) ||
                  memcmp(t1, t2, sizeof(float) * (size_t)(n * td))))
      r = -1;
  }
  printf("    tap %d: relative difference %.3g\n", tap, r);
  td_net_infer_free(inf);
  free(x);
  free(o1);
  free(o2);
  free(t1);
  free(t2);
  return r;
}

static void test_matches_predict(void) {
  td_net *a = fashion_cnn(), *b = odd_cnn(), *m = mlp();
  td_net *fp = few_channels_pooled(), *fo = few_channels_odd();
  td_net *bn = fashion_bn_cnn(), *wd = conv_wide_dense();
  init(a, 1);
  init(wd, 15);
  init(b, 2);
  init(m, 3);
  init(fp, 12);
  init(fo, 13);
  init(bn, 14);
  /* 1100 rows: two full chunks and a partial one, a partial group */
  for (int tap = 0; tap < 6; tap++) {
    double r = compare(a, 1100, tap, 0);
    CHECK(r >= 0 && r <= TOL);
  }
  for (int tap = 0; tap < 11; tap++) {
    double r = compare(b, 301, tap, 0);
    CHECK(r >= 0 && r <= TOL);
  }
  for (int tap = 0; tap < 8; tap++) {
    double r = compare(bn, 70, tap, 0);
    CHECK(r >= 0 && r <= TOL);
  }
  for (int tap = 0; tap < 5; tap++) {
    double r = compare(fp, 70, tap, 0);
    CHECK(r >= 0 && r <= TOL);
    r = compare(fo, 70, tap, 0);
    CHECK(r >= 0 && r <= TOL);
  }
  for (int tap = 0; tap < 3; tap++) { /* 601 rows: a partial block of 6 */
    double r = compare(wd, 601, tap, 0);
    CHECK(r >= 0 && r <= TOL);
  }
  for (int tap = 0; tap < 3; tap++) /* dense only: the same GEMMs */
    CHECK(compare(m, 1100, tap, 1) == 0);
  td_net_free(a);
  td_net_free(b);
  td_net_free(m);
  td_net_free(fp);
  td_net_free(wd);
  td_net_free(fo);
  td_net_free(bn);
}

/* The same bytes at 1 and 2 threads, and a second run on changed weights
 * equals predict on them (the Winograd weights are redone per run). */
static void threads_and_weights(td_net *net, int64_t n) {
  init(net, 4);
  int in = td_net_in_dim(net), out = td_net_out_dim(net);
  float *x = inputs(n, in, 5);
  float *o1 = malloc(sizeof(float) * (size_t)(n * out)),
        *o2 = malloc(sizeof(float) * (size_t)(n * out));
  td_net_infer *inf = td_net_infer_new(net);
  CHECK(inf != NULL);
  td_set_threads(1);
  CHECK_INT(td_net_infer_run(inf, x, n, o1, -1, NULL), ==, TD_OK);
  td_set_threads(2);
  CHECK_INT(td_net_infer_run(inf, x, n, o2, -1, NULL), ==, TD_OK);
  CHECK(!memcmp(o1, o2, sizeof(float) * (size_t)(n * out)));
  init(net, 6);
  CHECK_INT(td_net_infer_run(inf, x, n, o2, -1, NULL), ==, TD_OK);
  CHECK_INT(td_net_predict(net, x, n, o1, -1, NULL), ==, TD_OK);
  CHECK(rel_diff(o1, o2, (size_t)(n * out)) <= TOL);
  CHECK(rel_diff(o1, o2, (size_t)(n * out)) > 0 ||
        !memcmp(o1, o2, sizeof(float) * (size_t)(n * out)));
  td_set_threads(0);
  td_net_infer_free(inf);
  td_net_free(net);
  free(x);
  free(o1);
  free(o2);
}

/* (odd planes and few channels; the Fashion-MNIST CNN, whose second
 * convolution runs through F(4x4, 3x3), over two chunks and a part) */
static void test_threads_and_weights(void) {
  threads_and_weights(odd_cnn(), 1500);
  threads_and_weights(fashion_cnn(), 1100);
}

/* A NaN input propagates as through the plain path (the pooled maximum
 * keeps a NaN; ReLU maps it to 0 in both). */
static void test_nan(void) {
  td_net *net = fashion_cnn();
  init(net, 7);
  int64_t n = 9;
  float *x = inputs(n, 784, 8);
  x[3 * 784 + 100] = NAN;
  float o1[90], o2[90];
  td_net_infer *inf = td_net_infer_new(net);
  CHECK(inf != NULL);
  CHECK_INT(td_net_infer_run(inf, x, n, o2, -1, NULL), ==, TD_OK);
  CHECK_INT(td_net_predict(net, x, n, o1, -1, NULL), ==, TD_OK);
  for (int i = 0; i < 90; i++)
    CHECK(isnan(o1[i]) == isnan(o2[i]));
  td_net_infer_free(inf);
  td_net_free(net);
  free(x);
}

/* Winograd F(4x4, 3x3) (channels in and out multiples of 8) against a
 * convolution computed here in double, output by output: planes that are
 * not multiples of the 4x4 tile, padding 0 and 1, with and without ReLU and
 * the fused pooling, ic channels in. Both vector widths of the kernel run
 * (the sixteen-float one where the build has AVX-512 and the channels are
 * multiples of 16, td__infer_avx512 switching it off for the other run),
 * each against the reference and against each other. The documented
 * tolerance (docs/engine.md): |infer - reference| <= 1e-5 (1 + max
 * |reference|). Returns the largest of the three differences. */
static double wino4_case(int pad, int relu, int pool, int h, int w, int ic,
                         int oc) {
  td_layer_spec L[] = {{.kind = TD_LAYER_CONV,
                        .out = oc,
                        .kernel = 3,
                        .pad = pad,
                        .act = relu ? TD_ACT_RELU : TD_ACT_NONE},
                       {.kind = TD_LAYER_MAXPOOL, .kernel = 2}};
  const int n = 9;
  td_net *net = td_net_new_layers(ic, h, w, pool ? 2 : 1, L);
  init(net, 21);
  int oh = h + 2 * pad - 2, ow = w + 2 * pad - 2;
  int qh = pool ? oh / 2 : oh, qw = pool ? ow / 2 : ow;
  size_t out = (size_t)oc * qh * qw, in = (size_t)ic * h * w;
  float *x = inputs(n, (int)in, 22);
  for (size_t i = 0; i < n * in; i++) /* signed inputs: ReLU cuts some */
    x[i] = 2 * x[i] - 1;
  float *y = malloc(sizeof(float) * n * out),
        *y8 = malloc(sizeof(float) * n * out),
        *ref = malloc(sizeof(float) * n * out);
  const float *wt = td_net_weight(net, 0), *b = td_net_bias(net, 0);
  double *full = malloc(sizeof(double) * (size_t)oc * oh * ow);
  for (int s = 0; s < n; s++) {
    const float *xs = x + s * in;
    for (int o = 0; o < oc; o++)
      for (int r = 0; r < oh; r++)
        for (int c = 0; c < ow; c++) {
          double acc = b[o];
          for (int k = 0; k < ic; k++)
            for (int i = 0; i < 3; i++)
              for (int j = 0; j < 3; j++) {
                int rr = r + i - pad, cc = c + j - pad;
                if (rr >= 0 && rr < h && cc >= 0 && cc < w)
                  acc += (double)wt[((o * ic + k) * 3 + i) * 3 + j] *
                         (double)xs[((size_t)k * h + rr) * w + cc];
              }
          full[((size_t)o * oh + r) * ow + c] = relu && acc < 0 ? 0 : acc;
        }
    for (int o = 0; o < oc; o++)
      for (int r = 0; r < qh; r++)
        for (int c = 0; c < qw; c++) {
          const double *f = full + (size_t)o * oh * ow;
          double v = f[r * ow + c];
          if (pool)
            v = fmax(fmax(f[2 * r * ow + 2 * c], f[2 * r * ow + 2 * c + 1]),
                     fmax(f[(2 * r + 1) * ow + 2 * c],
                          f[(2 * r + 1) * ow + 2 * c + 1]));
          ref[s * out + ((size_t)o * qh + r) * qw + c] = (float)v;
        }
  }
  td_net_infer *inf = td_net_infer_new(net);
  double d = -1, d8 = -1, dw = -1;
  td__infer_avx512 = 0;
  int ok = inf && td_net_infer_run(inf, x, n, y8, -1, NULL) == TD_OK;
  td__infer_avx512 = 1;
  if (ok && td_net_infer_run(inf, x, n, y, -1, NULL) == TD_OK) {
    d = rel_diff(ref, y, n * out);
    d8 = rel_diff(ref, y8, n * out);
    dw = rel_diff(y8, y, n * out);
  }
  printf("    pad %d relu %d pool %d %dx%d, %d -> %d: relative difference %.3g "
         "(8-wide %.3g, between the widths %.3g)\n",
         pad, relu, pool, h, w, ic, oc, d, d8, dw);
  if (d >= 0 && (d8 > d || dw > d))
    d = d8 > dw ? d8 : dw;
  td_net_infer_free(inf);
  td_net_free(net);
  free(x);
  free(y);
  free(y8);
  free(ref);
  free(full);
  return d;
}

static void test_wino4_reference(void) {
  for (int pad = 0; pad <= 1; pad++)
    for (int relu = 0; relu <= 1; relu++)
      for (int ic = 24; ic <= 32; ic += 8) { /* 8-wide only; both widths */
        double d = wino4_case(pad, relu, 0, 13, 10, ic, 16);
        CHECK(d >= 0 && d <= TOL);
        d = wino4_case(pad, relu, 1, 16 - 2 * pad, 12 - 2 * pad, ic, 16);
        CHECK(d >= 0 && d <= TOL);
        d = wino4_case(pad, relu, 1, 14, 14, ic, 64); /* the CNN's layer */
        CHECK(d >= 0 && d <= TOL);
        /* output channels in a block of 8 after one of 16 (a block of 16
         * after one of 32, 16 wide), a plane narrower than eight columns
         * (the copy's scalar path) */
        d = wino4_case(pad, relu, 0, 9, 7, ic, ic == 32 ? 48 : 24);
        CHECK(d >= 0 && d <= TOL);
      }
}

/* The tests of the whole inference path again with the sixteen-float
 * Winograd variant switched off, so that an AVX-512 machine runs the
 * eight-float one through them too. */
static void test_eight_wide(void) {
  td__infer_avx512 = 0;
  test_matches_predict();
  test_threads_and_weights();
  test_nan();
  td__infer_avx512 = 1;
}

int main(void) {
  RUN(test_matches_predict);
  RUN(test_wino4_reference);
  RUN(test_threads_and_weights);
  RUN(test_nan);
  RUN(test_eight_wide);
  return td_t_finish();
}
