/* --labels and --exclude: training labels and samples read from files. */
#include "train/labels.h"

#include <stdlib.h>
#include <string.h>

#include "tardis/array.h"
#include "tardis/fsutil.h"

static int64_t label_at(const td_array *a, int64_t i) {
  switch (a->dtype) {
  case TD_I32:
    return ((const int32_t *)a->data)[i];
  case TD_I64:
    return ((const int64_t *)a->data)[i];
  default:
    return ((const uint8_t *)a->data)[i];
  }
}

int td__labels_load(const char *path, int64_t n, int C, int32_t *dst,
                    td_err *err) {
  td_array a;
  int rc = td_npy_load(path, &a, err);
  if (rc)
    return rc;
  if (a.dtype != TD_I32 && a.dtype != TD_I64 && a.dtype != TD_U8)
    rc = td_err_set(err, TD_EFORMAT,
                    "%s: labels are %s, expected integers (int32, int64 or "
                    "uint8): np.save(path, labels.astype(np.int32))",
                    path, td_dtype_name(a.dtype));
  else if (a.ndim != 1)
    rc = td_err_set(err, TD_ESHAPE,
                    "%s: expected a 1-D array of labels, got %d dimensions",
                    path, a.ndim);
  else if (a.shape[0] != n)
    rc = td_err_set(err, TD_ESHAPE,
                    "%s: %lld labels, but the run has %lld training samples",
                    path, (long long)a.shape[0], (long long)n);
  for (int64_t i = 0; !rc && i < n; i++) {
    int64_t v = label_at(&a, i);
    if (v < 0 || v >= C)
      rc = td_err_set(err, TD_ERANGE,
                      "%s: label %lld of sample %lld is out of range (%d "
                      "classes: 0 to %d)",
                      path, (long long)v, (long long)i, C, C - 1);
    else
      dst[i] = (int32_t)v;
  }
  td_array_close(&a);
  return rc;
}

/* dir/train_truth.npy into a new buffer, *t = NULL when there is none. */
static int truth_of(const char *dir, int64_t n, int C, int32_t **t,
                    td_err *err) {
  char path[TD_PATH_MAX];
  *t = NULL;
  int rc = td_pathf(path, sizeof path, err, "%s/train_truth.npy", dir);
  if (rc || !td_path_exists(path))
    return rc;
  if (!(*t = malloc((size_t)(n > 0 ? n : 1) * sizeof **t)))
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  if ((rc = td__labels_load(path, n, C, *t, err))) {
    free(*t);
    *t = NULL;
  }
  return rc;
}

int td__labels_setup(const td_train_opts *o, const td__cont *c,
                     const td_dataset *tr, int32_t *labels,
                     const int32_t **truth, int32_t **owned, int64_t *n_diff,
                     td_err *err) {
  char own[TD_PATH_MAX];
  const char *path = o->labels;
  int rc = TD_OK;
  *truth = NULL;
  *owned = NULL;
  *n_diff = 0;
  if (o->resume &&
      (rc = td_pathf(own, sizeof own, err, "%s/train_labels.npy", o->out)))
    return rc;
  if (o->resume)
    path = own;
  if ((rc = td__labels_load(path, tr->n, tr->n_classes, labels, err)))
    return rc;
  const char *from = o->resume ? o->out : c->run_dir[0] ? c->run_dir : NULL;
  if (from && (rc = truth_of(from, tr->n, tr->n_classes, owned, err)))
    return rc;
  *truth = *owned ? *owned : o->data ? NULL : tr->labels;
  for (int64_t i = 0; *truth && i < tr->n; i++)
    *n_diff += labels[i] != (*truth)[i];
  if (*n_diff == 0)
    *truth = NULL;
  return TD_OK;
}

int td__exclude_load(const char *path, int64_t n, int32_t **idx, int64_t *k,
                     td_err *err) {
  int32_t *ex = NULL;
  int64_t ne = 0;
  *idx = NULL;
  int rc = td__select_load(path, n, &ex, &ne, err);
  if (rc)
    return rc;
  if (ne >= n) {
    free(ex);
    return td_err_set(err, TD_EVALUE,
                      "%s: excludes all %lld training samples, none is left "
                      "to train on",
                      path, (long long)n);
  }
  int32_t *v = malloc((size_t)(n - ne) * sizeof *v);
  if (!v) {
    free(ex);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  }
  int64_t m = 0, j = 0;
  for (int64_t i = 0; i < n; i++) {
    if (j < ne && ex[j] == i)
      j++; /* ex is ascending and distinct */
    else
      v[m++] = (int32_t)i;
  }
  free(ex);
  *idx = v;
  *k = m;
  return TD_OK;
}
