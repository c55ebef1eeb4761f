/* tardis/nn.h — a small neural-network engine: dense layers, ReLU, softmax
 * cross-entropy, SGD and Adam, checkpoints, all on top of CBLAS.
 *
 * A td_net is a stack of dense layers, each followed by an activation. Its
 * parameters live in ONE contiguous float buffer (and its gradients in
 * another of the same layout), so an optimizer step, a checkpoint or a thread
 * reduction is a single loop. Per layer the buffer holds the weight [out, in]
 * (row-major, like PyTorch's nn.Linear.weight) followed by the bias [out].
 *
 * Activations and scratch for one batch live in a td_net_ws ("workspace"),
 * allocated once for the largest batch, so training allocates nothing per
 * step. The engine knows nothing of runs or datasets.
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
 * Threads: the GEMMs run on OpenBLAS's threads (td_set_threads sets their
 * number). The same net may be used by several threads for inference at once
 * as long as each has its own workspace; forward/backward mutate only the
 * workspace and the gradient buffer.
 *
 * Determinism: with the same seed and the same thread count, training is
 * bit-reproducible (tested): OpenBLAS splits the work by thread count, not
 * by timing, and every other loop here is sequential.
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

typedef struct td_net td_net;

/* A net of n_layers dense layers; dims has n_layers+1 entries (input first),
 * acts has n_layers. Parameters are zero until td_net_init or a load.
 * Returns NULL on out of memory; aborts on invalid dims/acts. Free with
 * td_net_free. */
TD_NODISCARD td_net *td_net_new(int n_layers, const int *dims,
                                const td_act *acts);
void td_net_free(td_net *net);
/* A deep copy (parameters and gradients); NULL on out of memory. */
TD_NODISCARD td_net *td_net_clone(const td_net *net);
/* A replica for data-parallel training: it reads net's parameter buffer
 * (the same memory, not a copy) and has gradients of its own, so several
 * threads can run forward/backward on different rows at once and their
 * gradients be summed. Do not update its parameters; free it before net.
 * NULL on out of memory. */
TD_NODISCARD td_net *td_net_replica(td_net *net);

/* PyTorch's nn.Linear default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in))
 * (Kaiming-uniform with a = sqrt(5)). Draws weights of layer 0 row by row,
 * then its bias, then layer 1, ...; zeroes the gradients. */
void td_net_init(td_net *net, td_rng *rng);

int td_net_n_layers(const td_net *net);
int td_net_in_dim(const td_net *net);
int td_net_out_dim(const td_net *net);
/* Width of the i-th activation, i = 0 (input) .. n_layers (output). */
int td_net_dim(const td_net *net, int i);
td_act td_net_act(const td_net *net, int layer);
/* Total number of floats in the parameter (and gradient) buffer. */
size_t td_net_n_params(const td_net *net);

/* The parameter and gradient buffers, td_net_n_params floats each, owned by
 * the net (do not free). */
float *td_net_params(td_net *net);
float *td_net_grads(td_net *net);
const float *td_net_params_const(const td_net *net);
/* Views into the parameter buffer: weight [out, in] row-major, bias [out]. */
float *td_net_weight(td_net *net, int layer);
float *td_net_bias(td_net *net, int layer);
/* Same views into the gradient buffer. */
float *td_net_weight_grad(td_net *net, int layer);
float *td_net_bias_grad(td_net *net, int layer);
/* Offset of layer's weight in the flat buffers (its bias follows it). */
size_t td_net_layer_offset(const td_net *net, int layer);

/* ---- forward / backward -------------------------------------------------- */

typedef struct td_net_ws td_net_ws;

/* Workspace for batches of up to max_batch rows; NULL on out of memory.
 * Tied to the net's shape (any net with the same dims may use it). */
TD_NODISCARD td_net_ws *td_net_ws_new(const td_net *net, int max_batch);
void td_net_ws_free(td_net_ws *ws);
int td_net_ws_max_batch(const td_net_ws *ws);

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

/* Inference over n rows of x [n, in], processed in chunks of at most
 * TD_NET_PREDICT_CHUNK rows, in parallel over td_threads() threads (each with
 * its own workspace). Writes the outputs to out [n, out] (if not NULL) and
 * the activation of layer tap_layer (0 .. n_layers-1; -1 for none) to
 * tap [n, dim(tap_layer+1)] (if not NULL). Returns TD_OK or TD_ENOMEM.
 * Every GEMM runs on one BLAS thread, over the same chunks whatever the
 * thread count, so the results are bit-identical at any td_threads().
 * Several predicts may run at once. While one runs, OpenBLAS is set to one
 * thread (process-wide; restored afterwards), so GEMMs of other threads
 * meanwhile run single-threaded. */
#define TD_NET_PREDICT_CHUNK 512
TD_NODISCARD int td_net_predict(const td_net *net, const float *x, int64_t n,
                                float *out, int tap_layer, float *tap);

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

/* Writes dir/net.json ({"format": "tardis-net", "version": 1, "dims": [..],
 * "acts": ["relu", ..], "layers": [{"weight": "layer_0_w.npy", "bias":
 * "layer_0_b.npy"}, ..]}) and per layer layer_<i>_w.npy (float32 [out, in])
 * and layer_<i>_b.npy (float32 [out]). Atomic: everything is written into
 * "<dir>.tmp" and then swapped into place, replacing an existing dir. */
TD_NODISCARD int td_net_save(const td_net *net, const char *dir, td_err *err);
/* Loads a checkpoint written by td_net_save into a new net (*out, caller
 * frees with td_net_free). On error *out is NULL and err names the file. */
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
