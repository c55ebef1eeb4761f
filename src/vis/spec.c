/* The files of a projected epoch (RUN/vis/<method>/epoch_NNNN) and the rules
 * each must follow. The writer checks an epoch against this table before it
 * publishes it, and the readers load through the same checks, so a writer
 * can never publish what a reader refuses. docs/vis-format.md lists it. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/json_file.h"
#include "tardis/fsutil.h"
#include "tardis/vis.h"

#define NPY(name, dt, r, c, when, what)                                        \
  { name, TD_VIS_NPY, dt, TD_VIS_DIM_##r, TD_VIS_DIM_##c, when, what }
#define OTHER(name, kind, when, what)                                          \
  { name, kind, TD_F32, TD_VIS_DIM_2, TD_VIS_DIM_2, when, what }

static const td_vis_file_spec specs[] = {
    NPY("train_embedding.npy", TD_F32, TRAIN, 2, TD_VIS_ALWAYS,
        "2-D position of every training sample"),
    NPY("test_embedding.npy", TD_F32, TEST, 2, TD_VIS_IF_TEST,
        "test samples (when the run has test representations)"),
    NPY("ood_embedding.npy", TD_F32, OOD, 2, TD_VIS_IF_OOD,
        "out-of-distribution set (when the epoch has ood_repr)"),
    NPY("boundary_repr.npy", TD_F32, BOUNDARY, REPR, TD_VIS_ALWAYS,
        "boundary samples (representation space)"),
    NPY("boundary_pairs.npy", TD_I32, BOUNDARY, 2, TD_VIS_ALWAYS,
        "the two classes each one lies between"),
    NPY("boundary_embedding.npy", TD_F32, BOUNDARY, 2, TD_VIS_ALWAYS,
        "boundary samples on the canvas"),
    NPY("territory_class.npy", TD_U8, RES, RES, TD_VIS_ALWAYS,
        "argmax class per canvas cell, row 0 = top"),
    NPY("territory_conf.npy", TD_F32, RES, RES, TD_VIS_ALWAYS,
        "confidence (l1 − l2)/(l1 − l_min)"),
    OTHER("territory.json", TD_VIS_JSON, TD_VIS_ALWAYS,
          "{\"res\": R, \"extent\": [x0, y0, x1, y1]}"),
    OTHER("projection.json", TD_VIS_JSON, TD_VIS_ALWAYS,
          "{\"epoch\", \"method\", \"seconds\", \"knn_seconds\", ...}; "
          "\"draft\": true when placed by an earlier epoch's model"),
    OTHER("model", TD_VIS_DIR, TD_VIS_ONLY_DVI,
          "encoder/decoder (tardis-net checkpoints)"),
    NPY("pca.npy", TD_F32, 3, REPR, TD_VIS_ONLY_PCA,
        "{mean, axis 1, axis 2} of the linear map"),
};

const td_vis_file_spec *td_vis_spec(size_t *count) {
  *count = sizeof specs / sizeof specs[0];
  return specs;
}

const td_vis_file_spec *td_vis_spec_find(const char *name) {
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
    if (!strcmp(specs[i].name, name))
      return &specs[i];
  return NULL;
}

void td_vis_dims_unknown(td_vis_dims *d) {
  d->n_train = d->n_test = d->n_ood = d->n_boundary = -1;
  d->repr_dim = d->res = -1;
}

void td_vis_dims_of_run(const td_run *run, td_vis_dims *d) {
  const td_run_meta *m = td_run_get_meta(run);
  td_vis_dims_unknown(d);
  d->n_train = m->n_train;
  d->n_test = m->n_test > 0 ? m->n_test : 0;
  d->repr_dim = m->repr_dim;
}

/* The size a dimension must have (fixed ones), or the slot that holds it. */
static int64_t *slot(td_vis_dims *d, td_vis_dim k, int64_t *fixed) {
  switch (k) {
  case TD_VIS_DIM_TRAIN:
    return &d->n_train;
  case TD_VIS_DIM_TEST:
    return &d->n_test;
  case TD_VIS_DIM_OOD:
    return &d->n_ood;
  case TD_VIS_DIM_BOUNDARY:
    return &d->n_boundary;
  case TD_VIS_DIM_REPR:
    return &d->repr_dim;
  case TD_VIS_DIM_RES:
    return &d->res;
  case TD_VIS_DIM_3:
    *fixed = 3;
    return fixed;
  default:
    *fixed = 2;
    return fixed;
  }
}

static const char *const dim_names[] = {"N", "M", "O", "B", "D", "R", "2", "3"};

