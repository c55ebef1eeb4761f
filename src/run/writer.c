/* Writing a run: run.json, top-level arrays, and epochs that appear
 * atomically (temporary directory, fsync, rename). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "run/run_internal.h"
#include "tardis/fsutil.h"

static int dir_is_empty(const char *path) {
  DIR *d = opendir(path);
  if (!d)
    return 0;
  struct dirent *e;
  int empty = 1;
  while (empty && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      empty = 0;
  closedir(d);
  return empty;
}

/* Makes way for a new run in `dir`: refuses to clobber anything that is not
 * an old run, and an old run unless forced. */
static int clear_target(const char *dir, int force, td_err *err) {
  char path[TD_PATH_MAX];
  if (!td_path_exists(dir))
    return TD_OK;
  if (!td_path_is_dir(dir))
    return td_err_set(err, TD_EEXIST,
                      "%s: already exists and is not a "
                      "directory",
                      dir);
  if (dir_is_empty(dir))
    return TD_OK;
  if (!force)
    return td_err_set(err, TD_EEXIST,
                      "%s: already exists and is not empty (use --force to "
                      "replace it)",
                      dir);
  int rc = td_pathf(path, sizeof path, err, "%s/run.json", dir);
  if (rc)
    return rc;
  if (!td_path_exists(path))
    return td_err_set(err, TD_EEXIST,
                      "%s: not empty and not a tardis run (no run.json); "
                      "refusing to delete it, even with --force",
                      dir);
  return td_remove_tree(dir, err);
}

int td_run_move_aside(const char *dir, char *aside, size_t len, td_err *err) {
  char base[TD_PATH_MAX], path[TD_PATH_MAX];
  aside[0] = '\0';
  int rc = td_pathf(base, sizeof base, err, "%s", dir);
  size_t n = strlen(base);
  while (!rc && n > 1 && base[n - 1] == '/')
    base[--n] = '\0'; /* "runs/x/" moves to "runs/x.old-PID", not inside */
  if (!rc)
    rc = td_pathf(path, sizeof path, err, "%s/run.json", base);
  if (rc || !td_path_is_dir(base) || !td_path_exists(path))
    return rc;
  if ((rc = td_pathf(aside, len, err, "%s.old-%ld", base, (long)getpid())))
    return rc;
  td_remove_tree_best_effort(aside);
  if (rename(base, aside) != 0) {
    rc = td_err_set(err, TD_EIO, "%s: cannot move the old run aside to %s: %s",
                    base, aside, strerror(errno));
    aside[0] = '\0';
  }
  return rc;
}

void td_run_end_aside(const char *dir, const char *aside, int success) {
  if (!aside || !aside[0])
    return;
  if (success) {
    td_remove_tree_best_effort(aside);
    return;
  }
  td_remove_tree_best_effort(dir);
  if (rename(aside, dir) != 0)
    fprintf(stderr,
            "tardis: the old run is kept at %s (cannot move it back "
            "to %s: %s)\n",
            aside, dir, strerror(errno));
}

int td_run_create(const char *dir, const td_run_meta *meta, int force,
                  td_err *err) {
  return td__run_create_json(dir, meta, NULL, force, err);
}

int td__run_create_json(const char *dir, const td_run_meta *meta,
                        const json_t *extra, int force, td_err *err) {
  int rc = td__meta_check(meta, err);
  if (rc)
    return rc;
  td_run_meta m = *meta;
  if (!m.created[0]) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(m.created, sizeof m.created, "%Y-%m-%dT%H:%M:%SZ", &tm);
  }
  if (!m.producer[0])
    snprintf(m.producer, sizeof m.producer, "%s", TD__RUN_PRODUCER);
  json_t *root = td__meta_to_json(&m);
  if (root && extra &&
      json_object_update_missing(root, (json_t *)(uintptr_t)extra)) {
    json_decref(root);
    root = NULL;
  }
  if (!root)
    return td_err_set(err, TD_EARG,
                      "%s: cannot encode run.json (names must be UTF-8)", dir);
  char *text = json_dumps(root, JSON_INDENT(2));
  json_decref(root);
  if (!text)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", dir);
  char path[TD_PATH_MAX];
  rc = clear_target(dir, force, err);
  if (!rc)
    rc = td_pathf(path, sizeof path, err, "%s/epochs", dir);
  if (!rc)
    rc = td_mkdirs(path, err);
  if (!rc)
    rc = td_pathf(path, sizeof path, err, "%s/run.json", dir);
  if (!rc) {
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the terminator: a text file ends in one */
    rc = td_write_file_atomic(path, text, len + 1, err);
  }
  td_free(text);
  return rc;
}

