/* tardis/nn.h — a small neural-network engine: dense and convolutional
 * layers, pooling, batch normalisation, dropout, ReLU, softmax cross-entropy,
 * SGD and Adam, checkpoints, all on top of CBLAS.
 *
 * A td_net is a sequence of layers (td_layer_spec) over an input of shape
 * [in_c, in_h, in_w] per sample; an MLP is in_c = features, in_h = in_w = 1.
 * Every activation is stored per sample in C, H, W order (row-major, like a
 * contiguous PyTorch NCHW tensor), so a dense layer after a spatial one sees
 * the flattened [C*H*W] row that torch.flatten(x, 1) gives. Its parameters
 * live in ONE contiguous float buffer (and its gradients in another of the
 * same layout), so an optimizer step, a checkpoint or a thread reduction is a
 * single loop. Per layer the buffer holds the weight, then the bias:
 *   dense      weight [out, in] (nn.Linear.weight), bias [out]
 *   conv       weight [out_c, in_c, k, k] (nn.Conv2d.weight), bias [out_c]
 *   batchnorm  weight = gamma [C], bias = beta [C] (nn.BatchNorm1d/2d)
 *   pooling and dropout have no parameters.
 * Non-trained state (batchnorm's running mean and variance) lives in a
 * separate state buffer that optimizers never see; checkpoints save it.
 *
 * Layers (see docs/engine.md):
 *   TD_LAYER_DENSE      out units; y = x W^T + b, then act.
 *   TD_LAYER_CONV       out channels, square kernel, stride (0 = 1), zero
 *                       padding pad; out size (H + 2 pad - k) / stride + 1.
 *   TD_LAYER_MAXPOOL    kernel, stride (0 = kernel), pad (padding never
 *                       wins); ties go to the first maximum in row order.
 *   TD_LAYER_AVGPOOL_GLOBAL  mean over H, W: [C, H, W] -> [C, 1, 1].
 *   TD_LAYER_BATCHNORM  per channel (over N, H, W) for spatial inputs, per
 *                       feature for flat ones; eps 1e-5, momentum 0.1,
 *                       unbiased running variance, all as PyTorch.
 *   TD_LAYER_DROPOUT    inverted dropout: kept values scaled by 1/(1-p).
 * Dense, conv and batchnorm layers apply act after themselves.
 *
 * Activations and scratch for one batch live in a td_net_ws ("workspace"),
 * allocated once for the largest batch, so training allocates nothing per
 * step. A workspace is in eval mode (running statistics, no dropout) unless
 * td_net_ws_set_training switches it. The engine knows nothing of runs or
 * datasets.
 *
 *     int dims[] = {784, 256, 128, 10};
 *     td_act acts[] = {TD_ACT_RELU, TD_ACT_RELU, TD_ACT_NONE};
 *     td_net *net = td_net_new(3, dims, acts);
 *     td_rng rng; td_rng_seed(&rng, 1);
 *     td_net_init(net, &rng);
 *     td_net_ws *ws = td_net_ws_new(net, 128);
 *     td_optim *opt = td_optim_sgd(td_net_n_params(net), 0.01f, 0.9f, 0.0f);
 *     float dlogits[128 * 10];
 *     for (each batch x[128*784], y[128]) {
 *       const float *logits = td_net_forward(net, ws, x, 128);
 *       float loss = td_softmax_xent(logits, y, 128, 10, dlogits, NULL);
 *       td_net_zero_grad(net);
 *       td_net_backward(net, ws, dlogits, 128, NULL);
 *       td_optim_step(opt, td_net_params(net), td_net_grads(net));
 *     }
 *     td_optim_free(opt); td_net_ws_free(ws); td_net_free(net);
 *
 * A CNN on 1x28x28 images:
 *     td_layer_spec L[] = {
 *       {.kind = TD_LAYER_CONV, .out = 32, .kernel = 3, .pad = 1,
 *        .act = TD_ACT_RELU},
 *       {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
 *       {.kind = TD_LAYER_CONV, .out = 64, .kernel = 3, .pad = 1,
 *        .act = TD_ACT_RELU},
 *       {.kind = TD_LAYER_MAXPOOL, .kernel = 2},
 *       {.kind = TD_LAYER_DENSE, .out = 128, .act = TD_ACT_RELU},
 *       {.kind = TD_LAYER_DENSE, .out = 10}};
 *     td_net *cnn = td_net_new_layers(1, 28, 28, 6, L);
 *   and for training with batchnorm or dropout, per step:
 *     td_net_ws_set_training(ws, 1, step_seed);
 *     forward, loss, backward, optimizer step as above, then
 *     td_net_update_state(net, &ws, 1);   (running statistics)
 *
 * Threads: the GEMMs run on OpenBLAS's threads (td_set_threads sets their
 * number). The same net may be used by several threads for inference at once
 * as long as each has its own workspace; forward/backward mutate only the
 * workspace and the gradient buffer (never the parameters or the state).
 *
 * Determinism: with the same seed and the same thread count, training is
 * bit-reproducible (tested): OpenBLAS splits the work by thread count, not
 * by timing, and every other loop here is sequential. Dropout masks are a
 * function of (seed, forward count since td_net_ws_set_training, layer,
 * element), not of threads.
 */
