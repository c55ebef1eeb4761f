/* Direct 3x3 convolution of stride 1 for the inference path, for the few
 * input channels (a CNN's first convolution on grey or RGB images) where
 * Winograd's transforms cost more than they save and im2col + GEMM runs a
 * K = 9 product far below BLAS speed. Bias, ReLU and a following 2x2 max
 * pooling of stride 2 are fused in, so the full-size activation (32x28x28
 * floats for the Fashion-MNIST CNN) is never stored and the pooling pass
 * over it disappears.
 *
 * Eight pairs of output columns per vector: the zero-padded input rows are
 * split once per sample into their even and odd columns (from column 16b
 * and from 16b + 2 for block b), so output column 2J of a row is
 * w0 E0 + w1 O0 + w2 E1 and column 2J + 1 is w0 O0 + w1 E1 + w2 O1 with
 * E0 = P[2J], O0 = P[2J+1], E1 = P[2J+2], O1 = P[2J+3]. The even and odd
 * columns of two rows are exactly a pooling window's four values. The sums
 * run in another order than the GEMM's, so results differ from the plain
 * path by rounding (docs/engine.md's tolerance). */
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "net_internal.h"
#include "vec.h"

int td__conv3x3_eligible(const td__layer *L) {
  return L->s.kind == TD_LAYER_CONV && L->s.kernel == 3 && L->s.stride == 1 &&
         L->ic <= 3;
}

/* Blocks of eight column pairs per output row. */
static int blocks(const td__layer *L) { return (L->ow + 15) / 16; }
/* The padded input's rows and one more, zero: output rows go in pairs, and
 * the pair of an odd plane's last row reads one row past the input. */
static int pad_rows(const td__layer *L) { return L->ih + 2 * L->s.pad + 1; }
/* A padded row: 16 columns per block, plus the 2 read past the last. */
static int pad_len(const td__layer *L) { return 16 * blocks(L) + 2; }

size_t td__conv3x3_scratch(const td__layer *L) {
  return (size_t)L->ic * pad_rows(L) * blocks(L) * 4 * TD_V +
         (size_t)pad_len(L) + TD_V;
}

/* D[(c * rows + r) * nb + b][0..3] = E0, O0, E1, O1 of padded row r of
 * channel c, block b; row is scratch for one padded row. */
static void split_rows(const td__layer *L, const float *x, td_v8 *D,
                       float *row) {
  int p = L->s.pad, rows = pad_rows(L), nb = blocks(L), len = pad_len(L);
  memset(row, 0, sizeof(float) * (size_t)len);
  for (int c = 0; c < L->ic; c++)
    for (int r = 0; r < rows; r++) {
      int iy = r - p;
      if (iy >= 0 && iy < L->ih) /* the padding columns stay zero */
        memcpy(row + p, x + ((size_t)c * L->ih + iy) * L->iw,
               sizeof(float) * (size_t)L->iw);
      else
        memset(row + p, 0, sizeof(float) * (size_t)L->iw);
      td_v8 *d = D + ((size_t)c * rows + r) * nb * 4;
      for (int b = 0; b < nb; b++) {
        const float *q = row + 16 * b;
        td_v8_deinterleave(td_v8_load(q), td_v8_load(q + 8), &d[4 * b],
                           &d[4 * b + 1]);
        td_v8_deinterleave(td_v8_load(q + 2), td_v8_load(q + 10), &d[4 * b + 2],
                           &d[4 * b + 3]);
      }
    }
}

/* One output row's three products with the kernel row wk on padded row q:
 * the even columns from offset 0 (E0, O0, E1), the odd from 1 (O0, E1,
 * O1). */
#define TAP3(wk, q, o)                                                         \
  td_v8_fma((wk)[2], (q)[(o) + 2],                                             \
            td_v8_fma((wk)[1], (q)[(o) + 1], (wk)[0] * (q)[o]))

/* Four conv values of one block: the even and odd columns of output rows
 * 2py and 2py + 1. */
typedef struct {
  td_v8 e0, o0, e1, o1;
} quad;

static inline td_v8 act_bias(td_v8 v, td_v8 bias, int relu) {
  v += bias; /* after the sum, as the GEMM path adds it */
  return relu ? td_v8_where_pos(v, v) : v;
}

/* act(bias + conv) of output rows 2py and 2py + 1, block b. Written out
 * (GCC -O2 does not unroll the small loops, and arrays would live in
 * memory); each kernel row's three products are summed apart before they
 * join the accumulator, so the chains are short. Inlined with ic a
 * constant where it can be (ic == 1). */
