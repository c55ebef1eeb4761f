/* k nearest neighbours: exact search against a naive double-precision brute
 * force, argument checks, NN-descent recall and determinism. */
#include "harness.h"

#include <float.h>
#include <stdint.h>

#include "knn/knn_internal.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

static float *rand_gauss(int64_t n, int d, uint64_t seed) {
  float *x = malloc(sizeof *x * (size_t)n * (size_t)d);
  td_rng r;
  td_rng_seed(&r, seed);
  for (int64_t i = 0; i < n * d; i++)
    x[i] = td_rng_normal(&r);
  return x;
}

static float *rand_uniform(int64_t n, int d, uint64_t seed) {
  float *x = malloc(sizeof *x * (size_t)n * (size_t)d);
  td_rng r;
  td_rng_seed(&r, seed);
  for (int64_t i = 0; i < n * d; i++)
    x[i] = td_rng_uniform(&r);
  return x;
}

/* nc Gaussian clusters with an offset, so that norms are large next to
 * neighbour distances (the case the sgemm expansion gets wrong). */
static float *rand_clusters(int64_t n, int d, int nc, float spread,
                            float offset, uint64_t seed) {
  float *x = malloc(sizeof *x * (size_t)n * (size_t)d);
  float *cent = malloc(sizeof *cent * (size_t)nc * (size_t)d);
  td_rng r;
  td_rng_seed(&r, seed);
  for (int i = 0; i < nc * d; i++)
    cent[i] = offset + spread * td_rng_normal(&r);
  for (int64_t i = 0; i < n; i++) {
    int c = (int)td_rng_below(&r, (uint64_t)nc);
    for (int j = 0; j < d; j++)
      x[i * d + j] = cent[c * d + j] + td_rng_normal(&r);
  }
  free(cent);
  return x;
}

typedef struct {
  double d;
  int32_t i;
} dpair;

