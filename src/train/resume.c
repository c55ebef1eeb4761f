/* Resume and fine-tune: reading back what a run recorded of its training
 * (run.json's "train", each epoch's model/ and trainer/), and the selection
 * of samples to train on. docs/run-format.md describes the files. */
#include "train/resume.h"
#include "core/json_file.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/run.h"
#include "train/options.h"

void td__cont_free(td__cont *c) {
  json_decref(c->root);
  memset(c, 0, sizeof *c);
}

/* Opens the run at dir, its run.json options into *o, its absolute path. */
static int open_source(const char *dir, td_train_opts *o, td__cont *c,
                       td_run **run, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_run_open(dir, run, err);
  if (rc)
    return rc;
  if (!realpath(dir, c->run_dir) ||
      (rc = td_pathf(path, sizeof path, err, "%s/run.json", dir)))
    return rc ? rc
              : td_err_set(err, TD_EIO, "%s: cannot resolve the path", dir);
  json_error_t je;
  c->root = td__json_load_file(path, 0, &je);
  if (!c->root)
    return td_err_set(err, TD_EFORMAT, "%s: invalid JSON at line %d: %s", path,
                      je.line, je.text);
  return td__train_opts_from_json(c->root, path, o, err);
}

/* The checkpoint directory of `epoch`; an error naming it when absent. */
static int model_of(const td_run *run, int epoch, char *buf, size_t len,
                    td_err *err) {
  char ep[TD_PATH_MAX];
  int rc = td_run_epoch_path(run, epoch, ep, sizeof ep);
  if (rc)
    return td_err_set(err, rc, "%s: path too long", td_run_dir(run));
  if (!td_run_has(run, epoch, "model"))
    return td_err_set(err, TD_ENOENT,
                      "%s/model: no checkpoint (the run was trained with "
                      "--no-model)",
                      ep);
  return td_pathf(buf, len, err, "%s/model", ep);
}

int td__resume_prepare(const td_train_opts *in, td_train_opts *o, td__cont *c,
                       td_err *err) {
  memset(c, 0, sizeof *c);
  *o = *in;
  td_run *run = NULL;
  int n_removed;
  int rc = td_run_remove_stale(in->resume, &n_removed, err);
  if (!rc)
    rc = open_source(in->resume, o, c, &run, err);
  if (!rc && td_run_n_epochs(run) == 0)
    rc = td_err_set(err, TD_ENOENT,
                    "%s: no epoch recorded yet: train it "
                    "again instead of resuming",
                    in->resume);
  if (!rc) {
    c->epoch = td_run_epoch_number(run, td_run_n_epochs(run) - 1);
    rc = model_of(run, c->epoch, c->model_dir, sizeof c->model_dir, err);
  }
  if (!rc)
    rc = td_pathf(c->state_dir, sizeof c->state_dir, err, "%.*s/trainer",
                  (int)(strlen(c->model_dir) - 6), c->model_dir);
  if (!rc && !td_path_exists(c->state_dir))
    rc = td_err_set(err, TD_ENOENT,
                    "%s: no trainer state (the run was "
                    "written by an older tardis): cannot resume it",
                    c->state_dir);
  td_run_close(run);
  if (rc)
    return rc;
  if (in->epochs > 0)
    o->epochs = in->epochs;
  if (o->tasks && in->epochs > 0)
    o->epochs = 0; /* derived from the tasks; td_train checks */
  if (!o->tasks && o->epochs <= c->epoch)
    return td_err_set(err, TD_EARG,
                      "%s has %d epochs already: --epochs must be larger to "
                      "continue it",
                      in->resume, c->epoch);
  o->out = in->resume;
  o->force = 0;
  o->select_idx = in->select_idx; /* a new selection from now on */
  o->n_select_idx = in->n_select_idx;
  o->resume = in->resume;
  o->from = NULL;
  if (in->threads > 0) /* else the run's own: the same bytes as before */
    o->threads = in->threads;
  o->progress = in->progress;
  o->progress_ctx = in->progress_ctx;
  o->before_record = in->before_record;
  o->before_record_ctx = in->before_record_ctx;
  o->no_reuse = in->no_reuse;
  return TD_OK;
}

