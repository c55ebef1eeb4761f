/* The inference path's dense layer after the convolutional part (the
 * CNN's 3136 -> 128, a quarter of the recording pass through OpenBLAS)
 * with sixteen-float vectors, where the build has AVX-512: the OpenBLAS
 * build here picks its AVX2 (Haswell) kernels on this CPU, at half the
 * multiply-adds per cycle that AVX-512 gives.
 *
 * y [m, out] = a [m, in] W^T with W [out, in] the layer's weight, from its
 * transpose Wt [in, out] packed once per pass. The rows of a come with
 * their channels innermost ([h][w][c], as F(4x4) Winograd writes them for
 * this layer): the pack permutes Wt's rows to match, so the convolution's
 * output needs no transpose into the [c][h][w] it has in the net. The products
 * go in slices of KC inputs, whose [KC, 64] block of Wt (32 KiB) stays in the
 * L1 cache while every row of the chunk goes through it, six rows by 64 outputs
 * at a time: 24 accumulators of the 32 registers, four rows of Wt and a
 * broadcast per input. Each output sums its inputs in ascending order
 * whatever m is, so the results do not depend on how rows are chunked or
 * threaded; they differ from the GEMM's by rounding (docs/engine.md's
 * tolerance). Other targets and widths take td_gemm. */
#include <string.h>

#include "net_internal.h"
#include "vec.h"

int td__dense_wide_eligible(int in, int out) {
#if defined(TD_V16)
  return in > 0 && out % TD_V16 == 0;
#else
  (void)in, (void)out;
  return 0;
#endif
}

#if defined(TD_V16)

#define KC 128 /* inputs per slice */
#define RB 6   /* rows per block */
#define NV 4   /* vectors of outputs per block */

/* In 16 x 16 blocks: one output row at a time, the writes would each touch
 * another cache line (3136 of them for the CNN). Input k of w, channel
 * k / hw and position k % hw, is row (k % hw) c + k / hw of wt. */
void td__dense_wide_pack(const float *w, int in, int out, int c, float *wt) {
  int hw = in / c;
  for (int k0 = 0; k0 < in; k0 += 16)
    for (int o0 = 0; o0 < out; o0 += 16)
      for (int k = k0; k < k0 + 16 && k < in; k++) {
        float *d = wt + (size_t)(k % hw * c + k / hw) * out;
        for (int o = o0; o < o0 + 16 && o < out; o++)
          d[o] = w[(size_t)o * in + k];
      }
}

/* Rows [r0, r0 + RB), outputs [o0, o0 + 64), inputs [k0, k1): y += a Wt. */
#define ACC(r)                                                                 \
  a = td_v16_set1(ar[(size_t)(r)*in + k]);                                     \
  c##r##0 = td_v16_fma(a, w0, c##r##0), c##r##1 = td_v16_fma(a, w1, c##r##1),  \
  c##r##2 = td_v16_fma(a, w2, c##r##2), c##r##3 = td_v16_fma(a, w3, c##r##3)
#define LOAD(r)                                                                \
  c##r##0 = td_v16_load(yr + (size_t)(r)*out),                                 \
  c##r##1 = td_v16_load(yr + (size_t)(r)*out + 16),                            \
  c##r##2 = td_v16_load(yr + (size_t)(r)*out + 32),                            \
  c##r##3 = td_v16_load(yr + (size_t)(r)*out + 48)
#define STORE(r)                                                               \
  td_v16_store(yr + (size_t)(r)*out, c##r##0),                                 \
      td_v16_store(yr + (size_t)(r)*out + 16, c##r##1),                        \
      td_v16_store(yr + (size_t)(r)*out + 32, c##r##2),                        \
      td_v16_store(yr + (size_t)(r)*out + 48, c##r##3)
static void block(const float *ar, int in, const float *wt, int out, int k0,
                  int k1, float *yr) {
  td_v16 c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31,
      c32, c33, c40, c41, c42, c43, c50, c51, c52, c53, a;
  LOAD(0), LOAD(1), LOAD(2), LOAD(3), LOAD(4), LOAD(5);
  for (int k = k0; k < k1; k++) {
    const float *wk = wt + (size_t)k * out;
    td_v16 w0 = td_v16_load(wk), w1 = td_v16_load(wk + 16),
           w2 = td_v16_load(wk + 32), w3 = td_v16_load(wk + 48);
    ACC(0);
    ACC(1);
    ACC(2);
    ACC(3);
    ACC(4);
    ACC(5);
  }
  STORE(0), STORE(1), STORE(2), STORE(3), STORE(4), STORE(5);
}
#undef ACC
#undef LOAD
#undef STORE

/* The rest: one row and one vector of outputs at a time (the last rows of
 * a chunk, an output width not a multiple of 64), in the same order. */
static void block_any(const float *ar, int rows, int in, const float *wt,
                      int out, int o0, int no, int k0, int k1, float *y) {
  for (int r = 0; r < rows; r++)
    for (int o = o0; o < o0 + no; o += TD_V16) {
      float *yo = y + (size_t)r * out + o;
      td_v16 acc = td_v16_load(yo);
      for (int k = k0; k < k1; k++)
        acc = td_v16_fma(td_v16_set1(ar[(size_t)r * in + k]),
                         td_v16_load(wt + (size_t)k * out + o), acc);
      td_v16_store(yo, acc);
    }
}

void td__dense_wide(const float *a, int m, int in, const float *wt, int out,
                    float *y) {
  memset(y, 0, sizeof(float) * (size_t)m * out);
  for (int k0 = 0; k0 < in; k0 += KC) {
    int k1 = in - k0 < KC ? in : k0 + KC;
    for (int o0 = 0; o0 < out; o0 += NV * TD_V16) {
      int no = out - o0 < NV * TD_V16 ? out - o0 : NV * TD_V16, r = 0;
      for (; no == NV * TD_V16 && r + RB <= m; r += RB)
        block(a + (size_t)r * in, in, wt + o0, out, k0, k1,
              y + (size_t)r * out + o0);
      block_any(a + (size_t)r * in, m - r, in, wt, out, o0, no, k0, k1,
                y + (size_t)r * out);
    }
  }
}

#endif