static inline __attribute__((always_inline)) quad
conv_rows(const td_v8 *D, int rows, int nb, int ic, const td_v8 *w, td_v8 bias,
          int relu, int py, int b) {
  td_v8 e0 = td_v8_set1(0.0f), o0 = e0, e1 = e0, o1 = e0;
  size_t rs = (size_t)nb * 4; /* vectors from one padded row to the next */
  for (int c = 0; c < ic; c++) {
    const td_v8 *q0 = D + (((size_t)c * rows + 2 * py) * nb + b) * 4;
    const td_v8 *q1 = q0 + rs, *q2 = q1 + rs, *q3 = q2 + rs;
    const td_v8 *wc = w + c * 9;
    e0 += TAP3(wc, q0, 0) + TAP3(wc + 3, q1, 0) + TAP3(wc + 6, q2, 0);
    o0 += TAP3(wc, q0, 1) + TAP3(wc + 3, q1, 1) + TAP3(wc + 6, q2, 1);
    e1 += TAP3(wc, q1, 0) + TAP3(wc + 3, q2, 0) + TAP3(wc + 6, q3, 0);
    o1 += TAP3(wc, q1, 1) + TAP3(wc + 3, q2, 1) + TAP3(wc + 6, q3, 1);
  }
  quad r = {act_bias(e0, bias, relu), act_bias(o0, bias, relu),
            act_bias(e1, bias, relu), act_bias(o1, bias, relu)};
  return r;
}

/* best, or v where v is larger or a NaN: PyTorch's pooling rule (the first
 * maximum wins, a NaN wins). After ReLU there is no NaN (td_v8_where_pos
 * maps it to 0), and the test is the comparison alone. */
static inline td_v8 max_rule(td_v8 best, td_v8 v, int relu) {
  td_v8i t = v > best;
  return td_v8_select(relu ? t : t | (v != v), v, best);
}

/* The first n lanes of v to y: one masked store where the target has AVX
 * (a plane's last, partial block: 6 of the CNN's 14 pooled columns, where
 * a lane-by-lane copy through the stack took a tenth of the kernel). */
static inline void store_n(float *y, td_v8 v, int n) {
  if (n >= TD_V) {
    td_v8_store(y, v);
    return;
  }
#if defined(__AVX__)
  td_v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
  td_v8i mask = lane < (td_v8i){n, n, n, n, n, n, n, n};
  _mm256_maskstore_ps(y, (__m256i)mask, (__m256)v);
#else
  for (int q = 0; q < n; q++)
    y[q] = v[q];
#endif
}

/* Output channel o of one sample, pooled: the window's maximum in
 * PyTorch's order (first maximum wins, a NaN wins). */
static inline __attribute__((always_inline)) void
channel_pooled(const td__layer *L, const td_v8 *D, int ic, const td_v8 *w,
               td_v8 bias, int relu, float *y) {
  int nb = blocks(L), rows = pad_rows(L), ph = L->oh / 2, pw = L->ow / 2;
  for (int py = 0; py < ph; py++)
    for (int b = 0; b < nb; b++) {
      quad v = conv_rows(D, rows, nb, ic, w, bias, relu, py, b);
      td_v8 best = max_rule(max_rule(max_rule(v.e0, v.o0, relu), v.e1, relu),
                            v.o1, relu);
      store_n(y + (size_t)py * pw + 8 * b, best, pw - 8 * b);
    }
}

static void channel_full(const td__layer *L, const td_v8 *D, const td_v8 *w,
                         td_v8 bias, int relu, float *y) {
  int nb = blocks(L), rows = pad_rows(L), ow = L->ow;
  for (int oy = 0; oy < L->oh; oy += 2)
    for (int b = 0; b < nb; b++) {
      td_v8 lo, hi;
      quad v = conv_rows(D, rows, nb, L->ic, w, bias, relu, oy / 2, b);
      for (int h = 0; h < 2 && oy + h < L->oh; h++) {
        td_v8_interleave(h ? v.e1 : v.e0, h ? v.o1 : v.o0, &lo, &hi);
        float *r = y + (size_t)(oy + h) * ow + 16 * b;
        store_n(r, lo, ow - 16 * b);
        if (ow - 16 * b > TD_V)
          store_n(r + TD_V, hi, ow - 16 * b - TD_V);
      }
    }
}

static void channel(const td__layer *L, const td_v8 *D, const td_v8 *w,
                    float bias, int pool, float *y) {
  int relu = L->s.act == TD_ACT_RELU;
  if (!pool)
    channel_full(L, D, w, td_v8_set1(bias), relu, y);
  else if (L->ic == 1 && relu) /* the grey-image CNN's case, unrolled */
    channel_pooled(L, D, 1, w, td_v8_set1(bias), 1, y);
  else
    channel_pooled(L, D, L->ic, w, td_v8_set1(bias), relu, y);
}

void td__conv3x3_forward(const td__layer *L, const float *w, const float *bias,
                         const float *x, int batch, int pool, float *scratch,
                         float *y) {
  size_t nd = (size_t)L->ic * pad_rows(L) * blocks(L) * 4;
  td_v8 *D = (td_v8 *)(void *)scratch; /* 64-byte aligned (td__alloc_floats) */
  float *row = scratch + nd * TD_V;
  size_t out = pool ? (size_t)(L->oh / 2) * (L->ow / 2) : (size_t)L->oh * L->ow;
  td_v8 wv[27]; /* the weights of one output channel, broadcast */
  for (int n = 0; n < batch; n++) {
    split_rows(L, x + (size_t)n * L->in, D, row);
    for (int o = 0; o < L->oc; o++) {
      for (int k = 0; k < 9 * L->ic; k++)
        wv[k] = td_v8_set1(w[(size_t)o * 9 * L->ic + k]);
      float *yo = y + ((size_t)n * L->oc + o) * out;
      channel(L, D, wv, bias[o], pool, yo);
    }
  }
}
