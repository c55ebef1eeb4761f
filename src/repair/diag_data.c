/* What a diagnosis reads of a run's epoch: labels, the model's predictions
 * (from the recorded logits), the trained-on samples, and either the
 * checkpoint with the inputs (tardis runs) or the representations and the
 * head (runs recorded from PyTorch). */
#include <stdlib.h>
#include <string.h>

#include "repair/repair_internal.h"
#include "tardis/fsutil.h"

void td__diag_data_free(td__diag_data *d) {
  free(d->y_test);
  free(d->pred_train);
  free(d->pred_test);
  free(d->trained);
  td_net_free(d->net);
  td_array_close(&d->x_train);
  td_array_close(&d->x_test);
  free(d->repr_train);
  free(d->repr_test);
  td_head_free(d->head);
  memset(d, 0, sizeof *d);
}

/* argmax of each row of an epoch's logits array into *pred. */
static int load_pred(const td_run *run, int epoch, const char *name, int64_t n,
                     int C, int32_t **pred, td_err *err) {
  td_array a;
  int rc = td_run_load_f32(run, epoch, name, &a, err);
  if (rc)
    return rc;
  *pred = malloc((size_t)(n > 0 ? n : 1) * sizeof **pred);
  if (!*pred) {
    td_array_close(&a);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", name);
  }
  const float *z = a.data;
  for (int64_t i = 0; i < n; i++) {
    const float *r = z + i * C;
    int best = 0;
    for (int c = 1; c < C; c++)
      if (r[c] > r[best])
        best = c;
    (*pred)[i] = best;
  }
  td_array_close(&a);
  return TD_OK;
}

static int copy_f32(const td_run *run, int epoch, const char *name, float **out,
                    td_err *err) {
  td_array a;
  int rc = td_run_load_f32(run, epoch, name, &a, err);
  if (rc)
    return rc;
  *out = malloc(a.nbytes ? a.nbytes : 1);
  if (*out)
    memcpy(*out, a.data, a.nbytes);
  td_array_close(&a);
  return *out ? TD_OK : td_err_set(err, TD_ENOMEM, "%s: out of memory", name);
}

/* The trained-on samples: the epoch's trained.npy, or every sample but
 * those of the run's pool (runs recorded from PyTorch write no
 * trained.npy). */
static int load_trained(const td_run *run, int epoch, td__diag_data *d,
                        td_err *err) {
  td_array a = {0};
  int rc = TD_OK, has = td_run_has(run, epoch, "trained");
  if (has || td_run_has(run, -1, "pool"))
    rc = td_run_load(run, has ? epoch : -1, has ? "trained" : "pool", &a, err);
  if (rc)
    return rc;
  if (a.data && (a.dtype != TD_I32 || a.ndim != 1)) {
    td_array_close(&a);
    return td_err_set(err, TD_EFORMAT, "%s: %s.npy should be int32 [K]",
                      td_run_dir(run), has ? "trained" : "pool");
  }
  char *out = calloc((size_t)(d->n_train ? d->n_train : 1), 1);
  d->trained = malloc((size_t)(d->n_train ? d->n_train : 1) * 4);
  if (!out || !d->trained) {
    free(out);
    td_array_close(&a);
    return td_err_set(err, TD_ENOMEM, "out of memory");
  }
  const int32_t *v = a.data;
  int64_t k = a.data ? a.shape[0] : 0;
  for (int64_t i = 0; i < k; i++)
    if (v[i] >= 0 && v[i] < d->n_train)
      out[v[i]] = 1;
  d->n_trained = 0;
  for (int64_t i = 0; i < d->n_train; i++)
    if (has ? out[i] : !out[i])
      d->trained[d->n_trained++] = (int32_t)i;
  free(out);
  td_array_close(&a);
  return TD_OK;
}

static int load_test_labels(const td_run *run, td__diag_data *d, td_err *err) {
  td_array a;
  int rc = td_run_load(run, -1, "test_labels", &a, err);
  if (rc)
    return rc;
  d->y_test = malloc((size_t)(d->n_test ? d->n_test : 1) * 4);
  if (d->y_test)
    memcpy(d->y_test, a.data, (size_t)d->n_test * 4);
  td_array_close(&a);
  return d->y_test ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
}

/* The checkpoint and inputs, or the representations and the head. */
static int load_features_source(const td_run *run, int epoch, td__diag_data *d,
                                td_err *err) {
  char path[TD_PATH_MAX], ep[TD_PATH_MAX];
  int rc;
  if (td_run_has(run, epoch, "model") && td_run_has(run, -1, "train_inputs") &&
      td_run_has(run, -1, "test_inputs")) {
    if (td_run_epoch_path(run, epoch, ep, sizeof ep))
      return td_err_set(err, TD_ERANGE, "%s: path too long", td_run_dir(run));
    if ((rc = td_pathf(path, sizeof path, err, "%s/model", ep)))
      return rc;
    if ((rc = td_net_load(path, &d->net, err)) ||
        (rc = td_run_load(run, -1, "train_inputs", &d->x_train, err)) ||
        (rc = td_run_load(run, -1, "test_inputs", &d->x_test, err)))
      return rc;
    if ((int64_t)td_net_in_dim(d->net) * d->n_train !=
            (int64_t)(d->x_train.nbytes / td_dtype_size(d->x_train.dtype)) ||
        td_net_out_dim(d->net) != d->C)
      return td_err_set(err, TD_ESHAPE,
                        "%s: the checkpoint takes %d inputs to %d classes, "
                        "which does not fit the run's inputs",
                        path, td_net_in_dim(d->net), td_net_out_dim(d->net));
    return TD_OK;
  }
  d->D = td_run_get_meta(run)->repr_dim;
  if ((rc = copy_f32(run, epoch, "train_repr", &d->repr_train, err)) ||
      (rc = copy_f32(run, epoch, "test_repr", &d->repr_test, err)))
    return rc;
  return td_run_load_head(run, epoch, &d->head, err);
}

int td__diag_data_load(const td_run *run, int epoch, td__diag_data *d,
                       td_err *err) {
  memset(d, 0, sizeof *d);
  const td_run_meta *m = td_run_get_meta(run);
  d->C = m->n_classes;
  d->n_train = m->n_train;
  d->n_test = m->n_test;
  d->y_train = td_run_train_labels(run);
  if (d->n_test == 0 || !td_run_has(run, epoch, "test_logits"))
    return td_err_set(err, TD_ENOENT,
                      "%s: epoch %d has no test logits: a diagnosis compares "
                      "training and test accuracy per label",
                      td_run_dir(run), epoch);
  int rc;
  if ((rc = load_test_labels(run, d, err)) ||
      (rc = load_pred(run, epoch, "train_logits", d->n_train, d->C,
                      &d->pred_train, err)) ||
      (rc = load_pred(run, epoch, "test_logits", d->n_test, d->C, &d->pred_test,
                      err)) ||
      (rc = load_trained(run, epoch, d, err)) ||
      (rc = load_features_source(run, epoch, d, err))) {
    td__diag_data_free(d);
    return rc;
  }
  return TD_OK;
}
