/* Quality metrics against naive O(n²) references on small random data, and
 * on cases whose answer is known: isometric copies, random embeddings,
 * perfect reconstructions, constructed temporal correlations. */
#include "harness.h"
#include "tardis/array.h"
#include "tardis/metrics.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "tardis/territory.h"
#include "test_util.h"

/* Euclidean distance of two 2-D points, in double. */
static double dist2(const float *a, const float *b) {
  return hypot((double)a[0] - (double)b[0], (double)a[1] - (double)b[1]);
}

static float *randn(int64_t count, uint64_t seed) {
  td_rng r;
  td_rng_seed(&r, seed);
  float *v = malloc((size_t)count * sizeof *v);
  for (int64_t i = 0; i < count; i++)
    v[i] = td_rng_normal(&r);
  return v;
}

/* Naive kNN of query rows q[m, d] among reference rows x[n, d], in double,
 * ties by smaller index; self (same row index) skipped when `self`. */
static int32_t *naive_knn(const float *x, int64_t n, const float *q, int64_t m,
                          int d, int k, int self) {
  int32_t *idx = malloc((size_t)m * k * sizeof *idx);
  double *dist = malloc((size_t)n * sizeof *dist);
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int t = 0; t < d; t++) {
        double df = (double)q[i * d + t] - (double)x[j * d + t];
        s += df * df;
      }
      dist[j] = self && j == i ? HUGE_VAL : s;
    }
    for (int t = 0; t < k; t++) {
      int64_t best = -1;
      for (int64_t j = 0; j < n; j++)
        if (dist[j] < HUGE_VAL && (best < 0 || dist[j] < dist[best]))
          best = j;
      idx[i * k + t] = (int32_t)best;
      dist[best] = HUGE_VAL;
    }
  }
  free(dist);
  return idx;
}

static double naive_overlap(const int32_t *a, const int32_t *b, int64_t n,
                            int k) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    int hit = 0;
    for (int u = 0; u < k; u++)
      for (int v = 0; v < k; v++)
        hit += a[i * k + u] == b[i * k + v];
    s += (double)hit / k;
  }
  return s / (double)n;
}

/* The 2-D grid search against brute force, on layouts that stress it: an
 * integer lattice full of exact ties and duplicates, a tight cluster with
 * far outliers, and points on a line. */
