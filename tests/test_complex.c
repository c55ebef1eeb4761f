/* Tests of the fuzzy simplicial complex, graph joins and the alias sampler
 * against naive dense references. */
#include "harness.h"

#include "tardis/complex.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

static float *random_points(int64_t n, int d, uint64_t seed) {
  td_rng r;
  td_rng_seed(&r, seed);
  float *x = malloc((size_t)(n * d) * sizeof(float));
  for (int64_t i = 0; i < n * d; i++)
    x[i] = td_rng_normal(&r);
  return x;
}

/* sigma solves sum_j exp(-max(0, d_ij - rho_i)/sigma_i) = log2 k, and rho is
 * the smallest non-zero distance (duplicates included on purpose). */
static void test_smooth_equation(void) {
  int64_t n = 80;
  int d = 4, k = 10;
  float *x = random_points(n, d, 3);
  memcpy(x + 5 * d, x + 4 * d, (size_t)d * sizeof(float)); /* a duplicate */
  td_knn knn;
  td_err err;
  CHECK_OK(td_knn_exact(x, n, d, k, &knn, &err), &err);
  float rho[80], sigma[80];
  td_complex_smooth(&knn, rho, sigma);
  CHECK(knn.dist[4 * k] == 0.0f);
  CHECK(rho[4] == knn.dist[4 * k + 1]);
  for (int64_t i = 0; i < n; i++) {
    double s = 0.0;
    for (int j = 0; j < k; j++) {
      double t = (double)knn.dist[i * k + j] - (double)rho[i];
      s += t > 0 ? exp(-t / (double)sigma[i]) : 1.0;
    }
    CHECK_NEAR(s, log2((double)k), 1e-4);
  }
  td_knn_free(&knn);
  free(x);
}

/* The graph equals A + A^T - A∘A^T computed densely. */
static void test_union_matches_dense(void) {
  int64_t n = 120;
  int d = 6, k = 8;
  float *x = random_points(n, d, 7);
  td_knn knn;
  td_err err;
  CHECK_OK(td_knn_exact(x, n, d, k, &knn, &err), &err);
  float rho[120], sigma[120];
  td_complex_smooth(&knn, rho, sigma);
  double *A = calloc((size_t)(n * n), sizeof(double));
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < k; j++) {
      double t = (double)knn.dist[i * k + j] - (double)rho[i];
      A[i * n + knn.idx[i * k + j]] = t > 0 ? exp(-t / (double)sigma[i]) : 1.0;
    }
  td_graph g;
  CHECK_OK(td_complex_build(&knn, &g, &err), &err);
  CHECK_INT(g.n_vertices, ==, n);
  int64_t expected = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i + 1; j < n; j++)
      if (A[i * n + j] + A[j * n + i] > 0)
        expected++;
  CHECK_INT(g.n_edges, ==, expected);
  char *seen = calloc((size_t)(n * n), 1);
  for (int64_t e = 0; e < g.n_edges; e++) {
    int32_t u = g.head[e], v = g.tail[e];
    CHECK(u < v);
    CHECK(!seen[u * n + v]);
    seen[u * n + v] = 1;
    double a = A[u * n + v], b = A[v * n + u];
    CHECK_NEAR(g.weight[e], a + b - a * b, 1e-5);
    CHECK(g.weight[e] > 0.0f && g.weight[e] <= 1.0f);
  }
  free(seen);
  free(A);
  td_graph_free(&g);
  td_knn_free(&knn);
  free(x);
}

static void test_alias_frequencies(void) {
  float w[7] = {1, 2, 0, 3, 4, 10, 0.5f};
  double sum = 20.5;
  td_alias a;
  CHECK_INT(td_alias_build(w, 7, &a), ==, TD_OK);
  td_rng r;
  td_rng_seed(&r, 11);
  int64_t cnt[7] = {0};
  int64_t draws = 2000000;
  for (int64_t i = 0; i < draws; i++)
    cnt[td_alias_draw(&a, &r)]++;
  for (int i = 0; i < 7; i++) {
    double f = (double)cnt[i] / (double)draws, p = (double)w[i] / sum;
    /* 5 standard deviations of a binomial frequency */
    CHECK_NEAR(f, p, 5.0 * sqrt(p * (1 - p) / (double)draws) + 1e-9);
  }
  td_alias_free(&a);
  float zero[3] = {0, 0, 0};
  CHECK_INT(td_alias_build(zero, 3, &a), ==, TD_EVALUE);
}

static void test_join_and_prune(void) {
  int32_t h1[2] = {0, 1}, t1[2] = {1, 2}, h2[1] = {0}, t2[1] = {3};
  float w1[2] = {0.5f, 0.05f}, w2[1] = {0.9f};
  td_graph a = {3, 2, h1, t1, w1}, b = {4, 1, h2, t2, w2};
  const td_graph *parts[2] = {&a, &b};
  int64_t off[2] = {0, 3};
  td_graph j;
  td_err err;
  CHECK_OK(td_graph_join(parts, off, 2, 7, &j, &err), &err);
  CHECK_INT(j.n_vertices, ==, 7);
  CHECK_INT(j.n_edges, ==, 3);
  CHECK_INT(j.head[2], ==, 3);
  CHECK_INT(j.tail[2], ==, 6);
  CHECK(j.weight[2] == 0.9f);
  td_graph_prune(&j, 0.1f);
  CHECK_INT(j.n_edges, ==, 2);
  CHECK_INT(j.tail[1], ==, 6);
  td_graph_free(&j);
  CHECK_INT(td_graph_join(parts, off, 2, 6, &j, &err), ==, TD_EARG);
}

