/* The one reader of a label file (label_file.h). */
#include "data/label_file.h"

#include "tardis/array.h"

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

/* dtype, dimensions and length: what can be said before any value. */
static int check_array(const char *path, const td_array *a, int64_t n,
                       const td__label_names *nm, td_err *err) {
  if (a->dtype != TD_I32 && a->dtype != TD_I64 && a->dtype != TD_U8)
    return td_err_set(err, TD_EDTYPE,
                      "%s: labels are %s, expected integers (int32, int64 or "
                      "uint8): np.save(path, labels.astype(np.int32))",
                      path, td_dtype_name(a->dtype));
  if (a->ndim != 1)
    return td_err_set(err, TD_ESHAPE,
                      "%s: expected a 1-D array of labels, got %d dimensions",
                      path, a->ndim);
  if (a->shape[0] != n)
    return td_err_set(err, TD_ESHAPE, "%s: %lld labels, but %s has %lld %s",
                      path, (long long)a->shape[0], nm->whose, (long long)n,
                      nm->samples);
  return TD_OK;
}

int td__label_file_read(const char *path, int64_t n, int C,
                        const td__label_names *nm, int32_t *dst, td_err *err) {
  td_array a;
  int rc = td_npy_load(path, &a, err);
  if (rc)
    return rc;
  rc = check_array(path, &a, n, nm, err);
  for (int64_t i = 0; !rc && i < n; i++) {
    int64_t v = label_at(&a, i);
    if (v < 0 || v >= C)
      rc = td_err_set(err, TD_EVALUE,
                      "%s: label %lld of sample %lld is out of range (%d "
                      "classes%s%s: 0 to %d)",
                      path, (long long)v, (long long)i, C,
                      nm->classes ? " of " : "", nm->classes ? nm->classes : "",
                      C - 1);
    else
      dst[i] = (int32_t)v;
  }
  td_array_close(&a);
  return rc;
}