/* Splits "train_labels[.npy]" into its base name; 0 when not plain. */
static int base_name(const char *name, char *base, size_t len) {
  size_t n = strlen(name);
  if (n > 4 && strcmp(name + n - 4, ".npy") == 0)
    n -= 4;
  if (!td__plain_name(name) || n == 0 || n >= len)
    return 0;
  memcpy(base, name, n);
  base[n] = 0;
  return 1;
}

/* Checks a known array against the run and saves it; int64 labels are
 * stored as int32, the type the format asks for. */
static int save_checked(const td_run_meta *m, int64_t n_rec, int in_epoch,
                        const char *base, const char *path, const char *shown,
                        const td_array *a, td_err *err) {
  const td__array_spec *s = td__spec_find(base, in_epoch);
  if (!s)
    return td_npy_save(path, a, err);
  int rc = td__spec_check(s, m, n_rec, shown, a, err);
  if (rc)
    return rc;
  if (!td__spec_is_int(s) || a->dtype != TD_I64)
    return td_npy_save(path, a, err);
  td_array b;
  if ((rc = td__to_i32(a, &b, err))) {
    td__err_name_path(err, shown);
    return rc;
  }
  rc = td_npy_save(path, &b, err);
  td_array_close(&b);
  return rc;
}

/* RUN/subset.npy says what every epoch records, so it is set before the
 * first epoch and never changed after. */
static int subset_settable(const char *run_dir, const char *path,
                           const td_array *a, td_err *err) {
  char epochs[TD_PATH_MAX];
  int rc = td_pathf(epochs, sizeof epochs, err, "%s/epochs", run_dir);
  if (rc)
    return rc;
  DIR *d = opendir(epochs);
  struct dirent *e = NULL;
  while (d && (e = readdir(d)) && e->d_name[0] == '.') {
  }
  if (d)
    closedir(d);
  if (e)
    return td_err_set(err, TD_ESTATE,
                      "%s: the run has recorded epochs already; a subset run "
                      "records the same samples from its first epoch on",
                      path);
  if (a->ndim == 1 && a->shape[0] == 0)
    return td_err_set(err, TD_ESHAPE,
                      "%s: empty; a subset run records at least one training "
                      "sample",
                      path);
  return TD_OK;
}

int td_run_write_array(const char *run_dir, const char *name, const td_array *a,
                       td_err *err) {
  char base[128], path[TD_PATH_MAX];
  if (!base_name(name, base, sizeof base))
    return td_err_set(err, TD_EARG, "%s: \"%s\" is not a plain array name",
                      run_dir, name);
  td_run_meta m;
  int rc = td__meta_read(run_dir, &m, err);
  if (rc)
    return rc;
  rc = td_pathf(path, sizeof path, err, "%s/%s.npy", run_dir, base);
  if (!rc && !strcmp(base, "subset"))
    rc = subset_settable(run_dir, path, a, err);
  if (!rc)
    rc = save_checked(&m, m.n_train, 0, base, path, path, a, err);
  td__meta_free(&m);
  return rc;
}

/* Publishes src, an .npy of another run, at path (a temporary name, then a
 * rename over path): a hard link, so that both runs share the bytes and
 * either can be deleted alone; a copy where the file system refuses links
 * (another device, no link support). The array is checked against the run
 * first, as td_run_write_array checks what it writes. */
static int link_checked(const td_run_meta *m, int64_t n_rec, int in_epoch,
                        const char *base, const char *path, const char *shown,
                        const char *src, td_err *err) {
  td_array a;
  int rc = td_npy_load(src, &a, err);
  if (rc)
    return rc;
  const td__array_spec *s = td__spec_find(base, in_epoch);
  if (s && (rc = td__spec_check(s, m, n_rec, shown, &a, err))) {
    td_array_close(&a);
    return rc;
  }
  char tmp[TD_PATH_MAX];
  rc = td_pathf(tmp, sizeof tmp, err, "%s.link-%ld", path, (long)getpid());
  if (!rc) {
    unlink(tmp);
    if (link(src, tmp) != 0)
      rc = td_npy_save(path, &a, err); /* a copy, written atomically */
    else if (rename(tmp, path) != 0) {
      rc = td_err_set(err, TD_EIO, "%s: cannot rename %s into place: %s", path,
                      tmp, strerror(errno));
      unlink(tmp);
    }
  }
  td_array_close(&a);
  return rc;
}

