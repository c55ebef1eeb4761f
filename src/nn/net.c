/* The sequential net: construction, parameters, workspaces, the forward and
 * backward passes over all layer kinds (dense layers here, the others in
 * conv.c, pool.c, batchnorm.c, dropout.c) and batched inference. Parameters
 * of all layers share one buffer (weight then bias, layer after layer) so
 * optimizers and checkpoints see one array. */
#include "tardis/nn.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_internal.h"
#include "tardis/parallel.h"
#include "vec.h"

float *td__alloc_floats(size_t n) {
  /* 64-byte alignment lets the vectorised loops and OpenBLAS use aligned
   * loads; sizes are rounded up as aligned_alloc requires. */
  size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
  if (bytes == 0)
    bytes = 64;
  return aligned_alloc(64, bytes);
}

#define alloc_floats td__alloc_floats

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

/* FNV-1a over the resolved layers: a workspace remembers it, so a
 * workspace of another architecture is caught even if the widths agree. */
static uint64_t arch_sig(const td__layer *L, int n) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < n; i++) {
    int v[12] = {(int)L[i].s.kind, L[i].s.out, L[i].s.kernel,
                 L[i].s.stride,    L[i].s.pad, (int)L[i].s.act,
                 L[i].ic,          L[i].ih,    L[i].iw,
                 L[i].oc,          L[i].oh,    L[i].ow};
    for (int j = 0; j < 12; j++)
      h = (h ^ (uint32_t)v[j]) * 1099511628211ull;
  }
  return h;
}

/* Sets batchnorm's state to PyTorch's initial values: mean 0, variance 1. */
static void reset_state(td_net *net) {
  for (int l = 0; l < net->n_layers; l++) {
    const td__layer *L = &net->layers[l];
    if (L->s.kind != TD_LAYER_BATCHNORM)
      continue;
    float *s = net->state + L->soff;
    for (int c = 0; c < L->ic; c++) {
      s[c] = 0.0f;
      s[L->ic + c] = 1.0f;
    }
  }
}

/* A net over resolved layers; params NULL allocates them (zeroed, gamma 1),
 * else they and state are borrowed (a replica). */
static td_net *net_alloc(int n, const td__layer *layers, float *params,
                         float *state) {
  td_net *net = calloc(1, sizeof *net);
  if (!net)
    return NULL;
  net->n_layers = n;
  net->layers = malloc(sizeof(td__layer) * (size_t)n);
  net->dims = malloc(sizeof(int) * (size_t)(n + 1));
  net->acts = malloc(sizeof(td_act) * (size_t)n);
  if (!net->layers || !net->dims || !net->acts) {
    td_net_free(net);
    return NULL;
  }
  memcpy(net->layers, layers, sizeof(td__layer) * (size_t)n);
  net->dims[0] = layers[0].in;
  for (int l = 0; l < n; l++) {
    const td__layer *L = &layers[l];
    net->dims[l + 1] = L->out;
    net->acts[l] = L->s.act;
    net->n_params = L->off + L->nw + L->nb;
    net->n_state = L->soff + L->ns;
    if (L->s.kind != TD_LAYER_DENSE || L->ih != 1 || L->iw != 1)
      net->spatial = 1;
  }
  net->sig = arch_sig(layers, n);
  net->grads = alloc_floats(net->n_params);
  if (params) {
    net->params = params;
    net->state = state;
    net->shares_params = 1;
  } else {
    net->params = alloc_floats(net->n_params);
    net->state = alloc_floats(net->n_state);
  }
  if (!net->params || !net->grads || !net->state) {
    td_net_free(net);
    return NULL;
  }
  memset(net->grads, 0, net->n_params * sizeof(float));
  if (!params) {
    memset(net->params, 0, net->n_params * sizeof(float));
    for (int l = 0; l < n; l++)
      if (layers[l].s.kind == TD_LAYER_BATCHNORM)
        for (size_t c = 0; c < layers[l].nw; c++)
          net->params[layers[l].off + c] = 1.0f;
    reset_state(net);
  }
  return net;
}

td_net *td_net_new_layers(int in_c, int in_h, int in_w, int n_layers,
                          const td_layer_spec *layers) {
  TD_ASSERT(n_layers > 0 && layers);
  td__layer *res = malloc(sizeof *res * (size_t)n_layers);
  if (!res)
    return NULL;
  td_err err = {0};
  if (td__layers_resolve(in_c, in_h, in_w, n_layers, layers, res, &err)) {
    fprintf(stderr, "td_net_new_layers: %s\n", err.msg);
    TD_ASSERT(!"invalid layers (see td_net_check_layers)");
  }
  td_net *net = net_alloc(n_layers, res, NULL, NULL);
  free(res);
  return net;
}