/* "RUN:EPOCH" into the run and epoch (-1: the last); the epoch part only
 * when what follows the last ':' is all digits. */
static int split_from(const char *s, char *run, size_t len, int *epoch,
                      td_err *err) {
  const char *colon = strrchr(s, ':');
  *epoch = -1;
  size_t n = strlen(s);
  if (colon && colon[1] &&
      strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
    long e = strtol(colon + 1, NULL, 10);
    if (strlen(colon + 1) > 9)
      return td_err_set(err, TD_EARG, "--from %s: epoch out of range", s);
    *epoch = (int)e;
    n = (size_t)(colon - s);
  }
  if (n == 0 || n >= len)
    return td_err_set(err, TD_EARG,
                      "--from: expected RUN or RUN:EPOCH, got "
                      "\"%s\"",
                      s);
  memcpy(run, s, n);
  run[n] = 0;
  return TD_OK;
}

int td__from_prepare(const td_train_opts *in, td_train_opts *o, td__cont *c,
                     td_err *err) {
  memset(c, 0, sizeof *c);
  *o = *in;
  if (in->tasks || in->resume)
    return td_err_set(err, TD_EARG,
                      "--from fine-tunes on chosen samples: not with --tasks "
                      "or --resume");
  char dir[TD_PATH_MAX];
  int want;
  int rc = split_from(in->from, dir, sizeof dir, &want, err);
  if (rc)
    return rc;
  td_train_opts p;
  td_train_opts_default(&p);
  td_run *run = NULL;
  rc = open_source(dir, &p, c, &run, err);
  int n = rc ? 0 : td_run_n_epochs(run);
  if (!rc && n == 0)
    rc = td_err_set(err, TD_ENOENT, "%s: no epoch recorded", dir);
  if (!rc && want >= 0 && td_run_epoch_index(run, want) < 0)
    rc = td_err_set(err, TD_ERANGE,
                    "--from %s: %s has no epoch %d (recorded: %d to %d)",
                    in->from, dir, want, td_run_epoch_number(run, 0),
                    td_run_epoch_number(run, n - 1));
  if (!rc) {
    c->epoch = want >= 0 ? want : td_run_epoch_number(run, n - 1);
    rc = model_of(run, c->epoch, c->model_dir, sizeof c->model_dir, err);
  }
  td_run_close(run);
  if (rc)
    return rc;
  /* The samples and labels must be the parent's: same data, limit, noise
   * (its seed included, which also seeds the child's shuffling) and
   * model. */
  o->dataset = p.dataset;
  o->data = p.data;
  o->data_dir = p.data_dir;
  o->model = p.model;
  o->hidden = p.hidden;
  o->batchnorm = p.batchnorm;
  o->limit = p.limit;
  o->noise = in->labels ? 0 : p.noise; /* the file replaces the labels */
  o->noise_type = p.noise_type;
  o->seed = p.seed; /* the noisy labels are drawn from it */
  /* a parent trained on a label file: its labels, as it recorded them */
  if (!in->labels && p.labels) {
    if ((rc = td_pathf(c->labels, sizeof c->labels, err, "%s/train_labels.npy",
                       c->run_dir)))
      return rc;
    o->labels = c->labels;
  }
  return TD_OK;
}

int td__state_save(const char *epoch_dir, int epoch, const td_rng *rng,
                   const char *optimizer, int64_t steps, float *const bufs[2],
                   size_t n, td_err *err) {
  char dir[TD_PATH_MAX], path[TD_PATH_MAX], text[512];
  int rc = td_pathf(dir, sizeof dir, err, "%s/trainer", epoch_dir);
  if (!rc)
    rc = td_mkdirs(dir, err);
  for (int i = 0; i < 2 && !rc; i++) {
    if (!bufs[i])
      continue;
    int64_t shape[1] = {(int64_t)n};
    if (!(rc = td_pathf(path, sizeof path, err, "%s/optim_%d.npy", dir, i)))
      rc = td_npy_save_raw(path, TD_F32, 1, shape, bufs[i], err);
  }
  if (rc)
    return rc;
  int len = snprintf(
      text, sizeof text,
      "{\"epoch\": %d, \"optimizer\": \"%s\", \"steps\": %" PRId64
      ", \"rng\": [\"%016" PRIx64 "\", \"%016" PRIx64 "\", \"%016" PRIx64
      "\", \"%016" PRIx64 "\"]}\n",
      epoch, optimizer, steps, rng->s[0], rng->s[1], rng->s[2], rng->s[3]);
  if ((rc = td_pathf(path, sizeof path, err, "%s/state.json", dir)))
    return rc;
  return td_write_file_atomic(path, text, (size_t)len, err);
}

