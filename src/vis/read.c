/* Reading RUN/vis/: which epochs of a method are projected, where they lie,
 * and the one checked loader of an N×2 embedding every reader uses. */
#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "tardis/fsutil.h"
#include "tardis/vis.h"

int td_vis_check_embedding(const char *path, const td_array *a, int64_t n,
                           td_err *err) {
  td_vis_dims d;
  td_vis_dims_unknown(&d);
  d.n_train = n < 0 ? -1 : n;
  return td_vis_check_array(td_vis_spec_find("train_embedding.npy"), path, a,
                            &d, err);
}

int td_vis_load_embedding_file(const char *path, int64_t n, td_array *out,
                               td_err *err) {
  memset(out, 0, sizeof *out);
  int rc = td_npy_load(path, out, err);
  if (rc == TD_OK && (rc = td_vis_check_embedding(path, out, n, err)))
    td_array_close(out);
  return rc;
}

static int split_ok(const char *split, td_err *err) {
  static const char *const ok[] = {"train", "test", "ood", "boundary"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (!strcmp(split, ok[i]))
      return TD_OK;
  return td_err_set(err, TD_EARG, "no embedding of split '%.32s'", split);
}

int td_vis_load_embedding_in(const char *epoch_dir, const char *split,
                             int64_t n, td_array *out, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = split_ok(split, err);
  if (rc)
    return rc;
  rc =
      td_pathf(path, sizeof path, err, "%s/%s_embedding.npy", epoch_dir, split);
  return rc ? rc : td_vis_load_embedding_file(path, n, out, err);
}

int td_vis_load_embedding(const char *run_dir, const char *method, int epoch,
                          const char *split, int64_t n, td_array *out,
                          td_err *err) {
  char dir[TD_PATH_MAX];
  int rc = td_vis_epoch_dir(run_dir, method, epoch, dir, sizeof dir);
  if (rc)
    return td_err_set(err, rc, "%s/vis/%s: path too long or bad method",
                      run_dir, method);
  return td_vis_load_embedding_in(dir, split, n, out, err);
}

int td_vis_epoch_find(const td_run *run, const char *method, int epoch,
                      char *buf, size_t len, td_err *err) {
  char ep_path[TD_PATH_MAX], mdir[TD_PATH_MAX];
  int rc = td_vis_method_dir(td_run_dir(run), method, mdir, sizeof mdir, err);
  if (rc)
    return rc;
  if (td_run_epoch_path(run, epoch, ep_path, sizeof ep_path))
    return td_err_set(err, TD_ERANGE, "%s: path too long", td_run_dir(run));
  /* epoch_ + the run's own epoch directory name (RUN/epochs/NNNN), which
   * may be padded otherwise than %04d. */
  const char *name = strrchr(ep_path, '/');
  name = name ? name + 1 : ep_path;
  if ((rc = td_pathf(buf, len, err, "%s/epoch_%s", mdir, name)))
    return rc;
  if (td_path_is_dir(buf))
    return TD_OK;
  if (td_vis_epoch_dir(td_run_dir(run), method, epoch, buf, len))
    return td_err_set(err, TD_ERANGE, "%s: path too long", mdir);
  if (!td_path_is_dir(buf))
    return td_err_set(err, TD_ENOENT, "%s: epoch %d is not projected", mdir,
                      epoch);
  return TD_OK;
}

/* epoch_<digits>, at most 9 of them; -1 for anything else. */
static int epoch_of(const char *s) {
  if (strncmp(s, "epoch_", 6) != 0 || !s[6] || strlen(s + 6) > 9 ||
      strspn(s + 6, "0123456789") != strlen(s + 6))
    return -1;
  return atoi(s + 6);
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

int td_vis_list_epochs(const td_run *run, const char *method, int **epochs,
                       int *n, td_err *err) {
  *epochs = NULL;
  *n = 0;
  char dir[TD_PATH_MAX];
  int rc = td_vis_method_dir(td_run_dir(run), method, dir, sizeof dir, err);
  if (rc)
    return rc;
  DIR *d = opendir(dir);
  if (!d)
    return td_err_set(err, TD_ENOENT, "%s: no projection", dir);
  int *list = NULL, cnt = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    int ep = epoch_of(de->d_name);
    if (ep < 0 || td_run_epoch_index(run, ep) < 0)
      continue; /* not an epoch, or projected once but no longer in the run */
    if (cnt == cap) {
      cap = cap ? 2 * cap : 64;
      int *p = realloc(list, (size_t)cap * sizeof *p);
      if (!p) {
        closedir(d);
        free(list);
        return td_err_set(err, TD_ENOMEM, "%s: out of memory", dir);
      }
      list = p;
    }
    list[cnt++] = ep;
  }
  closedir(d);
  if (cnt)
    qsort(list, (size_t)cnt, sizeof *list, cmp_int);
  *epochs = list;
  *n = cnt;
  return TD_OK;
}

int td_vis_epoch_is_draft(const char *run_dir, const char *method, int epoch) {
  char p[TD_PATH_MAX];
  if (td_vis_epoch_path(run_dir, method, epoch, "projection.json", p, sizeof p,
                        NULL) != TD_OK)
    return 0;
  json_t *j = td__json_load_file(p, 0, NULL);
  int draft = json_is_true(json_object_get(j, TD_VIS_DRAFT_KEY));
  json_decref(j);
  return draft;
}

int td_vis_epoch_final(const char *run_dir, const char *method, int epoch) {
  return td_vis_epoch_done(run_dir, method, epoch) &&
         !td_vis_epoch_is_draft(run_dir, method, epoch);
}
