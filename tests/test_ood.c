/* Out-of-distribution scores against naive computations (brute-force
 * neighbours, an explicitly inverted covariance, the softmax written out,
 * AUROC over all pairs), and the detectors on a small run with an
 * out-of-distribution set and a class left out of training. */
#include <math.h>

#include "harness.h"
#include "run/run_json.h"
#include "tardis/array.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "tardis/suspects.h"

#define N 240
#define D 5
#define C 3
#define M 40

static float gauss(td_rng *r) {
  double u = (td_rng_below(r, 1u << 30) + 0.5) / (double)(1u << 30),
         v = (td_rng_below(r, 1u << 30) + 0.5) / (double)(1u << 30);
  return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* Classes as correlated blobs around distinct centres. */
static void blobs(float *x, int32_t *y, int64_t n, uint64_t seed) {
  td_rng r;
  td_rng_seed(&r, seed);
  for (int64_t i = 0; i < n; i++) {
    y[i] = (int32_t)(i % C);
    float g = gauss(&r);
    for (int d = 0; d < D; d++)
      x[i * D + d] = 3.0f * (float)(d == y[i]) + gauss(&r) + 0.5f * g;
  }
}

/* Inverse of the symmetric a[D, D] by Gauss–Jordan (no pivoting needed:
 * positive definite). */
static void invert(double *a, double *inv) {
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++)
      inv[i * D + j] = i == j;
  for (int p = 0; p < D; p++) {
    double piv = a[p * D + p];
    for (int j = 0; j < D; j++) {
      a[p * D + j] /= piv;
      inv[p * D + j] /= piv;
    }
    for (int i = 0; i < D; i++) {
      if (i == p)
        continue;
      double f = a[i * D + p];
      for (int j = 0; j < D; j++) {
        a[i * D + j] -= f * a[p * D + j];
        inv[i * D + j] -= f * inv[p * D + j];
      }
    }
  }
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void test_scores_naive(void) {
  static float x[N * D], q[M * D], z[M * C];
  static int32_t y[N];
  static uint8_t use[N];
  blobs(x, y, N, 1);
  td_rng r;
  td_rng_seed(&r, 2);
  for (int i = 0; i < M * D; i++)
    q[i] = 2 * gauss(&r) + (i % 7 == 0 ? 4.0f : 0.0f);
  for (int i = 0; i < M * C; i++)
    z[i] = 3 * gauss(&r);
  for (int i = 0; i < N; i++)
    use[i] = i % 5 != 0; /* a fifth left out of the reference */
  const int k = 7;
  td_ood_model mod;
  td_err err;
  CHECK_OK(td_ood_fit(x, y, use, N, D, C, k, &mod, &err), &err);
  float s[TD_OOD_COUNT][M];
  for (int m = 0; m < TD_OOD_COUNT; m++)
    CHECK_OK(td_ood_score(&mod, m, q, z, M, s[m], &err), &err);

  /* naive: means, pooled covariance, its inverse */
  double mu[C][D] = {{0}}, cov[D * D] = {0}, inv[D * D];
  int cnt[C] = {0}, tot = 0;
  for (int i = 0; i < N; i++)
    if (use[i]) {
      cnt[y[i]]++;
      tot++;
      for (int d = 0; d < D; d++)
        mu[y[i]][d] += (double)x[i * D + d];
    }
  for (int c = 0; c < C; c++)
    for (int d = 0; d < D; d++)
      mu[c][d] /= cnt[c];
  for (int i = 0; i < N; i++)
    if (use[i])
      for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++)
          cov[a * D + b] += ((double)x[i * D + a] - mu[y[i]][a]) *
                            ((double)x[i * D + b] - mu[y[i]][b]) / tot;
  double tr = 0;
  for (int a = 0; a < D; a++)
    tr += cov[a * D + a];
  for (int a = 0; a < D; a++)
    cov[a * D + a] += 1e-6 * tr / D;
  invert(cov, inv);

  for (int j = 0; j < M; j++) {
    /* knn: k-th smallest distance between unit vectors */
    double qn = 0, dist[N];
    int nd = 0;
    for (int d = 0; d < D; d++)
      qn += (double)q[j * D + d] * (double)q[j * D + d];
    for (int i = 0; i < N; i++) {
      if (!use[i])
        continue;
      double xn = 0, s2 = 0;
      for (int d = 0; d < D; d++)
        xn += (double)x[i * D + d] * (double)x[i * D + d];
      for (int d = 0; d < D; d++) {
        double t =
            (double)q[j * D + d] / sqrt(qn) - (double)x[i * D + d] / sqrt(xn);
        s2 += t * t;
      }
      dist[nd++] = sqrt(s2);
    }
    qsort(dist, (size_t)nd, sizeof *dist, cmp_d);
    CHECK_NEAR((double)s[TD_OOD_KNN][j], dist[k - 1], 1e-4);
    /* mahalanobis: min over classes of the quadratic form */
    double best = 1e300;
    for (int c = 0; c < C; c++) {
      double v = 0;
      for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++)
          v += ((double)q[j * D + a] - mu[c][a]) * inv[a * D + b] *
               ((double)q[j * D + b] - mu[c][b]);
      best = v < best ? v : best;
    }
    CHECK_NEAR((double)s[TD_OOD_MAHALANOBIS][j], best, 1e-4 * (1 + best));
    /* energy and msp, the softmax written out */
    double se = 0, mx = 0;
    for (int c = 0; c < C; c++) {
      se += exp((double)z[j * C + c]);
      mx = fmax(mx, exp((double)z[j * C + c]));
    }
    CHECK_NEAR((double)s[TD_OOD_ENERGY][j], -log(se), 1e-4);
    CHECK_NEAR((double)s[TD_OOD_MSP][j], 1 - mx / se, 1e-5);
  }
  td_ood_close(&mod);
  CHECK_INT(td_ood_fit(x, y, use, N, D, C, N, &mod, &err), ==, TD_EARG);
  y[3] = C;
  CHECK_INT(td_ood_fit(x, y, NULL, N, D, C, 5, &mod, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "label 3 of sample 3");
}

