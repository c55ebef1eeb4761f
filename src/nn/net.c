/* Dense layers with ReLU: parameters, forward, backward and batched
 * inference. Parameters of all layers share one buffer (weight [out, in] then
 * bias [out], layer after layer) so optimizers and checkpoints see one array.
 */
#include "tardis/nn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"
#include "vec.h"

struct td_net {
  int n_layers;
  int *dims;    /* n_layers + 1 */
  td_act *acts; /* n_layers */
  size_t *off;  /* offset of each layer's weight in params/grads */
  size_t n_params;
  float *params;
  float *grads;
  int shares_params; /* a replica: params belong to another net */
};

struct td_net_ws {
  int n_layers;
  int max_batch;
  int batch;      /* rows of the last forward; 0 before any */
  const float *x; /* input of the last forward (not owned) */
  int *dims;
  float **act; /* per layer: output after activation [max_batch, dims[l+1]] */
  float *delta[2]; /* backward ping-pong buffers [max_batch, max hidden dim] */
};

/* 64-byte alignment lets the vectorised loops and OpenBLAS use aligned
 * loads; sizes are rounded up as aligned_alloc requires. */
static float *alloc_floats(size_t n) {
  size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
  if (bytes == 0)
    bytes = 64;
  return aligned_alloc(64, bytes);
}

const char *td_act_name(td_act a) {
  switch (a) {
  case TD_ACT_NONE:
    return "none";
  case TD_ACT_RELU:
    return "relu";
  default:
    return NULL;
  }
}

td_act td_act_parse(const char *name) {
  for (int a = 0; a < TD_ACT_COUNT; a++)
    if (name && strcmp(name, td_act_name((td_act)a)) == 0)
      return (td_act)a;
  return TD_ACT_COUNT;
}

td_net *td_net_new(int n_layers, const int *dims, const td_act *acts) {
  TD_ASSERT(n_layers > 0 && dims && acts);
  for (int i = 0; i <= n_layers; i++)
    TD_ASSERT(dims[i] > 0);
  for (int i = 0; i < n_layers; i++)
    TD_ASSERT(acts[i] >= 0 && acts[i] < TD_ACT_COUNT);
  td_net *net = calloc(1, sizeof *net);
  if (!net)
    return NULL;
  net->n_layers = n_layers;
  net->dims = malloc(sizeof(int) * (size_t)(n_layers + 1));
  net->acts = malloc(sizeof(td_act) * (size_t)n_layers);
  net->off = malloc(sizeof(size_t) * (size_t)n_layers);
  if (!net->dims || !net->acts || !net->off) {
    td_net_free(net);
    return NULL;
  }
  memcpy(net->dims, dims, sizeof(int) * (size_t)(n_layers + 1));
  memcpy(net->acts, acts, sizeof(td_act) * (size_t)n_layers);
  size_t n = 0;
  for (int l = 0; l < n_layers; l++) {
    net->off[l] = n;
    n += (size_t)dims[l + 1] * (size_t)dims[l] + (size_t)dims[l + 1];
  }
  net->n_params = n;
  net->params = alloc_floats(n);
  net->grads = alloc_floats(n);
  if (!net->params || !net->grads) {
    td_net_free(net);
    return NULL;
  }
  memset(net->params, 0, n * sizeof(float));
  memset(net->grads, 0, n * sizeof(float));
  return net;
}

void td_net_free(td_net *net) {
  if (!net)
    return;
  free(net->dims);
  free(net->acts);
  free(net->off);
  if (!net->shares_params)
    free(net->params);
  free(net->grads);
  free(net);
}

td_net *td_net_replica(td_net *net) {
  td_net *r = td_net_new(net->n_layers, net->dims, net->acts);
  if (!r)
    return NULL;
  free(r->params);
  r->params = net->params;
  r->shares_params = 1;
  return r;
}

td_net *td_net_clone(const td_net *net) {
  td_net *c = td_net_new(net->n_layers, net->dims, net->acts);
  if (!c)
    return NULL;
  memcpy(c->params, net->params, net->n_params * sizeof(float));
  memcpy(c->grads, net->grads, net->n_params * sizeof(float));
  return c;
}

