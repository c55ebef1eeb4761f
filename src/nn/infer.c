/* The inference path: eval-mode forward passes over many samples (the
 * recorder's pass over every training and test sample), the same arithmetic
 * as td_net_forward in eval mode but arranged for throughput:
 *
 * - A run of consecutive non-dense layers (a CNN's convolutions, pooling,
 *   batchnorm) goes a few samples at a time (INFER_GROUP) through all of its
 *   layers before the next samples start, so a sample's large early
 *   activations (32x28x28 floats after the first convolution) stay in cache
 *   for the layer that reads them instead of round-tripping through memory
 *   for a whole chunk; only the run's last, small output is kept per row.
 * - A convolution without activation followed by batchnorm runs as one
 *   convolution: in eval mode batchnorm is a per-channel scale and shift,
 *   folded into a copy of the weights and bias at every run, and the
 *   batchnorm's activation (and a max pooling after it) is fused in.
 * - Dense layers run once per chunk of INFER_CHUNK rows as one GEMM.
 * - Workspaces live as long as the context, so repeated passes (one per
 *   recorded epoch) neither allocate nor page-fault.
 *
 * Chunks and groups depend on the net only and every GEMM runs on one BLAS
 * thread, so the results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "net_internal.h"
#include "tardis/parallel.h"
#include "vec.h"

int td__infer_avx512 = 1;

#define INFER_CHUNK TD_NET_INFER_CHUNK
#define INFER_GROUP 4

/* One thread's buffers. */
typedef struct {
  td_net_ws *ws; /* max_batch INFER_GROUP, for the non-dense runs */
  float *buf[2]; /* [INFER_CHUNK, widest row kept per chunk] ping-pong */
  float *wino;   /* Winograd and direct 3x3 scratch */
  int hwc; /* the last run of non-dense layers wrote its rows as [h][w][c] */
} infer_thread;

struct td_net_infer {
  const td_net *net;
  int widest;   /* widest output of a dense layer or of a run's last layer */
  float **U;    /* per layer: Winograd weights, NULL for other layers */
  float **fold; /* per conv layer before batchnorm: folded weight, bias */
  float **wt;   /* per dense layer after a conv part: weight transposed */
  size_t wino_scratch;
  int n_threads;
  infer_thread *th;
};

static int is_dense(const td_net *net, int l) {
  return net->layers[l].s.kind == TD_LAYER_DENSE;
}

/* Conv layer l runs through Winograd or the direct kernel (which take the
 * weights they are given), has no activation, and batchnorm follows it. */
static int foldable(const td_net *net, int l) {
  const td__layer *L = &net->layers[l];
  return (td__wino_eligible(L) || td__conv3x3_eligible(L)) &&
         L->s.act == TD_ACT_NONE && l + 1 < net->n_layers &&
         net->layers[l + 1].s.kind == TD_LAYER_BATCHNORM;
}

/* fold[l] = the conv's weight and bias with the batchnorm after it in eval
 * mode, y = gamma (conv - mean) / sqrt(var + eps) + beta, folded in: the
 * weight of output channel o times a = gamma_o * invstd_o (invstd computed
 * as td__bn_forward does), the bias (b_o - mean_o) a + beta_o. */
static void fold_bn(const td_net *net, int l, float *fold) {
  const td__layer *L = &net->layers[l], *B = &net->layers[l + 1];
  const float *w = net->params + L->off, *b = w + L->nw;
  const float *gamma = net->params + B->off, *beta = gamma + B->ic;
  const float *rm = net->state + B->soff, *rv = rm + B->ic;
  size_t k = L->nw / (size_t)L->oc;
  for (int o = 0; o < L->oc; o++) {
    float a = gamma[o] * (float)(1.0 / sqrt((double)rv[o] + TD__BN_EPS));
    for (size_t i = 0; i < k; i++)
      fold[(size_t)o * k + i] = w[(size_t)o * k + i] * a;
    fold[L->nw + o] = (b[o] - rm[o]) * a + beta[o];
  }
}

/* Dense layer l takes the AVX-512 kernel (dense_wide.c): the first dense
 * layer after a convolutional part (a dense-only net keeps the GEMM, whose
 * results td_net_predict's match bit for bit). */