static void test_auroc_naive(void) {
  td_rng r;
  td_rng_seed(&r, 3);
  float pos[57], neg[83];
  for (int i = 0; i < 57; i++)
    pos[i] = (float)td_rng_below(&r, 20) + 3; /* integers: many ties */
  for (int i = 0; i < 83; i++)
    neg[i] = (float)td_rng_below(&r, 20);
  double w = 0;
  for (int i = 0; i < 57; i++)
    for (int j = 0; j < 83; j++)
      w += pos[i] > neg[j] ? 1 : pos[i] == neg[j] ? 0.5 : 0;
  CHECK_NEAR(td_auroc(pos, 57, neg, 83), w / (57.0 * 83), 1e-12);
  /* FPR at 95 %: the highest threshold keeping >= 95 % of the positives */
  double best = 1;
  for (int t = -1; t < 30; t++) {
    int tp = 0, fp = 0;
    for (int i = 0; i < 57; i++)
      tp += pos[i] >= (float)t;
    for (int j = 0; j < 83; j++)
      fp += neg[j] >= (float)t;
    if (tp >= 0.95 * 57)
      best = fmin(best, fp / 83.0);
  }
  CHECK_NEAR(td_fpr_at_recall(pos, 57, neg, 83, 0.95), best, 1e-12);
  float a[] = {1, 2}, b[] = {3, 4};
  CHECK_NEAR(td_auroc(b, 2, a, 2), 1, 0);
  CHECK_NEAR(td_auroc(a, 2, b, 2), 0, 0);
  CHECK_NEAR(td_fpr_at_recall(b, 2, a, 2, 0.95), 0, 0);
  CHECK(isnan(td_auroc(a, 0, b, 2)));
}

/* A run whose last class is never trained (tasks [[0, 1]]), with an
 * out-of-distribution set far from every class: Mahalanobis and knn
 * separate it completely. */
