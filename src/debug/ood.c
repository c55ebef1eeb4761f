/* Out-of-distribution scores on recorded representations and logits
 * (docs/suspects.md, "Out-of-distribution"): k-th nearest training
 * representation, Mahalanobis with a shared covariance, energy and max
 * softmax, and the two figures they are judged by (AUROC, FPR at a
 * recall). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/alloc.h"
#include "tardis/knn.h"
#include "tardis/suspects.h"

static const char *const ood_names[TD_OOD_COUNT] = {"knn", "mahalanobis",
                                                    "energy", "msp"};

const char *td_ood_name(int m) {
  return m >= 0 && m < TD_OOD_COUNT ? ood_names[m] : "?";
}

int td_ood_parse(const char *s) {
  for (int m = 0; s && m < TD_OOD_COUNT; m++)
    if (!strcmp(s, ood_names[m]))
      return m;
  return -1;
}

void td_ood_close(td_ood_model *m) {
  if (!m)
    return;
  free(m->ref);
  free(m->mu);
  free(m->chol);
  free(m->wmu);
  memset(m, 0, sizeof *m);
}

/* Copies row x[d] into out[d] scaled to unit length (a zero row stays 0). */
static void unit_row(const float *x, int d, float *out) {
  double s = 0;
  for (int j = 0; j < d; j++)
    s += (double)x[j] * (double)x[j];
  float inv = s > 0 ? (float)(1 / sqrt(s)) : 0;
  for (int j = 0; j < d; j++)
    out[j] = x[j] * inv;
}

/* In-place lower Cholesky factor of the symmetric a[d, d] (upper part
 * zeroed). Returns 0, or −1 when a is not positive definite. */
static int cholesky(double *a, int d) {
  for (int j = 0; j < d; j++) {
    double s = a[j * d + j];
    for (int k = 0; k < j; k++)
      s -= a[j * d + k] * a[j * d + k];
    if (!(s > 0))
      return -1;
    double l = sqrt(s);
    a[j * d + j] = l;
    for (int i = j + 1; i < d; i++) {
      double t = a[i * d + j];
      for (int k = 0; k < j; k++)
        t -= a[i * d + k] * a[j * d + k];
      a[i * d + j] = t / l;
    }
    for (int i = 0; i < j; i++)
      a[i * d + j] = 0;
  }
  return 0;
}

/* y = L⁻¹ x by forward substitution (L lower, [d, d]). */
static void forward_solve(const double *l, int d, const double *x, double *y) {
  for (int i = 0; i < d; i++) {
    double s = x[i];
    for (int k = 0; k < i; k++)
      s -= l[i * d + k] * y[k];
    y[i] = s / l[i * d + i];
  }
}

/* Class means and the shared (pooled, biased) covariance of the used rows,
 * regularised so that it is always positive definite. */
static int fit_gaussian(const float *repr, const int32_t *labels,
                        const uint8_t *use, int64_t n, td_ood_model *m,
                        td_err *err) {
  int d = m->d, c = m->c;
  int64_t *cnt = td_calloc((size_t)c, sizeof *cnt);
  double *xc = td_malloc(sizeof *xc * (size_t)d);
  m->mu = td_calloc((size_t)c * (size_t)d, sizeof *m->mu);
  m->chol = td_calloc((size_t)d * (size_t)d, sizeof *m->chol);
  m->wmu = td_calloc((size_t)c * (size_t)d, sizeof *m->wmu);
  if (!cnt || !xc || !m->mu || !m->chol || !m->wmu) {
    free(cnt);
    free(xc);
    return td_err_set(err, TD_ENOMEM, "out-of-distribution fit: out of memory");
  }
  for (int64_t i = 0; i < n; i++) {
    if (use && !use[i])
      continue;
    cnt[labels[i]]++;
    for (int j = 0; j < d; j++)
      m->mu[(int64_t)labels[i] * d + j] += (double)repr[i * d + j];
  }
  int64_t tot = 0;
  for (int k = 0; k < c; k++) {
    tot += cnt[k];
    for (int j = 0; j < d; j++)
      m->mu[(int64_t)k * d + j] =
          cnt[k] ? m->mu[(int64_t)k * d + j] / (double)cnt[k] : (double)NAN;
  }
  double *s = m->chol; /* covariance first, factored in place below */
  for (int64_t i = 0; i < n; i++) {
    if (use && !use[i])
      continue;
    for (int j = 0; j < d; j++)
      xc[j] = (double)repr[i * d + j] - m->mu[(int64_t)labels[i] * d + j];
    for (int a = 0; a < d; a++)
      for (int b = 0; b <= a; b++)
        s[a * d + b] += xc[a] * xc[b];
  }
  double tr = 0;
  for (int a = 0; a < d; a++) {
    for (int b = 0; b <= a; b++)
      s[b * d + a] = s[a * d + b] /= (double)tot;
    tr += s[a * d + a];
  }
  /* A dead ReLU unit gives a zero row: the ridge keeps Σ invertible. */
  double ridge = tr > 0 ? 1e-6 * tr / d : 1e-12;
  for (int a = 0; a < d; a++)
    s[a * d + a] += ridge;
  free(cnt);
  if (cholesky(s, d)) {
    free(xc);
    return td_err_set(err, TD_EVALUE,
                      "out-of-distribution fit: the covariance of the "
                      "representations is not positive definite");
  }
  for (int k = 0; k < c; k++) {
    if (isnan(m->mu[(int64_t)k * d]))
      m->wmu[(int64_t)k * d] = (double)NAN;
    else
      forward_solve(s, d, m->mu + (int64_t)k * d, m->wmu + (int64_t)k * d);
  }
  free(xc);
  return TD_OK;
}

