/* td_gemm (OpenBLAS) against the naive triple loop, every transpose case. */
#include "harness.h"
#include "tardis/nn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

static float *rand_buf(td_rng *r, size_t n) {
  float *b = malloc(n * sizeof(float) + 1);
  for (size_t i = 0; i < n; i++)
    b[i] = 2.0f * td_rng_uniform(r) - 1.0f;
  return b;
}

/* Compares one configuration; padding in lda/ldb/ldc checks that the strides
 * are honoured and that nothing outside the m×n block of C is written. */
static int check_case(td_rng *r, int ta, int tb, int m, int n, int k,
                      float alpha, float beta, int pad) {
  int arows = ta ? k : m, acols = ta ? m : k;
  int brows = tb ? n : k, bcols = tb ? k : n;
  int lda = acols + pad, ldb = bcols + pad, ldc = n + pad;
  float *a = rand_buf(r, (size_t)arows * lda);
  float *b = rand_buf(r, (size_t)brows * ldb);
  float *c1 = rand_buf(r, (size_t)m * ldc);
  float *c2 = malloc((size_t)m * ldc * sizeof(float) + 1);
  if (beta == 0.0f) /* C must not be read when beta == 0 */
    for (size_t i = 0; i < (size_t)m * ldc; i++)
      c1[i] = NAN;
  memcpy(c2, c1, (size_t)m * ldc * sizeof(float));
  td_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
  td_gemm_naive(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
  int bad = 0;
  for (int i = 0; i < m && !bad; i++) {
    for (int j = 0; j < ldc && !bad; j++) {
      float x = c1[(size_t)i * ldc + j], y = c2[(size_t)i * ldc + j];
      if (j >= n) { /* padding: untouched (both NaN or equal) */
        bad = !(x == y || (isnan(x) && isnan(y)));
        continue;
      }
      /* Entries are in [-1, 1]: float rounding of a k-term sum stays far
       * below 1e-6 per term, while any indexing or beta bug is O(0.1). */
      double tol = 1e-6 * (1 + k);
      if (!(fabs((double)x - (double)y) <= tol)) {
        fprintf(stderr,
                "  ta=%d tb=%d m=%d n=%d k=%d alpha=%g beta=%g pad=%d: "
                "C[%d,%d] = %.9g vs %.9g\n",
                ta, tb, m, n, k, (double)alpha, (double)beta, pad, i, j,
                (double)x, (double)y);
        bad = 1;
      }
    }
  }
  free(a);
  free(b);
  free(c1);
  free(c2);
  return bad;
}

static void test_gemm_all_transposes(void) {
  static const int sizes[][3] = {{1, 1, 1},      {3, 5, 7},     {17, 13, 29},
                                 {64, 33, 1},    {1, 40, 50},   {37, 1, 64},
                                 {65, 127, 300}, {128, 10, 128}};
  static const float alphas[] = {1.0f, -0.5f};
  static const float betas[] = {0.0f, 1.0f, 0.3f};
  td_rng r;
  td_rng_seed(&r, 42);
  int n_cases = 0;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int ai = 0; ai < 2; ai++)
          for (int bi = 0; bi < 3; bi++) {
            int pad = (int)(s % 3);
            CHECK_INT(check_case(&r, ta, tb, sizes[s][0], sizes[s][1],
                                 sizes[s][2], alphas[ai], betas[bi], pad),
                      ==, 0);
            n_cases++;
          }
  CHECK_INT(n_cases, ==, 4 * 8 * 2 * 3);
}

/* The naive reference itself against values worked out by hand. */
static void test_gemm_naive_by_hand(void) {
  const float a[] = {1, 2, 3, 4, 5, 6}; /* 2×3 */
  const float b[] = {1, 0, 0, 1, 1, 1}; /* 3×2 */
  float c[4] = {1, 1, 1, 1};
  td_gemm_naive(0, 0, 2, 2, 3, 2.0f, a, 3, b, 2, 0.5f, c, 2);
  /* A·B = [[4, 5], [10, 11]] → 2·AB + 0.5 */
  CHECK_NEAR(c[0], 8.5, 0);
  CHECK_NEAR(c[1], 10.5, 0);
  CHECK_NEAR(c[2], 20.5, 0);
  CHECK_NEAR(c[3], 22.5, 0);
  float d[4];
  td_gemm(1, 1, 2, 2, 3, 1.0f, b, 2, a, 3, 0.0f, d, 2);
  /* Bᵀ·Aᵀ = (A·B)ᵀ = [[4, 10], [5, 11]] */
  CHECK_NEAR(d[0], 4, 0);
  CHECK_NEAR(d[1], 10, 0);
  CHECK_NEAR(d[2], 5, 0);
  CHECK_NEAR(d[3], 11, 0);
}

static void test_gemm_k_zero(void) {
  float c[2] = {3, 4};
  td_gemm(0, 0, 1, 2, 0, 1.0f, NULL, 1, NULL, 2, 0.5f, c, 2);
  CHECK_NEAR(c[0], 1.5, 0);
  CHECK_NEAR(c[1], 2.0, 0);
}

int main(void) {
  RUN(test_gemm_naive_by_hand);
  RUN(test_gemm_all_transposes);
  RUN(test_gemm_k_zero);
  td_set_threads(1);
  RUN(test_gemm_all_transposes);
  return td_t_finish();
}
