/* Reading a run: open, list epochs, load checked arrays, full validation. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "run/run_internal.h"
#include "tardis/fsutil.h"

/* ---- epoch listing ------------------------------------------------------ */

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* Parses a canonical epoch directory name ("0007", "12345") into *epoch. */
static int parse_epoch_name(const char *epochs_dir, const char *name,
                            int *epoch, td_err *err) {
  size_t len = strlen(name);
  long long v = 0;
  for (size_t i = 0; i < len; i++) {
    if (name[i] < '0' || name[i] > '9')
      return td_err_set(err, TD_EFORMAT,
                        "%s/%s: not an epoch directory (expected an epoch "
                        "number such as 0007; names starting with '.' are "
                        "ignored)",
                        epochs_dir, name);
    v = v * 10 + (name[i] - '0');
    if (v > INT_MAX)
      return td_err_set(err, TD_EFORMAT, "%s/%s: epoch number too large",
                        epochs_dir, name);
  }
  char canon[32];
  td__epoch_name((int)v, canon, sizeof canon);
  if (strcmp(canon, name) != 0)
    return td_err_set(err, TD_EFORMAT,
                      "%s/%s: epoch directory names are zero-padded to 4 "
                      "digits (expected %s)",
                      epochs_dir, name, canon);
  *epoch = (int)v;
  return TD_OK;
}

static int list_epochs(const char *run_dir, int **out, int *n_out,
                       td_err *err) {
  char dir[TD_PATH_MAX], sub[TD_PATH_MAX];
  int rc = td_pathf(dir, sizeof dir, err, "%s/epochs", run_dir);
  *out = NULL;
  *n_out = 0;
  if (rc)
    return rc;
  if (!td_path_exists(dir))
    return TD_OK; /* a run that has recorded nothing yet */
  DIR *d = opendir(dir);
  if (!d)
    return td_err_set(err, errno == ENOTDIR ? TD_EFORMAT : TD_EIO,
                      "%s: cannot open directory: %s", dir, strerror(errno));
  int *v = NULL, n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue; /* ".", "..", and ".tmp-*" epochs still being written */
    int epoch = 0;
    if ((rc = parse_epoch_name(dir, e->d_name, &epoch, err)))
      break;
    if ((rc = td_pathf(sub, sizeof sub, err, "%s/%s", dir, e->d_name)))
      break;
    if (!td_path_is_dir(sub)) {
      rc = td_err_set(err, TD_EFORMAT,
                      "%s: expected an epoch directory, found a file", sub);
      break;
    }
    if (n == cap) {
      int ncap = cap ? 2 * cap : 64;
      int *nv = td_realloc(v, (size_t)ncap * sizeof *v);
      if (!nv) {
        rc = td_err_set(err, TD_ENOMEM, "%s: out of memory", dir);
        break;
      }
      v = nv;
      cap = ncap;
    }
    v[n++] = epoch;
  }
  closedir(d);
  if (rc) {
    td_free(v);
    return rc;
  }
  if (n > 1)
    qsort(v, (size_t)n, sizeof *v, cmp_int);
  *out = v;
  *n_out = n;
  return TD_OK;
}

/* ---- open / close ------------------------------------------------------- */

int td__load_checked(const td_run_meta *m, int64_t n_rec,
                     const td__array_spec *s, const char *path, td_array *out,
                     td_err *err) {
  td_array a;
  int rc = td_npy_load(path, &a, err);
  if (rc) {
    td__err_name_path(err, path);
    return rc;
  }
  rc = td__spec_check(s, m, n_rec, path, &a, err);
  if (!rc && td__spec_is_int(s) && a.dtype == TD_I64) {
    td_array b;
    rc = td__to_i32(&a, &b, err);
    if (rc)
      td__err_name_path(err, path);
    td_array_close(&a);
    a = b;
  }
  if (rc) {
    td_array_close(&a);
    return rc;
  }
  *out = a;
  return TD_OK;
}

/* A subset run reads as a run of its K recorded samples: the labels are
 * gathered and meta.n_train becomes K (run->n_all keeps N). */