int td_run_link_array(const char *run_dir, const char *name, const char *src,
                      td_err *err) {
  char base[128], path[TD_PATH_MAX];
  if (!base_name(name, base, sizeof base) || !strcmp(base, "subset"))
    return td_err_set(err, TD_EARG, "%s: \"%s\" is not a plain array name",
                      run_dir, name);
  td_run_meta m;
  int rc = td__meta_read(run_dir, &m, err);
  if (rc)
    return rc;
  rc = td_pathf(path, sizeof path, err, "%s/%s.npy", run_dir, base);
  if (!rc)
    rc = link_checked(&m, m.n_train, 0, base, path, path, src, err);
  td__meta_free(&m);
  return rc;
}

/* ---- epochs ------------------------------------------------------------- */

int td_epoch_begin(const char *run_dir, int epoch, td_epoch_writer **out,
                   td_err *err) {
  *out = NULL;
  if (epoch < 0)
    return td_err_set(err, TD_EARG, "%s: epoch %d is negative", run_dir, epoch);
  td_epoch_writer *w = td_calloc(1, sizeof *w);
  if (!w)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", run_dir);
  char name[32], epochs[TD_PATH_MAX];
  td__epoch_name(epoch, name, sizeof name);
  w->epoch = epoch;
  int rc = td_pathf(w->run_dir, sizeof w->run_dir, err, "%s", run_dir);
  if (!rc)
    rc = td__meta_read(run_dir, &w->meta, err);
  if (!rc)
    rc = td__subset_load(run_dir, &w->meta, &w->subset, err);
  if (!rc)
    rc = td_pathf(epochs, sizeof epochs, err, "%s/epochs", run_dir);
  if (!rc)
    rc = td_pathf(w->final_, sizeof w->final_, err, "%s/%s", epochs, name);
  if (!rc)
    rc = td_pathf(w->tmp, sizeof w->tmp, err, "%s/.tmp-%s-%ld", epochs, name,
                  (long)getpid());
  /* Fail before the trainer spends time writing an epoch it cannot keep. */
  if (!rc && td_path_exists(w->final_))
    rc = td_err_set(err, TD_EEXIST, "%s: epoch %d is already recorded",
                    w->final_, epoch);
  if (!rc)
    rc = td_mkdirs(epochs, err);
  /* Best effort: a leftover that cannot go now is swept at the next epoch. */
  if (!rc && td_run_remove_stale(run_dir, NULL, NULL) != TD_OK) {
  }
  if (!rc && td_path_exists(w->tmp)) /* our own leftover from a failed try */
    rc = td_remove_tree(w->tmp, err);
  if (!rc && mkdir(w->tmp, 0755) != 0)
    rc = td_err_set(err, TD_EIO, "%s: cannot create directory: %s", w->tmp,
                    strerror(errno));
  if (rc) {
    td__meta_free(&w->meta);
    td_array_close(&w->subset);
    td_free(w);
    return rc;
  }
  *out = w;
  return TD_OK;
}

const char *td_epoch_path(const td_epoch_writer *w) { return w->tmp; }
int td_epoch_number(const td_epoch_writer *w) { return w->epoch; }

int td_epoch_add_array(td_epoch_writer *w, const char *file_name,
                       const td_array *a, td_err *err) {
  char base[128], path[TD_PATH_MAX];
  if (!base_name(file_name, base, sizeof base))
    return td_err_set(err, TD_EARG, "%s: \"%s\" is not a plain file name",
                      w->tmp, file_name);
  /* Always "<base>.npy", whether or not the caller gave the suffix. */
  int rc = td_pathf(path, sizeof path, err, "%s/%s.npy", w->tmp, base);
  if (rc)
    return rc;
  /* Messages name the final path: that is where the user will look. */
  char shown[TD_PATH_MAX];
  if ((rc = td_pathf(shown, sizeof shown, err, "%s/%s.npy", w->final_, base)))
    return rc;
  int64_t n_rec = w->subset.data ? w->subset.shape[0] : w->meta.n_train;
  rc = save_checked(&w->meta, n_rec, 1, base, path, shown, a, err);
  if (!rc && !strcmp(base, "subset")) /* must repeat RUN/subset.npy */
    rc = td__subset_check_epoch(path, shown, w->run_dir, &w->meta, &w->subset,
                                err);
  return rc;
}