static int wide_dense(const td_net *net, int l) {
  return is_dense(net, l) && l > 0 && !is_dense(net, l - 1) &&
         td__dense_wide_eligible(net->dims[l], net->dims[l + 1]);
}

/* The output of layer l is kept per chunk row when the next layer is dense
 * or l is the last layer. */
static int kept(const td_net *net, int l) {
  return l + 1 == net->n_layers || is_dense(net, l) || is_dense(net, l + 1);
}

td_net_infer *td_net_infer_new(const td_net *net) {
  td_net_infer *inf = calloc(1, sizeof *inf);
  if (!inf)
    return NULL;
  inf->net = net;
  inf->widest = net->dims[0];
  inf->U = calloc((size_t)net->n_layers, sizeof *inf->U);
  inf->fold = calloc((size_t)net->n_layers, sizeof *inf->fold);
  inf->wt = calloc((size_t)net->n_layers, sizeof *inf->wt);
  if (!inf->U || !inf->fold || !inf->wt) {
    free(inf->U);
    free(inf->fold);
    free(inf->wt);
    free(inf);
    return NULL;
  }
  for (int l = 0; l < net->n_layers; l++) {
    const td__layer *L = &net->layers[l];
    if (kept(net, l) && net->dims[l + 1] > inf->widest)
      inf->widest = net->dims[l + 1];
    if (foldable(net, l) && !(inf->fold[l] = td__alloc_floats(L->nw + L->nb))) {
      td_net_infer_free(inf);
      return NULL;
    }
    if (wide_dense(net, l) && !(inf->wt[l] = td__alloc_floats((size_t)L->nw))) {
      td_net_infer_free(inf);
      return NULL;
    }
    if (td__conv3x3_eligible(L) && td__conv3x3_scratch(L) > inf->wino_scratch)
      inf->wino_scratch = td__conv3x3_scratch(L);
    if (!td__wino_eligible(L))
      continue;
    int w4 = td__wino4_eligible(L);
    size_t s = w4 ? td__wino4_scratch(L, INFER_GROUP)
                  : td__wino_scratch(L, INFER_GROUP);
    if (s > inf->wino_scratch)
      inf->wino_scratch = s;
    if (!(inf->U[l] =
              td__alloc_floats((size_t)(w4 ? 36 : 16) * L->oc * L->ic))) {
      td_net_infer_free(inf);
      return NULL;
    }
  }
  return inf;
}

static void thread_free(infer_thread *t) {
  td_net_ws_free(t->ws);
  free(t->wino);
  free(t->buf[0]);
  free(t->buf[1]);
}

void td_net_infer_free(td_net_infer *inf) {
  if (!inf)
    return;
  for (int t = 0; t < inf->n_threads; t++)
    thread_free(&inf->th[t]);
  for (int l = 0; l < inf->net->n_layers; l++) {
    free(inf->U[l]);
    free(inf->fold[l]);
    free(inf->wt[l]);
  }
  free(inf->U);
  free(inf->fold);
  free(inf->wt);
  free(inf->th);
  free(inf);
}

/* Buffers for nt threads (kept from earlier runs). TD_OK or TD_ENOMEM. */
static int ensure_threads(td_net_infer *inf, int nt) {
  if (nt <= inf->n_threads)
    return TD_OK;
  infer_thread *th = realloc(inf->th, (size_t)nt * sizeof *th);
  if (!th)
    return TD_ENOMEM;
  inf->th = th;
  for (int t = inf->n_threads; t < nt; t++) {
    infer_thread *x = &th[t];
    x->hwc = 0;
    x->ws = td_net_ws_new(inf->net, INFER_GROUP);
    x->buf[0] = td__alloc_floats((size_t)INFER_CHUNK * inf->widest);
    x->buf[1] = td__alloc_floats((size_t)INFER_CHUNK * inf->widest);
    x->wino = inf->wino_scratch ? td__alloc_floats(inf->wino_scratch) : NULL;
    if (!x->ws || !x->buf[0] || !x->buf[1] || (inf->wino_scratch && !x->wino)) {
      thread_free(x);
      return TD_ENOMEM;
    }
    inf->n_threads = t + 1;
  }
  return TD_OK;
}

