/* 3x3 convolution of stride 1 by Winograd's minimal filtering F(2x2, 3x3)
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016),
 * for the inference path: each 2x2 block of outputs comes from a 4x4 input
 * tile with 16 multiplications per input channel instead of 36, so the
 * products, batched over the tiles of several samples, become 16 GEMMs of
 * [out_c, in_c] x [in_c, tiles] — 2.25x fewer multiply-adds than im2col +
 * GEMM. The transforms only add and halve, so the results differ from the
 * direct convolution by rounding alone (docs/engine.md gives the measured
 * difference). Training keeps the direct convolution, whose gradients the
 * tests check against PyTorch.
 *
 *   U = G g G^T (weights), V = B^T d B (input tiles), Y = A^T (U . V) A
 *   G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   A^T = [1 1 1 0; 0 1 -1 -1] */
#include <string.h>

#include "net_internal.h"
#include "vec.h"

int td__wino_eligible(const td__layer *L) {
  return L->s.kind == TD_LAYER_CONV && L->s.kernel == 3 && L->s.stride == 1 &&
         L->ic >= 4;
}

static int tiles_y(const td__layer *L) { return (L->oh + 1) / 2; }
static int tiles_x(const td__layer *L) { return (L->ow + 1) / 2; }
/* The padded plane: tile rows of 8 tiles read 18 columns from their first. */
static int pad_w(const td__layer *L) {
  return 16 * ((tiles_x(L) + TD_V - 1) / TD_V) + 2;
}
static int pad_h(const td__layer *L) { return 2 * tiles_y(L) + 2; }

/* Rows of V and M are nt + TD_V long: a vector store or load of a row's
 * last tiles may spill into the slack. */
size_t td__wino_scratch(const td__layer *L, int batch) {
  size_t ld = (size_t)batch * tiles_y(L) * tiles_x(L) + TD_V;
  return 16 * ld * (size_t)(L->ic + L->oc) + (size_t)pad_h(L) * pad_w(L);
}

void td__wino_weights(const td__layer *L, const float *w, float *U) {
  size_t n = (size_t)L->oc * L->ic;
  for (size_t k = 0; k < n; k++) {
    const float *g = w + k * 9;
    float t[4][3]; /* G g */
    for (int j = 0; j < 3; j++) {
      t[0][j] = g[j];
      t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
      t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
      t[3][j] = g[6 + j];
    }
    for (int i = 0; i < 4; i++) { /* (G g) G^T */
      float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]),
                    0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
      for (int j = 0; j < 4; j++)
        U[(size_t)(i * 4 + j) * n + k] = u[j];
    }
  }
}

/* V[xi][col..] = B^T d B for the tiles of one plane, eight tiles of a tile
 * row per vector: p is the zero-padded plane, pw wide, whose tile (ty, tx)
 * starts at row 2ty, column 2tx; columns 2tx+0..3 of eight tiles are the
 * even and odd lanes of the 16 floats from 2*tx0 and from 2*tx0 + 2. */
static void input_tiles(const float *p, int pw, int ty_n, int tx_n, float *V,
                        size_t ld, size_t col) {
  for (int ty = 0; ty < ty_n; ty++)
    for (int tx = 0; tx < tx_n; tx += TD_V) {
      td_v8 d[4][4], t[4][4];
      for (int i = 0; i < 4; i++) {
        const float *r = p + (size_t)(2 * ty + i) * pw + 2 * tx;
        td_v8_deinterleave(td_v8_load(r), td_v8_load(r + 8), &d[i][0],
                           &d[i][1]);
        td_v8_deinterleave(td_v8_load(r + 2), td_v8_load(r + 10), &d[i][2],
                           &d[i][3]);
      }
      for (int j = 0; j < 4; j++) { /* B^T d */
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
      }
      float *v = V + col + (size_t)ty * tx_n + tx;
      for (int i = 0; i < 4; i++) { /* (B^T d) B */
        td_v8_store(v + (size_t)(4 * i) * ld, t[i][0] - t[i][2]);
        td_v8_store(v + (size_t)(4 * i + 1) * ld, t[i][1] + t[i][2]);
        td_v8_store(v + (size_t)(4 * i + 2) * ld, t[i][2] - t[i][1]);
        td_v8_store(v + (size_t)(4 * i + 3) * ld, t[i][1] - t[i][3]);
      }
    }
}

/* y = act(A^T m A + bias) for the T tiles of one output plane, eight tiles
 * per vector; lanes past the plane's last tile are dropped. */