#ifndef TARDIS_NN_H
#define TARDIS_NN_H

#include <stddef.h>
#include <stdint.h>

#include "tardis/error.h"
#include "tardis/rng.h"

/* Values are only ever appended: they are written to checkpoints by name. */
typedef enum { TD_ACT_NONE, TD_ACT_RELU, TD_ACT_COUNT } td_act;

/* "none", "relu"; NULL for an invalid value. */
const char *td_act_name(td_act a);
/* Parses a name from td_act_name; returns TD_ACT_COUNT if unknown. */
td_act td_act_parse(const char *name);

/* ---- the network -------------------------------------------------------- */

/* ---- layers ---------------------------------------------------------------
 */

/* Values are only ever appended: they are written to checkpoints by name. */
typedef enum {
  TD_LAYER_DENSE,
  TD_LAYER_CONV,
  TD_LAYER_MAXPOOL,
  TD_LAYER_AVGPOOL_GLOBAL,
  TD_LAYER_BATCHNORM,
  TD_LAYER_DROPOUT,
  TD_LAYER_KIND_COUNT
} td_layer_kind;

/* "dense", "conv", "maxpool", "avgpool_global", "batchnorm", "dropout";
 * NULL for an invalid value. */
const char *td_layer_kind_name(td_layer_kind k);
/* Parses a name from td_layer_kind_name; TD_LAYER_KIND_COUNT if unknown. */
td_layer_kind td_layer_kind_parse(const char *name);

/* One layer. Fields a kind does not use must be 0 (act: TD_ACT_NONE). */
typedef struct {
  td_layer_kind kind;
  int out;    /* dense: units; conv: output channels */
  int kernel; /* conv, maxpool: square kernel size */
  int stride; /* conv (0 = 1), maxpool (0 = kernel) */
  int pad;    /* conv: zero padding; maxpool: implicit -inf, <= kernel/2 */
  float p;    /* dropout probability, 0 <= p < 1 */
  td_act act; /* applied after dense, conv and batchnorm layers */
} td_layer_spec;

/* Checks a layer list on an input of [in_c, in_h, in_w] per sample: known
 * kinds and activations, positive sizes, kernels that fit, fields a kind
 * does not use left 0. Returns TD_OK, or TD_EARG with err naming the layer
 * ("layer 2 (maxpool): kernel 3 larger than the 2x2 input"). */
TD_NODISCARD int td_net_check_layers(int in_c, int in_h, int in_w, int n_layers,
                                     const td_layer_spec *layers, td_err *err);

typedef struct td_net td_net;