/* Training points link only to boundary samples, each to k of them. */
static void test_boundary_complex(void) {
  int64_t n = 50, nb = 30;
  int d = 5, k = 6;
  float *x = random_points(n, d, 21), *b = random_points(nb, d, 22);
  td_graph g;
  td_err err;
  CHECK_OK(td_complex_boundary(x, n, b, nb, d, k, &g, &err), &err);
  CHECK_INT(g.n_vertices, ==, n + nb);
  int64_t *deg = calloc((size_t)n, sizeof(int64_t));
  for (int64_t e = 0; e < g.n_edges; e++) {
    CHECK(g.tail[e] >= n); /* head < tail, and every edge touches b */
    if (g.head[e] < n)
      deg[g.head[e]]++;
  }
  for (int64_t i = 0; i < n; i++)
    CHECK_INT(deg[i], ==, k);
  free(deg);
  td_graph_free(&g);

  td_knn knn;
  CHECK_OK(td_complex_dvi_ex(x, n, b, nb, d, k, 1.0f, 1, &g, &knn, &err), &err);
  CHECK_INT(g.n_vertices, ==, n + nb);
  CHECK_INT(knn.n, ==, n + nb);
  for (int64_t e = 0; e < g.n_edges; e++)
    CHECK(g.head[e] >= 0 && g.tail[e] < n + nb && g.head[e] != g.tail[e]);
  td_knn_free(&knn);
  td_graph_free(&g);
  free(x);
  free(b);
}

/* Cross-label edges are scaled, others (and edges touching unlabelled
 * vertices) kept. */
static void test_scale_mixed(void) {
  int32_t h[4] = {0, 0, 1, 2}, t[4] = {1, 2, 3, 4};
  float w[4] = {1.0f, 0.5f, 0.8f, 0.6f};
  td_graph g = {5, 4, h, t, w};
  int32_t lab[4] = {0, 0, 1, 1}; /* vertex 4 unlabelled */
  CHECK_INT(td_graph_scale_mixed(&g, lab, 4, 0.1f), ==, 2);
  CHECK(w[0] == 1.0f);
  CHECK_NEAR(w[1], 0.05, 1e-7);
  CHECK_NEAR(w[2], 0.08, 1e-7);
  CHECK(w[3] == 0.6f);
}

/* Every vertex gets `links` same-label partners: its own same-label
 * neighbours first; an island (all neighbours of another label) finds the
 * nearest same-label vertices two hops away. Thread count does not matter. */
static void test_class_links(void) {
  int64_t n = 300;
  int d = 4, k = 8, L = 3;
  float *x = random_points(n, d, 31);
  int32_t *lab = malloc((size_t)n * sizeof(int32_t));
  for (int64_t i = 0; i < n; i++)
    lab[i] = x[i * d] > 0.0f; /* two half-spaces */
  lab[0] = 2;                 /* a label of its own... */
  lab[n - 1] = 2;             /* ...shared with one far-away vertex */
  lab[5] = 1 - lab[5];        /* an island inside the other half */
  td_knn knn;
  td_err err;
  CHECK_OK(td_knn_exact(x, n, d, k, &knn, &err), &err);
  td_graph g1, g2;
  int64_t hop1 = 0, hop2 = 0;
  td_set_threads(1);
  CHECK_OK(
      td_complex_class_links(x, n, d, &knn, lab, L, 0.7f, 5, &g1, &hop1, &err),
      &err);
  td_set_threads(2);
  CHECK_OK(
      td_complex_class_links(x, n, d, &knn, lab, L, 0.7f, 5, &g2, &hop2, &err),
      &err);
  CHECK_INT(g1.n_edges, ==, g2.n_edges);
  CHECK_INT(hop1, ==, hop2);
  CHECK(hop1 >= 2);
  int64_t *deg = calloc((size_t)n, sizeof(int64_t));
  for (int64_t e = 0; e < g1.n_edges; e++) {
    CHECK(g1.head[e] == g2.head[e] && g1.tail[e] == g2.tail[e]);
    CHECK(g1.head[e] < g1.tail[e]);
    CHECK_INT(lab[g1.head[e]], ==, lab[g1.tail[e]]);
    CHECK(g1.weight[e] == 0.7f);
    deg[g1.head[e]]++;
    deg[g1.tail[e]]++;
  }
  for (int64_t i = 1; i < n - 1; i++)
    CHECK(deg[i] >= L);
  /* label 2 has two vertices: each links only to the other */
  CHECK(deg[0] >= 1 && deg[n - 1] >= 1);
  /* the island's partners are its nearest same-label 2-hop vertices */
  int first = 1;
  for (int64_t e = 0; e < g1.n_edges; e++)
    if (g1.head[e] == 5 || g1.tail[e] == 5)
      first = first && lab[g1.head[e] == 5 ? g1.tail[e] : g1.head[e]] == lab[5];
  CHECK(first);
  free(deg);
  td_graph_free(&g1);
  td_graph_free(&g2);
  td_knn_free(&knn);
  CHECK_INT(
      td_complex_class_links(x, n, d, &knn, lab, 0, 1.0f, 5, &g1, NULL, &err),
      ==, TD_EARG);
  free(lab);
  free(x);
}

int main(void) {
  RUN(test_scale_mixed);
  RUN(test_class_links);
  RUN(test_smooth_equation);
  RUN(test_union_matches_dense);
  RUN(test_alias_frequencies);
  RUN(test_join_and_prune);
  RUN(test_boundary_complex);
  return td_t_finish();
}
