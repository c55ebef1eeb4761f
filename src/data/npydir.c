/* A dataset directory of .npy arrays (`tardis train --data DIR`, described in
 * docs/engine.md): <split>_inputs.npy, <split>_labels.npy and classes.json.
 * Every check names the file it refuses, so a user can fix their export. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "data/label_file.h"
#include "tardis/dataset.h"
#include "tardis/fsutil.h"

/* classes.json: an array of 2..TD_DATASET_MAX_CLASSES non-empty strings,
 * copied into one owned buffer that class_names point into. */
static int load_classes(const char *dir, td_dataset *ds, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/classes.json", dir);
  if (rc)
    return rc;
  if (!td_path_exists(path))
    return td_err_set(err, TD_ENOENT,
                      "%s: not found (a dataset directory needs the class "
                      "names: a JSON array of strings)",
                      path);
  json_error_t je;
  json_t *root = td__json_load_file(path, 0, &je);
  if (!root)
    return td_err_set(err, TD_EFORMAT, "%s: invalid JSON at line %d: %s", path,
                      je.line, je.text);
  size_t n = json_is_array(root) ? json_array_size(root) : 0, bytes = 0;
  if (n < 2 || n > TD_DATASET_MAX_CLASSES) {
    int is_array = json_is_array(root);
    json_decref(root);
    return td_err_set(err, TD_EFORMAT,
                      "%s: expected an array of 2 to %d class names, found %s",
                      path, TD_DATASET_MAX_CLASSES,
                      is_array ? "another count" : "no array");
  }
  for (size_t i = 0; i < n; i++) {
    json_t *c = json_array_get(root, i);
    if (!json_is_string(c) || json_string_length(c) == 0) {
      json_decref(root);
      return td_err_set(err, TD_EFORMAT,
                        "%s: class %zu should be a non-empty string", path, i);
    }
    bytes += json_string_length(c) + 1;
  }
  ds->names_ = malloc(bytes);
  if (!ds->names_) {
    json_decref(root);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  }
  char *p = ds->names_;
  for (size_t i = 0; i < n; i++) {
    json_t *c = json_array_get(root, i);
    memcpy(p, json_string_value(c), json_string_length(c) + 1);
    ds->class_names[i] = p;
    p += json_string_length(c) + 1;
  }
  ds->n_classes = (int)n;
  json_decref(root);
  return TD_OK;
}

/* The inputs: dtype, shape (c, h, w of one sample) and finite values. */
static int check_inputs(const char *path, td_dataset *ds, td_err *err) {
  const td_array *a = &ds->images;
  char shp[128];
  td_array_shape_str(a, shp, sizeof shp);
  if (a->dtype != TD_U8 && a->dtype != TD_F32)
    return td_err_set(err, TD_EDTYPE,
                      "%s: expected uint8 or float32 inputs, found %s", path,
                      td_dtype_name(a->dtype));
  if (a->ndim < 2 || a->ndim > 4 || a->shape[0] < 1)
    return td_err_set(err, TD_ESHAPE,
                      "%s: expected N×C×H×W, N×H×W or N×D inputs with N >= 1, "
                      "found %s",
                      path, shp);
  int64_t d[3] = {1, 1, 1};
  for (int i = 1; i < a->ndim; i++)
    d[3 - a->ndim + i] = a->shape[i];
  if (d[0] > 4096 || d[1] * d[2] > (1 << 24) || d[0] * d[1] * d[2] < 1)
    return td_err_set(err, TD_ESHAPE, "%s: %s is not a usable input shape",
                      path, shp);
  ds->n = a->shape[0];
  ds->channels = (int)d[0];
  ds->height = (int)d[1];
  ds->width = (int)d[2];
  if (a->dtype == TD_F32) {
    int64_t bad;
    if (td_array_check_finite(a, &bad) != TD_OK)
      return td_err_set(
          err, TD_EVALUE, "%s: value %lld (sample %lld) is NaN or infinite",
          path, (long long)bad, (long long)(bad / td_dataset_sample_size(ds)));
  }
  return TD_OK;
}

/* The labels: 1-D integers, one per input, each a class. */
static int load_labels(const char *path, const char *ipath, td_dataset *ds,
                       td_err *err) {
  if (td_array_alloc(&ds->labels_arr, TD_I32, 1, &ds->n) != TD_OK)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  ds->labels = ds->labels_arr.data;
  td__label_names nm = {ipath, "samples", "classes.json"};
  return td__label_file_read(path, ds->n, ds->n_classes, &nm,
                             ds->labels_arr.data, err);
}

int td_dataset_load_dir(const char *dir, const char *split, td_dataset *out,
                        td_err *err) {
  memset(out, 0, sizeof *out);
  if (strcmp(split, "train") && strcmp(split, "test"))
    return td_err_set(err, TD_EARG, "unknown split '%s' (train or test)",
                      split);
  char ipath[TD_PATH_MAX], lpath[TD_PATH_MAX];
  int rc = td_pathf(ipath, sizeof ipath, err, "%s/%s_inputs.npy", dir, split);
  if (!rc)
    rc = td_pathf(lpath, sizeof lpath, err, "%s/%s_labels.npy", dir, split);
  if (rc)
    return rc;
  int hi = td_path_exists(ipath), hl = td_path_exists(lpath);
  if (!hi || !hl)
    return td_err_set(err, TD_ENOENT,
                      "%s: not found (a dataset directory "
                      "holds train_inputs.npy, train_labels.npy, "
                      "classes.json and optionally test_inputs.npy and "
                      "test_labels.npy)",
                      hi ? lpath : ipath);
  if ((rc = load_classes(dir, out, err)) ||
      (rc = td_npy_load(ipath, &out->images, err)) ||
      (rc = check_inputs(ipath, out, err)) ||
      (rc = load_labels(lpath, ipath, out, err)))
    td_dataset_close(out);
  return rc;
}
