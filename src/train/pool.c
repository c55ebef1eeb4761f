/* --pool and --class-fraction: a deterministic, per-label split of the
 * training set into trained, pool and dropped samples. */
#include "train/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/rng.h"

int td__class_fraction_parse(const char *s, int C, double *frac, td_err *err) {
  for (int c = 0; c < C; c++)
    frac[c] = 1.0;
  if (!s || !*s)
    return TD_OK;
  char *seen = calloc((size_t)C, 1);
  if (!seen)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  const char *p = s;
  int rc = TD_OK;
  while (*p && rc == TD_OK) {
    char *end;
    long l = strtol(p, &end, 10);
    double f = 0;
    if (end == p || *end != ':') {
      rc = TD_EARG;
    } else {
      const char *q = end + 1;
      f = strtod(q, &end);
      if (end == q || (*end && (*end != ',' || !end[1])) || !(f > 0) || f > 1)
        rc = TD_EARG;
    }
    if (rc == TD_OK && (l < 0 || l >= C))
      rc = td_err_set(err, TD_EARG,
                      "--class-fraction %s: label %ld is not in 0..%d", s, l,
                      C - 1);
    else if (rc == TD_OK && seen[l])
      rc = td_err_set(err, TD_EARG, "--class-fraction %s: label %ld twice", s,
                      l);
    else if (rc != TD_OK)
      rc = td_err_set(err, TD_EARG,
                      "--class-fraction: expected L:F,... (a label and a "
                      "fraction in (0, 1]), got \"%s\"",
                      s);
    if (rc == TD_OK) {
      seen[l] = 1;
      frac[l] = f;
      p = *end ? end + 1 : end;
    }
  }
  free(seen);
  return rc;
}

/* Per label: its samples shuffled, the first ones to the pool, then the
 * trained ones. role[i]: 0 dropped, 1 trained, 2 pool. */
static void assign_roles(const int32_t *labels, int64_t n, int C, double pool,
                         const double *frac, uint64_t seed, int32_t *buf,
                         uint8_t *role) {
  for (int c = 0; c < C; c++) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
      if (labels[i] == c)
        buf[m++] = (int32_t)i;
    td_rng r;
    td_rng_split(&r, seed ^ 0x706f6f6cULL, (uint64_t)c);
    td_rng_shuffle_i32(&r, buf, m);
    int64_t np = (int64_t)llround(pool * (double)m);
    int64_t rest = m - np;
    int64_t nt = (int64_t)llround(frac[c] * (double)rest);
    if (nt < 1 && rest > 0)
      nt = 1;
    for (int64_t k = 0; k < m; k++)
      role[buf[k]] = k < np ? 2 : k < np + nt ? 1 : 0;
  }
}

int td__pool_split(const int32_t *labels, int64_t n, int C, double pool,
                   const char *class_fraction, uint64_t seed, int32_t **trained,
                   int64_t *n_trained, int32_t **pool_idx, int64_t *n_pool,
                   td_err *err) {
  *trained = *pool_idx = NULL;
  *n_trained = *n_pool = 0;
  if (!(pool >= 0 && pool < 1))
    return td_err_set(err, TD_EARG, "--pool %g: expected a fraction in [0, 1)",
                      pool);
  double *frac = malloc((size_t)C * sizeof *frac);
  int32_t *buf = malloc((size_t)(n > 0 ? n : 1) * sizeof *buf);
  uint8_t *role = malloc((size_t)(n > 0 ? n : 1));
  int rc =
      frac && buf && role ? TD_OK : td_err_set(err, TD_ENOMEM, "out of memory");
  if (!rc)
    rc = td__class_fraction_parse(class_fraction, C, frac, err);
  if (!rc) {
    assign_roles(labels, n, C, pool, frac, seed, buf, role);
    int64_t nt = 0, np = 0;
    for (int64_t i = 0; i < n; i++)
      nt += role[i] == 1, np += role[i] == 2;
    *trained = malloc((size_t)(nt > 0 ? nt : 1) * sizeof **trained);
    *pool_idx = np ? malloc((size_t)np * sizeof **pool_idx) : NULL;
    if (!*trained || (np && !*pool_idx))
      rc = td_err_set(err, TD_ENOMEM, "out of memory");
    else if (nt == 0)
      rc = td_err_set(err, TD_EARG,
                      "--pool %g leaves no training sample (%lld samples)",
                      pool, (long long)n);
    for (int64_t i = 0, a = 0, b = 0; !rc && i < n; i++) {
      if (role[i] == 1)
        (*trained)[a++] = (int32_t)i;
      else if (role[i] == 2)
        (*pool_idx)[b++] = (int32_t)i;
    }
    *n_trained = nt;
    *n_pool = np;
  }
  if (rc) {
    free(*trained);
    free(*pool_idx);
    *trained = *pool_idx = NULL;
    *n_trained = *n_pool = 0;
  }
  free(frac);
  free(buf);
  free(role);
  return rc;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

int td__select_copy(const int32_t *idx, int64_t k, int64_t n, int32_t **out,
                    td_err *err) {
  *out = NULL;
  if (k < 1)
    return td_err_set(err, TD_EARG, "the selection of samples is empty");
  int32_t *v = malloc((size_t)k * sizeof *v);
  if (!v)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  memcpy(v, idx, (size_t)k * sizeof *v);
  qsort(v, (size_t)k, sizeof *v, cmp_i32);
  int rc = TD_OK;
  if (v[0] < 0 || v[k - 1] >= n)
    rc = td_err_set(err, TD_ERANGE,
                    "selected index %d is out of range (%lld training "
                    "samples)",
                    v[0] < 0 ? v[0] : v[k - 1], (long long)n);
  for (int64_t i = 1; i < k && !rc; i++)
    if (v[i] == v[i - 1])
      rc = td_err_set(err, TD_EVALUE, "index %d is selected twice", v[i]);
  if (rc)
    free(v);
  else
    *out = v;
  return rc;
}
