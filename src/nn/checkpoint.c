/* Network checkpoints: a directory with net.json (the architecture) and one
 * .npy per weight, bias and state array, readable with numpy. Nets of dense
 * layers on a flat input are written as version 1 (the format every tardis
 * reads), others as version 2, which lists the layers with their kinds and
 * adds batchnorm's running statistics. Saving writes "<dir>.tmp" and swaps
 * it into place, so a reader sees the old or the new checkpoint, never a
 * mix. */
#include "tardis/nn.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "net_internal.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"

#define CKPT_FORMAT "tardis-net"
#define CKPT_VERSION 2
#define CKPT_MAX_LAYERS 4096
#define CKPT_MAX_DIM (1 << 24)

/* The files of layer i: layer_<i>_<what>.npy, what = w, b, rm, rv. */
static int layer_path(char *buf, size_t len, const char *dir, int layer,
                      const char *what, td_err *err) {
  return td_pathf(buf, len, err, "%s/layer_%d_%s.npy", dir, layer, what);
}

/* The .npy shape of a layer's weight (w), bias (b) or running statistics
 * (rm, rv); returns ndim. */
static int tensor_shape(const td__layer *L, const char *what, int64_t *shape) {
  if (what[0] == 'r' || L->s.kind == TD_LAYER_BATCHNORM) {
    shape[0] = L->ic;
    return 1;
  }
  if (what[0] == 'b') {
    shape[0] = L->oc;
    return 1;
  }
  if (L->s.kind == TD_LAYER_DENSE) {
    shape[0] = L->out, shape[1] = L->in;
    return 2;
  }
  shape[0] = L->oc, shape[1] = L->ic, shape[2] = L->s.kernel,
  shape[3] = L->s.kernel;
  return 4;
}

/* The arrays a layer stores: none, w b, or w b rm rv; NULL-terminated. */
static const char *const *layer_files(const td__layer *L) {
  static const char *const none[] = {NULL}, *const wb[] = {"w", "b", NULL},
                           *const bn[] = {"w", "b", "rm", "rv", NULL};
  if (L->s.kind == TD_LAYER_BATCHNORM)
    return bn;
  return L->nw ? wb : none;
}

/* Where array `what` of a layer lives: an offset into the parameter buffer,
 * or into the state buffer when *in_state is set. */
static size_t tensor_off(const td__layer *L, const char *what, int *in_state) {
  *in_state = what[0] == 'r';
  if (!strcmp(what, "w"))
    return L->off;
  if (!strcmp(what, "b"))
    return L->off + L->nw;
  return L->soff + (!strcmp(what, "rv") ? (size_t)L->ic : 0);
}

