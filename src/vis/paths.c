/* Every path under RUN/vis/ is built here, each with td_pathf, so no caller
 * spells "vis/%s" itself and none silently truncates. */
#include <string.h>

#include "tardis/fsutil.h"
#include "tardis/vis.h"

int td_vis_method_ok(const char *method) {
  return method && method[0] && method[0] != '.' && !strchr(method, '/');
}

/* On failure buf holds "", so a caller that ignores the code reads the
 * path as absent. */
static int method_arg(const char *method, char *buf, size_t len, td_err *err) {
  if (td_vis_method_ok(method))
    return TD_OK;
  if (len)
    buf[0] = '\0';
  return td_err_set(err, TD_EARG, "bad projection method '%.64s'",
                    method ? method : "");
}

int td_vis_root(const char *run_dir, char *buf, size_t len, td_err *err) {
  return td_pathf(buf, len, err, "%s/vis", run_dir);
}

int td_vis_method_dir(const char *run_dir, const char *method, char *buf,
                      size_t len, td_err *err) {
  int rc = method_arg(method, buf, len, err);
  return rc ? rc : td_pathf(buf, len, err, "%s/vis/%s", run_dir, method);
}

int td_vis_method_path(const char *run_dir, const char *method,
                       const char *file, char *buf, size_t len, td_err *err) {
  int rc = method_arg(method, buf, len, err);
  return rc ? rc
            : td_pathf(buf, len, err, "%s/vis/%s/%s", run_dir, method, file);
}

int td_vis_epoch_dir(const char *run_dir, const char *method, int epoch,
                     char *buf, size_t len) {
  int rc = method_arg(method, buf, len, NULL);
  return rc ? rc
            : td_pathf(buf, len, NULL, "%s/vis/%s/epoch_%04d", run_dir, method,
                       epoch);
}

int td_vis_epoch_path(const char *run_dir, const char *method, int epoch,
                      const char *file, char *buf, size_t len, td_err *err) {
  int rc = method_arg(method, buf, len, err);
  return rc ? rc
            : td_pathf(buf, len, err, "%s/vis/%s/epoch_%04d/%s", run_dir,
                       method, epoch, file);
}

int td_vis_suspects_path(const char *run_dir, const char *method,
                         const char *ext, char *buf, size_t len, td_err *err) {
  int rc = method_arg(method, buf, len, err);
  return rc ? rc
            : td_pathf(buf, len, err, "%s/vis/suspects-%s.%s", run_dir, method,
                       ext);
}

int td_vis_epoch_done(const char *run_dir, const char *method, int epoch) {
  char dir[TD_PATH_MAX];
  return td_vis_epoch_dir(run_dir, method, epoch, dir, sizeof dir) == TD_OK &&
         td_path_is_dir(dir);
}

int td_vis_epoch_has(const char *run_dir, const char *method, int epoch,
                     const char *file) {
  char p[TD_PATH_MAX];
  return td_vis_epoch_path(run_dir, method, epoch, file, p, sizeof p, NULL) ==
             TD_OK &&
         td_path_exists(p);
}
