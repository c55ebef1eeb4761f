/* Internal layout of td_net and td_net_ws, shared by the layer kernels
 * (conv.c, pool.c, batchnorm.c, dropout.c), net.c and checkpoint.c. */
#ifndef TD_NN_NET_INTERNAL_H
#define TD_NN_NET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tardis/nn.h"

/* A layer with its shapes resolved. */
typedef struct {
  td_layer_spec s; /* strides filled in */
  int ic, ih, iw;  /* input shape per sample */
  int oc, oh, ow;  /* output shape per sample */
  int in, out;     /* flattened widths ic*ih*iw, oc*oh*ow */
  size_t off;      /* offset of the weight in params/grads */
  size_t nw, nb;   /* floats of weight and bias */
  size_t soff, ns; /* offset and floats of its state */
} td__layer;

struct td_net {
  int n_layers;
  td__layer *layers;
  int *dims; /* n_layers + 1 flattened widths */
  td_act *acts;
  size_t n_params, n_state;
  float *params, *grads, *state;
  int shares_params; /* a replica: params and state belong to another net */
  uint64_t sig;      /* hash of the architecture, checked against workspaces */
  int spatial;       /* any layer other than dense on a flat input */
};

struct td_net_ws {
  int n_layers;
  int max_batch;
  int batch;      /* rows of the last forward; 0 before any */
  const float *x; /* input of the last forward (not owned) */
  uint64_t sig;
  int *dims;
  float **act;     /* per layer: output after activation [max_batch, out] */
  float **xhat;    /* batchnorm: normalised input [max_batch, in] */
  float **stat;    /* batchnorm: mean, invstd, batch var (biased) [C] each */
  int32_t **arg;   /* maxpool: argmax within the input plane [max_batch,out] */
  uint8_t **mask;  /* dropout: kept (1) or dropped (0) [max_batch, out] */
  int *stat_train; /* batchnorm: 1 if stat holds batch statistics */
  float *col, *dcol; /* conv: im2col buffers of one sample */
  float *delta[2];   /* backward ping-pong buffers [max_batch, widest] */
  int training;
  uint64_t seed, step; /* dropout: seed and forwards since set_training */
};

/* Batchnorm's epsilon (batchnorm.c; the inference path folds it too). */
#define TD__BN_EPS 1e-5

/* 64-byte aligned floats (n rounded up), NULL on out of memory. */
float *td__alloc_floats(size_t n);

/* y = act(y + b) row by row over y [rows, cols] (a dense layer's output). */
void td__bias_act(float *y, const float *b, int rows, int cols, td_act act);
/* y = act(y) elementwise; dz = g where y > 0 (ReLU) else g. */
void td__act_forward(float *y, size_t n, td_act act);
void td__act_backward(const float *g, const float *y, float *dz, size_t n,
                      td_act act);

/* Per-kind kernels on a batch of `batch` rows. Forward writes ws->act[l]
 * from x; backward reads dz = dLoss/d(pre-activation output) and adds to the
 * parameter gradients, and writes dx (NULL: not wanted). */
void td__conv_forward(const td_net *net, td_net_ws *ws, int l, const float *x,
                      int batch);
void td__conv_backward(td_net *net, td_net_ws *ws, int l, const float *x,
                       const float *dz, float *dx, int batch);
void td__maxpool_forward(const td__layer *L, td_net_ws *ws, int l,
                         const float *x, int batch);
void td__maxpool_backward(const td__layer *L, td_net_ws *ws, int l,
                          const float *dz, float *dx, int batch);
void td__avgpool_forward(const td__layer *L, float *y, const float *x,
                         int batch);
void td__avgpool_backward(const td__layer *L, const float *dz, float *dx,
                          int batch);
void td__bn_forward(const td_net *net, td_net_ws *ws, int l, const float *x,
                    int batch);
void td__bn_backward(td_net *net, td_net_ws *ws, int l, const float *dz,
                     float *dx, int batch);