void td_net_init(td_net *net, td_rng *rng) {
  for (int l = 0; l < net->n_layers; l++) {
    int in = net->dims[l], out = net->dims[l + 1];
    /* PyTorch's kaiming_uniform_(a=sqrt(5)) reduces to U(-1/sqrt(in),
     * 1/sqrt(in)) for the weight, and the bias uses the same bound. */
    float bound = 1.0f / sqrtf((float)in);
    float *w = net->params + net->off[l];
    size_t nw = (size_t)out * (size_t)in + (size_t)out;
    for (size_t i = 0; i < nw; i++)
      w[i] = (2.0f * td_rng_uniform(rng) - 1.0f) * bound;
  }
  td_net_zero_grad(net);
}

int td_net_n_layers(const td_net *net) { return net->n_layers; }
int td_net_in_dim(const td_net *net) { return net->dims[0]; }
int td_net_out_dim(const td_net *net) { return net->dims[net->n_layers]; }
int td_net_dim(const td_net *net, int i) {
  TD_ASSERT(i >= 0 && i <= net->n_layers);
  return net->dims[i];
}
td_act td_net_act(const td_net *net, int layer) {
  TD_ASSERT(layer >= 0 && layer < net->n_layers);
  return net->acts[layer];
}
size_t td_net_n_params(const td_net *net) { return net->n_params; }
float *td_net_params(td_net *net) { return net->params; }
float *td_net_grads(td_net *net) { return net->grads; }
const float *td_net_params_const(const td_net *net) { return net->params; }

size_t td_net_layer_offset(const td_net *net, int layer) {
  TD_ASSERT(layer >= 0 && layer < net->n_layers);
  return net->off[layer];
}
float *td_net_weight(td_net *net, int layer) {
  return net->params + td_net_layer_offset(net, layer);
}
float *td_net_bias(td_net *net, int layer) {
  return td_net_weight(net, layer) +
         (size_t)net->dims[layer + 1] * (size_t)net->dims[layer];
}
float *td_net_weight_grad(td_net *net, int layer) {
  return net->grads + td_net_layer_offset(net, layer);
}
float *td_net_bias_grad(td_net *net, int layer) {
  return td_net_weight_grad(net, layer) +
         (size_t)net->dims[layer + 1] * (size_t)net->dims[layer];
}

void td_net_zero_grad(td_net *net) {
  memset(net->grads, 0, net->n_params * sizeof(float));
}

/* ---- workspace ------------------------------------------------------------
 */

td_net_ws *td_net_ws_new(const td_net *net, int max_batch) {
  TD_ASSERT(max_batch > 0);
  td_net_ws *ws = calloc(1, sizeof *ws);
  if (!ws)
    return NULL;
  int L = net->n_layers;
  ws->n_layers = L;
  ws->max_batch = max_batch;
  ws->dims = malloc(sizeof(int) * (size_t)(L + 1));
  ws->act = calloc((size_t)L, sizeof(float *));
  if (!ws->dims || !ws->act) {
    td_net_ws_free(ws);
    return NULL;
  }
  memcpy(ws->dims, net->dims, sizeof(int) * (size_t)(L + 1));
  int widest = 1;
  for (int l = 0; l < L; l++) {
    if (net->dims[l + 1] > widest)
      widest = net->dims[l + 1];
    ws->act[l] = alloc_floats((size_t)max_batch * (size_t)net->dims[l + 1]);
    if (!ws->act[l]) {
      td_net_ws_free(ws);
      return NULL;
    }
  }
  for (int i = 0; i < 2; i++) {
    ws->delta[i] = alloc_floats((size_t)max_batch * (size_t)widest);
    if (!ws->delta[i]) {
      td_net_ws_free(ws);
      return NULL;
    }
  }
  return ws;
}

void td_net_ws_free(td_net_ws *ws) {
  if (!ws)
    return;
  if (ws->act)
    for (int l = 0; l < ws->n_layers; l++)
      free(ws->act[l]);
  free(ws->act);
  free(ws->dims);
  free(ws->delta[0]);
  free(ws->delta[1]);
  free(ws);
}

int td_net_ws_max_batch(const td_net_ws *ws) { return ws->max_batch; }

static void check_ws(const td_net *net, const td_net_ws *ws) {
  TD_ASSERT(ws->n_layers == net->n_layers);
  for (int i = 0; i <= net->n_layers; i++)
    TD_ASSERT(ws->dims[i] == net->dims[i]);
}