/* Version 1: dims, acts and the file names of each dense layer. */
static json_t *net_to_json_v1(const td_net *net) {
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
      json_object_set_new(root, "version", json_integer(1)) ||
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

/* Version 2: one object per layer with the fields its kind uses. */
static json_t *layer_to_json(const td__layer *L, int l) {
  const td_layer_spec *s = &L->s;
  json_t *o = json_pack("{s:s}", "kind", td_layer_kind_name(s->kind));
  if (!o)
    return NULL;
  int bad = 0;
  if (s->kind == TD_LAYER_DENSE || s->kind == TD_LAYER_CONV)
    bad |= json_object_set_new(o, "out", json_integer(s->out));
  if (s->kind == TD_LAYER_CONV || s->kind == TD_LAYER_MAXPOOL)
    bad |= json_object_set_new(o, "kernel", json_integer(s->kernel)) ||
           json_object_set_new(o, "stride", json_integer(s->stride)) ||
           json_object_set_new(o, "pad", json_integer(s->pad));
  if (s->kind == TD_LAYER_DROPOUT)
    bad |= json_object_set_new(o, "p", json_real((double)s->p));
  if (s->kind == TD_LAYER_DENSE || s->kind == TD_LAYER_CONV ||
      s->kind == TD_LAYER_BATCHNORM)
    bad |= json_object_set_new(o, "act", json_string(td_act_name(s->act)));
  static const char *const keys[] = {"weight", "bias", "running_mean",
                                     "running_var"};
  const char *const *files = layer_files(L);
  for (int f = 0; files[f]; f++) {
    char name[64];
    snprintf(name, sizeof name, "layer_%d_%s.npy", l, files[f]);
    bad |= json_object_set_new(o, keys[f], json_string(name));
  }
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

static json_t *net_to_json(const td_net *net) {
  if (!net->spatial)
    return net_to_json_v1(net);
  const td__layer *L0 = &net->layers[0];
  json_t *root = json_pack("{s:s, s:i, s:[i, i, i]}", "format", CKPT_FORMAT,
                           "version", 2, "input", L0->ic, L0->ih, L0->iw);
  json_t *dims = json_array(), *layers = json_array();
  if (!root || !dims || !layers)
    goto oom;
  for (int i = 0; i <= net->n_layers; i++)
    if (json_array_append_new(dims, json_integer(net->dims[i])))
      goto oom;
  for (int l = 0; l < net->n_layers; l++) {
    json_t *o = layer_to_json(&net->layers[l], l);
    if (!o || json_array_append_new(layers, o))
      goto oom;
  }
  if (json_object_set_new(root, "dims", dims) ||
      json_object_set_new(root, "layers", layers)) {
    json_decref(root);
    return NULL;
  }
  return root;
oom:
  json_decref(dims);
  json_decref(layers);
  json_decref(root);
  return NULL;
}

static int write_contents(const td_net *net, const char *tmp, td_err *err) {
  int rc = td_mkdirs(tmp, err);
  if (rc != TD_OK)
    return rc;
  char path[TD_PATH_MAX];
  for (int l = 0; l < net->n_layers; l++) {
    const td__layer *L = &net->layers[l];
    const char *const *files = layer_files(L);
    for (int f = 0; files[f]; f++) {
      int64_t shape[4];
      int nd = tensor_shape(L, files[f], shape);
      if ((rc = layer_path(path, sizeof path, tmp, l, files[f], err)))
        return rc;
      int st;
      size_t off = tensor_off(L, files[f], &st);
      rc = td_npy_save_raw(path, TD_F32, nd, shape,
                           (st ? net->state : net->params) + off, err);
      if (rc != TD_OK)
        return rc;
    }
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

static int check_header(json_t *root, const char *jpath, int *version,
                        td_err *err) {
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
  *version = (int)json_integer_value(ver);
  return TD_OK;
}

/* Version 1: "dims" and "acts" of a stack of dense layers. */
static int parse_v1(json_t *root, const char *jpath, int *in, int *n_layers,
                    td_layer_spec **spec, td_err *err) {
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
  if (!(*spec = calloc((size_t)L, sizeof **spec)))
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", jpath);
  for (int i = 0; i <= L; i++) {
    json_t *v = json_array_get(jd, (size_t)i);
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > CKPT_MAX_DIM)
      return td_err_set(err, TD_EFORMAT, "%s: dims[%d] is not a valid size",
                        jpath, i);
    if (i == 0)
      *in = (int)json_integer_value(v);
    else
      (*spec)[i - 1].out = (int)json_integer_value(v);
  }
  for (int l = 0; l < L; l++) {
    const char *name = json_string_value(json_array_get(ja, (size_t)l));
    (*spec)[l].kind = TD_LAYER_DENSE;
    (*spec)[l].act = td_act_parse(name);
    if ((*spec)[l].act == TD_ACT_COUNT)
      return td_err_set(err, TD_EFORMAT, "%s: acts[%d]: unknown activation %s",
                        jpath, l, name ? name : "(not a string)");
  }
  *n_layers = L;
  return TD_OK;
}

/* An optional integer field of a v2 layer object (0 when absent). */
static int int_field(json_t *o, const char *key, int *out, const char *jpath,
                     int l, td_err *err) {
  json_t *v = json_object_get(o, key);
  *out = 0;
  if (!v)
    return TD_OK;
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      json_integer_value(v) > CKPT_MAX_DIM)
    return td_err_set(err, TD_EFORMAT,
                      "%s: layers[%d].%s must be an integer from 0 to %d",
                      jpath, l, key, CKPT_MAX_DIM);
  *out = (int)json_integer_value(v);
  return TD_OK;
}

static int parse_layer_v2(json_t *o, const char *jpath, int l, td_layer_spec *s,
                          td_err *err) {
  static const char *const known[] = {
      "kind", "out",    "kernel", "stride",       "pad",        "p",
      "act",  "weight", "bias",   "running_mean", "running_var"};
  if (!json_is_object(o))
    return td_err_set(err, TD_EFORMAT, "%s: layers[%d] is not an object", jpath,
                      l);
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    size_t k = 0;
    while (k < sizeof known / sizeof *known && strcmp(key, known[k]))
      k++;
    if (k == sizeof known / sizeof *known)
      return td_err_set(err, TD_EFORMAT, "%s: layers[%d]: unknown field \"%s\"",
                        jpath, l, key);
  }
  const char *kind = json_string_value(json_object_get(o, "kind"));
  s->kind = td_layer_kind_parse(kind);
  if (s->kind == TD_LAYER_KIND_COUNT)
    return td_err_set(err, TD_EFORMAT, "%s: layers[%d]: unknown kind %s", jpath,
                      l, kind ? kind : "(missing or not a string)");
  int rc;
  if ((rc = int_field(o, "out", &s->out, jpath, l, err)) ||
      (rc = int_field(o, "kernel", &s->kernel, jpath, l, err)) ||
      (rc = int_field(o, "stride", &s->stride, jpath, l, err)) ||
      (rc = int_field(o, "pad", &s->pad, jpath, l, err)))
    return rc;
  json_t *p = json_object_get(o, "p");
  if (p && !json_is_number(p))
    return td_err_set(err, TD_EFORMAT, "%s: layers[%d].p is not a number",
                      jpath, l);
  s->p = p ? (float)json_number_value(p) : 0.0f;
  json_t *act = json_object_get(o, "act");
  s->act = act ? td_act_parse(json_string_value(act)) : TD_ACT_NONE;
  if (s->act == TD_ACT_COUNT)
    return td_err_set(
        err, TD_EFORMAT, "%s: layers[%d]: unknown activation %s", jpath, l,
        json_is_string(act) ? json_string_value(act) : "(not a string)");
  return TD_OK;
}

/* Version 2: "input" [c, h, w] and "layers", one object per layer. */
static int parse_v2(json_t *root, const char *jpath, int shape[3],
                    int *n_layers, td_layer_spec **spec, td_err *err) {
  json_t *in = json_object_get(root, "input"),
         *jl = json_object_get(root, "layers");
  if (!json_is_array(in) || json_array_size(in) != 3)
    return td_err_set(err, TD_EFORMAT,
                      "%s: \"input\" must be an array [c, h, w]", jpath);
  for (int i = 0; i < 3; i++) {
    json_t *v = json_array_get(in, (size_t)i);
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > CKPT_MAX_DIM)
      return td_err_set(err, TD_EFORMAT, "%s: input[%d] is not a valid size",
                        jpath, i);
    shape[i] = (int)json_integer_value(v);
  }
  if (!json_is_array(jl) || json_array_size(jl) < 1 ||
      json_array_size(jl) > CKPT_MAX_LAYERS)
    return td_err_set(err, TD_EFORMAT,
                      "%s: \"layers\" must be an array of 1 to %d layers",
                      jpath, CKPT_MAX_LAYERS);
  int L = (int)json_array_size(jl);
  if (!(*spec = calloc((size_t)L, sizeof **spec)))
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", jpath);
  for (int l = 0; l < L; l++) {
    int rc = parse_layer_v2(json_array_get(jl, (size_t)l), jpath, l,
                            &(*spec)[l], err);
    if (rc != TD_OK)
      return rc;
  }
  *n_layers = L;
  return TD_OK;
}