static void output_tiles(const float *M, size_t ld, size_t col, float b,
                         td_act act, const td__layer *L, int pool, float *y) {
  int tx_n = tiles_x(L), oh = L->oh, ow = L->ow;
  int T = tiles_y(L) * tx_n;
  td_v8 bv = td_v8_set1(b);
  for (int t0 = 0; t0 < T; t0 += TD_V) {
    td_v8 m[16], t[2][4], r[4];
    for (int k = 0; k < 16; k++)
      m[k] = td_v8_load(M + (size_t)k * ld + col + t0);
    for (int j = 0; j < 4; j++) { /* A^T m */
      t[0][j] = m[j] + m[4 + j] + m[8 + j];
      t[1][j] = m[4 + j] - m[8 + j] - m[12 + j];
    }
    for (int i = 0; i < 2; i++) {
      r[2 * i] = t[i][0] + t[i][1] + t[i][2] + bv;
      r[2 * i + 1] = t[i][1] - t[i][2] - t[i][3] + bv;
    }
    if (act == TD_ACT_RELU)
      for (int q = 0; q < 4; q++)
        r[q] = td_v8_where_pos(r[q], r[q]);
    int n = T - t0 < TD_V ? T - t0 : TD_V;
    if (pool) {
      /* the 2x2 block is the pooling window: its maximum, in PyTorch's
       * order (first maximum wins, a NaN wins) */
      td_v8 best = r[0];
      for (int q = 1; q < 4; q++)
        best = td_v8_select((r[q] > best) | (r[q] != r[q]), r[q], best);
      if (n == TD_V)
        td_v8_store(y + t0, best);
      else
        memcpy(y + t0, &best, sizeof(float) * (size_t)n);
      continue;
    }
    for (int q = 0; q < n; q++) {
      int ty = (t0 + q) / tx_n, tx = (t0 + q) - ty * tx_n;
      int oy = 2 * ty, ox = 2 * tx;
      float *o = y + (size_t)oy * ow + ox;
      o[0] = r[0][q];
      if (ox + 1 < ow)
        o[1] = r[1][q];
      if (oy + 1 < oh) {
        o[ow] = r[2][q];
        if (ox + 1 < ow)
          o[ow + 1] = r[3][q];
      }
    }
  }
}

int td__wino_poolable(const td__layer *L, const td__layer *next) {
  return next->s.kind == TD_LAYER_MAXPOOL && next->s.kernel == 2 &&
         next->s.stride == 2 && next->s.pad == 0 && L->oh % 2 == 0 &&
         L->ow % 2 == 0;
}

void td__wino_forward(const td__layer *L, const float *U, const float *bias,
                      const float *x, int batch, int pool, float *scratch,
                      float *y) {
  int ty_n = tiles_y(L), tx_n = tiles_x(L), p = L->s.pad;
  int ph = pad_h(L), pw = pad_w(L);
  size_t T = (size_t)ty_n * tx_n, nt = (size_t)batch * T, ld = nt + TD_V;
  size_t vs = (size_t)L->ic * ld, ms = (size_t)L->oc * ld;
  float *V = scratch, *M = V + 16 * vs, *pad = M + 16 * ms;
  /* rows and columns of the padded plane beyond the input stay zero */
  memset(pad, 0, sizeof(float) * (size_t)ph * pw);
  for (int n = 0; n < batch; n++)
    for (int c = 0; c < L->ic; c++) {
      const float *plane = x + ((size_t)n * L->ic + c) * L->ih * L->iw;
      for (int r = 0; r < L->ih; r++)
        memcpy(pad + (size_t)(r + p) * pw + p, plane + (size_t)r * L->iw,
               sizeof(float) * (size_t)L->iw);
      input_tiles(pad, pw, ty_n, tx_n, V + (size_t)c * ld, vs, n * T);
    }
  for (int k = 0; k < 16; k++) /* M[k] [oc, nt] = U[k] [oc, ic] V[k] */
    td_gemm(0, 0, L->oc, (int)nt, L->ic, 1.0f, U + (size_t)k * L->oc * L->ic,
            L->ic, V + (size_t)k * vs, (int)ld, 0.0f, M + (size_t)k * ms,
            (int)ld);
  for (int n = 0; n < batch; n++)
    for (int o = 0; o < L->oc; o++)
      output_tiles(M + (size_t)o * ld, ms, n * T, bias[o], L->s.act, L, pool,
                   y + ((size_t)n * L->oc + o) *
                           (pool ? T : (size_t)L->oh * L->ow));
}
