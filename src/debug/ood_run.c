/* The out-of-distribution detectors applied to one recorded epoch of a run:
 * fitted on its training representations, scored on its test split and
 * out-of-distribution set (docs/suspects.md, "Out-of-distribution"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "tardis/alloc.h"
#include "tardis/fsutil.h"
#include "tardis/suspects.h"

void td_ood_result_close(td_ood_result *r) {
  if (!r)
    return;
  for (int m = 0; m < TD_OOD_COUNT; m++) {
    free(r->test[m]);
    free(r->ood[m]);
  }
  free(r->left_out);
  memset(r, 0, sizeof *r);
}

/* Training rows of classes some task trains (all rows outside continual
 * runs), and the test rows of classes no task trains. */
static int class_masks(const td_run *run, uint8_t **use, td_ood_result *out,
                       td_err *err) {
  const td_run_meta *meta = td_run_get_meta(run);
  const int32_t *lab = td_run_train_labels(run);
  *use = td_malloc((size_t)meta->n_train);
  out->left_out = td_calloc((size_t)(out->m_test ? out->m_test : 1), 1);
  if (!*use || !out->left_out)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", td_run_dir(run));
  const int *task = meta->n_tasks > 0 ? meta->task_of_class : NULL;
  for (int64_t i = 0; i < meta->n_train; i++)
    (*use)[i] = !task || task[lab[i]] >= 0;
  if (!task || out->m_test == 0)
    return TD_OK;
  td_array tl;
  int rc = td_run_load(run, -1, "test_labels", &tl, err);
  if (rc == TD_ENOENT)
    return TD_OK; /* no labels: no left-out shift to measure */
  if (rc)
    return rc;
  const int32_t *y = tl.data;
  for (int64_t i = 0; i < out->m_test; i++)
    out->n_left_out += out->left_out[i] = task[y[i]] < 0;
  td_array_close(&tl);
  return TD_OK;
}

/* run.json's train.ood, the kind of out-of-distribution set the trainer
 * recorded; "inverted" (the only kind before "gaussian") when absent. */
static void ood_set_of(const td_run *run, char *out, size_t len) {
  char path[TD_PATH_MAX];
  snprintf(out, len, "inverted");
  if (td_pathf(path, sizeof path, NULL, "%s/run.json", td_run_dir(run)))
    return;
  json_t *j = td__json_load_file(path, 0, NULL);
  const char *k =
      json_string_value(json_object_get(json_object_get(j, "train"), "ood"));
  if (k && strlen(k) < len &&
      strspn(k, "abcdefghijklmnopqrstuvwxyz") == strlen(k))
    snprintf(out, len, "%s", k);
  json_decref(j);
}

/* Scores one split ("test" or "ood") with every method in mask. */
static int score_split(const td_run *run, int epoch, const td_ood_model *mod,
                       const char *split, unsigned mask, int64_t *m,
                       float **dst, td_err *err) {
  char rn[32], ln[32];
  snprintf(rn, sizeof rn, "%s_repr", split);
  snprintf(ln, sizeof ln, "%s_logits", split);
  td_array r, l;
  int rc = td_run_load_f32(run, epoch, rn, &r, err);
  if (rc)
    return rc;
  if ((rc = td_run_load_f32(run, epoch, ln, &l, err))) {
    td_array_close(&r);
    return rc;
  }
  *m = r.shape[0];
  for (int k = 0; k < TD_OOD_COUNT && !rc; k++) {
    if (!(mask & (1u << k)))
      continue;
    dst[k] = td_malloc(sizeof *dst[k] * (size_t)(*m ? *m : 1));
    rc = dst[k]
             ? td_ood_score(mod, k, r.data, l.data, *m, dst[k], err)
             : td_err_set(err, TD_ENOMEM, "%s: out of memory", td_run_dir(run));
  }
  td_array_close(&r);
  td_array_close(&l);
  return rc;
}

int td_ood_run(const td_run *run, int epoch, int k, unsigned mask,
               td_ood_result *out, td_err *err) {
  memset(out, 0, sizeof *out);
  const td_run_meta *meta = td_run_get_meta(run);
  int ne = td_run_n_epochs(run);
  if (ne == 0)
    return td_err_set(err, TD_ENOENT, "%s: no recorded epoch", td_run_dir(run));
  if (epoch < 0)
    epoch = td_run_epoch_number(run, ne - 1);
  mask = mask ? mask : (1u << TD_OOD_COUNT) - 1;
  out->epoch = epoch;
  out->m_test = meta->n_test;
  uint8_t *use = NULL;
  td_array tr = {0};
  td_ood_model mod = {0};
  int rc = class_masks(run, &use, out, err);
  if (!rc)
    rc = td_run_load_f32(run, epoch, "train_repr", &tr, err);
  int64_t nu = 0;
  for (int64_t i = 0; !rc && i < meta->n_train; i++)
    nu += use[i];
  out->k = k > 0 ? k : nu < 50 ? (int)nu : 50;
  if (!rc)
    rc = td_ood_fit(tr.data, td_run_train_labels(run), use, meta->n_train,
                    meta->repr_dim, meta->n_classes, out->k, &mod, err);
  td_array_close(&tr);
  free(use);
  int64_t m;
  if (!rc)
    rc = score_split(run, epoch, &mod, "test", mask, &m, out->test, err);
  if (!rc && td_run_has(run, epoch, "ood_repr"))
    rc = score_split(run, epoch, &mod, "ood", mask, &out->m_ood, out->ood, err);
  ood_set_of(run, out->ood_set, sizeof out->ood_set);
  td_ood_close(&mod);
  if (rc)
    td_ood_result_close(out);
  return rc;
}
