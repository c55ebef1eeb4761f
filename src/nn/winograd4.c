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
 * Where the build has AVX-512 (the default -march=native on this project's
 * machines) and both channel counts are multiples of 16, the same pipeline
 * runs with sixteen channels per vector instead (winograd4_tiles.h is the
 * pipeline for either width): half the instructions for the transforms and,
 * on a core with 512-bit FMA units, twice the products per cycle. Both
 * widths sum in the same order, so they give the same results.
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

/* Tiles go through the products in blocks of BT (the micro-kernel's rows)
 * and output channels in blocks of BO (its columns, two vectors): a block's
 * transformed input [36][BT][ic] and products [36][BT][BO] stay in the L1
 * cache between the transform that writes them and the one that reads
 * them. A block's tiles run on over the samples of a group. (Through 36 BLAS
 * GEMMs over a group's tiles, 0.9 MB of transformed input and products went
 * out to L2/L3 and back, and the output transform cost half as much as the
 * products.) Eight-float vectors: 6 tiles by 16 channels, twelve
 * accumulators, as many as AVX2's sixteen registers leave room for beside
 * two rows of u and a broadcast. */
#define BT8 6
#define BO8 16
/* Sixteen-float vectors (AVX-512, 32 registers): 6 tiles by 32 channels,
 * twelve accumulators again ([36][6][32] products, 27 KB, beside the
 * input's 27 KB). 12 tiles by 32 (24 accumulators, 55 + 55 KB of blocks)
 * measured no faster. */
#define BT16 6
#define BO16 32

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

#define WV 8
#define VF td_v8
#define VI td_v8i
#define V_(name) td_v8_##name
#define BT BT8
#define BO BO8
#define SFX(name) name##_8
#include "winograd4_tiles.h"

#if defined(TD_V16)
#define WV 16
#define VF td_v16
#define VI td_v16i
#define V_(name) td_v16_##name
#define BT BT16
#define BO BO16
#define SFX(name) name##_16
#include "winograd4_tiles.h"
#endif

/* Whether layer L runs through the sixteen-float variant: built with
 * AVX-512, not switched off, channels in and out multiples of 16. */
#if defined(TD_V16)
static int wide(const td__layer *L) {
  return td__infer_avx512 && L->ic % 16 == 0 && L->oc % 16 == 0;
}
#endif

size_t td__wino4_scratch(const td__layer *L, int batch) {
  size_t blocks = 36 * (size_t)BT8 * (L->ic + BO8);
#if defined(TD_V16)
  size_t b16 = 36 * (size_t)BT16 * (L->ic + BO16);
  if (b16 > blocks)
    blocks = b16;
#endif
  return blocks + (size_t)batch * L->ic * pad_h(L) * pad_w(L);
}

void td__wino4_forward(const td__layer *L, const float *U, const float *bias,
                       const float *x, int batch, int pool, int hwc,
                       float *scratch, float *y) {
#if defined(TD_V16)
  if (wide(L)) {
    forward_16(L, U, bias, x, batch, pool, hwc, scratch, y);
    return;
  }
#endif
  forward_8(L, U, bias, x, batch, pool, hwc, scratch, y);
}
