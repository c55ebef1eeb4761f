/* The classifier head of an epoch: head.json plus its weight files, loaded
 * into an evaluable chain of dense layers, and written by td_head_write. */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_file.h"
#include "run/run_internal.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"

#define TD__HEAD_MAX_LAYERS 64
/* Rows per sgemm call and per chunk of the parallel forward pass: bounds
 * the scratch of multi-layer heads. Fixed, so that how the rows are grouped
 * into calls never depends on the thread count. */
#define TD__HEAD_BLOCK 256

typedef struct {
  int in, out, relu;
  td_array w, b; /* float32 [out, in] and [out] */
} td__dense;

struct td_head {
  int n;
  int max_hidden; /* widest intermediate layer, for scratch */
  td__dense *layers;
  /* One row's scratch, allocated at load: td_head_forward falls back to it,
   * serialised by its mutex, when it cannot allocate its own. A separate
   * object, so that a const head can still lock it. */
  struct td__head_spare {
    pthread_mutex_t mu;
    float rows[]; /* [2, max_hidden] */
  } * spare;
};

void td_head_free(td_head *h) {
  if (!h)
    return;
  for (int i = 0; i < h->n; i++) {
    td_array_close(&h->layers[i].w);
    td_array_close(&h->layers[i].b);
  }
  td_free(h->layers);
  if (h->spare)
    pthread_mutex_destroy(&h->spare->mu);
  td_free(h->spare);
  td_free(h);
}

int td_head_in_dim(const td_head *h) { return h->layers[0].in; }
int td_head_out_dim(const td_head *h) { return h->layers[h->n - 1].out; }
int td_head_n_layers(const td_head *h) { return h->n; }

/* Reads a string field naming a file of the layer; it must stay inside the
 * epoch directory. */
static int layer_file(const char *json_path, const char *dir, int i,
                      const json_t *layer, const char *key, char *path,
                      size_t len, td_err *err) {
  json_t *v = json_object_get(layer, key);
  if (!v)
    return td_err_set(err, TD_EFORMAT, "%s: layer %d: missing field \"%s\"",
                      json_path, i, key);
  if (!json_is_string(v))
    return td_err_set(err, TD_EFORMAT,
                      "%s: layer %d: \"%s\" should be a file name, found %s",
                      json_path, i, key, td__json_type_str(v));
  if (!td__plain_name(json_string_value(v)))
    return td_err_set(err, TD_EFORMAT,
                      "%s: layer %d: \"%s\" must be a plain file name inside "
                      "the epoch directory, found \"%.200s\"",
                      json_path, i, key, json_string_value(v));
  return td_pathf(path, len, err, "%s/%s", dir, json_string_value(v));
}

static int load_f32(const char *path, td_array *a, td_err *err) {
  if (!td_path_exists(path))
    return td_err_set(err, TD_ENOENT, "%s: no such file (named in head.json)",
                      path);
  int rc = td_npy_load(path, a, err);
  if (rc) {
    td__err_name_path(err, path);
    return rc;
  }
  int64_t bad;
  if (a->dtype == TD_F32 && td_array_check_finite(a, &bad) != TD_OK)
    return td_err_set(err, TD_EVALUE, "%s: non-finite value at element %lld",
                      path, (long long)bad);
  return TD_OK;
}