/* A net of n_layers dense layers; dims has n_layers+1 entries (input first),
 * acts has n_layers. Parameters are zero until td_net_init or a load.
 * Returns NULL on out of memory; aborts on invalid dims/acts. Free with
 * td_net_free. */
TD_NODISCARD td_net *td_net_new(int n_layers, const int *dims,
                                const td_act *acts);
/* A sequential net of n_layers layers (at least 1) on inputs of
 * [in_c, in_h, in_w] per sample. Strides of 0 are replaced by their
 * defaults (td_net_layer_spec shows the result). Parameters are zero, gamma
 * of batchnorm 1, running means 0 and variances 1 until td_net_init or a
 * load. Returns NULL on out of memory; aborts on layers td_net_check_layers
 * rejects. td_net_new(n, dims, acts) is td_net_new_layers(dims[0], 1, 1, n,
 * dense layers of dims[1..n] units). */
TD_NODISCARD td_net *td_net_new_layers(int in_c, int in_h, int in_w,
                                       int n_layers,
                                       const td_layer_spec *layers);
void td_net_free(td_net *net);
/* A deep copy (parameters, gradients and state); NULL on out of memory. */
TD_NODISCARD td_net *td_net_clone(const td_net *net);
/* A replica for data-parallel training: it reads net's parameter and state
 * buffers (the same memory, not a copy) and has gradients of its own, so
 * several threads can run forward/backward on different rows at once and
 * their gradients be summed. Do not update its parameters or state; free it
 * before net. NULL on out of memory. Batchnorm in training mode normalises
 * each replica's slice by the slice's own statistics (PyTorch DDP without
 * SyncBatchNorm); td_net_update_state(net, replica workspaces, n) then
 * folds the slices' statistics into net's running ones. */
TD_NODISCARD td_net *td_net_replica(td_net *net);

/* PyTorch's defaults: dense and conv weight and bias ~ U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)) (Kaiming-uniform with a = sqrt(5); fan_in = in for dense,
 * in_c*k*k for conv); batchnorm gamma 1, beta 0. Draws the weights of layer
 * 0 in buffer order, then its bias, then layer 1, ... (layers without random
 * parameters draw nothing); resets the state (running mean 0, variance 1)
 * and zeroes the gradients. */
void td_net_init(td_net *net, td_rng *rng);

int td_net_n_layers(const td_net *net);
int td_net_in_dim(const td_net *net);
int td_net_out_dim(const td_net *net);
/* Width (C*H*W) of the i-th activation, i = 0 (input) .. n_layers
 * (output). */
int td_net_dim(const td_net *net, int i);
/* Shape of the i-th activation, i = 0 .. n_layers; any pointer may be NULL. */
void td_net_shape(const td_net *net, int i, int *c, int *h, int *w);
/* The activation after a layer (TD_ACT_NONE for pooling and dropout). */
td_act td_net_act(const td_net *net, int layer);
/* The layer's spec, strides filled in; owned by net. */
const td_layer_spec *td_net_layer_spec(const td_net *net, int layer);
/* Number of parameters of one layer (weight and bias; 0 for pooling and
 * dropout). */
size_t td_net_layer_n_params(const td_net *net, int layer);
/* Total number of floats in the parameter (and gradient) buffer. */
size_t td_net_n_params(const td_net *net);

/* The parameter and gradient buffers, td_net_n_params floats each, owned by
 * the net (do not free). */
float *td_net_params(td_net *net);
float *td_net_grads(td_net *net);
const float *td_net_params_const(const td_net *net);
/* Views into the parameter buffer: the weight (dense [out, in], conv
 * [out_c, in_c, k, k], batchnorm gamma [C]) and the bias ([out], [out_c],
 * beta [C]). For a layer without parameters the views are empty (they point
 * at the next layer's parameters). */
float *td_net_weight(td_net *net, int layer);
float *td_net_bias(td_net *net, int layer);
/* Same views into the gradient buffer. */
float *td_net_weight_grad(td_net *net, int layer);
float *td_net_bias_grad(td_net *net, int layer);
/* Offset of layer's weight in the flat buffers (its bias follows it). */
size_t td_net_layer_offset(const td_net *net, int layer);