static void test_knn_2d(void) {
  td_err err;
  int64_t n = 700;
  float *y = malloc((size_t)n * 2 * sizeof *y);
  td_rng r;
  td_rng_seed(&r, 21);
  for (int layout = 0; layout < 3; layout++) {
    for (int64_t i = 0; i < n; i++) {
      float a = td_rng_normal(&r), b = td_rng_normal(&r);
      if (layout == 0) {
        y[2 * i] = (float)td_rng_below(&r, 12);
        y[2 * i + 1] = (float)td_rng_below(&r, 12);
      } else if (layout == 1) {
        y[2 * i] = i % 100 == 0 ? 1000 * a : 0.01f * a;
        y[2 * i + 1] = i % 100 == 0 ? 1000 * b : 0.01f * b;
      } else {
        y[2 * i] = a;
        y[2 * i + 1] = 2 * a;
      }
    }
    int k = 9;
    td_knn g;
    CHECK_OK(td_knn_2d(y, n, k, &g, &err), &err);
    int32_t *want = naive_knn(y, n, y, n, 2, k, 1);
    for (int64_t i = 0; i < n; i++)
      for (int j = 0; j < k; j++) {
        int32_t a = g.idx[i * k + j], b = want[i * k + j];
        double da = dist2(y + 2 * a, y + 2 * i);
        double db = dist2(y + 2 * b, y + 2 * i);
        CHECK_NEAR(g.dist[i * k + j], db, 1e-5 * (1 + db));
        CHECK_NEAR(da, db, 1e-5 * (1 + db));
        if (layout == 0) /* exact ties: the smaller index first */
          CHECK_INT(a, ==, b);
      }
    /* queries, including points outside the reference's box */
    int64_t m = 150;
    float *q = malloc((size_t)m * 2 * sizeof *q);
    for (int64_t i = 0; i < 2 * m; i++)
      q[i] = 3 * td_rng_normal(&r);
    td_knn gq;
    CHECK_OK(td_knn_2d_query(y, n, q, m, k, &gq, &err), &err);
    int32_t *wq = naive_knn(y, n, q, m, 2, k, 0);
    for (int64_t i = 0; i < m * k; i++) {
      int64_t qi = i / k;
      int32_t a = gq.idx[i], b = wq[i];
      double da = dist2(y + 2 * a, q + 2 * qi);
      double db = dist2(y + 2 * b, q + 2 * qi);
      CHECK_NEAR(da, db, 1e-5 * (1 + db));
    }
    /* The general exact search agrees where it can: it orders exact ties
     * (layout 0) differently and loses precision in a tight cluster far
     * from the mean (layout 1), both noted to its owner. */
    td_knn ge;
    CHECK_OK(td_knn_exact(y, n, 2, k, &ge, &err), &err);
    if (layout == 2)
      CHECK_NEAR(td_metric_knn_overlap(&g, &ge, k), 1.0, 0);
    td_knn_free(&ge);
    td_knn_free(&gq);
    td_knn_free(&g);
    free(wq), free(q), free(want);
  }
  td_knn g;
  CHECK_INT(td_knn_2d(y, n, (int)n, &g, &err), ==, TD_EARG);
  y[5] = NAN;
  CHECK_INT(td_knn_2d(y, n, 3, &g, &err), ==, TD_EVALUE);
  free(y);
  /* a single distinct location: all ties */
  float same[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  CHECK_OK(td_knn_2d(same, 5, 4, &g, &err), &err);
  CHECK_INT(g.idx[0], ==, 1);
  CHECK_INT(g.idx[4 * 4 + 3], ==, 3);
  td_knn_free(&g);
}

static void test_nn_vs_naive(void) {
  td_err err;
  int64_t n = 300;
  int D = 6, k = 10;
  float *x = randn(n * D, 1), *noise = randn(n * 2, 2);
  float *y = malloc(n * 2 * sizeof *y);
  for (int64_t i = 0; i < n; i++)
    for (int t = 0; t < 2; t++)
      y[2 * i + t] = x[i * D + t] + 0.3f * noise[2 * i + t];
  double got;
  CHECK_OK(td_metric_nn_preservation(x, n, D, y, k, &got, &err), &err);
  int32_t *hi = naive_knn(x, n, x, n, D, k, 1);
  int32_t *lo = naive_knn(y, n, y, n, 2, k, 1);
  double want = naive_overlap(hi, lo, n, k);
  CHECK_NEAR(got, want, 1e-9);
  CHECK(got > 0.1 && got < 0.9);
  /* several k from one high-D graph agree with one-k calls */
  td_knn g;
  CHECK_OK(td_knn_exact(x, n, D, 20, &g, &err), &err);
  int ks[3] = {10, 15, 20};
  double multi[3];
  CHECK_OK(td_metric_nn_preservation_knn(&g, y, ks, 3, multi, &err), &err);
  CHECK_NEAR(multi[0], got, 1e-12);
  for (int i = 1; i < 3; i++) {
    double one;
    CHECK_OK(td_metric_nn_preservation(x, n, D, y, ks[i], &one, &err), &err);
    CHECK_NEAR(multi[i], one, 1e-12);
  }
  int bad = 21;
  CHECK_INT(td_metric_nn_preservation_knn(&g, y, &bad, 1, multi, &err), ==,
            TD_EARG);
  td_knn_free(&g);
  free(hi), free(lo), free(x), free(noise), free(y);
}

static void test_nn_known_values(void) {
  td_err err;
  int64_t n = 500;
  float *x = randn(n * 2, 3), *y = malloc(n * 2 * sizeof *y);
  /* a quarter turn and a scale by 2: exact in floating point */
  for (int64_t i = 0; i < n; i++) {
    y[2 * i] = -2 * x[2 * i + 1];
    y[2 * i + 1] = 2 * x[2 * i];
  }
  double v;
  CHECK_OK(td_metric_nn_preservation(x, n, 2, y, 15, &v, &err), &err);
  CHECK_NEAR(v, 1.0, 1e-12);
  /* unrelated embedding: chance level k / (n − 1) */
  float *hd = randn(n * 32, 4), *rnd = randn(n * 2, 5);
  CHECK_OK(td_metric_nn_preservation(hd, n, 32, rnd, 10, &v, &err), &err);
  CHECK(v < 3.0 * 10 / (n - 1));
  free(x), free(y), free(hd), free(rnd);
}

static void test_boundary_nn(void) {
  td_err err;
  int64_t nb = 120, nq = 200;
  int D = 5, k = 7;
  float *xb = randn(nb * D, 6), *yb = randn(nb * 2, 7);
  float *xq = randn(nq * D, 8), *yq = randn(nq * 2, 9);
  for (int64_t i = 0; i < nb; i++)
    yb[2 * i] += xb[i * D];
  for (int64_t i = 0; i < nq; i++)
    yq[2 * i] += xq[i * D];
  double self, cross, ref;
  CHECK_OK(td_metric_boundary_nn(xb, yb, nb, NULL, NULL, 0, D, k, &self, &err),
           &err);
  CHECK_OK(td_metric_nn_preservation(xb, nb, D, yb, k, &ref, &err), &err);
  CHECK_NEAR(self, ref, 0);
  CHECK_OK(td_metric_boundary_nn(xb, yb, nb, xq, yq, nq, D, k, &cross, &err),
           &err);
  int32_t *hi = naive_knn(xb, nb, xq, nq, D, k, 0);
  int32_t *lo = naive_knn(yb, nb, yq, nq, 2, k, 0);
  CHECK_NEAR(cross, naive_overlap(hi, lo, nq, k), 1e-9);
  free(hi), free(lo), free(xb), free(yb), free(xq), free(yq);
}

static void test_ppr(void) {
  td_err err;
  int D = 8, C = 4;
  int64_t n = 2500; /* several blocks */
  float *w = randn(C * D, 10), *b = randn(C, 11);
  td_head *h;
  CHECK_OK(td_t_make_head(td_t_tmpdir("metrics_ppr"), w, b, D, C, &h, &err),
           &err);
  float *x = randn(n * D, 12), *e = randn(n * D, 13);
  float *xr = malloc((size_t)n * D * sizeof *xr);
  double ppr, dc;
  CHECK_OK(td_metric_ppr(h, x, x, n, &ppr, &dc), NULL);
  CHECK_NEAR(ppr, 1.0, 0);
  CHECK_NEAR(dc, 0.0, 0);
  for (int64_t i = 0; i < n * D; i++)
    xr[i] = x[i] + 0.5f * e[i];
  int saved = td_threads();
  td_set_threads(1);
  double ppr1, dc1;
  CHECK_OK(td_metric_ppr(h, x, xr, n, &ppr1, &dc1), NULL);
  td_set_threads(3);
  CHECK_OK(td_metric_ppr(h, x, xr, n, &ppr, &dc), NULL);
  td_set_threads(saved);
  CHECK(ppr == ppr1 && dc == dc1);
  /* naive reference */
  float *za = malloc((size_t)n * C * sizeof *za);
  float *zb = malloc((size_t)n * C * sizeof *zb);
  td_head_forward(h, x, n, za);
  td_head_forward(h, xr, n, zb);
  double agree = 0, diff = 0;
  for (int64_t i = 0; i < n; i++) {
    int ca = 0, cb = 0;
    double sa = 0, sb = 0;
    for (int c = 0; c < C; c++) {
      if (za[i * C + c] > za[i * C + ca])
        ca = c;
      if (zb[i * C + c] > zb[i * C + cb])
        cb = c;
      sa += exp((double)za[i * C + c]);
      sb += exp((double)zb[i * C + c]);
    }
    agree += ca == cb;
    diff += fabs(exp((double)za[i * C + ca]) / sa -
                 exp((double)zb[i * C + ca]) / sb);
  }
  CHECK_NEAR(ppr, agree / (double)n, 1e-12);
  CHECK_NEAR(dc, diff / (double)n, 1e-9);
  CHECK(ppr > 0.5 && ppr < 1.0);
  CHECK_INT(td_metric_ppr(h, x, xr, 0, &ppr, &dc), ==, TD_EARG);
  free(za), free(zb), free(w), free(b), free(x), free(e), free(xr);
  td_head_free(h);
}

/* Builds T epochs of kNN lists for n samples, where sample i's list keeps
 * k − s[t][i] entries from epoch t−1 and replaces s[t][i] by unseen ones. */
static void evolve_lists(int32_t *idx, int64_t n, int k, const int *s,
                         int *counter, int64_t npts) {
  for (int64_t i = 0; i < n; i++)
    for (int j = k - s[i]; j < k; j++)
      idx[i * k + j] = (int32_t)((i * 37 + counter[i]++) % npts);
}

static void test_temporal_constructed(void) {
  td_err err;
  int64_t n = 40;
  int k = 4, T = 7;
  for (int sign = -1; sign <= 1; sign += 2) {
    td_temporal *tc;
    CHECK_OK(td_temporal_new(n, k, &tc, &err), &err);
    int32_t *idx = malloc((size_t)n * k * sizeof *idx);
    int *counter = calloc((size_t)n, sizeof *counter);
    int *s = malloc((size_t)n * sizeof *s);
    float *y = calloc((size_t)n * 2, sizeof *y);
    for (int64_t i = 0; i < n; i++)
      s[i] = k;
    evolve_lists(idx, n, k, s, counter, 1000);
    td_rng r;
    td_rng_seed(&r, 77);
    for (int t = 0; t < T; t++) {
      if (t > 0) {
        for (int64_t i = 0; i < n; i++) {
          s[i] = (int)td_rng_below(&r, (uint64_t)k + 1);
          double rr = (double)(k - s[i]) / k;
          /* movement grows as the overlap shrinks (sign −1) or with it */
          double mv = sign < 0 ? 1.0 - rr : rr;
          y[2 * i] += (float)(mv + 0.25);
        }
        evolve_lists(idx, n, k, s, counter, 1000);
      }
      td_knn g = {.n = n, .k = k, .idx = idx, .dist = NULL};
      CHECK_OK(td_temporal_add(tc, &g, y, &err), &err);
    }
    CHECK_INT(td_temporal_n_epochs(tc), ==, T);
    double mean, *per = malloc((size_t)n * sizeof *per);
    td_temporal_result(tc, &mean, per);
    int n_def = 0;
    for (int64_t i = 0; i < n; i++)
      if (per[i] != 0) {
        CHECK_NEAR(per[i], sign, 1e-9);
        n_def++;
      }
    CHECK(n_def > n / 2);
    CHECK_NEAR(mean, sign * (double)n_def / n, 1e-9);
    free(per), free(idx), free(counter), free(s), free(y);
    td_temporal_free(tc);
  }
}

/* Random lists and movements against a direct two-pass Pearson. */
static void test_temporal_vs_naive(void) {
  td_err err;
  int64_t n = 50;
  int k = 5, T = 6;
  td_temporal *tc;
  CHECK_OK(td_temporal_new(n, k, &tc, &err), &err);
  td_rng r;
  td_rng_seed(&r, 5);
  int32_t *idx = malloc((size_t)T * n * k * sizeof *idx);
  float *y = malloc((size_t)T * n * 2 * sizeof *y);
  for (int t = 0; t < T; t++) {
    for (int64_t i = 0; i < n; i++) {
      /* k distinct values from a small range, so lists overlap by chance */
      int32_t *row = idx + ((size_t)t * n + i) * k;
      for (int j = 0; j < k; j++) {
        int dup;
        do {
          row[j] = (int32_t)td_rng_below(&r, 9);
          dup = 0;
          for (int u = 0; u < j; u++)
            dup |= row[u] == row[j];
        } while (dup);
      }
      y[((size_t)t * n + i) * 2] = td_rng_normal(&r);
      y[((size_t)t * n + i) * 2 + 1] = td_rng_normal(&r);
    }
    td_knn g = {.n = n, .k = k, .idx = idx + (size_t)t * n * k};
    CHECK_OK(td_temporal_add(tc, &g, y + (size_t)t * n * 2, &err), &err);
  }
  double *per = malloc((size_t)n * sizeof *per), mean;
  td_temporal_result(tc, &mean, per);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    double rr[16], mm[16], mr = 0, mmv = 0;
    for (int t = 1; t < T; t++) {
      const int32_t *a = idx + ((size_t)(t - 1) * n + i) * k;
      const int32_t *b = idx + ((size_t)t * n + i) * k;
      int hit = 0;
      for (int u = 0; u < k; u++)
        for (int v = 0; v < k; v++)
          hit += a[u] == b[v];
      rr[t] = (double)hit / k;
      double dx = (double)y[((size_t)t * n + i) * 2] -
                  (double)y[((size_t)(t - 1) * n + i) * 2];
      double dy = (double)y[((size_t)t * n + i) * 2 + 1] -
                  (double)y[((size_t)(t - 1) * n + i) * 2 + 1];
      mm[t] = sqrt(dx * dx + dy * dy);
      mr += rr[t];
      mmv += mm[t];
    }
    mr /= T - 1;
    mmv /= T - 1;
    double sxy = 0, sxx = 0, syy = 0;
    for (int t = 1; t < T; t++) {
      sxy += (rr[t] - mr) * (mm[t] - mmv);
      sxx += (rr[t] - mr) * (rr[t] - mr);
      syy += (mm[t] - mmv) * (mm[t] - mmv);
    }
    double want = sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0;
    CHECK_NEAR(per[i], want, 1e-9);
    sum += want;
  }
  CHECK_NEAR(mean, sum / (double)n, 1e-9);
  /* wrong graph size */
  td_knn g = {.n = n + 1, .k = k, .idx = idx};
  CHECK_INT(td_temporal_add(tc, &g, y, &err), ==, TD_EARG);
  free(per), free(idx), free(y);
  td_temporal_free(tc);
}