static int subset_view(td_run *run, td_err *err) {
  td_array g;
  int rc = td__gather_rows(&run->labels, &run->subset, &g, err);
  if (rc)
    return rc;
  td_array_close(&run->labels);
  run->labels = g;
  run->meta.n_train = run->subset.shape[0];
  return TD_OK;
}

void td_run_close(td_run *run) {
  if (!run)
    return;
  td__meta_free(&run->meta);
  td_array_close(&run->subset);
  td_array_close(&run->labels);
  td_free(run->epochs);
  td_free(run->dir);
  td_free(run);
}

int td_run_open(const char *dir, td_run **out, td_err *err) {
  *out = NULL;
  td_run *run = td_calloc(1, sizeof *run);
  if (!run || !(run->dir = td_strdup(dir))) {
    td_free(run);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", dir);
  }
  size_t len = strlen(run->dir);
  while (len > 1 && run->dir[len - 1] == '/')
    run->dir[--len] = 0;
  if (!td_path_is_dir(run->dir)) {
    int rc = td_err_set(err, TD_ENOENT, "%s: no such run directory", dir);
    td_run_close(run);
    return rc;
  }
  char path[TD_PATH_MAX];
  int rc = td__meta_read(run->dir, &run->meta, err);
  if (!rc)
    rc = td_pathf(path, sizeof path, err, "%s/train_labels.npy", run->dir);
  if (!rc && !td_path_exists(path))
    rc = td_err_set(err, TD_ENOENT, "%s: no such file (every run needs it)",
                    path);
  if (!rc)
    rc = td__load_checked(&run->meta, run->meta.n_train,
                          td__spec_find("train_labels", 0), path, &run->labels,
                          err);
  run->n_all = run->meta.n_train;
  if (!rc)
    rc = td__subset_load(run->dir, &run->meta, &run->subset, err);
  if (!rc && run->subset.data)
    rc = subset_view(run, err);
  if (!rc)
    rc = list_epochs(run->dir, &run->epochs, &run->n_epochs, err);
  if (rc) {
    td_run_close(run);
    return rc;
  }
  *out = run;
  return TD_OK;
}

int td_run_refresh(td_run *run, td_err *err) {
  int *v, n;
  int rc = list_epochs(run->dir, &v, &n, err);
  if (rc)
    return rc;
  td_free(run->epochs);
  run->epochs = v;
  run->n_epochs = n;
  return TD_OK;
}

const td_run_meta *td_run_get_meta(const td_run *run) { return &run->meta; }
const int32_t *td_run_subset(const td_run *run) { return run->subset.data; }
int64_t td_run_n_train_all(const td_run *run) { return run->n_all; }

int td_run_require_all_samples(const td_run *run, const char *what,
                               td_err *err) {
  if (!run->subset.data)
    return TD_OK;
  return td_err_set(err, TD_ESTATE,
                    "%s: records only %lld of the %lld training samples "
                    "(subset.npy); %s needs a run that records all of them",
                    run->dir, (long long)run->meta.n_train,
                    (long long)run->n_all, what);
}
const char *td_run_dir(const td_run *run) { return run->dir; }
int td_run_n_epochs(const td_run *run) { return run->n_epochs; }

int td_run_epoch_number(const td_run *run, int i) {
  TD_ASSERT(i >= 0 && i < run->n_epochs);
  return run->epochs[i];
}

int td_run_epoch_index(const td_run *run, int epoch) {
  const int *p = run->n_epochs
                     ? bsearch(&epoch, run->epochs, (size_t)run->n_epochs,
                               sizeof *run->epochs, cmp_int)
                     : NULL;
  return p ? (int)(p - run->epochs) : -1;
}

int td_run_epoch_path(const td_run *run, int epoch, char *buf, size_t len) {
  char name[32];
  td__epoch_name(epoch, name, sizeof name);
  return td_pathf(buf, len, NULL, "%s/epochs/%s", run->dir, name);
}

const int32_t *td_run_train_labels(const td_run *run) {
  return run->labels.data;
}

/* ---- loading ------------------------------------------------------------ */

