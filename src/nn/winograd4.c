/* 3x3 convolution of stride 1 by Winograd's minimal filtering F(4x4, 3x3)
 * (Lavin & Gray, 2016, with the interpolation points 0, 1, -1, 2, -2 and
 * infinity), for the inference path's convolutions whose input and output
 * channels are multiples of eight (the CNN's second convolution, 32 -> 64).
 * Each 4x4 block of outputs comes from a 6x6 input tile with 36 products
 * per input channel instead of 144: against F(2x2, 3x3)'s 16 per 2x2 block
 * that is 36 instead of 64 per 16 outputs, and the transforms touch fewer
 * values per output too. On the CNN's 14x14 planes (16 tiles of 4x4, the
 * last row and column half used) the products fall from 784 to 576 per
 * channel pair.
 *
 * Vectors run over eight channels: a sample's input is copied once into a
 * zero-padded plane whose innermost axis is eight channels, so a tile's 36
 * values of eight channels are 36 plain vector loads; the transformed tiles
 * are stored tile-major ([36][tiles][ic]) and the 36 products are GEMMs
 * [tiles, ic] x [ic, oc] whose rows (tiles) come out with the output
 * channels innermost, eight per vector again for the output transform.
 *
 *   U = G g G^T (weights), V = B^T d B (input tiles), Y = A^T (U . V) A
 *   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6;
 *        1/24 -1/12 1/6; 0 0 1]
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
 *          0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *
 * The transforms multiply by 2, 4, 5 and 8 and the weights by sixths, so
 * the rounding error is larger than F(2x2)'s (which only adds and halves):
 * docs/engine.md gives the tolerance, which tests/test_infer.c checks
 * against the plain convolution. */
#include <string.h>

#include "net_internal.h"
#include "vec.h"

int td__wino4_eligible(const td__layer *L) {
  return td__wino_eligible(L) && L->ic % TD_V == 0 && L->oc % TD_V == 0;
}

static int tiles_y(const td__layer *L) { return (L->oh + 3) / 4; }
static int tiles_x(const td__layer *L) { return (L->ow + 3) / 4; }
/* The padded plane covers every tile's 6x6 input (the input, its padding
 * and zeros below and right of it where the last tiles overhang). */
static int pad_h(const td__layer *L) { return 4 * tiles_y(L) + 2; }
static int pad_w(const td__layer *L) { return 4 * tiles_x(L) + 2; }

/* The 36 matrices of V and M lie STRIDE_SKEW floats (one cache line) more
 * than their size apart: a tile's 36 values go to or come from 36 of them,
 * and at a stride of a multiple of 4 KiB (nt * ic floats is 8 KiB for the
 * CNN) those all fall into one set of the L1 cache and evict each other
 * (measured: the transforms took more time than the products). */
#define STRIDE_SKEW 16

size_t td__wino4_scratch(const td__layer *L, int batch) {
  size_t nt = (size_t)batch * tiles_y(L) * tiles_x(L);
  return 36 * (nt * (size_t)(L->ic + L->oc) + 2 * STRIDE_SKEW) +
         (size_t)L->ic * pad_h(L) * pad_w(L);
}

/* G (a, b, c)^T: the six rows of G times three taps, in double. */
static void g6(double a, double b, double c, double u[6]) {
  u[0] = a / 4;
  u[1] = -(a + b + c) / 6;
  u[2] = -(a - b + c) / 6;
  u[3] = a / 24 + b / 12 + c / 6;
  u[4] = a / 24 - b / 12 + c / 6;
  u[5] = c;
}

/* U[k] [ic, oc] with U[6i + j][c][o] = (G g G^T)[i][j] of the weight g of
 * output channel o and input channel c, rounded once from double. */
void td__wino4_weights(const td__layer *L, const float *w, float *U) {
  int ic = L->ic, oc = L->oc;
  size_t n = (size_t)oc * ic;
  for (int o = 0; o < oc; o++)
    for (int c = 0; c < ic; c++) {
      const float *g = w + ((size_t)o * ic + c) * 9;
      double t[3][6], u[6]; /* t[j] = G times column j of g */
      for (int j = 0; j < 3; j++)
        g6(g[j], g[3 + j], g[6 + j], t[j]);
      for (int i = 0; i < 6; i++) { /* row i of (G g) times G^T */
        g6(t[0][i], t[1][i], t[2][i], u);
        for (int j = 0; j < 6; j++)
          U[(size_t)(i * 6 + j) * n + (size_t)c * oc + o] = (float)u[j];
      }
    }
}