static void test_temporal_too_few_epochs(void) {
  td_err err;
  td_temporal *tc;
  CHECK_OK(td_temporal_new(3, 1, &tc, &err), &err);
  int32_t idx[3] = {1, 2, 0}, idx2[3] = {2, 0, 1};
  float y[6] = {0, 0, 1, 1, 2, 2}, y2[6] = {1, 0, 1, 3, 2, 2};
  td_knn g = {.n = 3, .k = 1, .idx = idx}, g2 = {.n = 3, .k = 1, .idx = idx2};
  CHECK_OK(td_temporal_add(tc, &g, y, &err), &err);
  CHECK_OK(td_temporal_add(tc, &g2, y2, &err), &err);
  double mean = 1;
  td_temporal_result(tc, &mean, NULL);
  CHECK_NEAR(mean, 0, 0); /* one pair: no correlation defined */
  td_temporal_free(tc);
}

static void test_boundary_kept(void) {
  uint8_t cls[4] = {0, 1, 2, 3};
  float conf[4] = {0.05f, 0.5f, 0.9f, 0.1f};
  /* 2 × 2 over [0, 2]²: row 0 is the top (y in [1, 2]) */
  td_territory t = {
      .res = 2, .x0 = 0, .y0 = 0, .x1 = 2, .y1 = 2, .cls = cls, .conf = conf};
  float yb[12] = {0.5f, 1.5f,  /* top left: boundary */
                  1.5f, 1.5f,  /* top right: class */
                  0.5f, 0.5f,  /* bottom left: class */
                  1.5f, 0.5f,  /* bottom right: boundary */
                  2.0f, 0.0f,  /* on the far corner: bottom right */
                  -1.f, 0.5f}; /* outside */
  CHECK_NEAR(td_metric_boundary_kept(&t, yb, 6), 3.0 / 6, 1e-12);
  CHECK_NEAR(td_metric_boundary_kept(&t, yb, 0), 0, 0);
}