/* "float32 [N, 2] (N = 500)" */
static void expected_str(const td_vis_file_spec *s, td_vis_dims *d, char *buf,
                         size_t len) {
  int64_t f0, f1, *r = slot(d, s->rows, &f0), *c = slot(d, s->cols, &f1);
  int o = snprintf(buf, len, "%s [%s, %s]", td_dtype_name(s->dtype),
                   dim_names[s->rows], dim_names[s->cols]);
  if (o > 0 && (size_t)o < len && *r >= 0 && s->rows < TD_VIS_DIM_2)
    o += snprintf(buf + o, len - (size_t)o, " (%s = %" PRId64 ")",
                  dim_names[s->rows], *r);
  if (o > 0 && (size_t)o < len && *c >= 0 && s->cols < TD_VIS_DIM_2 &&
      s->cols != s->rows)
    snprintf(buf + o, len - (size_t)o, " (%s = %" PRId64 ")",
             dim_names[s->cols], *c);
}

int td_vis_check_array(const td_vis_file_spec *s, const char *path,
                       const td_array *a, td_vis_dims *d, td_err *err) {
  char want[96], sh[64];
  int64_t f0, f1, *r = slot(d, s->rows, &f0), *c = slot(d, s->cols, &f1);
  int ok = a->dtype == s->dtype && a->ndim == 2 &&
           (*r < 0 || a->shape[0] == *r) && (*c < 0 || a->shape[1] == *c) &&
           (s->rows != s->cols || a->shape[0] == a->shape[1]);
  if (!ok) {
    expected_str(s, d, want, sizeof want);
    return td_err_set(err, TD_ESHAPE, "%s: expected %s, found %s %s", path,
                      want, td_dtype_name(a->dtype),
                      td_array_shape_str(a, sh, sizeof sh));
  }
  int64_t bad;
  if (a->dtype == TD_F32 && td_array_check_finite(a, &bad) != TD_OK)
    return td_err_set(err, TD_EVALUE,
                      "%s: value %" PRId64 " is NaN or infinite", path, bad);
  *r = a->shape[0];
  *c = a->shape[1];
  return TD_OK;
}

static int required(const td_vis_file_spec *s, const char *method,
                    const td_vis_dims *d) {
  switch (s->when) {
  case TD_VIS_ALWAYS:
    return 1;
  case TD_VIS_IF_TEST:
    return d->n_test > 0;
  case TD_VIS_IF_OOD:
    return d->n_ood > 0;
  case TD_VIS_ONLY_DVI:
    return !strcmp(method, "dvi");
  default:
    return !strcmp(method, "pca");
  }
}

/* territory.json must agree with the grids. */
static int check_territory_json(const char *path, td_vis_dims *d, td_err *err) {
  json_error_t je;
  json_t *j = td__json_load_file(path, 0, &je);
  if (!j)
    return td_err_set(err, TD_EFORMAT, "%s: %s", path, je.text);
  json_t *res = json_object_get(j, "res"), *ext = json_object_get(j, "extent");
  int ok = json_is_integer(res) && json_is_array(ext) &&
           json_array_size(ext) == 4 &&
           (d->res < 0 || json_integer_value(res) == d->res);
  json_decref(j);
  return ok ? TD_OK
            : td_err_set(err, TD_EFORMAT,
                         "%s: expected {\"res\": %" PRId64
                         ", \"extent\": [x0, y0, x1, y1]}",
                         path, d->res);
}

static int check_file(const td_vis_file_spec *s, const char *path,
                      td_vis_dims *d, td_err *err) {
  if (s->kind == TD_VIS_DIR)
    return td_path_is_dir(path)
               ? TD_OK
               : td_err_set(err, TD_EFORMAT, "%s: not a directory", path);
  if (s->kind == TD_VIS_JSON) {
    if (!strcmp(s->name, "territory.json"))
      return check_territory_json(path, d, err);
    json_error_t je;
    json_t *j = td__json_load_file(path, 0, &je);
    int ok = json_is_object(j);
    json_t *draft = ok ? json_object_get(j, TD_VIS_DRAFT_KEY) : NULL;
    int draft_ok = !draft || json_is_boolean(draft);
    json_decref(j);
    if (ok && !draft_ok)
      return td_err_set(err, TD_EFORMAT, "%s: \"%s\" must be true or false",
                        path, TD_VIS_DRAFT_KEY);
    return ok ? TD_OK
              : td_err_set(err, TD_EFORMAT, "%s: not a JSON object", path);
  }
  td_array a = {0};
  int rc = td_npy_load(path, &a, err);
  if (rc == TD_OK)
    rc = td_vis_check_array(s, path, &a, d, err);
  td_array_close(&a);
  return rc;
}

int td_vis_check_epoch(const char *epoch_dir, const char *method,
                       const td_vis_dims *dims, td_err *err) {
  td_vis_dims d = *dims;
  char path[TD_PATH_MAX];
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    const td_vis_file_spec *s = &specs[i];
    if (td_path_join(path, sizeof path, epoch_dir, s->name))
      return td_err_set(err, TD_ERANGE, "%s: path too long", epoch_dir);
    if (!td_path_exists(path)) {
      if (required(s, method, &d))
        return td_err_set(err, TD_ENOENT, "%s: missing (%s)", path, s->what);
      continue;
    }
    int rc = check_file(s, path, &d, err);
    if (rc)
      return rc;
  }
  return TD_OK;
}
