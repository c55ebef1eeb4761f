/* The arrays of run format v1 and the rules each must follow. Reader and
 * writer share this table, so a writer can never produce a file the reader
 * refuses. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "run/run_internal.h"

/* ROWS_RECORDED: the training samples an epoch records, N or in a subset run
 * the K of subset.npy. */
enum { ROWS_TRAIN, ROWS_RECORDED, ROWS_TEST, ROWS_ANY };
enum { COLS_NONE, COLS_REPR, COLS_CLASSES, COLS_INPUT };
enum { VALS_FINITE, VALS_LABEL, VALS_TRAIN_INDEX, VALS_TRAIN_INDEX_SORTED };

#define DT(t) (1u << (t))

struct td__array_spec {
  const char *name;
  int in_epoch;
  unsigned dtypes; /* mask of DT(TD_*) */
  int rows, cols, vals;
};

static const td__array_spec specs[] = {
    {"train_labels", 0, DT(TD_I32) | DT(TD_I64), ROWS_TRAIN, COLS_NONE,
     VALS_LABEL},
    {"test_labels", 0, DT(TD_I32) | DT(TD_I64), ROWS_TEST, COLS_NONE,
     VALS_LABEL},
    {"train_truth", 0, DT(TD_I32) | DT(TD_I64), ROWS_TRAIN, COLS_NONE,
     VALS_LABEL},
    {"train_inputs", 0, DT(TD_U8) | DT(TD_F32), ROWS_TRAIN, COLS_INPUT,
     VALS_FINITE},
    {"test_inputs", 0, DT(TD_U8) | DT(TD_F32), ROWS_TEST, COLS_INPUT,
     VALS_FINITE},
    /* subset runs (docs/run-format.md): the recorded training indices */
    {"subset", 0, DT(TD_I32) | DT(TD_I64), ROWS_ANY, COLS_NONE,
     VALS_TRAIN_INDEX_SORTED},
    {"train_repr", 1, DT(TD_F32) | DT(TD_F16), ROWS_RECORDED, COLS_REPR,
     VALS_FINITE},
    {"test_repr", 1, DT(TD_F32) | DT(TD_F16), ROWS_TEST, COLS_REPR,
     VALS_FINITE},
    {"train_logits", 1, DT(TD_F32) | DT(TD_F16), ROWS_RECORDED, COLS_CLASSES,
     VALS_FINITE},
    {"test_logits", 1, DT(TD_F32) | DT(TD_F16), ROWS_TEST, COLS_CLASSES,
     VALS_FINITE},
    {"train_loss", 1, DT(TD_F32) | DT(TD_F16), ROWS_RECORDED, COLS_NONE,
     VALS_FINITE},
    /* Python's default integer is int64, so indices get the same leniency as
     * labels. A copy of RUN/subset.npy (the reader compares the two). */
    {"subset", 1, DT(TD_I32) | DT(TD_I64), ROWS_ANY, COLS_NONE,
     VALS_TRAIN_INDEX_SORTED},
    /* continual learning: the samples this epoch trained on, ascending */
    {"trained", 1, DT(TD_I32) | DT(TD_I64), ROWS_ANY, COLS_NONE,
     VALS_TRAIN_INDEX_SORTED},
};

const td__array_spec *td__spec_find(const char *base, int in_epoch) {
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
    if (specs[i].in_epoch == in_epoch && strcmp(specs[i].name, base) == 0)
      return &specs[i];
  return NULL;
}

int td__spec_is_int(const td__array_spec *s) { return s->vals != VALS_FINITE; }

int td__spec_is_per_train(const td__array_spec *s) {
  return s->rows == ROWS_TRAIN;
}

int td__spec_is_recorded(const td__array_spec *s) {
  return s->rows == ROWS_RECORDED;
}

static int64_t rows_of(const td__array_spec *s, const td_run_meta *m,
                       int64_t n_rec) {
  return s->rows == ROWS_TRAIN      ? m->n_train
         : s->rows == ROWS_RECORDED ? n_rec
                                    : m->n_test;
}

/* "60000×128 float32 or float16". At most about 200 bytes (a count, three
 * dimensions or the input_shape note, the dtype names), and the one caller
 * gives 256, so no snprintf below is cut. */
static void expected_str(const td__array_spec *s, const td_run_meta *m,
                         int64_t n_rec, char *buf, size_t len) {
  size_t o = 0;
  int64_t rows = rows_of(s, m, n_rec);
  if (s->rows == ROWS_ANY)
    o += (size_t)snprintf(buf, len, "K");
  else
    o += (size_t)snprintf(buf, len, "%lld", (long long)rows);
  if (s->cols == COLS_REPR)
    o += (size_t)snprintf(buf + o, len - o, "×%d", m->repr_dim);
  else if (s->cols == COLS_CLASSES)
    o += (size_t)snprintf(buf + o, len - o, "×%d", m->n_classes);
  else if (s->cols == COLS_INPUT && m->has_input_shape)
    o += (size_t)snprintf(buf + o, len - o, "×%d×%d×%d", m->input_shape[0],
                          m->input_shape[1], m->input_shape[2]);
  else if (s->cols == COLS_INPUT)
    o += (size_t)snprintf(buf + o, len - o,
                          "×c×h×w (run.json has no "
                          "input_shape)");
  const char *sep = " ";
  for (int t = 0; t < TD_DTYPE_COUNT && o < len; t++)
    if (s->dtypes & DT(t)) {
      o += (size_t)snprintf(buf + o, len - o, "%s%s", sep,
                            td_dtype_name((td_dtype)t));
      sep = " or ";
    }
  if (s->rows == ROWS_RECORDED && n_rec != m->n_train && o < len)
    snprintf(buf + o, len - o, " (one row per entry of subset.npy)");
}

