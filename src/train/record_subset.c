/* --record-subset K: which training samples a subset run records
 * (docs/run-format.md#subset-runs). */
#include <stdlib.h>
#include <string.h>

#include "tardis/alloc.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"
#include "train/record.h"

/* The stream of the seed that draws the subset: apart from the one that
 * shuffles the batches, so recording a subset does not change training. */
#define SUBSET_STREAM 0x737562736574ULL /* "subset" */

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* K distinct indices of [0, n), uniformly, ascending: a partial
 * Fisher-Yates shuffle over a full permutation (n fits memory: it is the
 * training set). */
static int draw(uint64_t seed, int64_t n, int64_t k, int32_t **out,
                td_err *err) {
  int32_t *p = malloc((size_t)n * sizeof *p);
  if (!p)
    return td_err_set(err, TD_ENOMEM, "out of memory drawing the subset");
  for (int64_t i = 0; i < n; i++)
    p[i] = (int32_t)i;
  td_rng rng;
  td_rng_split(&rng, seed, SUBSET_STREAM);
  for (int64_t i = 0; i < k; i++) {
    int64_t j = i + (int64_t)td_rng_below(&rng, (uint64_t)(n - i));
    int32_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  qsort(p, (size_t)k, sizeof *p, cmp_i32);
  *out = p;
  return TD_OK;
}

/* A resumed run goes on with the subset it has recorded so far. */
static int load(const char *run_dir, int64_t k, int32_t **out, td_err *err) {
  td_run *run;
  int rc = td_run_open(run_dir, &run, err);
  if (rc)
    return rc;
  const int32_t *s = td_run_subset(run);
  int64_t have = td_run_get_meta(run)->n_train;
  if (!s || have != k)
    rc = td_err_set(err, TD_ESTATE,
                    "%s/subset.npy: %s, but run.json's \"train\" says "
                    "record_subset %lld",
                    run_dir, s ? "a different length" : "absent", (long long)k);
  else if (!(*out = malloc((size_t)k * sizeof **out)))
    rc = td_err_set(err, TD_ENOMEM, "out of memory");
  else
    memcpy(*out, s, (size_t)k * sizeof **out);
  td_run_close(run);
  return rc;
}

int td__record_subset_prepare(const td_train_opts *o, int64_t n, int32_t **idx,
                              td_err *err) {
  *idx = NULL;
  if (o->record_subset > n)
    return td_err_set(err, TD_EARG,
                      "--record-subset %lld: the training set has only %lld "
                      "samples",
                      (long long)o->record_subset, (long long)n);
  return o->resume ? load(o->out, o->record_subset, idx, err)
                   : draw(o->seed, n, o->record_subset, idx, err);
}
