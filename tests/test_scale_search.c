/* The placement's graph search (src/proj/scale.c, docs/scale.md) against a
 * brute-force reference: it searches the sample's kNN graph on a one-byte
 * grid of the rows and ranks its final beam by exact distances, so the
 * sample points it finds must be the exact nearest ones for nearly every
 * point, the positions it gives must be those the exact nearest give, and
 * its output must be the same at 1 and 2 threads. */
#include "harness.h"
#include "proj/scale.h"
#include "tardis/alloc.h"
#include "tardis/knn.h"
#include "tardis/parallel.h"
#include "tardis/rng.h"

/* D is not a multiple of the grid's 16 lanes nor of its 64-wide blocks,
 * so the tails are exercised. */
enum { N = 6000, D = 72, S = 1500, CLUSTERS = 12, LAT = 6, K = 3 };

/* Anisotropic Gaussian clusters of intrinsic dimension LAT with a little
 * isotropic noise, and one coordinate of a much wider range than the
 * others (the grid's step is set by the widest). */
static void make_points(float *x) {
  static float basis[CLUSTERS][LAT][D], centre[CLUSTERS][D];
  td_rng r;
  td_rng_seed(&r, 21);
  for (int c = 0; c < CLUSTERS; c++)
    for (int t = 0; t < D; t++) {
      centre[c][t] = 2.0f * td_rng_normal(&r);
      for (int l = 0; l < LAT; l++)
        basis[c][l][t] = td_rng_normal(&r) / (float)(l + 1);
    }
  for (int i = 0; i < N; i++) {
    int c = (int)td_rng_below(&r, CLUSTERS);
    float z[LAT];
    for (int l = 0; l < LAT; l++)
      z[l] = td_rng_normal(&r);
    for (int t = 0; t < D; t++) {
      float v = centre[c][t] + 0.1f * td_rng_normal(&r);
      for (int l = 0; l < LAT; l++)
        v += z[l] * basis[c][l][t];
      x[(int64_t)i * D + t] = v;
    }
    x[(int64_t)i * D + 5] *= 4.0f;
  }
}