static int shape_ok(const td__array_spec *s, const td_run_meta *m,
                    int64_t n_rec, const td_array *a) {
  int64_t rows = rows_of(s, m, n_rec);
  if (a->ndim < 1 || (s->rows != ROWS_ANY && a->shape[0] != rows))
    return 0;
  switch (s->cols) {
  case COLS_NONE:
    return a->ndim == 1;
  case COLS_REPR:
    return a->ndim == 2 && a->shape[1] == m->repr_dim;
  case COLS_CLASSES:
    return a->ndim == 2 && a->shape[1] == m->n_classes;
  default: /* COLS_INPUT */
    if (!m->has_input_shape)
      return 0; /* inputs are only meaningful with a known shape */
    return a->ndim == 4 && a->shape[1] == m->input_shape[0] &&
           a->shape[2] == m->input_shape[1] && a->shape[3] == m->input_shape[2];
  }
}

static int64_t int_at(const td_array *a, int64_t i) {
  return a->dtype == TD_I64 ? ((const int64_t *)a->data)[i]
                            : ((const int32_t *)a->data)[i];
}

static int check_ints(const td__array_spec *s, const td_run_meta *m,
                      const char *path, const td_array *a, td_err *err) {
  int64_t hi = s->vals == VALS_LABEL ? m->n_classes : m->n_train;
  int64_t n = a->shape[0];
  for (int64_t i = 0; i < n; i++) {
    int64_t v = int_at(a, i);
    if (v < 0 || v >= hi)
      return td_err_set(err, TD_ERANGE,
                        "%s: entry %lld is %lld, expected %s in [0, %lld)",
                        path, (long long)i, (long long)v,
                        s->vals == VALS_LABEL ? "a class" : "a training index",
                        (long long)hi);
    if (s->vals == VALS_TRAIN_INDEX_SORTED && i > 0 && v <= int_at(a, i - 1))
      return td_err_set(err, TD_EVALUE,
                        "%s: entry %lld is %lld, not above entry %lld (%lld); "
                        "expected training indices sorted ascending, each "
                        "once",
                        path, (long long)i, (long long)v, (long long)i - 1,
                        (long long)int_at(a, i - 1));
  }
  return TD_OK;
}

static int check_finite(const char *path, const td_array *a, td_err *err) {
  int64_t bad = -1;
  if (td_array_check_finite(a, &bad) == TD_OK)
    return TD_OK;
  if (bad < 0)
    return td_err_set(err, TD_EVALUE, "%s: holds NaN or infinite values", path);
  float v = a->dtype == TD_F16 ? td_f16_to_f32(((const uint16_t *)a->data)[bad])
                               : ((const float *)a->data)[bad];
  const char *what = isnan(v) ? "NaN" : "infinite value";
  if (a->ndim == 1)
    return td_err_set(err, TD_EVALUE,
                      "%s: %s at entry %lld (values must be finite)", path,
                      what, (long long)bad);
  /* Row = sample; column = offset within the sample (all trailing dims). */
  int64_t per_row = a->shape[0] ? td_array_count(a) / a->shape[0] : 1;
  return td_err_set(
      err, TD_EVALUE, "%s: %s at row %lld, column %lld (values must be finite)",
      path, what, (long long)(bad / per_row), (long long)(bad % per_row));
}

int td__spec_check(const td__array_spec *s, const td_run_meta *m, int64_t n_rec,
                   const char *path, const td_array *a, td_err *err) {
  if (!(s->dtypes & DT(a->dtype)) || !shape_ok(s, m, n_rec, a)) {
    char want[320], got[160];
    expected_str(s, m, n_rec, want, sizeof want);
    td_array_shape_str(a, got, sizeof got);
    return td_err_set(err, (s->dtypes & DT(a->dtype)) ? TD_ESHAPE : TD_EDTYPE,
                      "%s: expected %s, found %s %s", path, want,
                      a->ndim ? got : "a scalar", td_dtype_name(a->dtype));
  }
  if (td__spec_is_int(s))
    return check_ints(s, m, path, a, err);
  return check_finite(path, a, err); /* a no-op for integer arrays */
}

int td__to_i32(const td_array *src, td_array *dst, td_err *err) {
  TD_ASSERT(src->dtype == TD_I64);
  int rc = td_array_alloc(dst, TD_I32, src->ndim, src->shape);
  if (rc)
    return td_err_set(err, rc, "out of memory converting int64 to int32");
  int64_t n = td_array_count(src);
  const int64_t *from = src->data;
  int32_t *to = dst->data;
  for (int64_t i = 0; i < n; i++) {
    if (from[i] < INT32_MIN || from[i] > INT32_MAX) {
      td_array_close(dst);
      return td_err_set(err, TD_ERANGE, "entry %lld (%lld) does not fit int32",
                        (long long)i, (long long)from[i]);
    }
    to[i] = (int32_t)from[i];
  }
  return TD_OK;
}