td_net *td_net_new(int n_layers, const int *dims, const td_act *acts) {
  TD_ASSERT(n_layers > 0 && dims && acts);
  for (int i = 0; i <= n_layers; i++)
    TD_ASSERT(dims[i] > 0);
  for (int i = 0; i < n_layers; i++)
    TD_ASSERT(acts[i] >= 0 && acts[i] < TD_ACT_COUNT);
  td_layer_spec *spec = calloc((size_t)n_layers, sizeof *spec);
  if (!spec)
    return NULL;
  for (int l = 0; l < n_layers; l++) {
    spec[l].kind = TD_LAYER_DENSE;
    spec[l].out = dims[l + 1];
    spec[l].act = acts[l];
  }
  td_net *net = td_net_new_layers(dims[0], 1, 1, n_layers, spec);
  free(spec);
  return net;
}

void td_net_free(td_net *net) {
  if (!net)
    return;
  free(net->layers);
  free(net->dims);
  free(net->acts);
  if (!net->shares_params) {
    free(net->params);
    free(net->state);
  }
  free(net->grads);
  free(net);
}

td_net *td_net_replica(td_net *net) {
  return net_alloc(net->n_layers, net->layers, net->params, net->state);
}

td_net *td_net_clone(const td_net *net) {
  td_net *c = net_alloc(net->n_layers, net->layers, NULL, NULL);
  if (!c)
    return NULL;
  memcpy(c->params, net->params, net->n_params * sizeof(float));
  memcpy(c->grads, net->grads, net->n_params * sizeof(float));
  memcpy(c->state, net->state, net->n_state * sizeof(float));
  return c;
}

void td_net_init(td_net *net, td_rng *rng) {
  for (int l = 0; l < net->n_layers; l++) {
    const td__layer *L = &net->layers[l];
    float *w = net->params + L->off;
    if (L->s.kind == TD_LAYER_BATCHNORM) {
      for (size_t c = 0; c < L->nw; c++) {
        w[c] = 1.0f;
        w[L->nw + c] = 0.0f;
      }
      continue;
    }
    if (L->nw == 0)
      continue;
    /* PyTorch's kaiming_uniform_(a=sqrt(5)) reduces to U(-1/sqrt(fan_in),
     * 1/sqrt(fan_in)) for the weight, and the bias uses the same bound. */
    float bound = 1.0f / sqrtf((float)(L->nw / L->nb));
    for (size_t i = 0; i < L->nw + L->nb; i++)
      w[i] = (2.0f * td_rng_uniform(rng) - 1.0f) * bound;
  }
  reset_state(net);
  td_net_zero_grad(net);
}

static const td__layer *layer_at(const td_net *net, int layer) {
  TD_ASSERT(layer >= 0 && layer < net->n_layers);
  return &net->layers[layer];
}

int td_net_n_layers(const td_net *net) { return net->n_layers; }
int td_net_in_dim(const td_net *net) { return net->dims[0]; }
int td_net_out_dim(const td_net *net) { return net->dims[net->n_layers]; }
int td_net_dim(const td_net *net, int i) {
  TD_ASSERT(i >= 0 && i <= net->n_layers);
  return net->dims[i];
}
void td_net_shape(const td_net *net, int i, int *c, int *h, int *w) {
  TD_ASSERT(i >= 0 && i <= net->n_layers);
  const td__layer *L = &net->layers[i == 0 ? 0 : i - 1];
  if (c)
    *c = i == 0 ? L->ic : L->oc;
  if (h)
    *h = i == 0 ? L->ih : L->oh;
  if (w)
    *w = i == 0 ? L->iw : L->ow;
}
td_act td_net_act(const td_net *net, int layer) {
  return layer_at(net, layer)->s.act;
}
const td_layer_spec *td_net_layer_spec(const td_net *net, int layer) {
  return &layer_at(net, layer)->s;
}
size_t td_net_layer_n_params(const td_net *net, int layer) {
  const td__layer *L = layer_at(net, layer);
  return L->nw + L->nb;
}
size_t td_net_n_params(const td_net *net) { return net->n_params; }
float *td_net_params(td_net *net) { return net->params; }
float *td_net_grads(td_net *net) { return net->grads; }
const float *td_net_params_const(const td_net *net) { return net->params; }
size_t td_net_n_state(const td_net *net) { return net->n_state; }
float *td_net_state(td_net *net) { return net->state; }
const float *td_net_state_const(const td_net *net) { return net->state; }

