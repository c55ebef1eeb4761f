/* Repeated samples of a selection: a sample selected with a count c is
 * trained on c times per epoch (tardis repair weights its picks this way
 * against the replayed training set, docs/repair.md). trained.npy still
 * lists each sample once: the count changes how often, not what. */
#include "train/select_times.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"

static int check_count(int32_t c, const char *what, td_err *err) {
  if (c >= 1 && c <= TD__SELECT_TIMES_MAX)
    return TD_OK;
  return td_err_set(err, TD_ERANGE,
                    "%s: a sample's count %d is outside [1, %d] (times it "
                    "is trained on per epoch)",
                    what, c, TD__SELECT_TIMES_MAX);
}

int td__select_times_align(const int32_t *idx, const int32_t *times, int64_t k,
                           const int32_t *sel, int64_t n, int32_t **out,
                           td_err *err) {
  *out = NULL;
  int32_t *of = calloc((size_t)(n > 0 ? n : 1), sizeof *of);
  int32_t *v = malloc((size_t)(k > 0 ? k : 1) * sizeof *v);
  int rc = of && v ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
  for (int64_t i = 0; !rc && i < k; i++) {
    rc = check_count(times[i], "the selection", err);
    if (!rc)
      of[idx[i]] = times[i]; /* idx checked in range by td__select_copy */
  }
  for (int64_t j = 0; !rc && j < k; j++)
    v[j] = of[sel[j]];
  free(of);
  if (rc)
    free(v);
  else
    *out = v;
  return rc;
}

int td__select_times_load(const char *run_dir, int64_t k, int32_t **out,
                          td_err *err) {
  *out = NULL;
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/select_times.npy", run_dir);
  if (rc || !td_path_exists(path))
    return rc;
  td_array a;
  if ((rc = td_npy_load(path, &a, err)))
    return rc;
  if (a.dtype != TD_I32 || a.ndim != 1 || a.shape[0] != k)
    rc = td_err_set(err, TD_ESHAPE,
                    "%s: expected int32 [%lld], the counts of select.npy", path,
                    (long long)k);
  int32_t *v = rc ? NULL : malloc((size_t)(k > 0 ? k : 1) * sizeof *v);
  if (!rc && !v)
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  for (int64_t i = 0; !rc && i < k; i++)
    rc = check_count(v[i] = ((const int32_t *)a.data)[i], path, err);
  td_array_close(&a);
  if (rc)
    free(v);
  else
    *out = v;
  return rc;
}

int td__select_expand(const int32_t *sel, const int32_t *times, int64_t k,
                      int32_t **ep, int64_t *n_ep, td_err *err) {
  int64_t m = 0;
  for (int64_t j = 0; j < k; j++)
    m += times[j];
  *ep = malloc((size_t)(m > 0 ? m : 1) * sizeof **ep);
  if (!*ep)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  m = 0;
  for (int64_t j = 0; j < k; j++)
    for (int32_t c = 0; c < times[j]; c++)
      (*ep)[m++] = sel[j];
  *n_ep = m;
  return TD_OK;
}

int td__select_times_write(const char *run_dir, const int32_t *times, int64_t k,
                           td_err *err) {
  if (times) {
    td_array a;
    td_array_wrap(&a, TD_I32, 1, &k, (void *)(uintptr_t)times);
    return td_run_write_array(run_dir, "select_times", &a, err);
  }
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/select_times.npy", run_dir);
  if (!rc && unlink(path) != 0 && errno != ENOENT)
    rc = td_err_set(err, TD_EIO, "%s: cannot remove it", path);
  return rc;
}
