/* Helpers shared by the kNN builders (exact, NN-descent, 2-D grid):
 * argument checks, output allocation, the direct squared distance, the
 * final row sort, and the public graph utilities. Kept apart so that no
 * builder calls into another. */
#include "tardis/knn.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "knn_internal.h"

void td_knn_free(td_knn *g) {
  if (!g)
    return;
  free(g->idx);
  free(g->dist);
  memset(g, 0, sizeof *g);
}

int td__knn_check_finite(const float *x, int64_t count, const char *what,
                         td_err *err) {
  for (int64_t i = 0; i < count; i++)
    if (!isfinite(x[i]))
      return td_err_set(err, TD_EVALUE, "knn: %s element %lld is not finite",
                        what, (long long)i);
  return TD_OK;
}

int td__knn_check(const float *x, int64_t n, int d, int k, td_err *err) {
  if (!x)
    return td_err_set(err, TD_EARG, "knn: data is NULL");
  if (d < 1)
    return td_err_set(err, TD_EARG, "knn: dimension %d < 1", d);
  if (n < 2 || n > INT32_MAX)
    return td_err_set(err, TD_EARG, "knn: %lld rows (need 2 .. 2^31-1)",
                      (long long)n);
  if (k < 1 || k > TD_KNN_MAX_K || k > n - 1)
    return td_err_set(err, TD_EARG,
                      "knn: k = %d out of range (1 .. min(n-1 = %lld, %d))", k,
                      (long long)(n - 1), TD_KNN_MAX_K);
  return td__knn_check_finite(x, n * (int64_t)d, "data", err);
}

int td__knn_alloc(td_knn *out, int64_t n, int k, td_err *err) {
  memset(out, 0, sizeof *out);
  int32_t *idx = malloc(sizeof *idx * (size_t)n * (size_t)k);
  float *dist = malloc(sizeof *dist * (size_t)n * (size_t)k);
  if (!idx || !dist) {
    free(idx);
    free(dist);
    return td_err_set(err, TD_ENOMEM, "knn: out of memory for %lld x %d",
                      (long long)n, k);
  }
  out->n = n;
  out->k = k;
  out->idx = idx;
  out->dist = dist;
  return TD_OK;
}

float td__knn_sqdist(const float *a, const float *b, int d) {
  int i = 0;
  float s = 0.0f;
#if defined(__AVX512F__)
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (; i + 32 <= d; i += 32) {
    __m512 u = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    __m512 v =
        _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
    acc0 = _mm512_fmadd_ps(u, u, acc0);
    acc1 = _mm512_fmadd_ps(v, v, acc1);
  }
  for (; i + 16 <= d; i += 16) {
    __m512 u = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    acc0 = _mm512_fmadd_ps(u, u, acc0);
  }
  s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#elif defined(__AVX2__) && defined(__FMA__)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= d; i += 16) {
    __m256 u = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    __m256 v =
        _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
    acc0 = _mm256_fmadd_ps(u, u, acc0);
    acc1 = _mm256_fmadd_ps(v, v, acc1);
  }
  acc0 = _mm256_add_ps(acc0, acc1);
  __m128 h =
      _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  s = _mm_cvtss_f32(h);
#else
  /* Independent accumulators let the compiler vectorise without
   * reassociating a single sum. */
  float acc[8] = {0};
  for (; i + 8 <= d; i += 8)
    for (int t = 0; t < 8; t++) {
      float u = a[i + t] - b[i + t];
      acc[t] += u * u;
    }
  for (int t = 0; t < 8; t++)
    s += acc[t];
#endif
  for (; i < d; i++) {
    float u = a[i] - b[i];
    s += u * u;
  }
  return s;
}

static void sift_down(float *dist, int32_t *idx, int p, int len) {
  for (;;) {
    int c = 2 * p + 1;
    if (c >= len)
      return;
    if (c + 1 < len && td__heap_less(dist[c], idx[c], dist[c + 1], idx[c + 1]))
      c++;
    if (!td__heap_less(dist[p], idx[p], dist[c], idx[c]))
      return;
    float td = dist[p];
    dist[p] = dist[c];
    dist[c] = td;
    int32_t ti = idx[p];
    idx[p] = idx[c];
    idx[c] = ti;
    p = c;
  }
}

/* Heapsort: no allocation, O(k log k) also for large k. */
void td__knn_sort_row(float *dist, int32_t *idx, int k) {
  for (int p = k / 2 - 1; p >= 0; p--)
    sift_down(dist, idx, p, k);
  for (int end = k - 1; end > 0; end--) {
    float td = dist[0];
    dist[0] = dist[end];
    dist[end] = td;
    int32_t ti = idx[0];
    idx[0] = idx[end];
    idx[end] = ti;
    sift_down(dist, idx, 0, end);
  }
}

double td_knn_recall(const td_knn *approx, const td_knn *exact) {
  TD_ASSERT(approx && exact && approx->n == exact->n);
  int k = approx->k < exact->k ? approx->k : exact->k;
  if (approx->n == 0 || k == 0)
    return 1.0;
  int64_t hits = 0;
  for (int64_t i = 0; i < approx->n; i++) {
    const int32_t *a = approx->idx + i * approx->k;
    const int32_t *e = exact->idx + i * exact->k;
    for (int s = 0; s < k; s++)
      for (int t = 0; t < k; t++)
        if (a[t] == e[s]) {
          hits++;
          break;
        }
  }
  return (double)hits / ((double)approx->n * (double)k);
}