/* B^T d of six vectors. */
static inline void bt6(const td_v8 d[6], td_v8 r[6]) {
  td_v8 four = td_v8_set1(4.0f), five = td_v8_set1(5.0f),
        two = td_v8_set1(2.0f);
  td_v8 a = d[4] - d[2], b = d[3] - d[1];
  r[0] = td_v8_fma(four, d[0], d[4]) - five * d[2];
  r[1] = d[4] + d[3] - four * (d[1] + d[2]);
  r[2] = d[4] - d[3] + four * (d[1] - d[2]);
  r[3] = a + two * b;
  r[4] = a - two * b;
  r[5] = td_v8_fma(four, d[1], d[5]) - five * d[3];
}

/* The tiles of one sample: P is its padded plane [ic/8][pad_h][pad_w][8];
 * tile t of the sample goes to row col + t of V[36][.][ic]. */
static void input_tiles(const td__layer *L, const float *P, float *V, size_t vs,
                        size_t col) {
  int ty_n = tiles_y(L), tx_n = tiles_x(L), pw = pad_w(L);
  size_t plane = (size_t)pad_h(L) * pw * TD_V;
  for (int cb = 0; cb < L->ic / TD_V; cb++)
    for (int ty = 0; ty < ty_n; ty++)
      for (int tx = 0; tx < tx_n; tx++) {
        const float *p = P + cb * plane + ((size_t)4 * ty * pw + 4 * tx) * TD_V;
        td_v8 t[6][6], d[6], r[6];
        for (int j = 0; j < 6; j++) { /* columns: B^T d */
          for (int i = 0; i < 6; i++)
            d[i] = td_v8_load(p + ((size_t)i * pw + j) * TD_V);
          bt6(d, r);
          for (int i = 0; i < 6; i++)
            t[i][j] = r[i];
        }
        float *v = V + (col + (size_t)ty * tx_n + tx) * L->ic + cb * TD_V;
        for (int i = 0; i < 6; i++) { /* rows: (B^T d) B */
          bt6(t[i], r);
          for (int j = 0; j < 6; j++)
            td_v8_store(v + (size_t)(i * 6 + j) * vs, r[j]);
        }
      }
}

/* A^T m of six vectors. */
static inline void at6(const td_v8 m[6], td_v8 r[4]) {
  td_v8 two = td_v8_set1(2.0f), four = td_v8_set1(4.0f),
        eight = td_v8_set1(8.0f);
  td_v8 s = m[1] + m[2], d = m[1] - m[2], s2 = m[3] + m[4], d2 = m[3] - m[4];
  r[0] = m[0] + s + s2;
  r[1] = td_v8_fma(two, d2, d);
  r[2] = td_v8_fma(four, s2, s);
  r[3] = td_v8_fma(eight, d2, d) + m[5];
}

/* The larger of a and b in PyTorch's pooling order (b wins if greater or
 * NaN). */
static inline td_v8 pool_max(td_v8 a, td_v8 b) {
  return td_v8_select((b > a) | (b != b), b, a);
}

/* One tile of eight output channels: r[4][4] (bias and activation applied)
 * to y, the sample's [oc][oh][ow] output (or [oc][oh/2][ow/2] pooled). */
static void store_tile(const td__layer *L, td_v8 r[4][4], int pool, int ty,
                       int tx, int o0, float *y) {
  float lane[4][4][TD_V];
  int oh = L->oh, ow = L->ow, rows = 4, cols = 4, h = oh, w = ow, y0 = 4 * ty,
      x0 = 4 * tx;
  if (pool) {
    for (int a = 0; a < 2; a++)
      for (int b = 0; b < 2; b++) {
        td_v8 m = r[2 * a][2 * b];
        m = pool_max(m, r[2 * a][2 * b + 1]);
        m = pool_max(m, r[2 * a + 1][2 * b]);
        m = pool_max(m, r[2 * a + 1][2 * b + 1]);
        td_v8_store(lane[a][b], m);
      }
    rows = cols = 2;
    h = oh / 2, w = ow / 2, y0 = 2 * ty, x0 = 2 * tx;
  } else {
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 4; j++)
        td_v8_store(lane[i][j], r[i][j]);
  }
  if (y0 + rows > h)
    rows = h - y0;
  if (x0 + cols > w)
    cols = w - x0;
  size_t hw = (size_t)h * w;
  for (int q = 0; q < TD_V; q++) {
    float *o = y + (size_t)(o0 + q) * hw + (size_t)y0 * w + x0;
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++)
        o[(size_t)i * w + j] = lane[i][j][q];
  }
}