/* ---- forward --------------------------------------------------------------
 */

/* y = act(y + b) row by row, in one pass over y after the GEMM. */
static void bias_act(float *restrict y, const float *restrict b, int rows,
                     int cols, td_act act) {
  int relu = act == TD_ACT_RELU;
  for (int i = 0; i < rows; i++) {
    float *restrict r = y + (size_t)i * cols;
    int j = 0;
    for (; j + TD_V <= cols; j += TD_V) {
      td_v8 v = td_v8_load(r + j) + td_v8_load(b + j);
      td_v8_store(r + j, relu ? td_v8_where_pos(v, v) : v);
    }
    for (; j < cols; j++) {
      float v = r[j] + b[j];
      r[j] = relu && !(v > 0.0f) ? 0.0f : v;
    }
  }
}

const float *td_net_forward(const td_net *net, td_net_ws *ws, const float *x,
                            int batch) {
  check_ws(net, ws);
  TD_ASSERT(batch > 0 && batch <= ws->max_batch);
  ws->batch = batch;
  ws->x = x;
  const float *a = x;
  for (int l = 0; l < net->n_layers; l++) {
    int in = net->dims[l], out = net->dims[l + 1];
    const float *w = net->params + net->off[l];
    const float *b = w + (size_t)out * (size_t)in;
    float *y = ws->act[l];
    /* Y[batch,out] = A[batch,in] * W[out,in]^T */
    td_gemm(0, 1, batch, out, in, 1.0f, a, in, w, in, 0.0f, y, out);
    bias_act(y, b, batch, out, net->acts[l]);
    a = y;
  }
  return a;
}

const float *td_net_activation(const td_net_ws *ws, int layer) {
  TD_ASSERT(layer >= 0 && layer < ws->n_layers);
  return ws->act[layer];
}

/* ---- backward -------------------------------------------------------------
 */

/* db[cols] += the column sums of d[rows, cols]. */
static void colsum_add(const float *restrict d, float *restrict db, int rows,
                       int cols) {
  for (int i = 0; i < rows; i++) {
    const float *restrict r = d + (size_t)i * cols;
    int j = 0;
    for (; j + TD_V <= cols; j += TD_V)
      td_v8_store(db + j, td_v8_load(db + j) + td_v8_load(r + j));
    for (; j < cols; j++)
      db[j] += r[j];
  }
}

/* ReLU backward fused with the bias gradient, so dz is streamed once:
 * dz = d where y > 0 else 0 (PyTorch's rule: the derivative at 0 is 0), and
 * db += the column sums of dz. dz may be d itself. */
static void relu_back_bias(const float *d, const float *restrict y, float *dz,
                           float *restrict db, int rows, int cols) {
  for (int i = 0; i < rows; i++) {
    const float *dr = d + (size_t)i * cols;
    const float *restrict yr = y + (size_t)i * cols;
    float *zr = dz + (size_t)i * cols;
    int j = 0;
    for (; j + TD_V <= cols; j += TD_V) {
      td_v8 v = td_v8_where_pos(td_v8_load(yr + j), td_v8_load(dr + j));
      td_v8_store(zr + j, v);
      td_v8_store(db + j, td_v8_load(db + j) + v);
    }
    for (; j < cols; j++) {
      float v = yr[j] > 0.0f ? dr[j] : 0.0f;
      zr[j] = v;
      db[j] += v;
    }
  }
}

