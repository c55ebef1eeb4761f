/* Geometry of the representations of one epoch: class centres, spread,
 * kNN label agreement and churn on a fixed subsample (docs/alerts.md).
 *
 * Cost at 60k × 128: two passes over the representations for the centres
 * and spreads (serial, in double, so the figures do not depend on the
 * thread count) and one exact kNN query of the subsample against all rows,
 * which dominates (m × n × d multiply-adds through sgemm). */
#include "live/geometry.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/alloc.h"
#include "tardis/knn.h"
#include "tardis/rng.h"

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

int td__geom_init(td__geom *g, int64_t n, int d, int C, int sample, int k,
                  uint64_t seed, td_err *err) {
  memset(g, 0, sizeof *g);
  if (n < 2 || d < 1 || C < 1 || sample < 2 || k < 1 || n > INT32_MAX)
    return td_err_set(err, TD_EARG,
                      "geometry: need at least 2 samples, a width, classes, "
                      "a subsample of 2 or more and k >= 1");
  g->n = n;
  g->d = d;
  g->C = C;
  g->m = sample < n ? sample : (int)n;
  g->k = k < n - 1 ? k : (int)(n - 1);
  if (g->k > TD_KNN_MAX_K - 1)
    g->k = TD_KNN_MAX_K - 1;
  int32_t *all = td_malloc((size_t)n * sizeof *all);
  g->sample = td_malloc((size_t)g->m * sizeof *g->sample);
  g->nn = td_malloc((size_t)g->m * g->k * sizeof *g->nn);
  g->pred = td_malloc((size_t)g->m * sizeof *g->pred);
  if (!all || !g->sample || !g->nn || !g->pred) {
    free(all);
    td__geom_close(g);
    return td_err_set(err, TD_ENOMEM, "geometry: out of memory");
  }
  /* A seeded partial shuffle picks the subsample; sorted, it reads the
   * representations in order. */
  for (int64_t i = 0; i < n; i++)
    all[i] = (int32_t)i;
  td_rng rng;
  td_rng_seed(&rng, seed);
  for (int i = 0; i < g->m; i++) {
    int64_t j = i + (int64_t)td_rng_below(&rng, (uint64_t)(n - i));
    int32_t t = all[i];
    all[i] = all[j];
    all[j] = t;
  }
  memcpy(g->sample, all, (size_t)g->m * sizeof *g->sample);
  free(all);
  qsort(g->sample, (size_t)g->m, sizeof *g->sample, cmp_i32);
  return TD_OK;
}

void td__geom_close(td__geom *g) {
  free(g->sample);
  free(g->nn);
  free(g->pred);
  memset(g, 0, sizeof *g);
}

/* Class centres [C, d], class sizes and the overall scale (root mean
 * squared distance to the overall mean, at least a tiny positive value). */
static double centres(const td__geom *g, const float *x, const int32_t *lab,
                      double *mu, int64_t *cnt) {
  const int d = g->d;
  double *all = mu + (size_t)g->C * d; /* scratch row after the centres */
  memset(mu, 0, (size_t)(g->C + 1) * d * sizeof *mu);
  memset(cnt, 0, (size_t)g->C * sizeof *cnt);
  for (int64_t i = 0; i < g->n; i++) {
    double *c = mu + (size_t)lab[i] * d;
    const float *xi = x + i * d;
    for (int j = 0; j < d; j++) {
      c[j] += (double)xi[j];
      all[j] += (double)xi[j];
    }
    cnt[lab[i]]++;
  }
  for (int c = 0; c < g->C; c++)
    for (int j = 0; j < d && cnt[c]; j++)
      mu[(size_t)c * d + j] /= (double)cnt[c];
  for (int j = 0; j < d; j++)
    all[j] /= (double)g->n;
  double ss = 0;
  for (int64_t i = 0; i < g->n; i++)
    for (int j = 0; j < d; j++) {
      double t = (double)x[i * d + j] - all[j];
      ss += t * t;
    }
  double scale = sqrt(ss / (double)g->n);
  return scale > 1e-30 ? scale : 1e-30;
}

static double dist(const double *a, const double *b, int d) {
  double s = 0;
  for (int j = 0; j < d; j++)
    s += (a[j] - b[j]) * (a[j] - b[j]);
  return sqrt(s);
}