/* A convolution (with the batchnorm after it folded in where fold is set)
 * and, where the tap allows, the max pooling after it: Winograd, direct 3x3
 * or im2col + GEMM. Returns the layers done. */
static int conv_forward(const td_net_infer *inf, infer_thread *t, int l,
                        const float *a, int batch, int tap_layer) {
  const td_net *net = inf->net;
  td__layer L = net->layers[l];
  const float *w = net->params + L.off;
  int fold = inf->fold[l] && l != tap_layer, done = 1;
  if (fold) {
    w = inf->fold[l];
    L.s.act = net->layers[l + 1].s.act;
    done = 2;
  } else if (inf->fold[l] || !inf->U[l]) {
    if (!td__conv3x3_eligible(&L)) /* (or tapped before its batchnorm) */
      return td__conv_forward(net, t->ws, l, a, batch), 1;
  }
  int last = l + done - 1; /* the layer whose output this is */
  int pool = last + 1 < net->n_layers && last != tap_layer &&
             !kept(net, last) && td__wino_poolable(&L, &net->layers[last + 1]);
  float *y = t->ws->act[last + pool];
  /* channels innermost for the AVX-512 dense kernel after it, untapped */
  int o = last + pool,
      w4 = inf->U[l] && (fold || !inf->fold[l]) && td__wino4_eligible(&L);
  t->hwc = w4 && td__infer_avx512 && o + 1 < net->n_layers && inf->wt[o + 1] &&
           o != tap_layer;
  if (w4)
    td__wino4_forward(&L, inf->U[l], w + L.nw, a, batch, pool, t->hwc, t->wino,
                      y);
  else if (inf->U[l] && (fold || !inf->fold[l]))
    td__wino_forward(&L, inf->U[l], w + L.nw, a, batch, pool, t->wino, y);
  else
    td__conv3x3_forward(&L, w, w + L.nw, a, batch, pool, t->wino, y);
  return done + pool;
}

/* Eval-mode forward of one non-dense layer on `batch` rows of t->ws;
 * returns the number of layers done (more than 1: a convolution with the
 * batchnorm and the max pooling after it, into the last one's output). */
