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
 * path by rounding (docs/engine.md's tolerance).
 *
 * Where the build has AVX-512, sixteen column pairs per vector instead
 * (conv3x3_width.h is the kernel for either width): a 28-column row is one
 * block of 32 rather than two of 16. Both widths sum in the same order. */
#include <string.h>

#include "net_internal.h"
#include "vec.h"

int td__conv3x3_eligible(const td__layer *L) {
  return L->s.kind == TD_LAYER_CONV && L->s.kernel == 3 && L->s.stride == 1 &&
         L->ic <= 3;
}

/* The padded input's rows and one more, zero: output rows go in pairs, and
 * the pair of an odd plane's last row reads one row past the input. */
static int pad_rows(const td__layer *L) { return L->ih + 2 * L->s.pad + 1; }

#define WV 8
#define VF td_v8
#define VI td_v8i
#define V_(name) td_v8_##name
#define SFX(name) name##_8
#include "conv3x3_width.h"

#if defined(TD_V16)
#define WV 16
#define VF td_v16
#define VI td_v16i
#define V_(name) td_v16_##name
#define SFX(name) name##_16
#include "conv3x3_width.h"
#endif

size_t td__conv3x3_scratch(const td__layer *L) {
  size_t s = scratch_8(L);
#if defined(TD_V16)
  if (scratch_16(L) > s)
    s = scratch_16(L);
#endif
  return s;
}

void td__conv3x3_forward(const td__layer *L, const float *w, const float *bias,
                         const float *x, int batch, int pool, float *scratch,
                         float *y) {
#if defined(TD_V16)
  if (td__infer_avx512) {
    forward_16(L, w, bias, x, batch, pool, scratch, y);
    return;
  }
#endif
  forward_8(L, w, bias, x, batch, pool, scratch, y);
}