/* The state buffer (batchnorm running mean [C] then running variance [C],
 * layer after layer), td_net_n_state floats (0 without batchnorm), owned by
 * the net. Not trained: optimizers never see it; checkpoints save it. */
size_t td_net_n_state(const td_net *net);
float *td_net_state(td_net *net);
const float *td_net_state_const(const td_net *net);
/* Views into it for a batchnorm layer (aborts for other kinds). */
float *td_net_running_mean(td_net *net, int layer);
float *td_net_running_var(td_net *net, int layer);

/* ---- forward / backward -------------------------------------------------- */

typedef struct td_net_ws td_net_ws;

/* Workspace for batches of up to max_batch rows; NULL on out of memory.
 * Tied to the net's shape (any net with the same dims may use it). */
TD_NODISCARD td_net_ws *td_net_ws_new(const td_net *net, int max_batch);
void td_net_ws_free(td_net_ws *ws);
int td_net_ws_max_batch(const td_net_ws *ws);
/* Training mode (training != 0): batchnorm normalises by the batch's own
 * statistics and remembers them for td_net_update_state, dropout drops.
 * Eval mode (training == 0, the default): running statistics, no dropout.
 * Per workspace, so inference threads are unaffected. The dropout mask of
 * the k-th forward after this call is a function of (seed, k, layer,
 * element): reproducible, whatever the threads; a trainer passes a seed per
 * step (e.g. derived from its seed and the step number), which also makes a
 * resumed run draw the same masks. */
void td_net_ws_set_training(td_net_ws *ws, int training, uint64_t seed);
int td_net_ws_training(const td_net_ws *ws);

/* Runs x [batch, in] through the net and returns the output [batch, out],
 * owned by ws and valid until its next forward. ws remembers the pointer x
 * (not a copy): x must stay unchanged until the matching td_net_backward. */
const float *td_net_forward(const td_net *net, td_net_ws *ws, const float *x,
                            int batch);
/* Output of layer `layer` after its activation, [batch, dim(layer+1)], from
 * the last forward; owned by ws. */
const float *td_net_activation(const td_net_ws *ws, int layer);

/* Back-propagates dout = dLoss/dOutput [batch, out] through the last forward
 * (same batch, same x still in place). ADDS the parameter gradients into
 * td_net_grads; if dx is not NULL it receives dLoss/dx [batch, in]
 * (overwritten). The activations of the forward stay readable. dout is not
 * modified. */
void td_net_backward(td_net *net, td_net_ws *ws, const float *dout, int batch,
                     float *dx);
void td_net_zero_grad(td_net *net);

/* Folds the batch statistics of the last training-mode forward of each of
 * ws[0..n_ws-1] (in that order: the slices of one batch, e.g. the replicas'
 * workspaces) into net's running statistics, PyTorch's rule on the whole
 * batch: running = 0.9 running + 0.1 batch, with the batch mean and the
 * unbiased batch variance over all the slices' rows (combined exactly, in
 * slice order, so the running statistics do not depend on how the batch was
 * sliced, up to rounding). Does nothing for a net without batchnorm. Call it
 * once per training step, after the forwards. */
void td_net_update_state(td_net *net, td_net_ws *const *ws, int n_ws);

/* Inference (eval mode) over n rows of x [n, in], processed in chunks of at
 * most TD_NET_PREDICT_CHUNK rows (fewer for nets with spatial layers, so a
 * chunk's workspace stays small; the chunk depends on the net only), in
 * parallel over td_threads() threads (each with its own workspace). Writes the
 * outputs to out [n, out] (if not NULL) and the activation of layer tap_layer
 * (0 .. n_layers-1; -1 for none) to tap [n, dim(tap_layer+1)] (if not NULL).
 * Returns TD_OK or TD_ENOMEM. Every GEMM runs on one BLAS thread, over the same
 * chunks whatever the thread count, so the results are bit-identical at any
 * td_threads(). Several predicts may run at once. While one runs, OpenBLAS is
 * set to one thread (process-wide; restored afterwards), so GEMMs of other
 * threads meanwhile run single-threaded. */
