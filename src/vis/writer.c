/* Writing an epoch of RUN/vis/<method>/: its files go into a temporary
 * directory (.tmp-NNNN-<pid>) that is checked against the spec table and
 * renamed into place only when complete. A reader never sees a half-written
 * epoch, and a killed writer leaves only a temporary directory, which the
 * next writer of the method removes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "tardis/fsutil.h"
#include "tardis/vis.h"

#define TMP_PREFIX ".tmp-"

struct td_vis_writer {
  char method[64];
  char mdir[TD_PATH_MAX], tmp[TD_PATH_MAX], final[TD_PATH_MAX];
  td_vis_dims dims; /* grows as files fix unknown sizes */
};

/* This host's name as it goes into temporary names ([A-Za-z0-9.], at most
 * 32 characters): the processes of `mpirun tardis project` on several
 * hosts share RUN/vis/, and a pid means something on its own host only. */
static void host_tag(char tag[33]) {
  char h[256] = "";
  gethostname(h, sizeof h - 1);
  int k = 0;
  for (const char *c = h; *c && k < 32; c++)
    if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
        (*c >= '0' && *c <= '9') || *c == '.')
      tag[k++] = *c;
  tag[k] = 0;
}

/* A writer's temporary directory: .tmp-NNNN-<host>-<pid> (older writers:
 * .tmp-NNNN-<pid>); the pid, 0 without one or of another host, -1 for
 * anything else. */
static long tmp_owner(const char *name) {
  if (strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0)
    return -1;
  const char *dash = strrchr(name, '-');
  const char *host = strchr(name + strlen(TMP_PREFIX), '-');
  if (host && host < dash) { /* a host between the epoch and the pid */
    char tag[33];
    host_tag(tag);
    if ((size_t)(dash - host - 1) != strlen(tag) ||
        strncmp(host + 1, tag, strlen(tag)) != 0)
      return 0; /* another host's writer: alive or not, not ours to tell */
  }
  if (dash == name + strlen(TMP_PREFIX) - 1)
    return 0; /* no pid: an old or foreign leftover */
  char *end;
  long pid = strtol(dash + 1, &end, 10);
  return *end || pid <= 0 ? 0 : pid;
}

void td_vis_clean_stale(const char *run_dir, const char *method) {
  char mdir[TD_PATH_MAX], p[TD_PATH_MAX];
  if (td_vis_method_dir(run_dir, method, mdir, sizeof mdir, NULL))
    return;
  DIR *d = opendir(mdir);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    long pid = tmp_owner(de->d_name);
    if (pid <= 0 || pid == (long)getpid())
      continue; /* not ours, or this process's own */
    /* kill(pid, 0) fails with ESRCH once the writer is gone */
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
      continue;
    if (td_pathf(p, sizeof p, NULL, "%s/%s", mdir, de->d_name) == TD_OK)
      td_remove_tree_best_effort(p);
  }
  if (d)
    closedir(d);
}

int td_vis_epoch_begin(const char *run_dir, const char *method, int epoch,
                       const td_vis_dims *d, td_vis_writer **out, td_err *err) {
  *out = NULL;
  td_vis_writer *w = calloc(1, sizeof *w);
  if (!w)
    return td_err_set(err, TD_ENOMEM, "out of memory");
  int rc = td_vis_method_dir(run_dir, method, w->mdir, sizeof w->mdir, err);
  if (rc == TD_OK && strlen(method) >= sizeof w->method)
    rc = td_err_set(err, TD_ERANGE, "method name '%.32s...' too long", method);
  if (rc == TD_OK && (rc = td_vis_epoch_dir(run_dir, method, epoch, w->final,
                                            sizeof w->final)))
    td_err_set(err, rc, "%s: epoch directory path too long", w->mdir);
  char tag[33];
  host_tag(tag);
  if (rc == TD_OK)
    rc = td_pathf(w->tmp, sizeof w->tmp, err, "%s/" TMP_PREFIX "%04d-%s-%d",
                  w->mdir, epoch, tag, (int)getpid());
  /* RUN itself is never created here: a run removed while it is being
   * projected or followed must not reappear as an empty shell. */
  if (rc == TD_OK && !td_path_is_dir(run_dir))
    rc = td_err_set(err, TD_ENOENT, "%s: no such run directory", run_dir);
  if (rc == TD_OK) {
    td_vis_clean_stale(run_dir, method);
    td_remove_tree_best_effort(w->tmp);
    rc = td_mkdirs(w->tmp, err);
  }
  if (rc) {
    free(w);
    return rc;
  }
  memcpy(w->method, method, strlen(method) + 1); /* length checked above */
  w->dims = *d;
  *out = w;
  return TD_OK;
}

