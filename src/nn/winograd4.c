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
 * values of eight channels are 36 plain vector loads. The tiles then go in
 * blocks of six: their transformed values ([36][ic/8][6][8], 27 KB for
 * ic = 32), the 36 products [6, ic] x [ic, 16] per sixteen output channels
 * (a register-blocked kernel, 12 KB of products) and the output transform
 * that reads them stay in the L1 cache, and the output channels come out
 * innermost, eight per vector again. Where the plane's height or width is
 * not a multiple of 4, the last tile row or column skips the products its
 * cut-off outputs alone would read (6 or 11 of 36).
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

/* Tiles go through the products in blocks of BLOCK_T (the micro-kernel's
 * rows) and output channels in blocks of BLOCK_O (its columns): a block's
 * transformed input [36][BLOCK_T][ic] and products [36][BLOCK_T][BLOCK_O]
 * stay in the L1 cache between the transform that writes them and the one
 * that reads them. A block's tiles run on over the samples of a group. (Through
 * 36 BLAS GEMMs over a group's tiles, 0.9 MB of transformed input and products
 * went out to L2/L3 and back, and the output transform cost half as much as the
 * products.) */
#define BLOCK_T 6
#define BLOCK_O 16

size_t td__wino4_scratch(const td__layer *L, int batch) {
  return 36 * (size_t)BLOCK_T * (L->ic + BLOCK_O) +
         (size_t)batch * L->ic * pad_h(L) * pad_w(L);
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

/* Tiles g[0 .. nt-1] of a group (tile g is tile g % T of sample g / T): P holds
 * the samples' padded planes [ic/8][pad_h][pad_w][8]; the eight channels from 8
 * cb of tile g[r] go to V[36][ic/8][BLOCK_T][8] at
 * [.][cb][r], so that the products find a channel of all the block's tiles
 * at fixed offsets. */
static void input_tiles(const td__layer *L, const float *P, const int *g,
                        int nt, float *V) {
  int tx_n = tiles_x(L), T = tiles_y(L) * tx_n, pw = pad_w(L);
  size_t plane = (size_t)pad_h(L) * pw * TD_V, vs = (size_t)BLOCK_T * L->ic;
  for (int r = 0; r < nt; r++) {
    int n = g[r] / T, ty = g[r] % T / tx_n, tx = g[r] % tx_n;
    const float *ps = P + (size_t)n * (L->ic / TD_V) * plane;
    for (int cb = 0; cb < L->ic / TD_V; cb++) {
      const float *p = ps + cb * plane + ((size_t)4 * ty * pw + 4 * tx) * TD_V;
      td_v8 t[6][6], d[6], q[6];
#pragma GCC unroll 6
      for (int j = 0; j < 6; j++) { /* columns: B^T d */
        for (int i = 0; i < 6; i++)
          d[i] = td_v8_load(p + ((size_t)i * pw + j) * TD_V);
        bt6(d, q);
        for (int i = 0; i < 6; i++)
          t[i][j] = q[i];
      }
      float *v = V + ((size_t)cb * BLOCK_T + r) * TD_V;
#pragma GCC unroll 6
      for (int i = 0; i < 6; i++) { /* rows: (B^T d) B */
        bt6(t[i], q);
        for (int j = 0; j < 6; j++)
          td_v8_store(v + (size_t)(i * 6 + j) * vs, q[j]);
      }
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
  size_t hw = (size_t)h * w;
  if (pool && y0 + 2 <= h && x0 + 2 <= w) { /* a whole pooled 2x2 block */
    for (int q = 0; q < TD_V; q++) {
      float *o = y + (size_t)(o0 + q) * hw + (size_t)y0 * w + x0;
      o[0] = lane[0][0][q], o[1] = lane[0][1][q];
      o[w] = lane[1][0][q], o[w + 1] = lane[1][1][q];
    }
    return;
  }
  if (y0 + rows > h)
    rows = h - y0;
  if (x0 + cols > w)
    cols = w - x0;
  for (int q = 0; q < TD_V; q++) {
    float *o = y + (size_t)(o0 + q) * hw + (size_t)y0 * w + x0;
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++)
        o[(size_t)i * w + j] = lane[i][j][q];
  }
}

/* y = act(A^T m A + bias) for tiles g[0 .. nt-1] of a group and
 * the no output channels from o0: M[36][BLOCK_T][BLOCK_O], row r of each
 * holding tile g[r]; y [batch][out] the group's outputs. */
static void output_tiles(const td__layer *L, const float *M, const int *g,
                         int nt, int o0, int no, const float *bias, int pool,
                         size_t out, float *y) {
  int tx_n = tiles_x(L), T = tiles_y(L) * tx_n, relu = L->s.act == TD_ACT_RELU;
  size_t ms = (size_t)BLOCK_T * BLOCK_O;
  for (int r = 0; r < nt; r++) {
    int n = g[r] / T, ty = g[r] % T / tx_n, tx = g[r] % tx_n;
    for (int ob = 0; ob < no; ob += TD_V) {
      const float *m = M + (size_t)r * BLOCK_O + ob;
      td_v8 t[4][6], c[6], q[4][4], bv = td_v8_load(bias + o0 + ob);
#pragma GCC unroll 6
      for (int j = 0; j < 6; j++) { /* columns: A^T m */
        td_v8 s[4];
        for (int i = 0; i < 6; i++)
          c[i] = td_v8_load(m + (size_t)(i * 6 + j) * ms);
        at6(c, s);
        for (int i = 0; i < 4; i++)
          t[i][j] = s[i];
      }
#pragma GCC unroll 6
      for (int i = 0; i < 4; i++) { /* rows: (A^T m) A */
        at6(t[i], q[i]);
        for (int j = 0; j < 4; j++) {
          q[i][j] += bv;
          if (relu)
            q[i][j] = td_v8_where_pos(q[i][j], q[i][j]);
        }
      }
      store_tile(L, q, pool, ty, tx, o0 + ob, y + n * out);
    }
  }
}

/* r[i][j] -> r[j][i] for eight vectors r[i] (unpack, pair and half
 * exchanges, as the AVX shuffles do it). */
static void transpose8(td_v8 r[8]) {
  td_v8 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = TD__SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = TD__SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4)
    for (int h = 0; h < 2; h++) {
      u[i + 2 * h] = TD__SHUF(t[i + h], t[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[i + 2 * h + 1] =
          TD__SHUF(t[i + h], t[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int j = 0; j < 4; j++) {
    r[j] = TD__SHUF(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[j + 4] = TD__SHUF(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

/* Copies sample x [ic][ih][iw] into the padded plane P [ic/8][ph][pw][8]
 * (whose border stays zero): eight columns of eight channels at a time
 * through a transpose, the last eight of a row overlapping the previous
 * ones where iw is not a multiple of 8. */
static void pad_sample(const td__layer *L, const float *x, float *P) {
  int pw = pad_w(L), p = L->s.pad, iw = L->iw;
  size_t plane = (size_t)pad_h(L) * pw * TD_V, hw = (size_t)L->ih * iw;
  for (int c0 = 0; c0 < L->ic; c0 += TD_V) {
    float *d = P + (size_t)(c0 / TD_V) * plane;
    const float *s = x + (size_t)c0 * hw;
    for (int r = 0; r < L->ih; r++) {
      float *dr = d + ((size_t)(r + p) * pw + p) * TD_V;
      const float *sr = s + (size_t)r * iw;
      for (int k = 0; iw >= TD_V && k < iw; k += TD_V) {
        int k0 = k + TD_V <= iw ? k : iw - TD_V;
        td_v8 v[8];
        for (int q = 0; q < TD_V; q++)
          v[q] = td_v8_load(sr + q * hw + k0);
        transpose8(v);
        for (int j = 0; j < TD_V; j++)
          td_v8_store(dr + (size_t)(k0 + j) * TD_V, v[j]);
      }
      for (int k = 0; iw < TD_V && k < iw; k++)
        for (int q = 0; q < TD_V; q++)
          dr[(size_t)k * TD_V + q] = sr[q * hw + k];
    }
  }
}

/* M = V u for one position of a full block: V [ic/8][BLOCK_T][8] (see
 * input_tiles), u the [ic, BLOCK_O] columns of U[k] from o0 (row stride
 * oc), M [BLOCK_T, BLOCK_O]. Twelve accumulators (six tiles by two vectors
 * of output channels, as many as AVX2's sixteen registers leave room for
 * beside two rows of u and a broadcast) stay in registers over ic, written
 * out one by one: GCC keeps an array of them in memory. */
#define ROW(r)                                                                 \
  a = td_v8_set1(p[(r)*TD_V + j]);                                             \
  c##r##0 = td_v8_fma(a, b0, c##r##0), c##r##1 = td_v8_fma(a, b1, c##r##1)
#define OUT(r)                                                                 \
  td_v8_store(M + (r)*BLOCK_O, c##r##0),                                       \
      td_v8_store(M + (r)*BLOCK_O + TD_V, c##r##1)
static void block_product(const float *V, int ic, const float *u, int oc,
                          float *M) {
  td_v8 z = td_v8_set1(0.0f), c00 = z, c01 = z, c10 = z, c11 = z, c20 = z,
        c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
  for (const float *p = V; p < V + (size_t)BLOCK_T * ic; p += BLOCK_T * TD_V)
    for (int j = 0; j < TD_V; j++, u += oc) {
      td_v8 b0 = td_v8_load(u), b1 = td_v8_load(u + TD_V), a;
      ROW(0);
      ROW(1);
      ROW(2);
      ROW(3);
      ROW(4);
      ROW(5);
    }
  OUT(0);
  OUT(1);
  OUT(2);
  OUT(3);
  OUT(4);
  OUT(5);
}
#undef ROW
#undef OUT

/* The general case: nt <= BLOCK_T tiles, no <= BLOCK_O output channels (a
 * multiple of 8), one tile and vector at a time (a group's last, partial
 * block; an output width not a multiple of 16). */
static void block_product_any(const float *V, int nt, int ic, const float *u,
                              int oc, int no, float *M) {
  for (int r = 0; r < nt; r++)
    for (int o = 0; o < no; o += TD_V) {
      td_v8 acc = td_v8_set1(0.0f);
      for (int c = 0; c < ic; c++)
        acc = td_v8_fma(
            td_v8_set1(V[((size_t)(c / TD_V) * BLOCK_T + r) * TD_V + c % TD_V]),
            td_v8_load(u + (size_t)c * oc + o), acc);
      td_v8_store(M + (size_t)r * BLOCK_O + o, acc);
    }
}

/* Zeros in V's rows nt .. BLOCK_T - 1, so that a group's last, partial
 * block can go through the full block's products (whose extra rows are not
 * read). */
static void clear_rows(int nt, int ic, float *V) {
  size_t vs = (size_t)BLOCK_T * ic;
  for (int k = 0; k < 36; k++)
    for (int cb = 0; cb < ic / TD_V; cb++)
      memset(V + k * vs + ((size_t)cb * BLOCK_T + nt) * TD_V, 0,
             sizeof(float) * TD_V * (BLOCK_T - nt));
}

/* The group's tiles in four classes: those of the last tile row where
 * the plane's height is not a multiple of 4 (their fourth output row is
 * cut off, and A^T's rows 0-2 do not read the sixth row of a product,
 * so the 6 positions 30-35 are not needed), those of the last column
 * likewise (positions 5, 11, .., 35), both, and the rest. Tile i of class
 * c, as an index n T + ty tx_n + tx into the group; the count in *n. */
typedef struct {
  int y0, ny, x0, nx;
} tile_class;

static tile_class class_of(const td__layer *L, int c) {
  int ty = tiles_y(L), tx = tiles_x(L), ey = L->oh % 4 != 0,
      ex = L->ow % 4 != 0;
  tile_class k = {0, ty - ey, 0, tx - ex};
  if (c & 1) /* the last row */
    k.y0 = ty - 1, k.ny = ey;
  if (c & 2) /* the last column */
    k.x0 = tx - 1, k.nx = ex;
  return k;
}

/* Whether position k (row k / 6, column k % 6 of the 6x6 product) is not
 * read for the tiles of class c. */
static int unread(int c, int k) {
  return ((c & 1) && k / 6 == 5) || ((c & 2) && k % 6 == 5);
}

/* The group's output y from its padded planes P, block by block and class
 * by class: the input transform of BLOCK_T tiles, then per BLOCK_O output
 * channels the 36 products (fewer on the edges) and the output transform. */
static void group_forward(const td__layer *L, const float *U, const float *bias,
                          const float *P, int batch, int pool, size_t out,
                          float *V, float *M, float *y) {
  int T = tiles_y(L) * tiles_x(L), tx_n = tiles_x(L), ic = L->ic, oc = L->oc;
  size_t vs = (size_t)BLOCK_T * ic, ms = (size_t)BLOCK_T * BLOCK_O,
         us = (size_t)ic * oc;
  for (int c = 0; c < 4; c++) {
    tile_class k = class_of(L, c);
    int G = batch * k.ny * k.nx, g[BLOCK_T];
    for (int i0 = 0; i0 < G; i0 += BLOCK_T) {
      int nt = G - i0 < BLOCK_T ? G - i0 : BLOCK_T;
      for (int r = 0; r < nt; r++) {
        int i = i0 + r, a = i % (k.ny * k.nx);
        g[r] =
            i / (k.ny * k.nx) * T + (k.y0 + a / k.nx) * tx_n + k.x0 + a % k.nx;
      }
      input_tiles(L, P, g, nt, V);
      if (nt < BLOCK_T)
        clear_rows(nt, ic, V);
      for (int o0 = 0; o0 < oc; o0 += BLOCK_O) {
        int no = oc - o0 < BLOCK_O ? oc - o0 : BLOCK_O;
        for (int p = 0; p < 36; p++) {
          if (unread(c, p)) /* zeros, not stale values, in the cut-off rows */
            memset(M + p * ms, 0, sizeof(float) * ms);
          else if (no == BLOCK_O) /* (a partial block's missing tiles are 0) */
            block_product(V + p * vs, ic, U + p * us + o0, oc, M + p * ms);
          else
            block_product_any(V + p * vs, nt, ic, U + p * us + o0, oc, no,
                              M + p * ms);
        }
        output_tiles(L, M, g, nt, o0, no, bias, pool, out, y);
      }
    }
  }
}
void td__wino4_forward(const td__layer *L, const float *U, const float *bias,
                       const float *x, int batch, int pool, float *scratch,
                       float *y) {
  float *V = scratch, *M = V + 36 * (size_t)BLOCK_T * L->ic,
        *P = M + 36 * (size_t)BLOCK_T * BLOCK_O;
  size_t out = pool ? (size_t)L->oc * (L->oh / 2) * (L->ow / 2)
                    : (size_t)L->oc * L->oh * L->ow,
         pn = (size_t)L->ic * pad_h(L) * pad_w(L);
  memset(P, 0, sizeof(float) * batch * pn);
  for (int n = 0; n < batch; n++)
    pad_sample(L, x + (size_t)n * L->ic * L->ih * L->iw, P + n * pn);
  group_forward(L, U, bias, P, batch, pool, out, V, M, y);
}