/* Resolves (epoch, name) to a path and the base name without ".npy". */
static int array_path(const td_run *run, int epoch, const char *name,
                      char *base, size_t base_len, char *path, size_t len,
                      td_err *err) {
  size_t n = strlen(name);
  if (n > 4 && strcmp(name + n - 4, ".npy") == 0)
    n -= 4;
  if (!td__plain_name(name) || n == 0 || n >= base_len)
    return td_err_set(err, TD_EARG, "%s: \"%s\" is not a plain array name",
                      run->dir, name);
  memcpy(base, name, n);
  base[n] = 0;
  if (epoch < 0)
    return td_pathf(path, len, err, "%s/%s.npy", run->dir, base);
  char ep[TD_PATH_MAX];
  int rc = td_run_epoch_path(run, epoch, ep, sizeof ep);
  if (rc)
    return td_err_set(err, rc, "%s: path too long", run->dir);
  if (!td_path_is_dir(ep))
    return td_err_set(err, TD_ENOENT, "%s: no such epoch", ep);
  return td_pathf(path, len, err, "%s/%s.npy", ep, base);
}

/* A known array: checked against run.json (with N, not the view's K), its
 * epoch's subset.npy checked against the run's first when it has one row
 * per recorded sample, and a top-level per-sample array of a subset run
 * gathered to the recorded rows. */
static int load_known(const td_run *run, int epoch, const td__array_spec *s,
                      const char *path, td_array *out, td_err *err) {
  td_run_meta full = run->meta;
  full.n_train = run->n_all;
  int rc = TD_OK;
  if (epoch >= 0 &&
      (td__spec_is_recorded(s) || s == td__spec_find("subset", 1))) {
    char ep[TD_PATH_MAX], sp[TD_PATH_MAX];
    if (td_run_epoch_path(run, epoch, ep, sizeof ep))
      return td_err_set(err, TD_ERANGE, "%s: path too long", run->dir);
    if ((rc = td_pathf(sp, sizeof sp, err, "%s/subset.npy", ep)) ||
        (rc = td__subset_check_epoch(sp, sp, run->dir, &full, &run->subset,
                                     err)))
      return rc;
  }
  rc = td__load_checked(&full, run->meta.n_train, s, path, out, err);
  if (rc || epoch >= 0 || !run->subset.data || !td__spec_is_per_train(s))
    return rc;
  td_array g;
  rc = td__gather_rows(out, &run->subset, &g, err);
  td_array_close(out);
  if (!rc)
    *out = g;
  return rc;
}

int td_run_load(const td_run *run, int epoch, const char *name, td_array *out,
                td_err *err) {
  char base[128], path[TD_PATH_MAX];
  memset(out, 0, sizeof *out);
  int rc =
      array_path(run, epoch, name, base, sizeof base, path, sizeof path, err);
  if (rc)
    return rc;
  if (!td_path_exists(path))
    return td_err_set(err, TD_ENOENT, "%s: no such file", path);
  const td__array_spec *s = td__spec_find(base, epoch >= 0);
  if (s)
    return load_known(run, epoch, s, path, out, err);
  rc = td_npy_load(path, out, err);
  if (rc)
    td__err_name_path(err, path);
  return rc;
}

int td_run_load_f32(const td_run *run, int epoch, const char *name,
                    td_array *out, td_err *err) {
  int rc = td_run_load(run, epoch, name, out, err);
  if (rc || out->dtype != TD_F16)
    return rc;
  td_array f;
  rc = td_array_to_f32(out, &f, err);
  td_array_close(out);
  if (rc)
    return rc;
  *out = f;
  return TD_OK;
}

int td_run_has(const td_run *run, int epoch, const char *name) {
  char path[TD_PATH_MAX], ep[TD_PATH_MAX];
  const char *parent = run->dir;
  if (!td__plain_name(name))
    return 0;
  if (epoch >= 0) {
    if (td_run_epoch_path(run, epoch, ep, sizeof ep))
      return 0;
    parent = ep;
  }
  int bare = strcmp(name, "model") == 0 || strchr(name, '.') != NULL;
  if (td_pathf(path, sizeof path, NULL, bare ? "%s/%s" : "%s/%s.npy", parent,
               name))
    return 0;
  return td_path_exists(path);
}

/* ---- epoch.json --------------------------------------------------------- */

