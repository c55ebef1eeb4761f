/* Helpers shared by several test binaries. */
#ifndef TD_TEST_UTIL_H
#define TD_TEST_UTIL_H

#include <stdio.h>

#include "tardis/array.h"
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

#endif
