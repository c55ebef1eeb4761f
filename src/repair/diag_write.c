/* A diagnosis on disk: RUN/diagnosis/epoch_NNNN/ with diagnosis.json (what
 * `tardis diagnose --json` prints), the heat maps as float32 [C, dim] .npy
 * and PNG. Written into a temporary directory and renamed into place. */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repair/repair_internal.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"

static json_t *num(double x) { return isnan(x) ? json_null() : json_real(x); }

static json_t *labels_json(const td_diagnosis *d, const char *const *names) {
  json_t *a = json_array();
  for (int l = 0; l < d->n_classes; l++) {
    const td_label_diag *L = &d->labels[l];
    json_t *o = json_pack(
        "{s:i, s:I, s:I, s:o, s:o, s:o, s:o, s:s, s:i}", "label", l, "n_train",
        (json_int_t)L->n_train, "n_test", (json_int_t)L->n_test, "train_acc",
        num(L->train_acc), "test_acc", num(L->test_acc), "precision",
        num(L->precision), "recall", num(L->recall), "verdict",
        td_verdict_name(L->verdict), "confused", L->confused);
    if (o && names)
      json_object_set_new(o, "name", json_string(names[l]));
    json_array_append_new(a, o);
  }
  return a;
}

static json_t *probes_json(const td_diagnosis *d) {
  json_t *a = json_array();
  for (int k = 0; k < d->n_probes; k++) {
    const td_probe_diag *p = &d->probes[k];
    json_array_append_new(
        a, json_pack("{s:i, s:i, s:b, s:o, s:o}", "layer", p->layer, "dim",
                     p->dim, "pooled", p->pooled, "train_acc",
                     num(p->train_acc), "test_acc", num(p->test_acc)));
  }
  return a;
}

char *td_diagnosis_json(const td_diagnosis *d, const char *const *names) {
  int C = d->n_classes;
  json_t *conf = json_array();
  for (int i = 0; i < C; i++) {
    json_t *row = json_array();
    for (int j = 0; j < C; j++)
      json_array_append_new(row,
                            json_integer(d->confusion[(int64_t)i * C + j]));
    json_array_append_new(conf, row);
  }
  int buggy = 0;
  for (int l = 0; l < C; l++)
    buggy += d->labels[l].verdict != TD_VERDICT_HEALTHY;
  json_t *root = json_pack(
      "{s:i, s:b, s:o, s:o, s:i, s:o, s:o, s:o, s:{s:i, s:i, s:b}}", "epoch",
      d->epoch, "has_model", d->has_model, "train_acc", num(d->train_acc),
      "test_acc", num(d->test_acc), "n_buggy", buggy, "labels",
      labels_json(d, names), "confusion", conf, "probes", probes_json(d),
      "heatmaps", "layer", d->layer, "dim", d->dim, "pooled", d->pooled);
  char *s = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
  json_decref(root);
  return s;
}

static const struct {
  const char *name;
  size_t off;
} maps[] = {
    {"probe_w", offsetof(td_diagnosis, probe_w)},
    {"hm_correct", offsetof(td_diagnosis, hm_correct)},
    {"hm_missed", offsetof(td_diagnosis, hm_missed)},
    {"hm_wrong", offsetof(td_diagnosis, hm_wrong)},
    {"hm_confused", offsetof(td_diagnosis, hm_confused)},
    {"dhm_under", offsetof(td_diagnosis, dhm_under)},
    {"dhm_over", offsetof(td_diagnosis, dhm_over)},
};

static int write_files(const char *tmp, const td_diagnosis *d,
                       const char *const *names, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/diagnosis.json", tmp);
  char *text = rc ? NULL : td_diagnosis_json(d, names);
  if (!rc && !text)
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  if (!rc) {
    size_t len = strlen(text);
    rc = td_write_file_atomic(path, text, len, err);
  }
  free(text);
  int64_t shape[2] = {d->n_classes, d->dim};
  for (size_t k = 0; !rc && k < sizeof maps / sizeof *maps; k++) {
    const float *m = *(float *const *)((const char *)d + maps[k].off);
    if (!(rc =
              td_pathf(path, sizeof path, err, "%s/%s.npy", tmp, maps[k].name)))
      rc = td_npy_save_raw(path, TD_F32, 2, shape, m, err);
    if (!rc && !(rc = td_pathf(path, sizeof path, err, "%s/%s.png", tmp,
                               maps[k].name)))
      rc = td__heatmap_png(m, d->n_classes, d->dim, path, err);
  }
  return rc;
}

int td_diagnosis_write(const char *dir, const td_diagnosis *d,
                       const char *const *names, char *out, size_t len,
                       td_err *err) {
  char final[TD_PATH_MAX], tmp[TD_PATH_MAX], old[TD_PATH_MAX];
  int rc = td_pathf(final, sizeof final, err, "%s/diagnosis/epoch_%04d", dir,
                    d->epoch);
  if (!rc)
    rc = td_pathf(tmp, sizeof tmp, err, "%s.tmp-%ld", final, (long)getpid());
  if (!rc)
    rc = td_pathf(old, sizeof old, err, "%s.old-%ld", final, (long)getpid());
  td_remove_tree_best_effort(tmp);
  if (!rc)
    rc = td_mkdirs(tmp, err);
  if (!rc)
    rc = write_files(tmp, d, names, err);
  if (!rc && td_path_exists(final) && rename(final, old) != 0)
    rc = td_err_set(err, TD_EIO, "%s: cannot move the old diagnosis aside",
                    final);
  if (!rc && rename(tmp, final) != 0) {
    rc = td_err_set(err, TD_EIO, "%s: cannot rename into place", final);
    if (td_path_exists(old))
      (void)!rename(old, final); /* the old diagnosis back in place */
  }
  if (rc)
    td_remove_tree_best_effort(tmp);
  td_remove_tree_best_effort(old);
  if (!rc && out)
    snprintf(out, len, "%s", final);
  return rc;
}