int td_ood_fit(const float *repr, const int32_t *labels, const uint8_t *use,
               int64_t n, int d, int c, int k, td_ood_model *out, td_err *err) {
  memset(out, 0, sizeof *out);
  int64_t nu = 0;
  for (int64_t i = 0; i < n; i++) {
    if (use && !use[i])
      continue;
    if (labels[i] < 0 || labels[i] >= c)
      return td_err_set(err, TD_EVALUE,
                        "out-of-distribution fit: label %d of sample %lld is "
                        "not in [0, %d)",
                        labels[i], (long long)i, c);
    nu++;
  }
  if (d < 1 || c < 1 || nu < 2 || k < 1 || k > nu || k > TD_KNN_MAX_K)
    return td_err_set(err, TD_EARG,
                      "out-of-distribution fit: needs >= 2 training rows and "
                      "1 <= k <= min(rows, %d) (rows %lld, k %d)",
                      TD_KNN_MAX_K, (long long)nu, k);
  out->d = d;
  out->c = c;
  out->k = k;
  out->n_ref = nu;
  out->ref = td_malloc(sizeof *out->ref * (size_t)nu * (size_t)d);
  if (!out->ref) {
    td_ood_close(out);
    return td_err_set(err, TD_ENOMEM, "out-of-distribution fit: out of memory");
  }
  for (int64_t i = 0, r = 0; i < n; i++)
    if (!use || use[i])
      unit_row(repr + i * d, d, out->ref + d * r++);
  int rc = fit_gaussian(repr, labels, use, n, out, err);
  if (rc)
    td_ood_close(out);
  return rc;
}

static int score_knn(const td_ood_model *mod, const float *repr, int64_t m,
                     float *score, td_err *err) {
  int d = mod->d;
  float *q = td_malloc(sizeof *q * (size_t)m * (size_t)d);
  if (!q)
    return td_err_set(err, TD_ENOMEM, "knn score: out of memory");
  for (int64_t i = 0; i < m; i++)
    unit_row(repr + i * d, d, q + i * d);
  td_knn g;
  int rc = td_knn_query_exact(mod->ref, mod->n_ref, q, m, d, mod->k, &g, err);
  free(q);
  if (rc)
    return rc;
  for (int64_t i = 0; i < m; i++)
    score[i] = g.dist[i * mod->k + mod->k - 1];
  td_knn_free(&g);
  return TD_OK;
}

static int score_mahalanobis(const td_ood_model *mod, const float *repr,
                             int64_t m, float *score, td_err *err) {
  int d = mod->d;
  double *x = td_malloc(sizeof *x * 2 * (size_t)d);
  if (!x)
    return td_err_set(err, TD_ENOMEM, "mahalanobis score: out of memory");
  double *w = x + d;
  for (int64_t i = 0; i < m; i++) {
    for (int j = 0; j < d; j++)
      x[j] = (double)repr[i * d + j];
    forward_solve(mod->chol, d, x, w);
    double best = DBL_MAX;
    for (int k = 0; k < mod->c; k++) {
      const double *mu = mod->wmu + (int64_t)k * d;
      if (isnan(mu[0]))
        continue;
      double s = 0;
      for (int j = 0; j < d; j++)
        s += (w[j] - mu[j]) * (w[j] - mu[j]);
      if (s < best)
        best = s;
    }
    score[i] = (float)best;
  }
  free(x);
  return TD_OK;
}