static int load_layer(const char *json_path, const char *dir, int i,
                      const json_t *layer, td__dense *L, td_err *err) {
  char wpath[TD_PATH_MAX], bpath[TD_PATH_MAX], got[160];
  if (!json_is_object(layer))
    return td_err_set(err, TD_EFORMAT,
                      "%s: layer %d should be an object, found %s", json_path,
                      i, td__json_type_str(layer));
  json_t *type = json_object_get(layer, "type");
  if (!json_is_string(type) || strcmp(json_string_value(type), "dense") != 0)
    return td_err_set(
        err, TD_EFORMAT,
        "%s: layer %d: \"type\" should be \"dense\", found %s%s%s", json_path,
        i, json_is_string(type) ? "\"" : "",
        type ? (json_is_string(type) ? json_string_value(type)
                                     : td__json_type_str(type))
             : "nothing",
        json_is_string(type) ? "\"" : "");
  json_t *act = json_object_get(layer, "activation");
  const char *a = act && json_is_string(act) ? json_string_value(act) : NULL;
  if (act && (!a || (strcmp(a, "none") && strcmp(a, "relu"))))
    return td_err_set(err, TD_EFORMAT,
                      "%s: layer %d: \"activation\" should be \"none\" or "
                      "\"relu\", found %s%.60s%s",
                      json_path, i, a ? "\"" : "",
                      a ? a : td__json_type_str(act), a ? "\"" : "");
  L->relu = a && strcmp(a, "relu") == 0;
  int rc =
      layer_file(json_path, dir, i, layer, "weight", wpath, sizeof wpath, err);
  if (!rc)
    rc = layer_file(json_path, dir, i, layer, "bias", bpath, sizeof bpath, err);
  if (!rc)
    rc = load_f32(wpath, &L->w, err);
  if (rc)
    return rc;
  if (L->w.dtype != TD_F32 || L->w.ndim != 2 || L->w.shape[0] < 1 ||
      L->w.shape[1] < 1 || L->w.shape[0] > INT32_MAX ||
      L->w.shape[1] > INT32_MAX)
    return td_err_set(err, L->w.dtype != TD_F32 ? TD_EDTYPE : TD_ESHAPE,
                      "%s: expected a float32 [out, in] weight matrix (layer "
                      "%d), found %s %s",
                      wpath, i, td_array_shape_str(&L->w, got, sizeof got),
                      td_dtype_name(L->w.dtype));
  L->out = (int)L->w.shape[0];
  L->in = (int)L->w.shape[1];
  if ((rc = load_f32(bpath, &L->b, err)))
    return rc;
  if (L->b.dtype != TD_F32 || L->b.ndim != 1 || L->b.shape[0] != L->out)
    return td_err_set(err, L->b.dtype != TD_F32 ? TD_EDTYPE : TD_ESHAPE,
                      "%s: expected %d float32 (the bias of layer %d), found "
                      "%s %s",
                      bpath, L->out, i,
                      td_array_shape_str(&L->b, got, sizeof got),
                      td_dtype_name(L->b.dtype));
  return TD_OK;
}

static int check_chain(const char *json_path, const td_head *h, int in_dim,
                       int out_dim, td_err *err) {
  if (in_dim > 0 && h->layers[0].in != in_dim)
    return td_err_set(err, TD_ESHAPE,
                      "%s: layer 0 takes %d inputs, but the representation "
                      "has %d dimensions (repr_dim)",
                      json_path, h->layers[0].in, in_dim);
  for (int i = 1; i < h->n; i++)
    if (h->layers[i].in != h->layers[i - 1].out)
      return td_err_set(
          err, TD_ESHAPE, "%s: layer %d takes %d inputs, but layer %d gives %d",
          json_path, i, h->layers[i].in, i - 1, h->layers[i - 1].out);
  if (out_dim > 0 && td_head_out_dim(h) != out_dim)
    return td_err_set(err, TD_ESHAPE,
                      "%s: the last layer gives %d outputs, expected %d (one "
                      "per class)",
                      json_path, td_head_out_dim(h), out_dim);
  return TD_OK;
}