/* The architecture of net.json as a layer list, checked: the layers must
 * fit the input, and a "dims" list, if present, must match the widths. */
static int parse_arch(json_t *root, const char *jpath, int shape[3],
                      int *n_layers, td_layer_spec **spec, td_err *err) {
  int version = 0, rc = check_header(root, jpath, &version, err);
  if (rc != TD_OK)
    return rc;
  shape[1] = shape[2] = 1;
  rc = version == 1 ? parse_v1(root, jpath, &shape[0], n_layers, spec, err)
                    : parse_v2(root, jpath, shape, n_layers, spec, err);
  if (rc != TD_OK)
    return rc;
  td__layer *res = malloc(sizeof *res * (size_t)*n_layers);
  if (!res)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", jpath);
  rc = td__layers_resolve(shape[0], shape[1], shape[2], *n_layers, *spec, res,
                          err);
  if (rc != TD_OK) {
    free(res);
    td_err_prefix(err, "%s", jpath);
    return err ? (err->code = TD_EFORMAT) : TD_EFORMAT;
  }
  json_t *jd = json_object_get(root, "dims");
  for (int i = 0; version == 2 && jd && rc == TD_OK && i <= *n_layers; i++) {
    json_t *v = json_array_get(jd, (size_t)i);
    int want = i == 0 ? res[0].in : res[i - 1].out;
    if (!json_is_array(jd) || json_array_size(jd) != (size_t)*n_layers + 1 ||
        !json_is_integer(v) || json_integer_value(v) != want)
      rc = td_err_set(err, TD_EFORMAT,
                      "%s: \"dims\" does not match the layers (dims[%d] "
                      "should be %d)",
                      jpath, i, want);
  }
  free(res);
  return rc;
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
    char got[128], want[128];
    int len = 0;
    for (int i = 0; i < ndim; i++)
      len += snprintf(want + len, sizeof want - (size_t)len, "%s%lld",
                      i ? "×" : "", (long long)shape[i]);
    td_array_shape_str(&a, got, sizeof got);
    rc = td_err_set(err, TD_ESHAPE, "%s: expected float32 %s%s%s, found %s %s",
                    path, ndim == 1 ? "[" : "", want, ndim == 1 ? "]" : "",
                    td_dtype_name(a.dtype), got);
  } else if (td_array_check_finite(&a, NULL) != TD_OK) {
    rc =
        td_err_set(err, TD_EVALUE, "%s: contains NaN or infinite values", path);
  } else {
    memcpy(dst, a.data, a.nbytes);
  }
  td_array_close(&a);
  return rc;
}