/* Centre distances, spreads and their ratio, overall and per class. */
static void centre_metrics(const td__geom *g, const float *x,
                           const int32_t *lab, const double *mu,
                           const int64_t *cnt, double scale, double *vals,
                           double *pc, int pair[2]) {
  const int C = g->C, d = g->d;
  double *spread = pc + (size_t)TD_GEOM_SPREAD * C;
  double *cmean = pc + (size_t)TD_GEOM_CENTRE_MEAN * C;
  for (int c = 0; c < C; c++)
    spread[c] = 0;
  for (int64_t i = 0; i < g->n; i++) {
    const double *c = mu + (size_t)lab[i] * d;
    double s = 0;
    for (int j = 0; j < d; j++) {
      double t = (double)x[i * d + j] - c[j];
      s += t * t;
    }
    spread[lab[i]] += sqrt(s);
  }
  double sp = 0, cm = 0, cmin = (double)INFINITY;
  int used = 0, pairs = 0;
  pair[0] = pair[1] = -1;
  for (int a = 0; a < C; a++) {
    if (!cnt[a]) {
      spread[a] = cmean[a] = (double)NAN;
      continue;
    }
    spread[a] /= (double)cnt[a] * scale;
    sp += spread[a];
    used++;
    double sum = 0;
    int others = 0;
    for (int b = 0; b < C; b++) {
      if (b == a || !cnt[b])
        continue;
      double dab = dist(mu + (size_t)a * d, mu + (size_t)b * d, d) / scale;
      sum += dab;
      others++;
      if (b > a) {
        cm += dab;
        pairs++;
        if (dab < cmin) {
          cmin = dab;
          pair[0] = a;
          pair[1] = b;
        }
      }
    }
    cmean[a] = others ? sum / others : (double)NAN;
  }
  vals[TD_GEOM_SPREAD] = used ? sp / used : (double)NAN;
  vals[TD_GEOM_CENTRE_MEAN] = pairs ? cm / pairs : (double)NAN;
  vals[TD_GEOM_CENTRE_MIN] = pairs ? cmin : (double)NAN;
  vals[TD_GEOM_SEPARATION] = vals[TD_GEOM_CENTRE_MEAN] / vals[TD_GEOM_SPREAD];
  double *sep = pc + (size_t)TD_GEOM_SEPARATION * C;
  for (int c = 0; c < C; c++)
    sep[c] = cmean[c] / spread[c];
}

static int argmax(const float *v, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[b])
      b = i;
  return b;
}

/* Training accuracy from the logits, overall and per class. */
static void accuracy(const td__geom *g, const int32_t *lab, const float *logits,
                     const int64_t *cnt, double *vals, double *pc) {
  double *acc = pc + (size_t)TD_GEOM_TRAIN_ACC * g->C;
  int64_t right = 0;
  for (int c = 0; c < g->C; c++)
    acc[c] = 0;
  for (int64_t i = 0; i < g->n; i++)
    if (argmax(logits + i * g->C, g->C) == lab[i]) {
      right++;
      acc[lab[i]] += 1;
    }
  for (int c = 0; c < g->C; c++)
    acc[c] = cnt[c] ? acc[c] / (double)cnt[c] : (double)NAN;
  vals[TD_GEOM_TRAIN_ACC] = (double)right / (double)g->n;
}

/* Size of the intersection of two sorted lists of k. */
static int overlap(const int32_t *a, const int32_t *b, int k) {
  int i = 0, j = 0, o = 0;
  while (i < k && j < k) {
    if (a[i] == b[j]) {
      o++;
      i++;
      j++;
    } else if (a[i] < b[j]) {
      i++;
    } else {
      j++;
    }
  }
  return o;
}

/* Searches the subsample's neighbours (self removed) into nn [m, k],
 * each row sorted by index. */
static int subsample_knn(const td__geom *g, const float *x, int32_t *nn,
                         td_err *err) {
  const int m = g->m, k = g->k, d = g->d;
  float *q = td_malloc((size_t)m * d * sizeof *q);
  if (!q)
    return td_err_set(err, TD_ENOMEM, "geometry: out of memory");
  for (int i = 0; i < m; i++)
    memcpy(q + (size_t)i * d, x + (int64_t)g->sample[i] * d,
           (size_t)d * sizeof *q);
  td_knn r;
  int rc = td_knn_query_exact(x, g->n, q, m, d, k + 1, &r, err);
  free(q);
  if (rc)
    return rc;
  for (int i = 0; i < m; i++) {
    const int32_t *row = r.idx + (size_t)i * (k + 1);
    int32_t *out = nn + (size_t)i * k;
    int w = 0;
    /* Drop the sample itself; when a duplicate row hid it, the farthest. */
    for (int j = 0; j <= k && w < k; j++)
      if (row[j] != g->sample[i] || j == k)
        out[w++] = row[j];
    qsort(out, (size_t)k, sizeof *out, cmp_i32);
  }
  td_knn_free(&r);
  return TD_OK;
}