int td_head_load_dir(const char *dir, int in_dim, int out_dim, td_head **out,
                     td_err *err) {
  char path[TD_PATH_MAX];
  *out = NULL;
  int rc = td_pathf(path, sizeof path, err, "%s/head.json", dir);
  if (rc)
    return rc;
  if (!td_path_exists(path))
    return td_err_set(err, TD_ENOENT, "%s: no such file", path);
  json_error_t jerr;
  json_t *root = td__json_load_file(path, 0, &jerr);
  if (!root)
    return td_err_set(err, TD_EFORMAT, "%s: invalid JSON at line %d: %s", path,
                      jerr.line, jerr.text);
  size_t n = json_is_array(root) ? json_array_size(root) : 0;
  if (n == 0 || n > TD__HEAD_MAX_LAYERS) {
    rc = td_err_set(
        err, TD_EFORMAT, "%s: expected an array of 1 to %d layers, found %s%s",
        path, TD__HEAD_MAX_LAYERS, json_is_array(root) ? "an array of " : "",
        json_is_array(root) ? (n ? "too many" : "none")
                            : td__json_type_str(root));
    json_decref(root);
    return rc;
  }
  td_head *h = td_calloc(1, sizeof *h);
  if (h)
    h->layers = td_calloc(n, sizeof *h->layers);
  if (!h || !h->layers) {
    td_free(h);
    json_decref(root);
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  }
  for (size_t i = 0; i < n && !rc; i++) {
    h->n = (int)i + 1; /* so td_head_free releases what was loaded */
    rc = load_layer(path, dir, (int)i, json_array_get(root, i), &h->layers[i],
                    err);
  }
  json_decref(root);
  if (!rc)
    rc = check_chain(path, h, in_dim, out_dim, err);
  if (rc) {
    td_head_free(h);
    return rc;
  }
  for (int i = 0; i + 1 < h->n; i++)
    if (h->layers[i].out > h->max_hidden)
      h->max_hidden = h->layers[i].out;
  if (h->n > 1) {
    h->spare =
        td_malloc(sizeof *h->spare + 2 * (size_t)h->max_hidden * sizeof(float));
    if (!h->spare) {
      td_head_free(h);
      return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
    }
    pthread_mutex_init(&h->spare->mu, NULL);
  }
  *out = h;
  return TD_OK;
}

/* y[rows, out] = act(x[rows, in] · Wᵀ + b) */
static void dense_apply(const td__dense *L, const float *x, int rows,
                        float *y) {
  const float *b = L->b.data;
  for (int r = 0; r < rows; r++)
    memcpy(y + (size_t)r * L->out, b, (size_t)L->out * sizeof *y);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, L->out, L->in,
              1.0f, x, L->in, L->w.data, L->in, 1.0f, y, L->out);
  if (L->relu)
    for (size_t i = 0, n = (size_t)rows * L->out; i < n; i++)
      y[i] = y[i] > 0 ? y[i] : 0;
}

/* Runs the chain over n rows in blocks of blk rows; hidden layers ping-pong
 * between the two halves of scratch ([2, blk, max_hidden]). */
static void forward_blocks(const td_head *h, const float *x, int64_t n,
                           int64_t blk, float *scratch, float *logits) {
  int in = td_head_in_dim(h), out = td_head_out_dim(h);
  size_t half = (size_t)blk * (size_t)h->max_hidden;
  for (int64_t r0 = 0; r0 < n; r0 += blk) {
    int rows = (int)(n - r0 < blk ? n - r0 : blk);
    const float *cur = x + r0 * in;
    for (int l = 0; l < h->n; l++) {
      float *dst =
          l == h->n - 1 ? logits + r0 * out : scratch + (size_t)(l & 1) * half;
      dense_apply(&h->layers[l], cur, rows, dst);
      cur = dst;
    }
  }
}

typedef struct {
  const td_head *h;
  const float *x;
  float *logits;
} forward_ctx;

