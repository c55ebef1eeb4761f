/* Lloyd's k-means with k-means++ seeding on a subsample; the assignment
 * step is one sgemm per block of rows. */
#include "tardis/kmeans.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"
#include "tardis/rng.h"

typedef struct assign_ctx {
  const float *x, *c, *cnorm;
  int dim, k;
  int32_t *assign;
  float *dist; /* squared distance to the chosen centroid */
} assign_ctx;

/* Nearest centroid by ‖c‖² − 2x·c through one sgemm per block of rows. */
static void assign_cb(void *vctx, int64_t b, int64_t e, int tid) {
  (void)tid;
  const assign_ctx *a = vctx;
  int64_t rows = e - b;
  float *dot = malloc((size_t)rows * (size_t)a->k * sizeof *dot);
  TD_ASSERT(dot);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, a->k, a->dim,
              1.0f, a->x + b * a->dim, a->dim, a->c, a->dim, 0.0f, dot, a->k);
  for (int64_t i = 0; i < rows; i++) {
    const float *xi = a->x + (b + i) * a->dim;
    float xn = 0;
    for (int d = 0; d < a->dim; d++)
      xn += xi[d] * xi[d];
    int best = 0;
    float bd = FLT_MAX;
    for (int j = 0; j < a->k; j++) {
      float d = a->cnorm[j] - 2 * dot[i * a->k + j];
      if (d < bd) {
        bd = d;
        best = j;
      }
    }
    a->assign[b + i] = best;
    a->dist[b + i] = fmaxf(0.0f, bd + xn);
  }
  free(dot);
}

static void assign_all(assign_ctx *a, int64_t n, float *cnorm) {
  for (int j = 0; j < a->k; j++) {
    float s = 0;
    for (int d = 0; d < a->dim; d++)
      s += a->c[j * a->dim + d] * a->c[j * a->dim + d];
    cnorm[j] = s;
  }
  td_parallel_for(n, 4096, assign_cb, a);
}

static float sqdist(const float *a, const float *b, int dim) {
  float s = 0;
  for (int d = 0; d < dim; d++)
    s += (a[d] - b[d]) * (a[d] - b[d]);
  return s;
}

/* k-means++ on a subsample: cheap and good enough a start for Lloyd. */
static void seed_pp(const float *x, int64_t n, int dim, int k, td_rng *rng,
                    float *c) {
  int64_t m = n < 4096 ? n : 4096;
  int64_t *pick = malloc((size_t)m * sizeof *pick);
  float *d2 = malloc((size_t)m * sizeof *d2);
  TD_ASSERT(pick && d2);
  for (int64_t i = 0; i < m; i++)
    pick[i] = m == n ? i : (int64_t)td_rng_below(rng, (uint64_t)n);
  memcpy(c, x + pick[td_rng_below(rng, (uint64_t)m)] * dim,
         (size_t)dim * sizeof *c);
  for (int64_t i = 0; i < m; i++)
    d2[i] = sqdist(x + pick[i] * dim, c, dim);
  for (int j = 1; j < k; j++) {
    double tot = 0;
    for (int64_t i = 0; i < m; i++)
      tot += (double)d2[i];
    int64_t chosen = (int64_t)td_rng_below(rng, (uint64_t)m);
    if (tot > 0) {
      double u = td_rng_uniform_d(rng) * tot, acc = 0;
      for (int64_t i = 0; i < m; i++) {
        acc += (double)d2[i];
        if (acc >= u) {
          chosen = i;
          break;
        }
      }
    }
    float *cj = c + (int64_t)j * dim;
    memcpy(cj, x + pick[chosen] * dim, (size_t)dim * sizeof *c);
    for (int64_t i = 0; i < m; i++) {
      float d = sqdist(x + pick[i] * dim, cj, dim);
      if (d < d2[i])
        d2[i] = d;
    }
  }
  free(pick);
  free(d2);
}

int td_kmeans(const float *x, int64_t n, int dim, int k, int max_iter,
              uint64_t seed, float *centroids, int32_t *assign, td_err *err) {
  if (n <= 0 || dim <= 0 || k <= 0 || k > n)
    return td_err_set(err, TD_EARG, "k-means: need 0 < k <= n (k %d, n %lld)",
                      k, (long long)n);
  int32_t *as = assign ? assign : malloc((size_t)n * sizeof *as);
  int32_t *prev = malloc((size_t)n * sizeof *prev);
  float *dist = malloc((size_t)n * sizeof *dist);
  float *cnorm = malloc((size_t)k * sizeof *cnorm);
  double *sum = malloc((size_t)k * (size_t)dim * sizeof *sum);
  int64_t *cnt = malloc((size_t)k * sizeof *cnt);
  if (!as || !prev || !dist || !cnorm || !sum || !cnt) {
    if (!assign)
      free(as);
    free(prev);
    free(dist);
    free(cnorm);
    free(sum);
    free(cnt);
    return td_err_set(err, TD_ENOMEM, "k-means: out of memory");
  }
  td_rng rng;
  td_rng_seed(&rng, seed);
  seed_pp(x, n, dim, k, &rng, centroids);
  assign_ctx a = {x, centroids, cnorm, dim, k, as, dist};
  for (int it = 0; it < max_iter; it++) {
    memcpy(prev, as, (size_t)n * sizeof *as);
    assign_all(&a, n, cnorm);
    int64_t changed = 0;
    for (int64_t i = 0; i < n; i++)
      changed += it == 0 || prev[i] != as[i];
    if (it > 0 && changed * 1000 <= n)
      break; /* fewer than 0.1 % moved: converged for our purpose */
    memset(sum, 0, (size_t)k * (size_t)dim * sizeof *sum);
    memset(cnt, 0, (size_t)k * sizeof *cnt);
    for (int64_t i = 0; i < n; i++) {
      cnt[as[i]]++;
      for (int d = 0; d < dim; d++)
        sum[(int64_t)as[i] * dim + d] += (double)x[i * dim + d];
    }
    for (int j = 0; j < k; j++) {
      if (cnt[j] == 0) {
        /* An empty cluster takes the point worst served by its own. */
        int64_t far = 0;
        for (int64_t i = 1; i < n; i++)
          if (dist[i] > dist[far])
            far = i;
        memcpy(centroids + (int64_t)j * dim, x + far * dim,
               (size_t)dim * sizeof *centroids);
        dist[far] = 0;
        continue;
      }
      for (int d = 0; d < dim; d++)
        centroids[(int64_t)j * dim + d] =
            (float)(sum[(int64_t)j * dim + d] / (double)cnt[j]);
    }
  }
  assign_all(&a, n, cnorm);
  if (!assign)
    free(as);
  free(prev);
  free(dist);
  free(cnorm);
  free(sum);
  free(cnt);
  return TD_OK;
}
