/* Helpers shared by several test binaries. */
#ifndef TD_TEST_UTIL_H
#define TD_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"

/* Writes a one-layer dense head (w [C, D], b [C]) into dir and loads it. */
static inline int td_t_make_head(const char *dir, const float *w,
                                 const float *b, int D, int C, td_head **out,
                                 td_err *err) {
  char path[4200];
  int64_t ws[2] = {C, D}, bs[1] = {C};
  snprintf(path, sizeof path, "%s/head_0_w.npy", dir);
  int rc = td_npy_save_raw(path, TD_F32, 2, ws, w, err);
  snprintf(path, sizeof path, "%s/head_0_b.npy", dir);
  if (!rc)
    rc = td_npy_save_raw(path, TD_F32, 1, bs, b, err);
  if (rc)
    return rc;
  snprintf(path, sizeof path, "%s/head.json", dir);
  FILE *f = fopen(path, "w");
  if (!f)
    return TD_EIO;
  fputs("[{\"type\": \"dense\", \"weight\": \"head_0_w.npy\", \"bias\": "
        "\"head_0_b.npy\", \"activation\": \"none\"}]",
        f);
  fclose(f);
  return td_head_load_dir(dir, D, C, out, err);
}

/* Loads a one-dimensional int32 array (NULL, saying why, when absent or of
 * another type); *n is its length. */
static inline int32_t *td_t_load_i32(const char *path, int64_t *n) {
  td_array a;
  td_err err = {0};
  if (td_npy_load(path, &a, &err) != TD_OK) {
    fprintf(stderr, "  %s: %s\n", path, err.msg);
    return NULL;
  }
  int32_t *v = NULL;
  if (a.dtype == TD_I32 && a.ndim == 1 &&
      (v = malloc((size_t)(a.shape[0] ? a.shape[0] : 1) * sizeof *v))) {
    memcpy(v, a.data, (size_t)a.shape[0] * sizeof *v);
    *n = a.shape[0];
  } else
    fprintf(stderr, "  %s: not a one-dimensional int32 array\n", path);
  td_array_close(&a);
  return v;
}

/* Whether two files hold the same bytes (saying which differ when not). */
static inline int td_t_same_bytes(const char *a, const char *b) {
  char *x = NULL, *y = NULL;
  size_t nx = 0, ny = 0;
  int ok = td_read_file(a, &x, &nx, NULL) == TD_OK &&
           td_read_file(b, &y, &ny, NULL) == TD_OK && nx == ny &&
           !memcmp(x, y, nx);
  if (!ok)
    fprintf(stderr, "  %s and %s differ\n", a, b);
  free(x);
  free(y);
  return ok;
}

#endif
