/* --labels and --exclude: training labels and samples read from files. */
#include "train/labels.h"

#include <stdlib.h>
#include <string.h>

#include "data/label_file.h"
#include "tardis/fsutil.h"

static const td__label_names run_names = {"the run", "training samples", NULL};

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
  if ((rc = td__label_file_read(path, n, C, &run_names, *t, err))) {
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
  if ((rc = td__label_file_read(path, tr->n, tr->n_classes, &run_names, labels,
                                err)))
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