/* y = act(A^T m A + bias) for every tile of one sample: M[36][.][oc], the
 * sample's tiles from row col. */
static void output_tiles(const td__layer *L, const float *M, size_t ms,
                         size_t col, const float *bias, int pool, float *y) {
  int ty_n = tiles_y(L), tx_n = tiles_x(L), relu = L->s.act == TD_ACT_RELU;
  for (int ty = 0; ty < ty_n; ty++)
    for (int tx = 0; tx < tx_n; tx++) {
      const float *mt = M + (col + (size_t)ty * tx_n + tx) * L->oc;
      for (int o0 = 0; o0 < L->oc; o0 += TD_V) {
        const float *m = mt + o0;
        td_v8 t[4][6], c[6], r[4][4], bv = td_v8_load(bias + o0);
        for (int j = 0; j < 6; j++) { /* columns: A^T m */
          td_v8 s[4];
          for (int i = 0; i < 6; i++)
            c[i] = td_v8_load(m + (size_t)(i * 6 + j) * ms);
          at6(c, s);
          for (int i = 0; i < 4; i++)
            t[i][j] = s[i];
        }
        for (int i = 0; i < 4; i++) { /* rows: (A^T m) A */
          at6(t[i], r[i]);
          for (int j = 0; j < 4; j++) {
            r[i][j] += bv;
            if (relu)
              r[i][j] = td_v8_where_pos(r[i][j], r[i][j]);
          }
        }
        store_tile(L, r, pool, ty, tx, o0, y);
      }
    }
}

/* Copies sample x [ic][ih][iw] into the padded plane P [ic/8][ph][pw][8]
 * (whose border stays zero). */
static void pad_sample(const td__layer *L, const float *x, float *P) {
  int pw = pad_w(L), p = L->s.pad;
  size_t plane = (size_t)pad_h(L) * pw * TD_V;
  for (int c = 0; c < L->ic; c++) {
    float *d = P + (size_t)(c / TD_V) * plane + c % TD_V;
    const float *s = x + (size_t)c * L->ih * L->iw;
    for (int r = 0; r < L->ih; r++) {
      float *dr = d + ((size_t)(r + p) * pw + p) * TD_V;
      for (int k = 0; k < L->iw; k++)
        dr[(size_t)k * TD_V] = s[(size_t)r * L->iw + k];
    }
  }
}

void td__wino4_forward(const td__layer *L, const float *U, const float *bias,
                       const float *x, int batch, int pool, float *scratch,
                       float *y) {
  size_t T = (size_t)tiles_y(L) * tiles_x(L), nt = (size_t)batch * T;
  size_t vs = nt * L->ic + STRIDE_SKEW, ms = nt * L->oc + STRIDE_SKEW;
  float *V = scratch, *M = V + 36 * vs, *P = M + 36 * ms;
  size_t out = pool ? (size_t)L->oc * (L->oh / 2) * (L->ow / 2)
                    : (size_t)L->oc * L->oh * L->ow;
  memset(P, 0, sizeof(float) * (size_t)L->ic * pad_h(L) * pad_w(L));
  for (int n = 0; n < batch; n++) {
    pad_sample(L, x + (size_t)n * L->ic * L->ih * L->iw, P);
    input_tiles(L, P, V, vs, n * T);
  }
  for (int k = 0; k < 36; k++) /* M[k] [nt, oc] = V[k] [nt, ic] U[k] */
    td_gemm(0, 0, (int)nt, L->oc, L->ic, 1.0f, V + k * vs, L->ic,
            U + (size_t)k * L->ic * L->oc, L->oc, 0.0f, M + k * ms, L->oc);
  for (int n = 0; n < batch; n++)
    output_tiles(L, M, ms, n * T, bias, pool, y + n * out);
}