static int layer_forward(const td_net_infer *inf, infer_thread *t, int l,
                         const float *a, int batch, int tap_layer) {
  const td_net *net = inf->net;
  const td__layer *L = &net->layers[l];
  td_net_ws *ws = t->ws;
  switch (L->s.kind) {
  case TD_LAYER_CONV:
    return conv_forward(inf, t, l, a, batch, tap_layer);
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
  return 1;
}

typedef struct {
  td_net_infer *inf;
  const float *x;
  float *out, *tap;
  int tap_layer;
} infer_job;

/* Non-dense layers [l0, l1) on the m rows of a (row width dims[l0]),
 * INFER_GROUP rows at a time; layer l1-1's output goes to y (kept), the
 * tap's to tap. */
static void run_groups(const infer_job *j, infer_thread *t, int l0, int l1,
                       const float *a, int m, float *y, int64_t row0) {
  const td_net *net = j->inf->net;
  td_net_ws *ws = t->ws;
  int in = net->dims[l0], out = net->dims[l1];
  for (int g = 0; g < m; g += INFER_GROUP) {
    int b = m - g < INFER_GROUP ? m - g : INFER_GROUP;
    const float *x = a + (size_t)g * in;
    t->hwc = 0; /* (a conv_forward may set it) */
    for (int l = l0; l < l1;) {
      l += layer_forward(j->inf, t, l, x, b, j->tap_layer);
      x = ws->act[l - 1];
      if (l - 1 == j->tap_layer && j->tap) {
        size_t d = (size_t)net->dims[l];
        memcpy(j->tap + (size_t)(row0 + g) * d, x, sizeof(float) * b * d);
      }
    }
    memcpy(y + (size_t)g * out, x, sizeof(float) * (size_t)b * out);
  }
}

/* Rows [r0, r0+m) of the job, on thread t's buffers. */
static void infer_chunk(const infer_job *j, infer_thread *t, int64_t r0,
                        int m) {
  const td_net *net = j->inf->net;
  const float *a = j->x + (size_t)r0 * net->dims[0];
  int cur = 0;
  for (int l = 0; l < net->n_layers;) {
    float *y = t->buf[cur];
    int l1 = l + 1;
    if (is_dense(net, l)) {
      int in = net->dims[l], out = net->dims[l + 1];
      const float *w = net->params + net->layers[l].off;
#if defined(TD_V16)
      int hwc = t->hwc; /* (set by the run of layers before this one) */
      t->hwc = 0;
      if (hwc && j->inf->wt[l])
        td__dense_wide(a, m, in, j->inf->wt[l], out, y);
      else
#endif
        td_gemm(0, 1, m, out, in, 1.0f, a, in, w, in, 0.0f, y, out);
      td__bias_act(y, w + (size_t)out * in, m, out, net->acts[l]);
      if (l == j->tap_layer && j->tap)
        memcpy(j->tap + (size_t)r0 * out, y, sizeof(float) * (size_t)m * out);
    } else {
      while (!kept(net, l1 - 1))
        l1++;
      run_groups(j, t, l, l1, a, m, y, r0);
    }
    if (l1 == net->n_layers && j->out) {
      size_t d = (size_t)net->dims[l1];
      memcpy(j->out + (size_t)r0 * d, y, sizeof(float) * (size_t)m * d);
    }
    a = y;
    cur ^= 1;
    l = l1;
  }
}

static void infer_cb(void *ctx, int64_t begin, int64_t end, int tid) {
  const infer_job *j = ctx;
  for (int64_t r = begin; r < end; r += INFER_CHUNK)
    infer_chunk(j, &j->inf->th[tid], r,
                (int)(end - r < INFER_CHUNK ? end - r : INFER_CHUNK));
}

int td_net_infer_begin(td_net_infer *inf, int slots) {
  const td_net *net = inf->net;
  if (ensure_threads(inf, slots) != TD_OK)
    return TD_ENOMEM;
  for (int t = 0; t < inf->n_threads; t++)
    td_net_ws_set_training(inf->th[t].ws, 0, 0);
  for (int l = 0; l < net->n_layers; l++) { /* the net's current weights */
    const float *w = net->params + net->layers[l].off;
#if defined(TD_V16)
    if (inf->wt[l])
      td__dense_wide_pack(w, net->dims[l], net->dims[l + 1],
                          net->layers[l - 1].oc, inf->wt[l]);
#endif
    if (inf->fold[l]) {
      fold_bn(net, l, inf->fold[l]);
      w = inf->fold[l];
    }
    if (inf->U[l] && td__wino4_eligible(&net->layers[l]))
      td__wino4_weights(&net->layers[l], w, inf->U[l]);
    else if (inf->U[l])
      td__wino_weights(&net->layers[l], w, inf->U[l]);
  }
  return TD_OK;
}

void td_net_infer_rows(td_net_infer *inf, int slot, const float *x, int64_t r0,
                       int64_t m, float *out, int tap_layer, float *tap) {
  TD_ASSERT(slot >= 0 && slot < inf->n_threads && r0 >= 0 && m >= 0 &&
            r0 % TD_NET_INFER_CHUNK == 0 && tap_layer >= -1 &&
            tap_layer < inf->net->n_layers);
  infer_job j = {inf, x, out, tap_layer >= 0 ? tap : NULL, tap_layer};
  infer_cb(&j, r0, r0 + m, slot);
}

int td_net_infer_run(td_net_infer *inf, const float *x, int64_t n, float *out,
                     int tap_layer, float *tap) {
  const td_net *net = inf->net;
  TD_ASSERT(n >= 0 && tap_layer >= -1 && tap_layer < net->n_layers);
  if (n == 0 || (!out && (!tap || tap_layer < 0)))
    return TD_OK;
  infer_job j = {inf, x, out, tap_layer >= 0 ? tap : NULL, tap_layer};
  int64_t chunks = (n + INFER_CHUNK - 1) / INFER_CHUNK;
  int nt = td_threads() < chunks ? td_threads() : (int)chunks;
  if (td_net_infer_begin(inf, nt) != TD_OK)
    return TD_ENOMEM;
  /* as td_net_predict: parallel over chunks, each GEMM on one BLAS thread */
  td_blas_single_begin();
  if (nt == 1)
    infer_cb(&j, 0, n, 0);
  else
    td_parallel_for(n, INFER_CHUNK, infer_cb, &j);
  td_blas_single_end();
  return TD_OK;
}