float *td_net_running_mean(td_net *net, int layer) {
  const td__layer *L = layer_at(net, layer);
  TD_ASSERT(L->s.kind == TD_LAYER_BATCHNORM);
  return net->state + L->soff;
}
float *td_net_running_var(td_net *net, int layer) {
  return td_net_running_mean(net, layer) + net->layers[layer].ic;
}

size_t td_net_layer_offset(const td_net *net, int layer) {
  return layer_at(net, layer)->off;
}
float *td_net_weight(td_net *net, int layer) {
  return net->params + td_net_layer_offset(net, layer);
}
float *td_net_bias(td_net *net, int layer) {
  return td_net_weight(net, layer) + net->layers[layer].nw;
}
float *td_net_weight_grad(td_net *net, int layer) {
  return net->grads + td_net_layer_offset(net, layer);
}
float *td_net_bias_grad(td_net *net, int layer) {
  return td_net_weight_grad(net, layer) + net->layers[layer].nw;
}

void td_net_zero_grad(td_net *net) {
  memset(net->grads, 0, net->n_params * sizeof(float));
}

/* ---- workspace ------------------------------------------------------------
 */

/* Per-layer buffers of a workspace beyond the activation. */
static int ws_layer_alloc(td_net_ws *ws, const td__layer *L, int l,
                          size_t *col) {
  size_t rows = (size_t)ws->max_batch;
  switch (L->s.kind) {
  case TD_LAYER_CONV: {
    size_t c = (size_t)L->ic * L->s.kernel * L->s.kernel * L->oh * L->ow;
    if (c > *col)
      *col = c;
    return 1;
  }
  case TD_LAYER_MAXPOOL:
    return (ws->arg[l] = malloc(sizeof(int32_t) * rows * L->out)) != NULL;
  case TD_LAYER_BATCHNORM:
    return (ws->xhat[l] = alloc_floats(rows * L->in)) &&
           (ws->stat[l] = alloc_floats(3 * (size_t)L->ic));
  case TD_LAYER_DROPOUT:
    return (ws->mask[l] = malloc(rows * L->out)) != NULL;
  default:
    return 1;
  }
}