/* Reads every array of every layer of net from dir. */
static int load_tensors(td_net *net, const char *dir, td_err *err) {
  char path[TD_PATH_MAX];
  for (int l = 0; l < net->n_layers; l++) {
    const td__layer *L = &net->layers[l];
    const char *const *files = layer_files(L);
    for (int f = 0; files[f]; f++) {
      int64_t shape[4];
      int nd = tensor_shape(L, files[f], shape), st;
      size_t off = tensor_off(L, files[f], &st);
      float *dst = (st ? net->state : net->params) + off;
      int rc = layer_path(path, sizeof path, dir, l, files[f], err);
      if (rc == TD_OK)
        rc = load_tensor(path, nd, shape, dst, err);
      if (rc != TD_OK)
        return rc;
      for (int64_t c = 0; !strcmp(files[f], "rv") && c < shape[0]; c++)
        if (dst[c] < 0.0f)
          return td_err_set(err, TD_EVALUE,
                            "%s: a running variance is negative", path);
    }
  }
  return TD_OK;
}

int td_net_load(const char *dir, td_net **out, td_err *err) {
  *out = NULL;
  char jpath[TD_PATH_MAX];
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
  int L = 0, shape[3] = {0, 1, 1};
  td_layer_spec *spec = NULL;
  int rc = json_is_object(root)
               ? parse_arch(root, jpath, shape, &L, &spec, err)
               : td_err_set(err, TD_EFORMAT, "%s: not a JSON object", jpath);
  json_decref(root);
  td_net *net = NULL;
  if (rc == TD_OK &&
      !(net = td_net_new_layers(shape[0], shape[1], shape[2], L, spec)))
    rc = td_err_set(err, TD_ENOMEM, "%s: out of memory", dir);
  free(spec);
  if (rc == TD_OK)
    rc = load_tensors(net, dir, err);
  if (rc != TD_OK) {
    td_net_free(net);
    return rc;
  }
  *out = net;
  return TD_OK;
}