int td_epoch_link_array(td_epoch_writer *w, const char *file_name,
                        const char *src, td_err *err) {
  char base[128], path[TD_PATH_MAX], shown[TD_PATH_MAX];
  if (!base_name(file_name, base, sizeof base) || !strcmp(base, "subset"))
    return td_err_set(err, TD_EARG, "%s: \"%s\" is not a plain file name",
                      w->tmp, file_name);
  int rc = td_pathf(path, sizeof path, err, "%s/%s.npy", w->tmp, base);
  if (!rc)
    rc = td_pathf(shown, sizeof shown, err, "%s/%s.npy", w->final_, base);
  int64_t n_rec = w->subset.data ? w->subset.shape[0] : w->meta.n_train;
  return rc ? rc
            : link_checked(&w->meta, n_rec, 1, base, path, shown, src, err);
}

int td__epoch_add_json(td_epoch_writer *w, const char *file_name, json_t *value,
                       td_err *err) {
  char path[TD_PATH_MAX];
  if (!td__plain_name(file_name))
    return td_err_set(err, TD_EARG, "%s: \"%s\" is not a plain file name",
                      w->tmp, file_name);
  if (strcmp(file_name, "epoch.json") == 0) {
    json_t *e = json_object_get(value, "epoch");
    if (!json_is_object(value) || !json_is_integer(e) ||
        json_integer_value(e) != w->epoch)
      return td_err_set(err, TD_EARG,
                        "%s/epoch.json: expected an object with \"epoch\": %d",
                        w->final_, w->epoch);
  }
  int rc = td_pathf(path, sizeof path, err, "%s/%s", w->tmp, file_name);
  if (rc)
    return rc;
  char *text = json_dumps(value, JSON_INDENT(2) | JSON_ENCODE_ANY);
  if (!text)
    return td_err_set(err, TD_EARG, "%s: cannot encode JSON", path);
  size_t len = strlen(text);
  text[len] = '\n';
  rc = td_write_file_atomic(path, text, len + 1, err);
  td_free(text);
  return rc;
}

/* fsyncs every file below `path`, then the directories themselves, so that
 * the rename publishes data that is already on disk. */
static int fsync_tree(const char *path, td_err *err) {
  DIR *d = opendir(path);
  if (!d)
    return td_err_set(err, TD_EIO, "%s: cannot open directory: %s", path,
                      strerror(errno));
  int rc = TD_OK;
  struct dirent *e;
  char sub[TD_PATH_MAX];
  while (!rc && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    struct stat st;
    if ((rc = td_pathf(sub, sizeof sub, err, "%s/%s", path, e->d_name)))
      break;
    if (lstat(sub, &st) != 0)
      continue; /* vanished: nothing to sync */
    if (S_ISDIR(st.st_mode)) {
      rc = fsync_tree(sub, err);
    } else if (S_ISREG(st.st_mode)) {
      int fd = open(sub, O_RDONLY | O_CLOEXEC);
      if (fd < 0 || fsync(fd) != 0)
        rc = td_err_set(err, TD_EIO, "%s: cannot sync: %s", sub,
                        strerror(errno));
      if (fd >= 0)
        close(fd);
    }
  }
  closedir(d);
  if (!rc)
    td_fsync_dir(path);
  return rc;
}

/* Renames without ever replacing an existing epoch. */
static int rename_noreplace(const char *from, const char *to, td_err *err) {
#ifdef RENAME_NOREPLACE
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
    return TD_OK;
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
    goto fail;
#endif
  /* Racy fallback for file systems without RENAME_NOREPLACE; rename(2)
   * still refuses a non-empty target. */
  if (td_path_exists(to)) {
    errno = EEXIST;
    goto fail;
  }
  if (rename(from, to) == 0)
    return TD_OK;
fail:
  if (errno == EEXIST || errno == ENOTEMPTY)
    return td_err_set(err, TD_EEXIST,
                      "%s: already exists (epoch recorded "
                      "twice?)",
                      to);
  return td_err_set(err, TD_EIO, "%s: cannot rename to %s: %s", from, to,
                    strerror(errno));
}