static int cmp_dpair(const void *a, const void *b) {
  const dpair *x = a, *y = b;
  if (x->d != y->d)
    return x->d < y->d ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

/* Sorted double-precision distances from q to every row of x (skipping
 * row `skip`, or none when skip < 0). */
static dpair *naive_row(const float *x, int64_t n, const float *q, int d,
                        int64_t skip) {
  dpair *p = malloc(sizeof *p * (size_t)n);
  int64_t m = 0;
  for (int64_t j = 0; j < n; j++) {
    if (j == skip)
      continue;
    double s = 0;
    for (int t = 0; t < d; t++) {
      double u = (double)q[t] - (double)x[j * d + t];
      s += u * u;
    }
    p[m].d = sqrt(s);
    p[m].i = (int32_t)j;
    m++;
  }
  qsort(p, (size_t)m, sizeof *p, cmp_dpair);
  return p;
}

/* Row i of g must hold the k nearest by the naive distances: distances
 * ascending and within tol of the naive ones; an index may differ from the
 * naive one only where distances tie within tol of the k-th. */
static int row_matches(const td_knn *g, int64_t i, const dpair *ref,
                       int64_t nref, double tol) {
  int k = g->k;
  const int32_t *idx = g->idx + i * k;
  const float *dist = g->dist + i * k;
  for (int t = 0; t < k; t++) {
    if (fabs((double)dist[t] - ref[t].d) > tol * (1.0 + ref[t].d)) {
      fprintf(stderr, "  row %lld slot %d: dist %.7g, naive %.7g\n",
              (long long)i, t, (double)dist[t], ref[t].d);
      return 0;
    }
    if (t > 0 && dist[t] < dist[t - 1])
      return 0;
    int found = 0;
    for (int u = 0; u < k; u++)
      found |= idx[u] == ref[t].i;
    double kth = ref[k - 1].d;
    int tied = k < nref && fabs(ref[k].d - kth) <= tol * (1.0 + kth) &&
               fabs(ref[t].d - kth) <= tol * (1.0 + kth);
    if (!found && !tied) {
      fprintf(stderr, "  row %lld: naive neighbour %d (%.7g) missing\n",
              (long long)i, ref[t].i, ref[t].d);
      return 0;
    }
  }
  for (int t = 0; t < k; t++)
    for (int u = t + 1; u < k; u++)
      if (idx[t] == idx[u])
        return 0;
  return 1;
}

static int exact_matches_naive(const float *x, int64_t n, int d, int k) {
  td_knn g;
  td_err err;
  if (td_knn_exact(x, n, d, k, &g, &err) != TD_OK) {
    fprintf(stderr, "  td_knn_exact: %s\n", err.msg);
    return 0;
  }
  int ok = g.n == n && g.k == k;
  for (int64_t i = 0; ok && i < n; i++) {
    TD_ASSERT(g.idx[i * k] != i);
    dpair *ref = naive_row(x, n, x + i * d, d, i);
    ok = row_matches(&g, i, ref, n - 1, 1e-4);
    free(ref);
  }
  td_knn_free(&g);
  return ok;
}

static void test_exact_vs_naive(void) {
  float *x = rand_gauss(700, 13, 1);
  CHECK(exact_matches_naive(x, 700, 13, 10));
  /* many small blocks: odd block count, byes, a ragged last block */
  td__knn_set_block(48);
  int ok = exact_matches_naive(x, 700, 13, 10);
  td__knn_set_block(0);
  free(x);
  CHECK(ok);
}

static void test_exact_offset_clusters(void) {
  /* norms ≈ 100× the neighbour distances: needs centring to stay exact */
  float *x = rand_clusters(1500, 32, 5, 3.0f, 200.0f, 2);
  int ok = exact_matches_naive(x, 1500, 32, 15);
  free(x);
  CHECK(ok);
}

static void test_exact_duplicates(void) {
  int64_t n = 600;
  int d = 7;
  float *x = rand_gauss(n, d, 3);
  /* groups of identical rows: 0..4 equal, 100..119 equal (more than k) */
  for (int i = 1; i < 5; i++)
    memcpy(x + i * d, x, sizeof *x * (size_t)d);
  for (int i = 101; i < 120; i++)
    memcpy(x + i * d, x + 100 * d, sizeof *x * (size_t)d);
  int ok = exact_matches_naive(x, n, d, 8);
  td_knn g;
  td_err err;
  if (ok && td_knn_exact(x, n, d, 8, &g, &err) == TD_OK) {
    /* row 0: its 4 copies at distance 0 first, in index order */
    for (int t = 0; t < 4; t++)
      ok &= g.idx[t] == t + 1 && g.dist[t] == 0.0f;
    /* row 100: 8 copies at 0, smallest indices first (tie → index) */
    for (int t = 0; t < 8; t++)
      ok &= g.idx[100 * 8 + t] == 101 + t && g.dist[100 * 8 + t] == 0.0f;
    td_knn_free(&g);
  }
  free(x);
  CHECK(ok);
}

static void test_exact_small_and_d1(void) {
  float *x = rand_gauss(300, 1, 4);
  CHECK(exact_matches_naive(x, 300, 1, 5));
  CHECK(exact_matches_naive(x, 300, 1, 299)); /* k = n - 1: everyone */
  CHECK(exact_matches_naive(x, 2, 1, 1));
  free(x);
}

static void test_errors(void) {
  float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  td_knn g;
  td_err err;
  CHECK_INT(td_knn_exact(x, 4, 3, 4, &g, &err), ==, TD_EARG); /* n < k+1 */
  CHECK(g.idx == NULL && g.dist == NULL && g.n == 0);
  CHECK_STR_CONTAINS(err.msg, "k = 4");
  CHECK_INT(td_knn_exact(x, 4, 3, 0, &g, &err), ==, TD_EARG);
  CHECK_INT(td_knn_exact(x, 4, 3, -1, &g, &err), ==, TD_EARG);
  CHECK_INT(td_knn_exact(x, 4, 0, 1, &g, &err), ==, TD_EARG);
  CHECK_INT(td_knn_exact(x, 1, 3, 1, &g, &err), ==, TD_EARG);
  CHECK_INT(td_knn_exact(NULL, 4, 3, 1, &g, &err), ==, TD_EARG);
  CHECK_INT(td_knn_nndescent(x, 4, 3, 4, NULL, &g, &err), ==, TD_EARG);
  CHECK_INT(td_knn_query_exact(x, 4, x, 1, 3, 5, &g, &err), ==, TD_EARG);
  CHECK_INT(td_knn_query_exact(x, 4, x, 0, 3, 1, &g, &err), ==, TD_EARG);
  float *big = rand_gauss(TD_KNN_MAX_K + 2, 1, 5);
  CHECK_INT(td_knn_exact(big, TD_KNN_MAX_K + 2, 1, TD_KNN_MAX_K + 1, &g, &err),
            ==, TD_EARG);
  free(big);
  td_nnd_params p;
  td_nnd_params_default(&p);
  p.sample_rate = 0;
  CHECK_INT(td_knn_nndescent(x, 4, 3, 1, &p, &g, &err), ==, TD_EARG);
  x[7] = NAN;
  CHECK_INT(td_knn_exact(x, 4, 3, 1, &g, &err), ==, TD_EVALUE);
  CHECK_INT(td_knn_nndescent(x, 4, 3, 1, NULL, &g, &err), ==, TD_EVALUE);
  x[7] = INFINITY;
  CHECK_INT(td_knn_query_exact(x, 4, x + 6, 1, 3, 1, &g, &err), ==, TD_EVALUE);
  td_knn_free(&g); /* safe on a zeroed graph */
  td_knn_free(NULL);
}

static void test_query_exact(void) {
  int64_t n = 900, m = 130;
  int d = 9, k = 12;
  float *x = rand_clusters(n, d, 4, 2.0f, 30.0f, 6);
  float *q = rand_clusters(m, d, 4, 2.0f, 30.0f, 7);
  memcpy(q, x + 17 * d, sizeof *q * (size_t)d); /* a query equal to row 17 */
  td_knn g;
  td_err err;
  td__knn_set_block(64);
  int rc = td_knn_query_exact(x, n, q, m, d, k, &g, &err);
  td__knn_set_block(0);
  CHECK_OK(rc, &err);
  int ok = g.n == m && g.k == k && g.idx[0] == 17 && g.dist[0] == 0.0f;
  for (int64_t i = 0; ok && i < m; i++) {
    dpair *ref = naive_row(x, n, q + i * d, d, -1);
    ok = row_matches(&g, i, ref, n, 1e-4);
    free(ref);
  }
  td_knn_free(&g);
  /* k = n: every reference row */
  if (ok && td_knn_query_exact(x, 20, q, 3, d, 20, &g, &err) == TD_OK) {
    for (int64_t i = 0; ok && i < 3; i++) {
      dpair *ref = naive_row(x, 20, q + i * d, d, -1);
      ok = row_matches(&g, i, ref, 20, 1e-4);
      free(ref);
    }
    td_knn_free(&g);
  }
  free(x);
  free(q);
  CHECK(ok);
}

static double nnd_recall(const float *x, int64_t n, int d, int k,
                         uint64_t seed) {
  td_knn a, e;
  td_err err;
  td_nnd_params p;
  td_nnd_params_default(&p);
  p.seed = seed;
  if (td_knn_exact(x, n, d, k, &e, &err) != TD_OK)
    return -1;
  if (td_knn_nndescent(x, n, d, k, &p, &a, &err) != TD_OK) {
    td_knn_free(&e);
    return -1;
  }
  double r = td_knn_recall(&a, &e);
  for (int64_t i = 0; i < n * k; i++)
    if (a.idx[i] < 0 || a.idx[i] >= n || a.idx[i] == i / k)
      r = -2;
  td_knn_free(&a);
  td_knn_free(&e);
  return r;
}

static void test_nnd_recall_clusters(void) {
  float *x = rand_clusters(5000, 32, 20, 2.0f, 0.0f, 8);
  double r = nnd_recall(x, 5000, 32, 15, 1);
  free(x);
  fprintf(stderr, "  recall (clusters 5000 x 32) = %.4f\n", r);
  CHECK(r >= 0.99);
}

static void test_nnd_recall_uniform(void) {
  float *x = rand_uniform(5000, 16, 9);
  double r = nnd_recall(x, 5000, 16, 15, 2);
  free(x);
  fprintf(stderr, "  recall (uniform 5000 x 16) = %.4f\n", r);
  CHECK(r >= 0.99);
}

static void test_nnd_small_and_duplicates(void) {
  /* k = n - 1 (everyone), and many identical rows (trees cannot split) */
  float *x = rand_gauss(40, 3, 10);
  CHECK(nnd_recall(x, 40, 3, 39, 1) == 1.0);
  for (int i = 1; i < 30; i++)
    memcpy(x + i * 3, x, sizeof *x * 3);
  double r = nnd_recall(x, 40, 3, 5, 1);
  free(x);
  CHECK(r >= 0.99);
}

static void test_nnd_random_start(void) {
  /* no trees: NN-descent from random neighbours still converges */
  float *x = rand_uniform(3000, 6, 14);
  td_knn a, e;
  td_err err;
  td_nnd_params p;
  td_nnd_params_default(&p);
  p.n_trees = 0;
  p.n_iters = 30;
  CHECK_OK(td_knn_exact(x, 3000, 6, 10, &e, &err), &err);
  CHECK_OK(td_knn_nndescent(x, 3000, 6, 10, &p, &a, &err), &err);
  double r = td_knn_recall(&a, &e);
  td_knn_free(&a);
  td_knn_free(&e);
  free(x);
  fprintf(stderr, "  recall (random start, uniform 3000 x 6) = %.4f\n", r);
  CHECK(r >= 0.98);
}

static int same_graph(const td_knn *a, const td_knn *b) {
  return a->n == b->n && a->k == b->k &&
         !memcmp(a->idx, b->idx, sizeof *a->idx * (size_t)(a->n * a->k)) &&
         !memcmp(a->dist, b->dist, sizeof *a->dist * (size_t)(a->n * a->k));
}

static void test_determinism(void) {
  int64_t n = 4000;
  int d = 24, k = 10;
  float *x = rand_clusters(n, d, 10, 2.0f, 0.0f, 11);
  td_nnd_params p;
  td_nnd_params_default(&p);
  p.seed = 77;
  td_knn a = {0}, b = {0}, c = {0}, e1 = {0}, e2 = {0};
  td_err err;
  int ok = td_knn_nndescent(x, n, d, k, &p, &a, &err) == TD_OK &&
           td_knn_nndescent(x, n, d, k, &p, &b, &err) == TD_OK &&
           td_knn_exact(x, n, d, k, &e1, &err) == TD_OK;
  int threads = td_threads();
  td_set_threads(1);
  ok = ok && td_knn_nndescent(x, n, d, k, &p, &c, &err) == TD_OK &&
       td_knn_exact(x, n, d, k, &e2, &err) == TD_OK;
  td_set_threads(3); /* more threads than cores: still the same */
  td_knn f = {0};
  ok = ok && td_knn_nndescent(x, n, d, k, &p, &f, &err) == TD_OK;
  td_set_threads(threads);
  int same = ok && same_graph(&a, &b) && same_graph(&a, &c) &&
             same_graph(&a, &f) && same_graph(&e1, &e2);
  /* another seed gives another (equally good) graph */
  td_knn g = {0};
  p.seed = 78;
  ok = ok && td_knn_nndescent(x, n, d, k, &p, &g, &err) == TD_OK;
  double rg = ok ? td_knn_recall(&g, &e1) : 0;
  td_knn_free(&a);
  td_knn_free(&b);
  td_knn_free(&c);
  td_knn_free(&f);
  td_knn_free(&g);
  td_knn_free(&e1);
  td_knn_free(&e2);
  free(x);
  CHECK(ok);
  CHECK(same);
  CHECK(rg >= 0.99);
}

static void test_auto(void) {
  td_knn a, e;
  td_err err;
  /* small: exact, identical to td_knn_exact */
  float *x = rand_gauss(1000, 8, 12);
  CHECK_OK(td_knn_auto(x, 1000, 8, 15, 1, &a, &err), &err);
  CHECK_OK(td_knn_exact(x, 1000, 8, 15, &e, &err), &err);
  int same = same_graph(&a, &e);
  td_knn_free(&a);
  td_knn_free(&e);
  free(x);
  CHECK(same);
  /* large: approximate, still with high recall */
  int64_t n = TD_KNN_AUTO_EXACT_MAX + 1000;
  x = rand_clusters(n, 12, 30, 3.0f, 0.0f, 13);
  CHECK_OK(td_knn_auto(x, n, 12, 15, 1, &a, &err), &err);
  CHECK_OK(td_knn_exact(x, n, 12, 15, &e, &err), &err);
  double r = td_knn_recall(&a, &e);
  td_knn_free(&a);
  td_knn_free(&e);
  free(x);
  fprintf(stderr, "  auto recall (%lld x 12) = %.4f\n", (long long)n, r);
  CHECK(r >= 0.99);
}

static void test_recall_fn(void) {
  int32_t ia[6] = {1, 2, 3, 0, 2, 3}, ib[6] = {3, 2, 1, 2, 3, 1};
  float dz[6] = {0};
  td_knn a = {.n = 2, .k = 3, .idx = ia, .dist = dz};
  td_knn b = {.n = 2, .k = 3, .idx = ib, .dist = dz};
  CHECK_NEAR(td_knn_recall(&a, &b), 5.0 / 6.0, 1e-12);
  CHECK_NEAR(td_knn_recall(&a, &a), 1.0, 1e-12);
}

int main(void) {
  RUN(test_exact_vs_naive);
  RUN(test_exact_offset_clusters);
  RUN(test_exact_duplicates);
  RUN(test_exact_small_and_d1);
  RUN(test_errors);
  RUN(test_query_exact);
  RUN(test_nnd_recall_clusters);
  RUN(test_nnd_recall_uniform);
  RUN(test_nnd_small_and_duplicates);
  RUN(test_nnd_random_start);
  RUN(test_determinism);
  RUN(test_auto);
  RUN(test_recall_fn);
  return td_t_finish();
}
