/* Suggested labels for suspicious samples: where the model's averaged
 * prediction and the labels of the nearest training samples agree
 * (docs/suspects.md, "Suggested labels"). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/alloc.h"
#include "tardis/knn.h"
#include "tardis/suspects.h"

/* Adds each epoch's softmax of the n rows to p[n, c], then divides by the
 * epoch count. */
static int mean_softmax(const td_run *run, const int32_t *idx, int n, int c,
                        double *p, td_err *err) {
  /* the early window (as early_aum): before a wide network memorises */
  int ne = td_run_n_epochs(run), used = 0;
  ne = ne < 4 ? 1 : (ne + 3) / 4;
  for (int e = 0; e < ne; e++) {
    td_array z;
    int rc = td_run_load_f32(run, td_run_epoch_number(run, e), "train_logits",
                             &z, err);
    if (rc == TD_ENOENT)
      continue;
    if (rc)
      return rc;
    const float *zz = z.data;
    for (int j = 0; j < n; j++) {
      const float *zi = zz + (int64_t)idx[j] * c;
      double mx = (double)zi[0], s = 0;
      for (int k = 1; k < c; k++)
        mx = fmax(mx, (double)zi[k]);
      for (int k = 0; k < c; k++)
        s += exp((double)zi[k] - mx);
      for (int k = 0; k < c; k++)
        p[j * c + k] += exp((double)zi[k] - mx) / s;
    }
    td_array_close(&z);
    used++;
  }
  if (!used)
    return td_err_set(err, TD_ENOENT, "%s: no epoch has train_logits",
                      td_run_dir(run));
  for (int64_t i = 0; i < (int64_t)n * c; i++)
    p[i] /= used;
  return TD_OK;
}

/* Share of each class among the k nearest other training samples of each
 * row, in the last epoch's representation space, into q[n, c]. */
static int neighbour_shares(const td_run *run, const int32_t *idx, int n, int c,
                            int k, double *q, td_err *err) {
  const td_run_meta *m = td_run_get_meta(run);
  int ne = td_run_n_epochs(run);
  td_array r;
  int rc = td_run_load_f32(run, td_run_epoch_number(run, ne - 1), "train_repr",
                           &r, err);
  if (rc)
    return rc;
  int d = m->repr_dim;
  k = (int64_t)k + 1 > m->n_train ? (int)m->n_train - 1 : k;
  float *qx = td_malloc(sizeof *qx * (size_t)n * (size_t)d);
  if (!qx) {
    td_array_close(&r);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", td_run_dir(run));
  }
  const float *x = r.data;
  for (int j = 0; j < n; j++)
    memcpy(qx + (int64_t)j * d, x + (int64_t)idx[j] * d,
           sizeof *qx * (size_t)d);
  td_knn g;
  /* k + 1: the sample finds itself (distance 0) and is skipped */
  rc = td_knn_query_exact(x, m->n_train, qx, n, d, k + 1, &g, err);
  free(qx);
  td_array_close(&r);
  if (rc)
    return rc;
  const int32_t *lab = td_run_train_labels(run);
  for (int j = 0; j < n; j++) {
    int got = 0;
    for (int t = 0; t <= k && got < k; t++) {
      int32_t nb = g.idx[(int64_t)j * (k + 1) + t];
      if (nb == idx[j])
        continue;
      q[(int64_t)j * c + lab[nb]] += 1.0 / k;
      got++;
    }
  }
  td_knn_free(&g);
  return TD_OK;
}

static int argmax(const double *v, int c) {
  int b = 0;
  for (int k = 1; k < c; k++)
    if (v[k] > v[b])
      b = k;
  return b;
}

int td_sus_suggest(const td_run *run, const int32_t *idx, int n, int knn_k,
                   td_sus_suggestion *out, td_err *err) {
  const td_run_meta *m = td_run_get_meta(run);
  int c = m->n_classes;
  if (n <= 0)
    return TD_OK;
  if (m->n_train < 2 || td_run_n_epochs(run) == 0)
    return td_err_set(err, TD_ENOENT,
                      "%s: suggestions need recorded epochs and >= 2 samples",
                      td_run_dir(run));
  for (int j = 0; j < n; j++)
    if (idx[j] < 0 || idx[j] >= m->n_train)
      return td_err_set(err, TD_EARG, "%s: no training sample %d",
                        td_run_dir(run), idx[j]);
  double *p = td_calloc((size_t)n * (size_t)c * 2, sizeof *p);
  if (!p)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", td_run_dir(run));
  double *q = p + (int64_t)n * c;
  int rc = mean_softmax(run, idx, n, c, p, err);
  if (!rc)
    rc = neighbour_shares(run, idx, n, c, knn_k > 0 ? knn_k : 10, q, err);
  for (int j = 0; !rc && j < n; j++) {
    const double *pj = p + (int64_t)j * c, *qj = q + (int64_t)j * c;
    td_sus_suggestion *s = out + j;
    s->model_class = argmax(pj, c);
    s->model_prob = (float)pj[s->model_class];
    s->knn_class = argmax(qj, c);
    s->knn_share = (float)qj[s->knn_class];
    int best = 0;
    for (int k = 1; k < c; k++)
      best = pj[k] + qj[k] > pj[best] + qj[best] ? k : best;
    s->label = best;
    s->confidence = (float)(0.5 * (pj[best] + qj[best]));
  }
  free(p);
  return rc;
}