void td__dropout_forward(const td__layer *L, td_net_ws *ws, int l,
                         const float *x, int batch);
void td__dropout_backward(const td__layer *L, const td_net_ws *ws, int l,
                          const float *dz, float *dx, int batch);

/* Winograd F(2x2, 3x3) for the inference path (winograd.c): for conv
 * layers of kernel 3, stride 1 and at least 4 input channels. U holds 16
 * [oc, ic] matrices (16*oc*ic floats) made from the weight [oc, ic, 3, 3];
 * td__wino_forward writes act(conv(x) + bias) of `batch` samples to y, using
 * td__wino_scratch(L, batch) floats of scratch. */
int td__wino_eligible(const td__layer *L);
size_t td__wino_scratch(const td__layer *L, int batch);
void td__wino_weights(const td__layer *L, const float *w, float *U);
void td__wino_forward(const td__layer *L, const float *U, const float *bias,
                      const float *x, int batch, int pool, float *scratch,
                      float *y);
/* Whether layer `next` after L is a 2x2 max pooling of stride 2 over an
 * even plane, whose windows are then Winograd's 2x2 output blocks: with
 * pool set, td__wino_forward writes the pooled [oc, oh/2, ow/2] output. */
int td__wino_poolable(const td__layer *L, const td__layer *next);

/* Winograd F(4x4, 3x3) for the inference path (winograd4.c), for the
 * Winograd-eligible layers whose channels in and out are multiples of 8:
 * U holds 36 [ic, oc] matrices (36*ic*oc floats); with hwc set, each
 * sample's output is [oh][ow][oc] (channels innermost, for
 * td__dense_wide); otherwise as above. */
int td__wino4_eligible(const td__layer *L);
size_t td__wino4_scratch(const td__layer *L, int batch);
void td__wino4_weights(const td__layer *L, const float *w, float *U);
void td__wino4_forward(const td__layer *L, const float *U, const float *bias,
                       const float *x, int batch, int pool, int hwc,
                       float *scratch, float *y);

/* Whether td__wino4_forward and td__conv3x3_forward may take their
 * sixteen-float (AVX-512) variants where the build has them (1, the
 * default; infer.c): tests clear it to run the eight-float variants on an
 * AVX-512 machine too. Not to be changed while a forward pass runs. */
extern int td__infer_avx512;

/* The inference path's dense layer after a convolutional part, with
 * AVX-512 (dense_wide.c): eligible where the build has AVX-512 and out is a
 * multiple of 16; td__dense_wide_pack writes the weight w [out, in] of an
 * input [c][h][w] transposed to wt [in, out], its rows in the order of the
 * input read as [h][w][c]; td__dense_wide y [m, out] = a [m, in] w^T (no
 * bias) from it, for rows a in that order. Only defined where the build
 * has AVX-512 (TD_V16). */
int td__dense_wide_eligible(int in, int out);
void td__dense_wide_pack(const float *w, int in, int out, int c, float *wt);
void td__dense_wide(const float *a, int m, int in, const float *wt, int out,
                    float *y);

/* Direct 3x3 convolution of stride 1 for the inference path (conv3x3.c),
 * for conv layers of at most 3 input channels: writes act(conv(x) + bias)
 * of `batch` samples to y ([oc, oh/2, ow/2] per sample with pool set, the
 * max pooling of td__wino_poolable fused in), using td__conv3x3_scratch(L)
 * floats of 64-byte aligned scratch. */
int td__conv3x3_eligible(const td__layer *L);
size_t td__conv3x3_scratch(const td__layer *L);
void td__conv3x3_forward(const td__layer *L, const float *w, const float *bias,
                         const float *x, int batch, int pool, float *scratch,
                         float *y);

/* Resolves shapes and offsets of n layers on [c, h, w] into out (n
 * entries), filling default strides; returns TD_OK or TD_EARG (err says
 * which layer and why). */
int td__layers_resolve(int c, int h, int w, int n, const td_layer_spec *spec,
                       td__layer *out, td_err *err);

#endif