#define TD_NET_PREDICT_CHUNK 512
TD_NODISCARD int td_net_predict(const td_net *net, const float *x, int64_t n,
                                float *out, int tap_layer, float *tap);

/* td_net_predict with several taps: the activation of layer tap_layers[t]
 * (0 .. n_layers-1) to taps[t] [n, dim(tap_layers[t]+1)], all from the same
 * forward of each chunk (the bytes td_net_predict gives for each alone). */
TD_NODISCARD int td_net_predict_taps(const td_net *net, const float *x,
                                     int64_t n, float *out, int n_taps,
                                     const int *tap_layers, float *const *taps);

/* td_net_predict_taps with its workspaces kept between calls, for many
 * calls of a few rows each (the probes' features, 256 rows at a time): the
 * same bytes, without allocating and faulting in fresh workspaces each
 * time. The net must outlive it; one call at a time. */
typedef struct td_net_predictor td_net_predictor;
td_net_predictor *td_net_predictor_new(const td_net *net); /* NULL: no memory */
void td_net_predictor_free(td_net_predictor *p);
TD_NODISCARD int td_net_predictor_run(td_net_predictor *p, const float *x,
                                      int64_t n, float *out, int n_taps,
                                      const int *tap_layers,
                                      float *const *taps);

/* An inference context on net: the same outputs as td_net_predict, with
 * the net's current parameters and running statistics at each run (so a
 * context on a snapshot serves every epoch), faster for many samples
 * (docs/engine.md, "Inference path"): 3x3 stride-1 convolutions of 4 or more
 * input channels by Winograd F(2x2, 3x3), a following 2x2 max pooling fused
 * into them, runs of non-dense layers a few samples at a time (cache-resident
 * activations), dense layers once per chunk of rows, workspaces kept between
 * runs. Results are bit-identical at any td_threads(); they equal
 * td_net_predict's within |diff| <= 1e-5 * (1 + max |value|) per array
 * (tested; the byte-for-byte same for dense-only nets). One run at a time
 * per context; the net must outlive it. NULL on out of memory. */
typedef struct td_net_infer td_net_infer;
td_net_infer *td_net_infer_new(const td_net *net);
void td_net_infer_free(td_net_infer *inf);
/* td_net_predict's contract (out, tap_layer, tap). TD_OK or TD_ENOMEM. */
TD_NODISCARD int td_net_infer_run(td_net_infer *inf, const float *x, int64_t n,
                                  float *out, int tap_layer, float *tap);

/* td_net_infer_run in pieces, for callers that hand out the rows themselves
 * (the recorder shares a pass between a background thread and the
 * foreground's). td_net_infer_begin takes the net's current parameters and
 * makes buffers for `slots` threads (TD_OK or TD_ENOMEM); then any thread
 * may run td_net_infer_rows on a slot of its own (one thread per slot at a
 * time) for rows [r0, r0+m), r0 a multiple of TD_NET_INFER_CHUNK: each
 * chunk of rows gets the bytes td_net_infer_run gives it, whoever runs it.
 * out, tap: the whole arrays, indexed by row as in td_net_infer_run. The
 * caller brackets the calls with td_blas_single_begin/end. */
#define TD_NET_INFER_CHUNK 512
TD_NODISCARD int td_net_infer_begin(td_net_infer *inf, int slots);
void td_net_infer_rows(td_net_infer *inf, int slot, const float *x, int64_t r0,
                       int64_t m, float *out, int tap_layer, float *tap);

/* ---- loss -----------------------------------------------------------------
 */