/* kNN label agreement, neighbourhood churn and prediction churn. */
static void knn_metrics(const td__geom *g, const int32_t *lab,
                        const int32_t *nn, const int32_t *pred,
                        int64_t *in_sample, double *vals, double *pc) {
  const int C = g->C, m = g->m, k = g->k;
  double *agree = pc + (size_t)TD_GEOM_KNN_AGREEMENT * C;
  double *churn = pc + (size_t)TD_GEOM_KNN_CHURN * C;
  double *pchurn = pc + (size_t)TD_GEOM_PRED_CHURN * C;
  for (int c = 0; c < C; c++) {
    agree[c] = churn[c] = pchurn[c] = 0;
    in_sample[c] = 0;
  }
  double a = 0, ch = 0, pch = 0;
  for (int i = 0; i < m; i++) {
    int c = lab[g->sample[i]], same = 0;
    for (int j = 0; j < k; j++)
      same += lab[nn[(size_t)i * k + j]] == c;
    a += (double)same / k;
    agree[c] += (double)same / k;
    if (g->have_prev) {
      double x =
          1.0 -
          (double)overlap(nn + (size_t)i * k, g->nn + (size_t)i * k, k) / k;
      ch += x;
      churn[c] += x;
      double p = pred[i] != g->pred[i];
      pch += p;
      pchurn[c] += p;
    }
    in_sample[c]++;
  }
  vals[TD_GEOM_KNN_AGREEMENT] = a / m;
  vals[TD_GEOM_KNN_CHURN] = g->have_prev ? ch / m : (double)NAN;
  vals[TD_GEOM_PRED_CHURN] = g->have_prev ? pch / m : (double)NAN;
  for (int c = 0; c < C; c++) {
    double s = (double)in_sample[c];
    agree[c] = s > 0 ? agree[c] / s : (double)NAN;
    churn[c] = s > 0 && g->have_prev ? churn[c] / s : (double)NAN;
    pchurn[c] = s > 0 && g->have_prev ? pchurn[c] / s : (double)NAN;
  }
}

int td__geom_epoch(td__geom *g, const float *x, const int32_t *labels,
                   const float *logits, double *vals, double *per_class,
                   int pair[2], td_err *err) {
  const int C = g->C;
  double *mu = td_malloc((size_t)(C + 1) * g->d * sizeof *mu);
  int64_t *cnt = td_malloc((size_t)2 * C * sizeof *cnt); /* + in sample */
  int32_t *nn = td_malloc((size_t)g->m * g->k * sizeof *nn);
  int32_t *pred = td_malloc((size_t)g->m * sizeof *pred);
  int rc = TD_OK;
  if (!mu || !cnt || !nn || !pred) {
    rc = td_err_set(err, TD_ENOMEM, "geometry: out of memory");
    goto done;
  }
  for (int i = 0; i < TD_GEOM_COUNT * C; i++)
    per_class[i] = (double)NAN;
  for (int i = 0; i < TD_GEOM_TEST_LOSS; i++)
    vals[i] = (double)NAN;
  double scale = centres(g, x, labels, mu, cnt);
  centre_metrics(g, x, labels, mu, cnt, scale, vals, per_class, pair);
  accuracy(g, labels, logits, cnt, vals, per_class);
  for (int i = 0; i < g->m; i++)
    pred[i] = argmax(logits + (int64_t)g->sample[i] * C, C);
  if ((rc = subsample_knn(g, x, nn, err)))
    goto done;
  knn_metrics(g, labels, nn, pred, cnt + C, vals, per_class);
  /* The new lists become the previous epoch's. */
  int32_t *t = g->nn;
  g->nn = nn;
  nn = t;
  t = g->pred;
  g->pred = pred;
  pred = t;
  g->have_prev = 1;
done:
  free(mu);
  free(cnt);
  free(nn);
  free(pred);
  return rc;
}