static int check_complete(td_epoch_writer *w, td_err *err) {
  static const char *const required[] = {"epoch.json", "train_repr.npy",
                                         "train_logits.npy", "head.json"};
  char path[TD_PATH_MAX];
  int rc = TD_OK;
  for (size_t i = 0; !rc && i < sizeof required / sizeof *required; i++) {
    rc = td_pathf(path, sizeof path, err, "%s/%s", w->tmp, required[i]);
    if (!rc && !td_path_exists(path))
      rc = td_err_set(err, TD_ESTATE, "%s: cannot commit epoch %d without %s",
                      w->final_, w->epoch, required[i]);
  }
  /* A subset run's epochs each carry a copy of RUN/subset.npy. */
  if (!rc && w->subset.data &&
      !(rc = td_pathf(path, sizeof path, err, "%s/subset.npy", w->tmp)) &&
      !td_path_exists(path))
    rc = td_npy_save(path, &w->subset, err);
  if (!rc)
    rc = td_pathf(path, sizeof path, err, "%s/epoch.json", w->tmp);
  json_t *j = NULL;
  if (!rc)
    rc = td__epoch_json_read(path, w->epoch, &j, err);
  if (!rc)
    rc = td__epoch_json_check_tasks(j, &w->meta, path, err);
  json_decref(j);
  td_head *h = NULL;
  if (!rc)
    rc = td_head_load_dir(w->tmp, w->meta.repr_dim, w->meta.n_classes, &h, err);
  td_head_free(h);
  return rc;
}

int td_epoch_commit(td_epoch_writer *w, td_err *err) {
  char epochs[TD_PATH_MAX];
  int rc = check_complete(w, err);
  if (!rc)
    rc = fsync_tree(w->tmp, err);
  if (!rc)
    rc = rename_noreplace(w->tmp, w->final_, err);
  if (!rc) {
    if (td_pathf(epochs, sizeof epochs, NULL, "%s/epochs", w->run_dir) == 0)
      td_fsync_dir(epochs);
    td__meta_free(&w->meta);
    td_array_close(&w->subset);
    td_free(w);
    return TD_OK;
  }
  td_epoch_abort(w);
  return rc;
}

void td_epoch_abort(td_epoch_writer *w) {
  if (!w)
    return;
  td_remove_tree_best_effort(w->tmp);
  td__meta_free(&w->meta);
  td_array_close(&w->subset);
  td_free(w);
}

/* ---- stale temporary epochs --------------------------------------------- */

/* ".tmp-NNNN-<pid>" -> pid, or 0 when the name is not ours. */
static long tmp_owner(const char *name) {
  if (strncmp(name, ".tmp-", 5) != 0)
    return 0;
  const char *dash = strrchr(name, '-');
  if (!dash || dash == name + 4)
    return 0;
  char *end;
  long pid = strtol(dash + 1, &end, 10);
  return *end == 0 && pid > 0 ? pid : 0;
}

int td_run_remove_stale(const char *run_dir, int *n_removed, td_err *err) {
  char epochs[TD_PATH_MAX], path[TD_PATH_MAX];
  if (n_removed)
    *n_removed = 0;
  int rc = td_pathf(epochs, sizeof epochs, err, "%s/epochs", run_dir);
  if (rc || !td_path_is_dir(epochs))
    return rc;
  DIR *d = opendir(epochs);
  if (!d)
    return td_err_set(err, TD_EIO, "%s: cannot open directory: %s", epochs,
                      strerror(errno));
  struct dirent *e;
  while (!rc && (e = readdir(d))) {
    long pid = tmp_owner(e->d_name);
    /* A live writer (this process included) keeps its directory. */
    if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 ||
        errno != ESRCH)
      continue;
    rc = td_pathf(path, sizeof path, err, "%s/%s", epochs, e->d_name);
    if (!rc)
      rc = td_remove_tree(path, err);
    if (!rc && n_removed)
      (*n_removed)++;
  }
  closedir(d);
  return rc;
}

int td_run_mark_unfinished(const char *run_dir, td_err *err) {
  char path[TD_PATH_MAX];
  int rc = td_pathf(path, sizeof path, err, "%s/finished", run_dir);
  if (rc)
    return rc;
  if (unlink(path) != 0 && errno != ENOENT)
    return td_err_set(err, TD_EIO, "%s: cannot remove: %s", path,
                      strerror(errno));
  return TD_OK;
}

int td_run_mark_finished(const char *run_dir, td_err *err) {
  char path[TD_PATH_MAX], text[96];
  int rc = td_pathf(path, sizeof path, err, "%s/finished", run_dir);
  if (rc)
    return rc;
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  size_t n = strftime(text, sizeof text,
                      "{\"finished\": \"%Y-%m-%dT%H:%M:%SZ\"}\n", &tm);
  return td_write_file_atomic(path, text, n, err);
}