void td_net_backward(td_net *net, td_net_ws *ws, const float *dout, int batch,
                     float *dx) {
  check_ws(net, ws);
  TD_ASSERT(ws->batch > 0 && batch == ws->batch);
  /* cur: dLoss/d(output of layer l) in one of our delta buffers, or NULL for
   * the top layer, whose gradient is the caller's (read-only) dout. */
  float *cur = NULL;
  for (int l = net->n_layers - 1; l >= 0; l--) {
    int in = net->dims[l], out = net->dims[l + 1];
    const float *a = l == 0 ? ws->x : ws->act[l - 1];
    const float *w = net->params + net->off[l];
    float *gw = net->grads + net->off[l];
    float *gb = gw + (size_t)out * (size_t)in;
    const float *dz;
    if (cur) {
      if (net->acts[l] == TD_ACT_NONE)
        colsum_add(cur, gb, batch, out);
      else
        relu_back_bias(cur, ws->act[l], cur, gb, batch, out);
      dz = cur;
    } else if (net->acts[l] == TD_ACT_NONE) {
      colsum_add(dout, gb, batch, out); /* a linear top layer needs no copy */
      dz = dout;
    } else {
      relu_back_bias(dout, ws->act[l], ws->delta[0], gb, batch, out);
      cur = ws->delta[0];
      dz = cur;
    }
    /* dW[out,in] += dZ[batch,out]^T * A[batch,in] */
    td_gemm(1, 0, out, in, batch, 1.0f, dz, out, a, in, 1.0f, gw, in);
    if (l == 0 && !dx)
      break;
    /* dA[batch,in] = dZ[batch,out] * W[out,in], into the buffer dz is not in */
    float *da =
        l == 0 ? dx : (cur == ws->delta[0] ? ws->delta[1] : ws->delta[0]);
    td_gemm(0, 0, batch, in, out, 1.0f, dz, out, w, in, 0.0f, da, in);
    cur = da;
  }
}

/* ---- batched inference ----------------------------------------------------
 */

typedef struct {
  const td_net *net;
  const float *x;
  float *out, *tap;
  int tap_layer;
  td_net_ws **ws; /* one per thread */
} predict_ctx;

static void predict_rows(const predict_ctx *p, td_net_ws *ws, int64_t begin,
                         int64_t end) {
  const td_net *net = p->net;
  int in = net->dims[0], nout = net->dims[net->n_layers];
  for (int64_t r = begin; r < end; r += ws->max_batch) {
    int rows = (int)(end - r < ws->max_batch ? end - r : ws->max_batch);
    const float *y = td_net_forward(net, ws, p->x + (size_t)r * in, rows);
    if (p->out)
      memcpy(p->out + (size_t)r * nout, y, sizeof(float) * (size_t)rows * nout);
    if (p->tap) {
      int td = net->dims[p->tap_layer + 1];
      memcpy(p->tap + (size_t)r * td, ws->act[p->tap_layer],
             sizeof(float) * (size_t)rows * td);
    }
  }
}

static void predict_cb(void *ctx, int64_t begin, int64_t end, int tid) {
  const predict_ctx *p = ctx;
  predict_rows(p, p->ws[tid], begin, end);
}

int td_net_predict(const td_net *net, const float *x, int64_t n, float *out,
                   int tap_layer, float *tap) {
  TD_ASSERT(n >= 0 && tap_layer >= -1 && tap_layer < net->n_layers);
  if (n == 0 || (!out && (!tap || tap_layer < 0)))
    return TD_OK;
  predict_ctx p = {net, x, out, tap_layer >= 0 ? tap : NULL, tap_layer, NULL};
  int chunk = n < TD_NET_PREDICT_CHUNK ? (int)n : TD_NET_PREDICT_CHUNK;
  int nt = td_threads();
  if (nt > (n + chunk - 1) / chunk)
    nt = (int)((n + chunk - 1) / chunk);
  td_net_ws *stack_ws[1];
  td_net_ws **ws = stack_ws;
  if (nt > 1 && !(ws = calloc((size_t)nt, sizeof *ws)))
    return TD_ENOMEM;
  int rc = TD_OK;
  for (int t = 0; t < nt; t++)
    if (!(ws[t] = td_net_ws_new(net, chunk)))
      rc = TD_ENOMEM;
  if (rc == TD_OK) {
    p.ws = ws;
    /* Parallel over chunks, each GEMM on one thread: for these small
     * matrices that beats OpenBLAS's own threading, nesting both would
     * oversubscribe the cores, and OpenBLAS's threads would sum each output
     * in an order that depends on their count — even when there is a single
     * chunk, which therefore runs on one BLAS thread too. */
    td_blas_single_begin();
    if (nt == 1)
      predict_rows(&p, ws[0], 0, n);
    else
      td_parallel_for(n, chunk, predict_cb, &p);
    td_blas_single_end();
  }
  for (int t = 0; t < nt; t++)
    td_net_ws_free(ws[t]);
  if (ws != stack_ws)
    free(ws);
  return rc;
}