int td__epoch_json_read(const char *path, int epoch, json_t **out,
                        td_err *err) {
  static const char *const metrics[] = {"train_loss", "train_acc", "test_loss",
                                        "test_acc",   "seconds",   "lr"};
  if (out)
    *out = NULL;
  if (!td_path_exists(path))
    return td_err_set(err, TD_ENOENT, "%s: no such file", path);
  json_error_t jerr;
  json_t *root = td__json_load_file(path, 0, &jerr);
  if (!root)
    return td_err_set(err, TD_EFORMAT, "%s: invalid JSON at line %d: %s", path,
                      jerr.line, jerr.text);
  int rc = TD_OK;
  json_t *e = json_object_get(root, "epoch");
  if (!json_is_object(root))
    rc = td_err_set(err, TD_EFORMAT, "%s: expected a JSON object, found %s",
                    path, td__json_type_str(root));
  else if (!e)
    rc = td_err_set(err, TD_EFORMAT, "%s: missing field \"epoch\"", path);
  else if (!json_is_integer(e))
    rc = td_err_set(err, TD_EFORMAT,
                    "%s: field \"epoch\" should be an integer, found %s", path,
                    td__json_type_str(e));
  else if (json_integer_value(e) != epoch)
    rc = td_err_set(err, TD_EVALUE,
                    "%s: field \"epoch\" is %lld, expected %d (the directory "
                    "name)",
                    path, (long long)json_integer_value(e), epoch);
  for (size_t i = 0; !rc && i < sizeof metrics / sizeof metrics[0]; i++) {
    json_t *v = json_object_get(root, metrics[i]);
    if (v && !json_is_number(v) && !json_is_null(v))
      rc = td_err_set(err, TD_EFORMAT,
                      "%s: field \"%s\" should be a number, found %s", path,
                      metrics[i], td__json_type_str(v));
  }
  if (rc || !out)
    json_decref(root);
  else
    *out = root;
  return rc;
}

int td__run_load_epoch_json(const td_run *run, int epoch, json_t **out,
                            td_err *err) {
  char ep[TD_PATH_MAX], path[TD_PATH_MAX];
  *out = NULL;
  if (td_run_epoch_path(run, epoch, ep, sizeof ep))
    return td_err_set(err, TD_ERANGE, "%s: path too long", run->dir);
  if (!td_path_is_dir(ep))
    return td_err_set(err, TD_ENOENT, "%s: no such epoch", ep);
  int rc = td_pathf(path, sizeof path, err, "%s/epoch.json", ep);
  if (!rc)
    rc = td__epoch_json_read(path, epoch, out, err);
  if (!rc && (rc = td__epoch_json_check_tasks(*out, &run->meta, path, err))) {
    json_decref(*out);
    *out = NULL;
  }
  return rc;
}

int td_run_load_head(const td_run *run, int epoch, td_head **out, td_err *err) {
  char ep[TD_PATH_MAX];
  *out = NULL;
  if (td_run_epoch_path(run, epoch, ep, sizeof ep))
    return td_err_set(err, TD_ERANGE, "%s: path too long", run->dir);
  if (!td_path_is_dir(ep))
    return td_err_set(err, TD_ENOENT, "%s: no such epoch", ep);
  return td_head_load_dir(ep, run->meta.repr_dim, run->meta.n_classes, out,
                          err);
}

/* ---- validation --------------------------------------------------------- */

/* Loads an array if present (or fails if required and absent) and drops it:
 * td_run_load does every check. */
static int check_file(const td_run *run, int epoch, const char *name,
                      int required, td_err *err) {
  td_array a;
  int rc = td_run_load(run, epoch, name, &a, err);
  td_array_close(&a);
  if (rc == TD_ENOENT && !required)
    return TD_OK;
  return rc;
}

/* Rows of train_repr checked against head(train_repr) ≈ train_logits. A
 * head exported from another epoch, or logits recorded with dropout on,
 * would otherwise go unnoticed and make every territory wrong. */
#define TD__HEAD_CHECK_ROWS 64

