/* Network checkpoints: a directory with net.json (the architecture) and one
 * .npy per weight and bias, readable with numpy. Saving writes "<dir>.tmp"
 * and swaps it into place, so a reader sees the old or the new checkpoint,
 * never a mix. */
#include "tardis/nn.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"

#define CKPT_FORMAT "tardis-net"
#define CKPT_VERSION 1
#define CKPT_MAX_LAYERS 4096
#define CKPT_MAX_DIM (1 << 24)

static int layer_path(char *buf, size_t len, const char *dir, int layer,
                      char kind, td_err *err) {
  return td_pathf(buf, len, err, "%s/layer_%d_%c.npy", dir, layer, kind);
}

static json_t *net_to_json(const td_net *net) {
  int L = td_net_n_layers(net);
  json_t *root = json_object(), *dims = json_array(), *acts = json_array(),
         *layers = json_array();
  if (!root || !dims || !acts || !layers)
    goto oom;
  for (int i = 0; i <= L; i++)
    if (json_array_append_new(dims, json_integer(td_net_dim(net, i))))
      goto oom;
  for (int l = 0; l < L; l++) {
    char w[64], b[64]; /* "layer_" + an int + "_w.npy" fits */
    snprintf(w, sizeof w, "layer_%d_w.npy", l);
    snprintf(b, sizeof b, "layer_%d_b.npy", l);
    if (json_array_append_new(acts,
                              json_string(td_act_name(td_net_act(net, l)))) ||
        json_array_append_new(layers,
                              json_pack("{s:s, s:s}", "weight", w, "bias", b)))
      goto oom;
  }
  if (json_object_set_new(root, "format", json_string(CKPT_FORMAT)) ||
      json_object_set_new(root, "version", json_integer(CKPT_VERSION)) ||
      json_object_set_new(root, "dims", dims) ||
      json_object_set_new(root, "acts", acts) ||
      json_object_set_new(root, "layers", layers))
    goto oom_root; /* set_new consumed the value even on failure */
  return root;
oom:
  json_decref(dims);
  json_decref(acts);
  json_decref(layers);
oom_root:
  json_decref(root);
  return NULL;
}

static int write_contents(const td_net *net, const char *tmp, td_err *err) {
  int rc = td_mkdirs(tmp, err);
  if (rc != TD_OK)
    return rc;
  const float *params = td_net_params_const(net);
  char path[TD_PATH_MAX];
  for (int l = 0; l < td_net_n_layers(net); l++) {
    int64_t shape[2] = {td_net_dim(net, l + 1), td_net_dim(net, l)};
    if ((rc = layer_path(path, sizeof path, tmp, l, 'w', err)))
      return rc;
    rc = td_npy_save_raw(path, TD_F32, 2, shape,
                         params + td_net_layer_offset(net, l), err);
    if (rc != TD_OK)
      return rc;
    if ((rc = layer_path(path, sizeof path, tmp, l, 'b', err)))
      return rc;
    rc = td_npy_save_raw(path, TD_F32, 1, shape,
                         params + td_net_layer_offset(net, l) +
                             (size_t)shape[0] * (size_t)shape[1],
                         err);
    if (rc != TD_OK)
      return rc;
  }
  json_t *j = net_to_json(net);
  char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
  json_decref(j);
  if (!text)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", tmp);
  if (td_path_join(path, sizeof path, tmp, "net.json") != TD_OK)
    rc = td_err_set(err, TD_ERANGE, "%s: path too long", tmp);
  else
    rc = td_write_file_atomic(path, text, strlen(text), err);
  free(text);
  if (rc == TD_OK)
    td_fsync_dir(tmp);
  return rc;
}

/* Puts tmp at dir. An existing dir is swapped out atomically where the file
 * system supports RENAME_EXCHANGE, else moved aside first. */