/* A 2-class identity head on x = (a, b): the class is the larger
 * coordinate, the logit gap tanh(|a - b| / 2). */
static void test_territory_fit(void) {
  td_err err;
  float w[4] = {1, 0, 0, 1}, b[2] = {0, 0};
  td_head *h;
  CHECK_OK(td_t_make_head(td_t_tmpdir("metrics_fit"), w, b, 2, 2, &h, &err),
           &err);
  uint8_t cls[4] = {0, 1, 0, 1};
  float conf[4] = {0.05f, 0.5f, 0.9f, 0.9f};
  td_territory t = {
      .res = 2, .x0 = 0, .y0 = 0, .x1 = 2, .y1 = 2, .cls = cls, .conf = conf};
  float x[8] = {3, 0,        /* class 0, sure */
                0, 0.1f,     /* class 1, unsure */
                3, 0,        /* class 0, sure */
                0, 3};       /* class 1, sure */
  float y[8] = {0.5f, 1.5f,  /* white cell of class 0 */
                1.5f, 1.5f,  /* class 1 */
                1.5f, 0.5f,  /* class 1: disagrees */
                -1.f, 0.5f}; /* outside */
  td_territory_fit f;
  CHECK_OK(td_metric_territory_fit(&t, h, x, y, 4, &f), NULL);
  CHECK_NEAR(f.on_boundary, 0.25, 1e-12);
  CHECK_NEAR(f.agree, 0.5, 1e-12);
  CHECK_NEAR(f.unsure, 0.25, 1e-12);
  CHECK_NEAR(f.unsure_area, 0.25, 1e-12);
  CHECK(td_territory_cell(&t, 2.0f, 0.0f) == 3);
  CHECK(td_territory_cell(&t, 2.5f, 0.0f) == -1);
  CHECK(td_metric_territory_fit(&t, h, x, y, 0, &f) == TD_EARG);
  td_head_free(h);
}

int main(void) {
  RUN(test_knn_2d);
  RUN(test_nn_vs_naive);
  RUN(test_nn_known_values);
  RUN(test_boundary_nn);
  RUN(test_ppr);
  RUN(test_temporal_constructed);
  RUN(test_temporal_vs_naive);
  RUN(test_temporal_too_few_epochs);
  RUN(test_boundary_kept);
  RUN(test_territory_fit);
  return td_t_finish();
}