static int check_head_logits(const td_run *run, int epoch, const td_head *h,
                             const td_array *repr, const td_array *logits,
                             td_err *err) {
  int64_t n = repr->shape[0] < TD__HEAD_CHECK_ROWS ? repr->shape[0]
                                                   : TD__HEAD_CHECK_ROWS;
  int64_t d = repr->shape[1];
  int c = td_head_out_dim(h);
  if (n == 0)
    return TD_OK;
  float *x = td_malloc((size_t)(n * d + n * c) * sizeof *x);
  if (!x)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  float *z = x + n * d;
  for (int64_t i = 0; i < n * d; i++)
    x[i] = repr->dtype == TD_F16
               ? td_f16_to_f32(((const uint16_t *)repr->data)[i])
               : ((const float *)repr->data)[i];
  td_head_forward(h, x, n, z);
  /* float16 representations keep only ~3 decimal digits; allow for it. */
  float rel = repr->dtype == TD_F16 || logits->dtype == TD_F16 ? 5e-2f : 1e-2f;
  td_array lf = {0};
  int rc = logits->dtype == TD_F16 ? td_array_to_f32(logits, &lf, err) : TD_OK;
  if (rc) {
    td_free(x);
    return rc;
  }
  const float *rec = lf.data ? lf.data : logits->data;
  for (int64_t i = 0; i < n && !rc; i++) {
    float scale = 0;
    for (int j = 0; j < c; j++)
      scale = fmaxf(scale, fabsf(rec[i * c + j]));
    for (int j = 0; j < c && !rc; j++) {
      float diff = fabsf(z[i * c + j] - rec[i * c + j]);
      if (!(diff <= rel * (1.0f + scale))) {
        char ep[TD_PATH_MAX];
        if (td_run_epoch_path(run, epoch, ep, sizeof ep)) {
          /* cannot fail: the epoch's arrays were just loaded from it */
        }
        rc = td_err_set(err, TD_EVALUE,
                        "%s/head.json: the head does not reproduce "
                        "train_logits.npy (row %lld, class %d: head gives "
                        "%.6g, file has %.6g); export the head of the same "
                        "epoch and record logits in eval mode",
                        ep, (long long)i, j, (double)z[i * c + j],
                        (double)rec[i * c + j]);
      }
    }
  }
  td_array_close(&lf);
  td_free(x);
  return rc;
}

int td_run_validate_epoch(const td_run *run, int epoch, td_err *err) {
  static const char *const optional[] = {"test_repr", "test_logits",
                                         "train_loss", "subset", "trained"};
  json_t *j;
  td_array repr = {0}, logits = {0};
  td_head *h = NULL;
  int rc = td__run_load_epoch_json(run, epoch, &j, err);
  json_decref(j);
  if (!rc)
    rc = td_run_load(run, epoch, "train_repr", &repr, err);
  if (!rc)
    rc = td_run_load(run, epoch, "train_logits", &logits, err);
  for (size_t i = 0; !rc && i < sizeof optional / sizeof *optional; i++)
    rc = check_file(run, epoch, optional[i], 0, err);
  if (!rc)
    rc = td_run_load_head(run, epoch, &h, err);
  if (!rc)
    rc = check_head_logits(run, epoch, h, &repr, &logits, err);
  td_head_free(h);
  td_array_close(&repr);
  td_array_close(&logits);
  return rc;
}

int td_run_validate_top(const td_run *run, td_err *err) {
  static const char *const top[] = {"train_labels", "test_labels",
                                    "train_truth", "train_inputs",
                                    "test_inputs"};
  int rc = TD_OK;
  for (size_t i = 0; !rc && i < sizeof top / sizeof *top; i++)
    rc = check_file(run, -1, top[i], i == 0, err);
  return rc;
}

int td_run_validate(const td_run *run, void (*progress)(int, int, void *),
                    void *ctx, td_err *err) {
  int rc = td_run_validate_top(run, err);
  for (int i = 0; !rc && i < run->n_epochs; i++) {
    if (progress)
      progress(i, run->n_epochs, ctx);
    rc = td_run_validate_epoch(run, run->epochs[i], err);
  }
  if (!rc && progress)
    progress(run->n_epochs, run->n_epochs, ctx);
  return rc;
}

int td_run_is_finished(const char *run_dir) {
  char path[TD_PATH_MAX];
  return td_pathf(path, sizeof path, NULL, "%s/finished", run_dir) == TD_OK &&
         td_path_exists(path);
}