static int swap_into_place(const char *tmp, const char *dir, td_err *err) {
  if (rename(tmp, dir) == 0)
    return TD_OK;
  if (errno != ENOTEMPTY && errno != EEXIST && errno != ENOTDIR)
    return td_err_set(err, TD_EIO, "%s: cannot rename into place: %s", dir,
                      strerror(errno));
  if (!td_path_is_dir(dir))
    return td_err_set(err, TD_EEXIST, "%s: exists and is not a directory", dir);
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0)
    return td_remove_tree(tmp, err); /* tmp now holds the old checkpoint */
  char old[TD_PATH_MAX];
  int rc = td_pathf(old, sizeof old, err, "%s.old", dir);
  if (rc == TD_OK)
    rc = td_remove_tree(old, err);
  if (rc != TD_OK)
    return rc;
  if (rename(dir, old) != 0)
    return td_err_set(err, TD_EIO, "%s: cannot move aside: %s", dir,
                      strerror(errno));
  if (rename(tmp, dir) != 0) {
    int e = errno;
    rename(old, dir);
    return td_err_set(err, TD_EIO, "%s: cannot rename into place: %s", dir,
                      strerror(e));
  }
  return td_remove_tree(old, err);
}

static void fsync_parent(const char *dir) {
  char parent[TD_PATH_MAX];
  if (td_pathf(parent, sizeof parent, NULL, "%s", dir))
    return; /* not reached: td_net_save built dir + ".tmp" in as much room */
  char *slash = strrchr(parent, '/');
  if (!slash)
    td_fsync_dir(".");
  else if (slash == parent)
    td_fsync_dir("/");
  else {
    *slash = '\0';
    td_fsync_dir(parent);
  }
}

int td_net_save(const td_net *net, const char *dir, td_err *err) {
  if (!dir || !*dir)
    return td_err_set(err, TD_EARG, "empty checkpoint directory name");
  char tmp[TD_PATH_MAX];
  int rc = td_pathf(tmp, sizeof tmp, err, "%s.tmp", dir);
  if (rc != TD_OK)
    return rc;
  rc = td_remove_tree(tmp, err); /* leftover of a killed save */
  if (rc == TD_OK)
    rc = write_contents(net, tmp, err);
  if (rc == TD_OK)
    rc = swap_into_place(tmp, dir, err);
  if (rc != TD_OK) {
    td_remove_tree_best_effort(tmp);
    return rc;
  }
  fsync_parent(dir);
  return TD_OK;
}

/* ---- loading ----------------------------------------------------------------
 */

static int parse_arch(json_t *root, const char *jpath, int *n_layers,
                      int **dims, td_act **acts, td_err *err) {
  json_t *fmt = json_object_get(root, "format");
  json_t *ver = json_object_get(root, "version");
  if (!json_is_string(fmt) || strcmp(json_string_value(fmt), CKPT_FORMAT))
    return td_err_set(err, TD_EFORMAT,
                      "%s: not a tardis network (\"format\" "
                      "must be \"" CKPT_FORMAT "\")",
                      jpath);
  if (!json_is_integer(ver))
    return td_err_set(err, TD_EFORMAT, "%s: missing integer \"version\"",
                      jpath);
  if (json_integer_value(ver) > CKPT_VERSION || json_integer_value(ver) < 1)
    return td_err_set(err, TD_EVERSION,
                      "%s: checkpoint version %lld, this tardis reads up to %d",
                      jpath, (long long)json_integer_value(ver), CKPT_VERSION);
  json_t *jd = json_object_get(root, "dims"),
         *ja = json_object_get(root, "acts");
  if (!json_is_array(jd) || json_array_size(jd) < 2 ||
      json_array_size(jd) > CKPT_MAX_LAYERS + 1)
    return td_err_set(err, TD_EFORMAT,
                      "%s: \"dims\" must be an array of 2 or more sizes",
                      jpath);
  int L = (int)json_array_size(jd) - 1;
  if (!json_is_array(ja) || (int)json_array_size(ja) != L)
    return td_err_set(err, TD_EFORMAT,
                      "%s: \"acts\" must be an array of %d activation names",
                      jpath, L);
  *dims = malloc(sizeof(int) * (size_t)(L + 1));
  *acts = malloc(sizeof(td_act) * (size_t)L);
  if (!*dims || !*acts)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", jpath);
  for (int i = 0; i <= L; i++) {
    json_t *v = json_array_get(jd, (size_t)i);
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > CKPT_MAX_DIM)
      return td_err_set(err, TD_EFORMAT, "%s: dims[%d] is not a valid size",
                        jpath, i);
    (*dims)[i] = (int)json_integer_value(v);
  }
  for (int l = 0; l < L; l++) {
    const char *name = json_string_value(json_array_get(ja, (size_t)l));
    (*acts)[l] = td_act_parse(name);
    if ((*acts)[l] == TD_ACT_COUNT)
      return td_err_set(err, TD_EFORMAT, "%s: acts[%d]: unknown activation %s",
                        jpath, l, name ? name : "(not a string)");
  }
  *n_layers = L;
  return TD_OK;
}

