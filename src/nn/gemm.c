/* The GEMM shim: every matrix product in tardis goes through td_gemm so that
 * the BLAS behind it can be swapped (or instrumented) in one place. */
#include "tardis/nn.h"

#include <cblas.h>

void td_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
             const float *a, int lda, const float *b, int ldb, float beta,
             float *c, int ldc) {
  if (m <= 0 || n <= 0)
    return;
  /* CBLAS leaves C untouched for k == 0 only when beta == 1; make the
   * degenerate case explicit instead of relying on the BLAS. */
  if (k <= 0) {
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++)
        c[(size_t)i * ldc + j] =
            beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b,
              ldb, beta, c, ldc);
}

void td_gemm_naive(int trans_a, int trans_b, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta,
                   float *c, int ldc) {
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < n; j++) {
      double s = 0.0;
      for (int p = 0; p < k; p++) {
        float av = trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
        float bv = trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
        s += (double)av * (double)bv;
      }
      float *cij = &c[(size_t)i * ldc + j];
      double prev = beta == 0.0f ? 0.0 : (double)beta * (double)*cij;
      *cij = (float)((double)alpha * s + prev);
    }
  }
}
