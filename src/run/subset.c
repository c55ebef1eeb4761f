/* Subset runs (docs/run-format.md#subset-runs): RUN/subset.npy names the K
 * training samples every epoch records, and each epoch repeats it. The
 * checks here are shared by the reader and the writer, so neither can accept
 * an epoch the other would refuse. */
#include <string.h>

#include "run/run_internal.h"

int td__subset_load(const char *run_dir, const td_run_meta *m, td_array *out,
                    td_err *err) {
  char path[TD_PATH_MAX];
  memset(out, 0, sizeof *out);
  int rc = td_pathf(path, sizeof path, err, "%s/subset.npy", run_dir);
  if (rc || !td_path_exists(path))
    return rc;
  rc = td__load_checked(m, m->n_train, td__spec_find("subset", 0), path, out,
                        err);
  if (!rc && out->shape[0] == 0) {
    td_array_close(out);
    rc = td_err_set(err, TD_ESHAPE,
                    "%s: empty; a subset run records at least one training "
                    "sample",
                    path);
  }
  return rc;
}

/* Entry-by-entry comparison of an epoch's copy with the run's subset. */
static int same_subset(const char *path, const char *run_dir,
                       const td_array *mine, const td_array *run_subset,
                       td_err *err) {
  int64_t k = run_subset->shape[0];
  if (mine->shape[0] != k)
    return td_err_set(err, TD_EVALUE,
                      "%s: %lld entries, but %s/subset.npy has %lld; a subset "
                      "run records the same samples in every epoch",
                      path, (long long)mine->shape[0], run_dir, (long long)k);
  const int32_t *a = mine->data, *b = run_subset->data;
  for (int64_t i = 0; i < k; i++)
    if (a[i] != b[i])
      return td_err_set(err, TD_EVALUE,
                        "%s: entry %lld is %d, but %s/subset.npy has %d; a "
                        "subset run records the same samples in every epoch",
                        path, (long long)i, a[i], run_dir, b[i]);
  return TD_OK;
}

int td__subset_check_epoch(const char *path, const char *shown,
                           const char *run_dir, const td_run_meta *m,
                           const td_array *run_subset, td_err *err) {
  int exists = td_path_exists(path);
  if (!run_subset->data)
    return exists ? td_err_set(err, TD_ESTATE,
                               "%s: an epoch of a run without %s/subset.npy; a "
                               "subset run declares its samples there "
                               "(docs/run-format.md)",
                               shown, run_dir)
                  : TD_OK;
  if (!exists)
    return td_err_set(err, TD_ENOENT,
                      "%s: no such file; %s/subset.npy makes this a subset "
                      "run, and every epoch must repeat it",
                      shown, run_dir);
  td_array mine;
  int rc = td__load_checked(m, run_subset->shape[0], td__spec_find("subset", 1),
                            path, &mine, err);
  if (rc)
    td__err_name_path(err, shown);
  if (!rc)
    rc = same_subset(shown, run_dir, &mine, run_subset, err);
  td_array_close(&mine);
  return rc;
}

int td__gather_rows(const td_array *a, const td_array *subset, td_array *out,
                    td_err *err) {
  int64_t shape[TD_MAX_DIMS];
  memcpy(shape, a->shape, sizeof shape);
  shape[0] = subset->shape[0];
  int rc = td_array_alloc(out, a->dtype, a->ndim, shape);
  if (rc)
    return td_err_set(err, rc, "out of memory gathering %lld recorded rows",
                      (long long)shape[0]);
  size_t row = a->shape[0] ? a->nbytes / (size_t)a->shape[0] : 0;
  const int32_t *idx = subset->data;
  for (int64_t i = 0; i < shape[0]; i++)
    memcpy((char *)out->data + (size_t)i * row,
           (const char *)a->data + (size_t)idx[i] * row, row);
  return TD_OK;
}