/* Loads one float32 array of the given shape from path into dst. */
static int load_tensor(const char *path, int ndim, const int64_t *shape,
                       float *dst, td_err *err) {
  td_array a;
  int rc = td_npy_load(path, &a, err);
  if (rc != TD_OK)
    return rc;
  bool ok = a.dtype == TD_F32 && a.ndim == ndim;
  for (int i = 0; ok && i < ndim; i++)
    ok = a.shape[i] == shape[i];
  if (!ok) {
    char got[128];
    td_array_shape_str(&a, got, sizeof got);
    rc = td_err_set(
        err, TD_ESHAPE, "%s: expected float32 %s%lld%s%lld, found %s %s", path,
        ndim == 2 ? "" : "[", (long long)shape[0], ndim == 2 ? "×" : "]",
        ndim == 2 ? (long long)shape[1] : 0LL, td_dtype_name(a.dtype), got);
  } else if (td_array_check_finite(&a, NULL) != TD_OK) {
    rc =
        td_err_set(err, TD_EVALUE, "%s: contains NaN or infinite values", path);
  } else {
    memcpy(dst, a.data, a.nbytes);
  }
  td_array_close(&a);
  return rc;
}

int td_net_load(const char *dir, td_net **out, td_err *err) {
  *out = NULL;
  char jpath[TD_PATH_MAX], path[TD_PATH_MAX];
  if (!td_path_is_dir(dir))
    return td_err_set(err, TD_ENOENT, "%s: no such checkpoint directory", dir);
  if (td_path_join(jpath, sizeof jpath, dir, "net.json") != TD_OK)
    return td_err_set(err, TD_ERANGE, "%s: path too long", dir);
  if (!td_path_exists(jpath))
    return td_err_set(err, TD_ENOENT, "%s: missing (not a network checkpoint)",
                      jpath);
  json_error_t je;
  json_t *root = td__json_load_file(jpath, 0, &je);
  if (!root)
    return td_err_set(err, TD_EFORMAT, "%s: line %d: %s", jpath, je.line,
                      je.text);
  int L = 0, *dims = NULL;
  td_act *acts = NULL;
  int rc = json_is_object(root)
               ? parse_arch(root, jpath, &L, &dims, &acts, err)
               : td_err_set(err, TD_EFORMAT, "%s: not a JSON object", jpath);
  json_decref(root);
  td_net *net = NULL;
  if (rc == TD_OK && !(net = td_net_new(L, dims, acts)))
    rc = td_err_set(err, TD_ENOMEM, "%s: out of memory", dir);
  for (int l = 0; rc == TD_OK && l < L; l++) {
    int64_t shape[2] = {dims[l + 1], dims[l]};
    rc = layer_path(path, sizeof path, dir, l, 'w', err);
    if (rc == TD_OK)
      rc = load_tensor(path, 2, shape, td_net_weight(net, l), err);
    if (rc == TD_OK)
      rc = layer_path(path, sizeof path, dir, l, 'b', err);
    if (rc == TD_OK)
      rc = load_tensor(path, 1, shape, td_net_bias(net, l), err);
  }
  free(dims);
  free(acts);
  if (rc != TD_OK) {
    td_net_free(net);
    return rc;
  }
  *out = net;
  return TD_OK;
}