static int in_sample(const int64_t *rows, int64_t row) {
  int64_t lo = 0, hi = S;
  while (lo < hi) {
    int64_t mid = (lo + hi) / 2;
    if (rows[mid] < row)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < S && rows[lo] == row;
}

/* The K nearest sample points of row i by brute force (double sums). */
static void brute_nearest(const float *x, const int64_t *rows, int64_t i,
                          double dist[K], int32_t idx[K]) {
  for (int j = 0; j < K; j++)
    dist[j] = INFINITY, idx[j] = -1;
  for (int32_t v = 0; v < S; v++) {
    double s = 0;
    for (int t = 0; t < D; t++) {
      double df = (double)x[i * D + t] - (double)x[rows[v] * D + t];
      s += df * df;
    }
    s = sqrt(s);
    int at = K;
    while (at > 0 && dist[at - 1] > s)
      at--;
    for (int j = K - 1; j > at; j--)
      dist[j] = dist[j - 1], idx[j] = idx[j - 1];
    if (at < K)
      dist[at] = s, idx[at] = v;
  }
}

/* The position the placement gives from the K exact nearest: their
 * drawn positions weighted by exp(-(d - d1) / mean(d - d1)). */
static void expected_pos(const double dist[K], const int32_t idx[K],
                         const float *pos, double out[2]) {
  double spread = 0;
  for (int j = 1; j < K; j++)
    spread += dist[j] - dist[0];
  spread /= K - 1;
  double w[K], ws = 0;
  for (int j = 0; j < K; j++)
    ws += w[j] = spread > 0 ? exp(-(dist[j] - dist[0]) / spread) : 1.0;
  for (int a = 0; a < 2; a++) {
    out[a] = 0;
    for (int j = 0; j < K; j++)
      out[a] += w[j] * (double)pos[2 * idx[j] + a] / ws;
  }
}

/* The sample point whose drawn position alt [2] was put beside: alt is
 * pos of the nearest found + 0.05 (cos a, sin a), a from the row. */
static int32_t named_by_alt(const float *alt, int64_t row, const float *pos) {
  float a = (float)(row % 628) * 0.01f;
  double px = (double)(alt[0] - 0.05f * cosf(a));
  double py = (double)(alt[1] - 0.05f * sinf(a));
  int32_t best = -1;
  double bd = INFINITY;
  for (int32_t v = 0; v < S; v++) {
    double dx = (double)pos[2 * v] - px, dy = (double)pos[2 * v + 1] - py;
    if (dx * dx + dy * dy < bd)
      bd = dx * dx + dy * dy, best = v;
  }
  return best;
}

/* Places every point outside the sample at `threads` threads. The canvas
 * draws every point at its first two coordinates (an encoder that sees
 * 2 of the D, so the canvas candidates are near the point only roughly
 * and its neighbours have to be found through the graph). */
static void place(const float *x, const int64_t *rows, const td_knn *g,
                  const float *pos, int threads, float *y, float *alt) {
  static int32_t pred[N];
  for (int64_t i = 0; i < N; i++) {
    y[2 * i] = x[i * D];
    y[2 * i + 1] = x[i * D + 1];
  }
  memcpy(alt, y, sizeof(float) * 2 * N);
  td_err err;
  td_set_threads(threads);
  CHECK_OK(td__scale_refine(x, N, D, rows, S, pos, pred, 1, g, y, alt, &err),
           &err);
  td_set_threads(0);
}

static void test_search_finds_exact_neighbours(void) {
  static float x[(int64_t)N * D], xs[(int64_t)S * D], pos[2 * S];
  static float y1[2 * N], a1[2 * N], y2[2 * N], a2[2 * N];
  make_points(x);
  int64_t *rows = td__scale_sample_rows(N, S, 3);
  CHECK(rows != NULL);
  for (int64_t v = 0; v < S; v++) {
    memcpy(xs + v * D, x + rows[v] * D, sizeof(float) * D);
    pos[2 * v] = x[rows[v] * D];
    pos[2 * v + 1] = x[rows[v] * D + 1];
  }
  td_knn g;
  td_err err;
  CHECK_OK(td_knn_exact(xs, S, D, 15, &g, &err), &err);
  place(x, rows, &g, pos, 1, y1, a1);
  place(x, rows, &g, pos, 2, y2, a2);
  CHECK(!memcmp(y1, y2, sizeof y1) && !memcmp(a1, a2, sizeof a1));
  int64_t placed = 0, first = 0, same_place = 0;
  for (int64_t i = 0; i < N; i++) {
    if (in_sample(rows, i))
      continue;
    double bd[K], e[2];
    int32_t bi[K];
    brute_nearest(x, rows, i, bd, bi);
    expected_pos(bd, bi, pos, e);
    placed++;
    first += named_by_alt(a1 + 2 * i, i, pos) == bi[0];
    same_place += fabs((double)y1[2 * i] - e[0]) < 1e-3 &&
                  fabs((double)y1[2 * i + 1] - e[1]) < 1e-3;
  }
  td_knn_free(&g);
  td_free(rows);
  double r1 = (double)first / placed, rp = (double)same_place / placed;
  fprintf(stderr,
          "%lld points placed: the exact nearest found for %.4f, the "
          "position of the exact %d nearest for %.4f\n",
          (long long)placed, r1, K, rp);
  /* measured: 0.982 and 0.977 (16 canvas seeds); 0.996 and 0.992 with
   * 48 seeds, on the grid as on the float rows the search read before
   * (the grid loses nothing here; the misses are the graph's, points no
   * path from the seeds leads to) */
  CHECK(placed == N - S);
  CHECK(r1 >= 0.95);
  CHECK(rp >= 0.93);
}

int main(void) {
  RUN(test_search_finds_exact_neighbours);
  return td_t_finish();
}