/* One chunk of at most TD__HEAD_BLOCK rows, as one block. */
static void forward_chunk(void *ctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const forward_ctx *c = ctx;
  const td_head *h = c->h;
  const float *x = c->x + begin * td_head_in_dim(h);
  float *logits = c->logits + begin * td_head_out_dim(h);
  int64_t n = end - begin;
  if (h->n == 1) {
    forward_blocks(h, x, n, n, NULL, logits);
    return;
  }
  float *scratch =
      td_malloc(2 * (size_t)n * (size_t)h->max_hidden * sizeof *scratch);
  if (scratch) {
    forward_blocks(h, x, n, n, scratch, logits);
    td_free(scratch);
    return;
  }
  /* Out of memory: one row at a time in the head's spare scratch. Slower
   * and serialised across threads, but nothing fails. (One-row sgemm calls
   * may round differently from a block's: bit-identity across thread counts
   * holds only while memory lasts.) */
  pthread_mutex_lock(&h->spare->mu);
  forward_blocks(h, x, n, 1, h->spare->rows, logits);
  pthread_mutex_unlock(&h->spare->mu);
}

/* The rows are split into chunks of a fixed size, each one sgemm per layer
 * on one BLAS thread, run in parallel over td_threads(). OpenBLAS's own
 * threads would split the sums of a GEMM differently for each thread count;
 * this way every row goes through the same calls whatever the count, so the
 * logits are bit-identical at any --threads. */
void td_head_forward(const td_head *h, const float *x, int64_t n,
                     float *logits) {
  if (n <= 0)
    return;
  forward_ctx c = {h, x, logits};
  td_blas_single_begin();
  td_parallel_for(n, TD__HEAD_BLOCK, forward_chunk, &c);
  td_blas_single_end();
}

int td_head_write(td_epoch_writer *w, int n_layers, const float *const *weights,
                  const float *const *biases, const int *dims,
                  const char *const *acts, td_err *err) {
  if (n_layers < 1 || n_layers > TD__HEAD_MAX_LAYERS)
    return td_err_set(err, TD_EARG, "head: %d layers (expected 1 to %d)",
                      n_layers, TD__HEAD_MAX_LAYERS);
  if (dims[0] != w->meta.repr_dim || dims[n_layers] != w->meta.n_classes)
    return td_err_set(err, TD_EARG,
                      "head: maps %d -> %d, but the run needs repr_dim %d -> "
                      "%d classes",
                      dims[0], dims[n_layers], w->meta.repr_dim,
                      w->meta.n_classes);
  json_t *arr = json_array();
  if (!arr)
    return td_err_set(err, TD_ENOMEM, "head: out of memory");
  int rc = TD_OK;
  for (int i = 0; i < n_layers && !rc; i++) {
    const char *act = acts && acts[i] ? acts[i] : "none";
    if (dims[i + 1] < 1 || (strcmp(act, "none") && strcmp(act, "relu"))) {
      rc = td_err_set(err, TD_EARG,
                      "head: layer %d: width %d, activation \"%s\"", i,
                      dims[i + 1], act);
      break;
    }
    char wname[64], bname[64], path[TD_PATH_MAX];
    snprintf(wname, sizeof wname, "head_%d_w.npy", i);
    snprintf(bname, sizeof bname, "head_%d_b.npy", i);
    int64_t wshape[2] = {dims[i + 1], dims[i]}, bshape[1] = {dims[i + 1]};
    rc = td_pathf(path, sizeof path, err, "%s/%s", w->tmp, wname);
    if (!rc)
      rc = td_npy_save_raw(path, TD_F32, 2, wshape, weights[i], err);
    if (!rc)
      rc = td_pathf(path, sizeof path, err, "%s/%s", w->tmp, bname);
    if (!rc)
      rc = td_npy_save_raw(path, TD_F32, 1, bshape, biases[i], err);
    if (!rc &&
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "type",
                                             "dense", "weight", wname, "bias",
                                             bname, "activation", act)))
      rc = td_err_set(err, TD_ENOMEM, "head: out of memory");
  }
  if (!rc)
    rc = td__epoch_add_json(w, "head.json", arr, err);
  json_decref(arr);
  return rc;
}