/* energy: −logsumexp(z); msp: 1 − max softmax. */
static void score_logits(int method, const float *logits, int c, int64_t m,
                         float *score) {
  for (int64_t i = 0; i < m; i++) {
    const float *z = logits + i * c;
    double mx = (double)z[0];
    for (int k = 1; k < c; k++)
      mx = (double)z[k] > mx ? (double)z[k] : mx;
    double s = 0;
    for (int k = 0; k < c; k++)
      s += exp((double)z[k] - mx);
    score[i] =
        method == TD_OOD_ENERGY ? (float)(-(mx + log(s))) : (float)(1 - 1 / s);
  }
}

int td_ood_score(const td_ood_model *mod, int method, const float *repr,
                 const float *logits, int64_t m, float *score, td_err *err) {
  if (method < 0 || method >= TD_OOD_COUNT)
    return td_err_set(err, TD_EARG, "no out-of-distribution method %d", method);
  int wants_repr = method == TD_OOD_KNN || method == TD_OOD_MAHALANOBIS;
  if (m <= 0)
    return TD_OK;
  if (wants_repr ? !repr : !logits)
    return td_err_set(err, TD_EARG, "%s score: no %s given",
                      td_ood_name(method),
                      wants_repr ? "representations" : "logits");
  if (method == TD_OOD_KNN)
    return score_knn(mod, repr, m, score, err);
  if (method == TD_OOD_MAHALANOBIS)
    return score_mahalanobis(mod, repr, m, score, err);
  score_logits(method, logits, mod->c, m, score);
  return TD_OK;
}

/* ---- evaluation --------------------------------------------------------- */

typedef struct scored {
  float v;
  int pos;
} scored;

static int cmp_scored(const void *a, const void *b) {
  float x = ((const scored *)a)->v, y = ((const scored *)b)->v;
  return (x > y) - (x < y);
}

/* Mann–Whitney: the share of (positive, negative) pairs ordered right,
 * ties half; sorted once, ties grouped. NAN when a side is empty. */
double td_auroc(const float *pos, int64_t np, const float *neg, int64_t nn) {
  if (np <= 0 || nn <= 0)
    return (double)NAN;
  int64_t n = np + nn;
  scored *s = malloc(sizeof *s * (size_t)n);
  if (!s)
    return (double)NAN;
  for (int64_t i = 0; i < np; i++)
    s[i] = (scored){pos[i], 1};
  for (int64_t i = 0; i < nn; i++)
    s[np + i] = (scored){neg[i], 0};
  qsort(s, (size_t)n, sizeof *s, cmp_scored);
  double wins = 0;
  int64_t neg_below = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i, p = 0, q = 0;
    while (j < n && s[j].v == s[i].v) {
      p += s[j].pos;
      q += !s[j].pos;
      j++;
    }
    wins += (double)p * ((double)neg_below + 0.5 * (double)q);
    neg_below += q;
    i = j;
  }
  free(s);
  return wins / ((double)np * (double)nn);
}

static int cmp_float_desc(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x < y) - (x > y);
}

double td_fpr_at_recall(const float *pos, int64_t np, const float *neg,
                        int64_t nn, double recall) {
  if (np <= 0 || nn <= 0)
    return (double)NAN;
  float *p = malloc(sizeof *p * (size_t)np);
  if (!p)
    return (double)NAN;
  memcpy(p, pos, sizeof *p * (size_t)np);
  qsort(p, (size_t)np, sizeof *p, cmp_float_desc);
  int64_t need = (int64_t)ceil(recall * (double)np - 1e-9);
  need = need < 1 ? 1 : need > np ? np : need;
  float t = p[need - 1];
  free(p);
  int64_t fp = 0;
  for (int64_t i = 0; i < nn; i++)
    fp += neg[i] >= t;
  return (double)fp / (double)nn;
}