static int load_buf(const char *dir, int i, float *dst, size_t n, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/optim_%d.npy", dir, i);
  if (rc)
    return rc;
  td_array a;
  if ((rc = td_npy_load(path, &a, err)))
    return rc;
  if (a.dtype != TD_F32 || a.ndim != 1 || (size_t)a.shape[0] != n)
    rc = td_err_set(err, TD_ESHAPE, "%s: expected %zu float32 values", path, n);
  else
    memcpy(dst, a.data, n * sizeof *dst);
  td_array_close(&a);
  return rc;
}

int td__state_load(const char *dir, const char *optimizer, td_rng *rng,
                   td_optim *opt, size_t n, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/state.json", dir);
  if (rc)
    return rc;
  json_error_t je;
  json_t *j = td__json_load_file(path, 0, &je);
  if (!j)
    return td_err_set(err, TD_EFORMAT, "%s: %s", path, je.text);
  json_t *r = json_object_get(j, "rng"), *st = json_object_get(j, "steps");
  const char *name = json_string_value(json_object_get(j, "optimizer"));
  rc = json_array_size(r) == 4 && json_is_integer(st) &&
               json_integer_value(st) >= 0 && name && !strcmp(name, optimizer)
           ? TD_OK
           : td_err_set(err, TD_EFORMAT,
                        "%s: expected the %s optimizer's steps and the rng "
                        "state",
                        path, optimizer);
  for (int i = 0; i < 4 && !rc; i++) {
    const char *h = json_string_value(json_array_get(r, (size_t)i));
    char *end;
    rng->s[i] = h ? strtoull(h, &end, 16) : 0;
    if (!h || !*h || *end)
      rc = td_err_set(err, TD_EFORMAT, "%s: bad rng state", path);
  }
  if (!rc)
    td_optim_set_steps(opt, json_integer_value(st));
  json_decref(j);
  for (int i = 0; i < 2 && !rc; i++)
    if (td_optim_state(opt, i))
      rc = load_buf(dir, i, td_optim_state(opt, i), n, err);
  return rc;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

int td__select_load(const char *path, int64_t n, int32_t **idx, int64_t *k,
                    td_err *err) {
  *idx = NULL;
  td_array a;
  int rc = td_npy_load(path, &a, err);
  if (rc)
    return rc;
  int64_t m = a.ndim == 1 ? a.shape[0] : 0;
  int32_t *v = NULL;
  if ((a.dtype != TD_I32 && a.dtype != TD_I64) || a.ndim != 1 || m < 1)
    rc = td_err_set(err, TD_ESHAPE,
                    "%s: expected a non-empty 1-D int32 or int64 array of "
                    "training indices",
                    path);
  else if (!(v = malloc((size_t)m * sizeof *v)))
    rc = td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  for (int64_t i = 0; !rc && i < m; i++) {
    int64_t x = a.dtype == TD_I32 ? ((const int32_t *)a.data)[i]
                                  : ((const int64_t *)a.data)[i];
    if (x < 0 || x >= n)
      rc = td_err_set(err, TD_ERANGE,
                      "%s: index %lld at position %lld is out of range (the "
                      "run has %lld training samples)",
                      path, (long long)x, (long long)i, (long long)n);
    else
      v[i] = (int32_t)x;
  }
  td_array_close(&a);
  if (!rc) {
    qsort(v, (size_t)m, sizeof *v, cmp_i32);
    for (int64_t i = 1; i < m && !rc; i++)
      if (v[i] == v[i - 1])
        rc = td_err_set(err, TD_EVALUE, "%s: index %d is selected twice", path,
                        v[i]);
  }
  if (rc) {
    free(v);
    return rc;
  }
  *idx = v;
  *k = m;
  return TD_OK;
}