td_net_ws *td_net_ws_new(const td_net *net, int max_batch) {
  TD_ASSERT(max_batch > 0);
  td_net_ws *ws = calloc(1, sizeof *ws);
  if (!ws)
    return NULL;
  int L = net->n_layers;
  ws->n_layers = L;
  ws->max_batch = max_batch;
  ws->sig = net->sig;
  ws->dims = malloc(sizeof(int) * (size_t)(L + 1));
  ws->act = calloc((size_t)L, sizeof(float *));
  ws->xhat = calloc((size_t)L, sizeof(float *));
  ws->stat = calloc((size_t)L, sizeof(float *));
  ws->arg = calloc((size_t)L, sizeof(int32_t *));
  ws->mask = calloc((size_t)L, sizeof(uint8_t *));
  ws->stat_train = calloc((size_t)L, sizeof(int));
  if (!ws->dims || !ws->act || !ws->xhat || !ws->stat || !ws->arg ||
      !ws->mask || !ws->stat_train) {
    td_net_ws_free(ws);
    return NULL;
  }
  memcpy(ws->dims, net->dims, sizeof(int) * (size_t)(L + 1));
  int widest = 1;
  size_t col = 0;
  for (int l = 0; l < L; l++) {
    if (net->dims[l + 1] > widest)
      widest = net->dims[l + 1];
    ws->act[l] = alloc_floats((size_t)max_batch * (size_t)net->dims[l + 1]);
    if (!ws->act[l] || !ws_layer_alloc(ws, &net->layers[l], l, &col)) {
      td_net_ws_free(ws);
      return NULL;
    }
  }
  if (col &&
      (!(ws->col = alloc_floats(col)) || !(ws->dcol = alloc_floats(col)))) {
    td_net_ws_free(ws);
    return NULL;
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
  for (int l = 0; l < ws->n_layers; l++) {
    if (ws->act)
      free(ws->act[l]);
    if (ws->xhat)
      free(ws->xhat[l]);
    if (ws->stat)
      free(ws->stat[l]);
    if (ws->arg)
      free(ws->arg[l]);
    if (ws->mask)
      free(ws->mask[l]);
  }
  free(ws->act);
  free(ws->xhat);
  free(ws->stat);
  free(ws->arg);
  free(ws->mask);
  free(ws->stat_train);
  free(ws->dims);
  free(ws->col);
  free(ws->dcol);
  free(ws->delta[0]);
  free(ws->delta[1]);
  free(ws);
}

int td_net_ws_max_batch(const td_net_ws *ws) { return ws->max_batch; }

void td_net_ws_set_training(td_net_ws *ws, int training, uint64_t seed) {
  ws->training = training != 0;
  ws->seed = seed;
  ws->step = 0;
}

int td_net_ws_training(const td_net_ws *ws) { return ws->training; }

static void check_ws(const td_net *net, const td_net_ws *ws) {
  TD_ASSERT(ws->n_layers == net->n_layers && ws->sig == net->sig);
  for (int i = 0; i <= net->n_layers; i++)
    TD_ASSERT(ws->dims[i] == net->dims[i]);
}

/* ---- forward --------------------------------------------------------------
 */

/* y = act(y + b) row by row, in one pass over y after the GEMM. */
void td__bias_act(float *restrict y, const float *restrict b, int rows,
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

void td__act_forward(float *y, size_t n, td_act act) {
  if (act != TD_ACT_RELU)
    return;
  size_t j = 0;
  for (; j + TD_V <= n; j += TD_V) {
    td_v8 v = td_v8_load(y + j);
    td_v8_store(y + j, td_v8_where_pos(v, v));
  }
  for (; j < n; j++)
    y[j] = y[j] > 0.0f ? y[j] : 0.0f;
}

void td__act_backward(const float *g, const float *y, float *dz, size_t n,
                      td_act act) {
  if (act != TD_ACT_RELU) {
    if (dz != g)
      memcpy(dz, g, n * sizeof(float));
    return;
  }
  size_t j = 0;
  for (; j + TD_V <= n; j += TD_V)
    td_v8_store(dz + j, td_v8_where_pos(td_v8_load(y + j), td_v8_load(g + j)));
  for (; j < n; j++)
    dz[j] = y[j] > 0.0f ? g[j] : 0.0f;
}

static void dense_forward(const td_net *net, td_net_ws *ws, int l,
                          const float *a, int batch) {
  int in = net->dims[l], out = net->dims[l + 1];
  const float *w = net->params + net->layers[l].off;
  const float *b = w + (size_t)out * (size_t)in;
  float *y = ws->act[l];
  /* Y[batch,out] = A[batch,in] * W[out,in]^T */
  td_gemm(0, 1, batch, out, in, 1.0f, a, in, w, in, 0.0f, y, out);
  td__bias_act(y, b, batch, out, net->acts[l]);
}

/* td_net_forward through layers [0, n_layers) only. */
static const float *forward_to(const td_net *net, td_net_ws *ws, const float *x,
                               int batch, int n_layers) {
  check_ws(net, ws);
  TD_ASSERT(batch > 0 && batch <= ws->max_batch);
  ws->batch = batch;
  ws->x = x;
  const float *a = x;
  for (int l = 0; l < n_layers; l++) {
    const td__layer *L = &net->layers[l];
    switch (L->s.kind) {
    case TD_LAYER_DENSE:
      dense_forward(net, ws, l, a, batch);
      break;
    case TD_LAYER_CONV:
      td__conv_forward(net, ws, l, a, batch);
      break;
    case TD_LAYER_MAXPOOL:
      td__maxpool_forward(L, ws, l, a, batch);
      break;
    case TD_LAYER_AVGPOOL_GLOBAL:
      td__avgpool_forward(L, ws->act[l], a, batch);
      break;
    case TD_LAYER_BATCHNORM:
      td__bn_forward(net, ws, l, a, batch);
      break;
    case TD_LAYER_DROPOUT:
      td__dropout_forward(L, ws, l, a, batch);
      break;
    default:
      TD_ASSERT(!"unknown layer kind");
    }
    a = ws->act[l];
  }
  if (ws->training)
    ws->step++;
  return a;
}

const float *td_net_forward(const td_net *net, td_net_ws *ws, const float *x,
                            int batch) {
  return forward_to(net, ws, x, batch, net->n_layers);
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

/* Backward through dense layer l; *cur is our buffer holding the gradient
 * of its output (NULL: the caller's dout). Returns the gradient of its
 * input (dx for layer 0, NULL if not wanted). */
static float *dense_backward(td_net *net, td_net_ws *ws, int l, float *cur,
                             const float *dout, float *dx, int batch) {
  int in = net->dims[l], out = net->dims[l + 1];
  const float *a = l == 0 ? ws->x : ws->act[l - 1];
  const float *w = net->params + net->layers[l].off;
  float *gw = net->grads + net->layers[l].off;
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
    return NULL;
  /* dA[batch,in] = dZ[batch,out] * W[out,in], into the buffer dz is not in */
  float *da = l == 0 ? dx : (cur == ws->delta[0] ? ws->delta[1] : ws->delta[0]);
  td_gemm(0, 0, batch, in, out, 1.0f, dz, out, w, in, 0.0f, da, in);
  return da;
}

/* The same for the other kinds: the activation's derivative first (in
 * place in our buffer), then the kind's own backward into the other one. */
static float *layer_backward(td_net *net, td_net_ws *ws, int l, float *cur,
                             const float *dout, float *dx, int batch) {
  const td__layer *L = &net->layers[l];
  const float *dz = cur ? cur : dout;
  if (L->s.act != TD_ACT_NONE) {
    float *dst = cur ? cur : ws->delta[0];
    td__act_backward(dz, ws->act[l], dst, (size_t)batch * L->out, L->s.act);
    dz = cur = dst;
  }
  float *da = l == 0 ? dx : (cur == ws->delta[0] ? ws->delta[1] : ws->delta[0]);
  const float *a = l == 0 ? ws->x : ws->act[l - 1];
  switch (L->s.kind) {
  case TD_LAYER_CONV:
    td__conv_backward(net, ws, l, a, dz, da, batch);
    break;
  case TD_LAYER_BATCHNORM:
    td__bn_backward(net, ws, l, dz, da, batch);
    break;
  case TD_LAYER_MAXPOOL:
    if (da)
      td__maxpool_backward(L, ws, l, dz, da, batch);
    break;
  case TD_LAYER_AVGPOOL_GLOBAL:
    if (da)
      td__avgpool_backward(L, dz, da, batch);
    break;
  case TD_LAYER_DROPOUT:
    if (da)
      td__dropout_backward(L, ws, l, dz, da, batch);
    break;
  default:
    TD_ASSERT(!"unknown layer kind");
  }
  return da;
}

void td_net_backward(td_net *net, td_net_ws *ws, const float *dout, int batch,
                     float *dx) {
  check_ws(net, ws);
  TD_ASSERT(ws->batch > 0 && batch == ws->batch);
  /* cur: dLoss/d(output of layer l) in one of our delta buffers, or NULL for
   * the top layer, whose gradient is the caller's (read-only) dout. */
  float *cur = NULL;
  for (int l = net->n_layers - 1; l >= 0; l--) {
    if (net->layers[l].s.kind == TD_LAYER_DENSE)
      cur = dense_backward(net, ws, l, cur, dout, dx, batch);
    else
      cur = layer_backward(net, ws, l, cur, dout, dx, batch);
  }
}

/* ---- batched inference ----------------------------------------------------
 */

typedef struct {
  const td_net *net;
  const float *x;
  float *out;
  int n_taps;
  const int *tap_layers;
  float *const *taps;
  td_net_ws **ws; /* one per thread */
} predict_ctx;

static void predict_rows(const predict_ctx *p, td_net_ws *ws, int64_t begin,
                         int64_t end) {
  const td_net *net = p->net;
  int in = net->dims[0], nout = net->dims[net->n_layers];
  int upto = p->out ? net->n_layers : 0; /* without out: to the last tap */
  for (int t = 0; t < p->n_taps; t++)
    upto = p->tap_layers[t] + 1 > upto ? p->tap_layers[t] + 1 : upto;
  for (int64_t r = begin; r < end; r += ws->max_batch) {
    int rows = (int)(end - r < ws->max_batch ? end - r : ws->max_batch);
    const float *y = forward_to(net, ws, p->x + (size_t)r * in, rows, upto);
    if (p->out)
      memcpy(p->out + (size_t)r * nout, y, sizeof(float) * (size_t)rows * nout);
    for (int t = 0; t < p->n_taps; t++) {
      int l = p->tap_layers[t], td = net->dims[l + 1];
      memcpy(p->taps[t] + (size_t)r * td, ws->act[l],
             sizeof(float) * (size_t)rows * td);
    }
  }
}

/* Rows per chunk: TD_NET_PREDICT_CHUNK, or fewer when a row's activations
 * are large (a CNN's first layers), so each thread's workspace stays near
 * 32 MiB. A function of the net alone, so the chunks, and with them the
 * results, do not depend on the thread count. */
static int predict_chunk(const td_net *net) {
  size_t row = 0;
  for (int l = 1; l <= net->n_layers; l++)
    row += (size_t)net->dims[l] * 2 * sizeof(float);
  size_t c = ((size_t)32 << 20) / (row ? row : 1);
  if (c >= TD_NET_PREDICT_CHUNK)
    return TD_NET_PREDICT_CHUNK;
  return c < 16 ? 16 : (int)(c / 16 * 16);
}

static void predict_cb(void *ctx, int64_t begin, int64_t end, int tid) {
  const predict_ctx *p = ctx;
  predict_rows(p, p->ws[tid], begin, end);
}

int td_net_predict(const td_net *net, const float *x, int64_t n, float *out,
                   int tap_layer, float *tap) {
  TD_ASSERT(n >= 0 && tap_layer >= -1 && tap_layer < net->n_layers);
  int has = tap && tap_layer >= 0;
  return td_net_predict_taps(net, x, n, out, has, &tap_layer, &tap);
}

struct td_net_predictor {
  const td_net *net;
  int chunk, n_ws; /* rows per workspace: predict_chunk(net) */
  td_net_ws **ws;
};

td_net_predictor *td_net_predictor_new(const td_net *net) {
  td_net_predictor *p = calloc(1, sizeof *p);
  if (p) {
    p->net = net;
    p->chunk = predict_chunk(net);
  }
  return p;
}

void td_net_predictor_free(td_net_predictor *p) {
  for (int t = 0; p && t < p->n_ws; t++)
    td_net_ws_free(p->ws[t]);
  if (p)
    free(p->ws);
  free(p);
}

/* At least nt workspaces of p->chunk rows. */
static int predictor_grow(td_net_predictor *p, int nt) {
  if (nt <= p->n_ws)
    return TD_OK;
  td_net_ws **ws = realloc(p->ws, (size_t)nt * sizeof *ws);
  if (!ws)
    return TD_ENOMEM;
  p->ws = ws;
  for (; p->n_ws < nt; p->n_ws++)
    if (!(ws[p->n_ws] = td_net_ws_new(p->net, p->chunk)))
      return TD_ENOMEM;
  return TD_OK;
}

int td_net_predictor_run(td_net_predictor *pr, const float *x, int64_t n,
                         float *out, int n_taps, const int *tap_layers,
                         float *const *taps) {
  const td_net *net = pr->net;
  for (int t = 0; t < n_taps; t++)
    TD_ASSERT(tap_layers[t] >= 0 && tap_layers[t] < net->n_layers && taps[t]);
  if (n == 0 || (!out && n_taps == 0))
    return TD_OK;
  predict_ctx p = {net, x, out, n_taps, tap_layers, taps, NULL};
  /* the chunks of td_net_predict: predict_chunk(net) rows, or all n when
   * fewer (a workspace of more rows steps by its size, which is then > n) */
  int chunk = n < pr->chunk ? (int)n : pr->chunk;
  int nt = td_threads();
  if (nt > (n + chunk - 1) / chunk)
    nt = (int)((n + chunk - 1) / chunk);
  if (predictor_grow(pr, nt) != TD_OK)
    return TD_ENOMEM;
  p.ws = pr->ws;
  /* Parallel over chunks, each GEMM on one thread: for these small
   * matrices that beats OpenBLAS's own threading, nesting both would
   * oversubscribe the cores, and OpenBLAS's threads would sum each output
   * in an order that depends on their count — even when there is a single
   * chunk, which therefore runs on one BLAS thread too. */
  td_blas_single_begin();
  if (nt == 1)
    predict_rows(&p, pr->ws[0], 0, n);
  else
    td_parallel_for(n, chunk, predict_cb, &p);
  td_blas_single_end();
  return TD_OK;
}

int td_net_predict_taps(const td_net *net, const float *x, int64_t n,
                        float *out, int n_taps, const int *tap_layers,
                        float *const *taps) {
  if (n == 0 || (!out && n_taps == 0))
    return TD_OK;
  td_net_predictor *p = td_net_predictor_new(net);
  if (p && n < p->chunk) /* a workspace of just the rows there are */
    p->chunk = (int)n;
  int rc = p ? td_net_predictor_run(p, x, n, out, n_taps, tap_layers, taps)
             : TD_ENOMEM;
  td_net_predictor_free(p);
  return rc;
}