static void test_run_shifts(void) {
  const char *dir = td_t_tmpdir("test_ood");
  static char c0[] = "a", c1[] = "b", c2[] = "c";
  char *classes[] = {c0, c1, c2};
  int task_of[] = {0, 0, -1};
  td_run_meta meta;
  memset(&meta, 0, sizeof meta);
  snprintf(meta.name, sizeof meta.name, "ood-fixture");
  meta.classes = classes;
  meta.n_classes = C;
  meta.n_train = N;
  meta.n_test = M;
  meta.repr_dim = D;
  meta.n_tasks = 1;
  meta.task_of_class = task_of;
  td_err err;
  CHECK_OK(td_run_create(dir, &meta, 1, &err), &err);
  static float x[N * D], tx[M * D], ox[M * D], zl[N * C], tz[M * C];
  static int32_t y[N], ty[M];
  blobs(x, y, N, 4);
  blobs(tx, ty, M, 5);
  for (int i = 0; i < M * D; i++)
    ox[i] = -tx[i] - 6.0f;
  for (int i = 0; i < N * C; i++)
    zl[i] = x[i / C * D + i % C];
  for (int i = 0; i < M * C; i++)
    tz[i] = tx[i / C * D + i % C];
  td_array a;
  int64_t sn[2] = {N, 0}, sm[2] = {M, 0};
  td_array_wrap(&a, TD_I32, 1, sn, y);
  CHECK_OK(td_run_write_array(dir, "train_labels", &a, &err), &err);
  td_array_wrap(&a, TD_I32, 1, sm, ty);
  CHECK_OK(td_run_write_array(dir, "test_labels", &a, &err), &err);
  td_epoch_writer *w;
  CHECK_OK(td_epoch_begin(dir, 1, &w, &err), &err);
  int64_t rs[2] = {N, D}, ls[2] = {N, C}, trs[2] = {M, D}, tls[2] = {M, C};
  struct {
    const char *name;
    int64_t *shape;
    float *v;
  } files[] = {{"train_repr", rs, x},  {"train_logits", ls, zl},
               {"test_repr", trs, tx}, {"test_logits", tls, tz},
               {"ood_repr", trs, ox},  {"ood_logits", tls, tz}};
  for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
    td_array_wrap(&a, TD_F32, 2, files[f].shape, files[f].v);
    CHECK_OK(td_epoch_add_array(w, files[f].name, &a, &err), &err);
  }
  json_t *ej = json_pack("{s:i}", "epoch", 1);
  CHECK_OK(td__epoch_add_json(w, "epoch.json", ej, &err), &err);
  json_decref(ej);
  float hw[C * D] = {0}, hb[C] = {0};
  const float *ws[] = {hw}, *bs[] = {hb};
  int dims[] = {D, C};
  CHECK_OK(td_head_write(w, 1, ws, bs, dims, NULL, &err), &err);
  CHECK_OK(td_epoch_commit(w, &err), &err);

  td_run *run;
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  td_ood_result r;
  CHECK_OK(td_ood_run(run, -1, 5, 0, &r, &err), &err);
  CHECK_INT(r.epoch, ==, 1);
  CHECK_INT(r.m_ood, ==, M);
  CHECK_INT(r.n_left_out, ==, M / C); /* every third test sample: class 2 */
  float in[M], pos[M];
  int64_t ni = 0;
  for (int i = 0; i < M; i++)
    if (!r.left_out[i])
      in[ni++] = r.test[TD_OOD_MAHALANOBIS][i];
  CHECK_NEAR(td_auroc(r.ood[TD_OOD_MAHALANOBIS], M, in, ni), 1, 0);
  ni = 0;
  for (int i = 0; i < M; i++)
    if (!r.left_out[i])
      in[ni++] = r.test[TD_OOD_KNN][i];
  for (int i = 0; i < M; i++)
    pos[i] = r.ood[TD_OOD_KNN][i];
  CHECK_NEAR(td_auroc(pos, M, in, ni), 1, 0);
  td_ood_result_close(&r);
  /* only the cheap detectors */
  CHECK_OK(td_ood_run(run, 1, 0, 1u << TD_OOD_ENERGY, &r, &err), &err);
  CHECK(r.test[TD_OOD_ENERGY] && !r.test[TD_OOD_KNN] && !r.ood[TD_OOD_MSP]);
  td_ood_result_close(&r);
  td_run_close(run);
}

int main(void) {
  RUN(test_scores_naive);
  RUN(test_auroc_naive);
  RUN(test_run_shifts);
  return td_t_finish();
}