const char *td_vis_writer_dir(const td_vis_writer *w) { return w->tmp; }

static int file_path(const td_vis_writer *w, const char *name, char *buf,
                     size_t len, td_err *err) {
  return td_pathf(buf, len, err, "%s/%s", w->tmp, name);
}

int td_vis_put_array(td_vis_writer *w, const char *name, td_dtype dtype,
                     int ndim, const int64_t *shape, const void *data,
                     td_err *err) {
  const td_vis_file_spec *s = td_vis_spec_find(name);
  if (!s || s->kind != TD_VIS_NPY)
    return td_err_set(err, TD_EARG, "%s: not an array of RUN/vis/", name);
  char path[TD_PATH_MAX];
  int rc = file_path(w, name, path, sizeof path, err);
  if (rc)
    return rc;
  td_array a;
  /* only read: td_array has no const view */
  td_array_wrap(&a, dtype, ndim, shape, (void *)(uintptr_t)data);
  /* Checked before it is written: the commit would refuse it anyway, but
   * here the message points at the code that produced it. */
  if ((rc = td_vis_check_array(s, path, &a, &w->dims, err)))
    return rc;
  static const char zero[16];
  return td_npy_save_raw(path, dtype, ndim, shape,
                         td_array_count(&a) ? data : zero, err);
}

int td_vis_put_f32(td_vis_writer *w, const char *name, const float *v,
                   int64_t rows, int64_t cols, td_err *err) {
  int64_t shape[2] = {rows, cols};
  return td_vis_put_array(w, name, TD_F32, 2, shape, v, err);
}

int td_vis_put_json(td_vis_writer *w, const char *name, const char *text,
                    td_err *err) {
  const td_vis_file_spec *s = td_vis_spec_find(name);
  if (!s || s->kind != TD_VIS_JSON)
    return td_err_set(err, TD_EARG, "%s: not a JSON file of RUN/vis/", name);
  char path[TD_PATH_MAX];
  int rc = file_path(w, name, path, sizeof path, err);
  return rc ? rc : td_write_file_atomic(path, text, strlen(text), err);
}

/* Puts the finished epoch at w->final in one step. An epoch being replaced
 * (a live draft by its fit) is swapped with the new one (RENAME_EXCHANGE),
 * so a reader such as the server always finds the epoch, old or new, never
 * neither; the old one, now at w->tmp, is removed after. A file system that
 * cannot swap gets remove-then-rename, with a short window without it. */
static int move_into_place(td_vis_writer *w, td_err *err) {
  if (td_path_exists(w->final)) {
    if (renameat2(AT_FDCWD, w->tmp, AT_FDCWD, w->final, RENAME_EXCHANGE) == 0) {
      td_remove_tree_best_effort(w->tmp);
      return TD_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
      return td_err_set(err, TD_EIO, "%s: cannot swap into place: %s", w->final,
                        strerror(errno));
    int rc = td_remove_tree(w->final, err);
    if (rc)
      return rc;
  }
  if (rename(w->tmp, w->final) != 0)
    return td_err_set(err, TD_EIO, "%s: cannot rename into place: %s", w->final,
                      strerror(errno));
  return TD_OK;
}

int td_vis_epoch_commit(td_vis_writer *w, td_err *err) {
  int rc = td_vis_check_epoch(w->tmp, w->method, &w->dims, err);
  if (rc == TD_OK)
    rc = move_into_place(w, err);
  if (rc == TD_OK)
    td_fsync_dir(w->mdir);
  else
    td_remove_tree_best_effort(w->tmp);
  free(w);
  return rc;
}

void td_vis_epoch_abort(td_vis_writer *w) {
  if (!w)
    return;
  td_remove_tree_best_effort(w->tmp);
  free(w);
}

int td_vis_write_method_json(const char *run_dir, const char *method,
                             const char *file, const char *text, td_err *err) {
  char dir[TD_PATH_MAX], path[TD_PATH_MAX];
  int rc = td_vis_method_dir(run_dir, method, dir, sizeof dir, err);
  if (rc == TD_OK)
    rc = td_vis_method_path(run_dir, method, file, path, sizeof path, err);
  if (rc == TD_OK && !td_path_is_dir(run_dir))
    rc = td_err_set(err, TD_ENOENT, "%s: no such run directory", run_dir);
  if (rc == TD_OK)
    rc = td_mkdirs(dir, err);
  return rc ? rc : td_write_file_atomic(path, text, strlen(text), err);
}