/* Mean softmax cross-entropy of logits [batch, n_classes] against labels
 * [batch] (each in 0..n_classes-1; aborts otherwise). If dlogits
 * [batch, n_classes] is not NULL it receives d(mean loss)/dlogits; if
 * per_sample [batch] is not NULL it receives each sample's loss. dlogits may
 * alias logits. Returns the mean loss. */
float td_softmax_xent(const float *logits, const int32_t *labels, int batch,
                      int n_classes, float *dlogits, float *per_sample);

/* ---- optimizers over a flat buffer --------------------------------------- */

typedef struct td_optim td_optim;

/* PyTorch's torch.optim.SGD (dampening 0, no Nesterov):
 *   g += wd*p;  v = momentum*v + g  (v = g on the first step);  p -= lr*v.
 * NULL on out of memory. */
TD_NODISCARD td_optim *td_optim_sgd(size_t n, float lr, float momentum,
                                    float weight_decay);
/* PyTorch's torch.optim.Adam (no weight decay, no amsgrad), step t from 1:
 *   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
TD_NODISCARD td_optim *td_optim_adam(size_t n, float lr, float beta1,
                                     float beta2, float eps);
/* One update of params [n] from grads [n]. */
void td_optim_step(td_optim *opt, float *params, const float *grads);
void td_optim_set_lr(td_optim *opt, float lr);
float td_optim_lr(const td_optim *opt);
/* Number of steps taken so far. */
int64_t td_optim_steps(const td_optim *opt);
/* Forgets the state (momentum, moments, step count). */
void td_optim_reset(td_optim *opt);
/* The state, for checkpoints that resume training: buffer i (SGD with
 * momentum: 0 the momentum; Adam: 0 and 1 the moments), n floats in the
 * parameter layout, or NULL when the optimizer has no such buffer; and the
 * step count (Adam's bias correction reads it). */
float *td_optim_state(td_optim *opt, int i);
void td_optim_set_steps(td_optim *opt, int64_t steps);
void td_optim_free(td_optim *opt);

/* ---- checkpoints -----------------------------------------------------------
 */

/* Writes dir/net.json and one .npy per weight, bias and state array.
 * A net of dense layers on a flat input is written as version 1, readable
 * by every tardis: {"format": "tardis-net", "version": 1, "dims": [..],
 * "acts": ["relu", ..], "layers": [{"weight": "layer_0_w.npy", "bias":
 * "layer_0_b.npy"}, ..]} with layer_<i>_w.npy (float32 [out, in]) and
 * layer_<i>_b.npy (float32 [out]). Any other net as version 2: "input":
 * [c, h, w], "dims" as above, and "layers": [{"kind": "conv", "out": 32,
 * "kernel": 3, "stride": 1, "pad": 1, "act": "relu", "weight":
 * "layer_0_w.npy", "bias": "layer_0_b.npy"}, {"kind": "batchnorm", ...,
 * "running_mean": "layer_2_rm.npy", "running_var": "layer_2_rv.npy"}, ..]
 * (docs/engine.md). Atomic: everything is written into "<dir>.tmp" and then
 * swapped into place, replacing an existing dir. */
TD_NODISCARD int td_net_save(const td_net *net, const char *dir, td_err *err);
/* Loads a checkpoint written by td_net_save (version 1 or 2) into a new net
 * (*out, caller frees with td_net_free). On error *out is NULL and err names
 * the file and what is wrong with it. */
TD_NODISCARD int td_net_load(const char *dir, td_net **out, td_err *err);

/* ---- GEMM ------------------------------------------------------------------
 */

/* C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major, as
 * cblas_sgemm(CblasRowMajor, ...). op(X) = X^T when trans_x is non-zero.
 * With beta == 0, C is not read (NaNs in it do not propagate). */
void td_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
             const float *a, int lda, const float *b, int ldb, float beta,
             float *c, int ldc);
/* Plain triple loop with double accumulation; the reference for tests. */
void td_gemm_naive(int trans_a, int trans_b, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta,
                   float *c, int ldc);

#endif
