/* tardis/vismodel.h — DVI's invertible projection (DESIGN §3.5): an encoder
 * MLP from representations (D) to the 2-D canvas and a mirrored decoder back,
 * trained on a fuzzy complex (tardis/complex.h) with UMAP's cross-entropy,
 * a reconstruction loss and, when warm-started from the previous epoch, a
 * temporal anchor.
 *
 *     td_vis_params p;
 *     td_vis_params_default(&p, 128);
 *     td_vismodel *m = td_vismodel_new(128, &p);
 *     // x: [n, 128], the vertices of g (training points, then boundary
 *     // samples), g from td_complex_dvi(...)
 *     if (td_vismodel_fit(m, x, n, &g, NULL, &p, NULL, &err)) { ... }
 *     float *y = malloc(n * 2 * sizeof(float));
 *     td_vismodel_encode(m, x, n, y);            // canvas positions
 *     td_vismodel_decode(m, y, n, xr);           // back to representations
 *     td_vismodel_save(m, "vis/dvi/epoch_0002/model", &err);
 *     // next epoch: m2 = td_vismodel_new(128, &p);
 *     //   td_vismodel_fit(m2, x2, n2, &g2, m, &p, &anchor, &err);
 *     td_vismodel_free(m);
 *
 * Default training (docs/projection.md): the complex is laid out directly in
 * 2-D by UMAP's SGD (layout_epochs from PCA, or warm_layout_epochs from
 * io->init_y / prev's encoding), the layout is handed back in io->y_out (the
 * drawn positions of the vertices), then the encoder regresses it and the
 * decoder learns layout position -> representation (dec_on_layout), with the
 * head-consistency term when io->head is given; encoder and decoder are
 * distilled on two threads at once. max_epochs = 0 by default: the DVI
 * passes described next are off.
 *
 * DVI passes (max_epochs > 0). Each step draws batch_edges edges of the complex
 * in proportion to their weight (alias sampler) and encodes both endpoints. Per
 * positive edge (u, v) the loss is -log q(|e_u - e_v|), and n_negatives
 * vertices w drawn uniformly from the batch's endpoints add -log(1 - q(|e_u -
 * e_w|)), with q(d) = 1 / (1 + a d^(2b)), q and 1 - q clamped at 1e-4 below;
 * the mean is over all positive and negative pairs. A share rec_fraction of the
 * batch's endpoints is decoded, adding lambda_rec x the mean squared error
 * (in the model's normalised units, see below); its gradient flows into the
 * decoder and through the canvas position into the encoder. Adam; a "pass"
 * is pass_edges sampled edges; when a pass's mean loss improves on the best
 * by less than min_improvement (relative), the learning rate drops from lr
 * to lr_min, and at the next such plateau training stops (or after
 * max_epochs passes).
 *
 * Normalisation: the model centres representations on their mean and divides
 * by their RMS distance to it (both stored with the model), so that the
 * learning rate and lambda_rec mean the same for any representation scale.
 * encode/decode take and return raw representations.
 *
 * Temporal continuity (prev != NULL): the new model starts from prev's
 * weights (and normalisation), then
 *  - TD_TEMPORAL_DVI adds lambda_temporal x mean over the batch's tail
 *    vertices of their kNN overlap between epochs (anchor->knn_overlap, 1 if
 *    NULL) x ||W - W_prev||^2 summed over all parameters of both nets
 *    (of the encoder only when the decoder learns from the layout,
 *    dec_on_layout: anchoring the decoder kept it from following the
 *    classifier's decisions, docs/projection.md "ppr on small runs");
 *  - TD_TEMPORAL_MEMORY (SentryCam) adds lambda_temporal x the mean over a
 *    memory batch of max(0, |y_m - e(x_m)| - delta_m), the remembered points
 *    x_m with their drawn positions y_m (anchor->mem_*).
 *
 * Threads: td_threads(); the layout is parallel over vertices and gives
 * bit-identical results at any thread count (td_vis_layout; p->hogwild
 * selects umap-learn's lock-free scheme, reproducible only on one thread);
 * the distillation runs the encoder and the decoder on one thread each;
 * BLAS is serial during a fit (OpenBLAS's threaded sums depend on its
 * thread count). A fit with the same inputs and seed gives the same model
 * at any thread count unless hogwild.
 */
#ifndef TARDIS_VISMODEL_H
#define TARDIS_VISMODEL_H

#include <stdint.h>

#include "tardis/complex.h"
#include "tardis/error.h"
#include "tardis/knn.h"

/* Values are only ever appended (they are saved with the model). */
typedef enum {
  TD_TEMPORAL_NONE,   /* warm start only */
  TD_TEMPORAL_DVI,    /* weight drift ||W - W_prev||^2, kNN-overlap scaled */
  TD_TEMPORAL_MEMORY, /* SentryCam: hinge on remembered 2-D positions */
  TD_TEMPORAL_COUNT
} td_vis_temporal;

/* Called after every pass with its number (from 1) and mean loss; a
 * non-zero return stops training (td_vismodel_fit returns
 * TD_EINTERRUPTED, the model keeps the weights reached so far). */
typedef int (*td_vis_progress_cb)(void *ctx, int pass, double loss);

typedef struct td_vis_params {
  int hidden;            /* width of every hidden layer */
  int n_hidden_layers;   /* encoder D -> h (x n) -> 2, decoder mirrored */
  float lr;              /* Adam learning rate ... */
  float lr_min;          /* ... and after the first plateau */
  int batch_edges;       /* positive edges per step */
  int n_negatives;       /* negatives per positive, drawn from the batch */
  float lambda_rec;      /* weight of the reconstruction MSE */
  float rec_fraction;    /* share of a batch's endpoints that are decoded */
  float a, b;            /* q(d) = 1 / (1 + a d^(2b)) */
  int max_epochs;        /* most passes per fit */
  int64_t pass_edges;    /* sampled edges per pass (0: 20 x vertices) */
  float min_improvement; /* relative pass-loss gain below which: plateau */
  float warm_pass_scale; /* warm start: passes of pass_edges x this */
  /* Layout-then-distil start (docs/projection.md): before the passes above,
   * the complex is laid out directly in 2-D by UMAP's SGD (layout_epochs;
   * from PCA, or from prev's encoding when warm), then the encoder regresses
   * that layout and the decoder inverts it for distil_epochs sweeps over the
   * points. 0 disables either. */
  int layout_epochs;
  int warm_layout_epochs; /* used instead when warm-started */
  int distil_epochs;
  int warm_distil_epochs;
  int distil_batch;      /* points per distillation step */
  int temporal;          /* td_vis_temporal */
  float lambda_temporal; /* weight of the temporal term */
  float memory_delta;    /* MEMORY: delta_m when anchor->mem_delta is NULL */
  uint64_t seed;
  td_vis_progress_cb progress; /* optional */
  void *progress_ctx;
  /* Appended (docs/projection.md, "Layout positions are the embedding"): */
  int distil_points; /* distil on a random subsample of at most this many
                        vertices (0: all) */
  int dec_on_layout; /* 1: the decoder learns layout position -> point
                        (so decode(y_out) inverts the drawn positions);
                        0: decoder(encoder(x)) as DVI */
  float lambda_head; /* weight of the head-consistency term (needs
                        td_vis_fit_io.head) */
  float warm_alpha;  /* initial layout step when warm-started */
  int hogwild;       /* 1: the layout is td_vis_layout_hogwild (lock-free,
                        reproducible only on one thread); 0: td_vis_layout */
  /* Appended (docs/projection.md, "Decoder polish"): after the
   * distillation, while fewer than polish_ppr of the checked vertices
   * (td_vis_fit_io.n_check) decode to the head's predicted class, the
   * decoder alone gets another half of its sweeps, at most polish_rounds
   * times (needs dec_on_layout and the head term; 0: off). */
  float polish_ppr;
  int polish_rounds;
} td_vis_params;

/* A dense single-layer classifier head, logits = W x + b over raw
 * representations, for the decoder's head-consistency term: the decoder is
 * trained so that head(decode(y_i)) agrees with head(x_i) (soft
 * cross-entropy against softmax(head(x_i))). */
typedef struct td_vis_head {
  int n_classes;
  const float *w; /* [n_classes, D] */
  const float *b; /* [n_classes] */
} td_vis_head;

/* Optional inputs/outputs of td_vismodel_fit_ex. */
typedef struct td_vis_fit_io {
  /* Start of the layout for vertices 0 .. n_init-1 (e.g. the previous
   * epoch's positions of the training points); the other vertices start
   * from prev's encoding (or PCA without prev). */
  const float *init_y;
  int64_t n_init;
  /* [n, 2]: receives the layout of every vertex (the drawn positions). */
  float *y_out;
  const td_vis_head *head; /* for lambda_head; NULL: no head term */
  /* Vertices 0 .. n_check-1 are the ones whose decoded class the polish
   * checks (the training points; 0: every vertex). */
  int64_t n_check;
} td_vis_fit_io;

/* Defaults chosen by measurement (docs/projection.md) for representations
 * of width repr_dim. */
void td_vis_params_default(td_vis_params *p, int repr_dim);

/* What the temporal terms need from the previous epochs (all optional). */
typedef struct td_vis_anchor {
  const float *knn_overlap; /* [n] per vertex |kNN_{t-1} ∩ kNN_t| / k */
  int64_t n_memory;         /* MEMORY: remembered points */
  const float *mem_x;       /* [n_memory, D] their current representations */
  const float *mem_y;       /* [n_memory, 2] their remembered positions */
  const float *mem_delta;   /* [n_memory] hinge margins, or NULL */
} td_vis_anchor;

typedef struct td_vismodel td_vismodel;

/* A new, randomly initialised model (seeded by p->seed) for representations
 * of width repr_dim; p NULL: defaults. NULL on out of memory. */
TD_NODISCARD td_vismodel *td_vismodel_new(int repr_dim, const td_vis_params *p);
void td_vismodel_free(td_vismodel *m);
int td_vismodel_repr_dim(const td_vismodel *m);

/* Trains m on the n vertices x [n, D] of graph g (g->n_vertices == n).
 * prev (same D and shape, may be NULL) warm-starts it; anchor (may be NULL)
 * feeds p->temporal. On error m may be partly trained. Returns TD_OK,
 * TD_EARG, TD_ENOMEM or TD_EINTERRUPTED. */
TD_NODISCARD int td_vismodel_fit(td_vismodel *m, const float *x, int64_t n,
                                 const td_graph *g, const td_vismodel *prev,
                                 const td_vis_params *p,
                                 const td_vis_anchor *anchor, td_err *err);

/* td_vismodel_fit with the options of io (may be NULL). */
TD_NODISCARD int td_vismodel_fit_ex(td_vismodel *m, const float *x, int64_t n,
                                    const td_graph *g, const td_vismodel *prev,
                                    const td_vis_params *p,
                                    const td_vis_anchor *anchor,
                                    const td_vis_fit_io *io, td_err *err);

/* Canvas positions y [n, 2] of representations x [n, D]; in parallel.
 * Returns TD_OK or TD_ENOMEM. */
TD_NODISCARD int td_vismodel_encode(const td_vismodel *m, const float *x,
                                    int64_t n, float *y);
/* Representations x [n, D] of canvas points y [n, 2]. */
TD_NODISCARD int td_vismodel_decode(const td_vismodel *m, const float *y,
                                    int64_t n, float *x);

/* Writes dir/vismodel.json (format, version, repr_dim, normalisation, the
 * training parameters), dir/encoder/ and dir/decoder/ (td_net checkpoints).
 * Atomic: written into "<dir>.tmp" and swapped into place. */
TD_NODISCARD int td_vismodel_save(const td_vismodel *m, const char *dir,
                                  td_err *err);
/* Loads a model written by td_vismodel_save (*out: caller frees). */
TD_NODISCARD int td_vismodel_load(const char *dir, td_vismodel **out,
                                  td_err *err);

/* Per-row kNN overlap |prev_i ∩ cur_i| / k between two graphs over the same
 * rows (DVI's temporal scaling); out [n] of the smaller n; the smaller k is
 * used. */
void td_vis_knn_overlap(const td_knn *prev, const td_knn *cur, float *out);

/* UMAP's stochastic layout of graph g in 2-D: y [g->n_vertices, 2] holds the
 * start and receives the result. Each epoch every edge e is used
 * w_e / max(w) times on average (UMAP's schedule), attracting its endpoints,
 * with n_negatives uniformly drawn vertices repelling one of them; the step
 * size decays linearly from alpha to 0 over n_epochs. Parallel over
 * vertices in sub-steps (each vertex moves itself, reading the others from
 * the previous sub-step): bit-identical at any thread count
 * (docs/projection.md, "Deterministic layout"). Returns TD_OK or
 * TD_ENOMEM. */
TD_NODISCARD int td_vis_layout(const td_graph *g, float *y, int n_epochs,
                               float alpha, int n_negatives, float a, float b,
                               uint64_t seed);
/* The same schedule parallel over edges without locks (Hogwild, as
 * umap-learn): bitwise reproducible only with one thread. */
TD_NODISCARD int td_vis_layout_hogwild(const td_graph *g, float *y,
                                       int n_epochs, float alpha,
                                       int n_negatives, float a, float b,
                                       uint64_t seed);

/* ---- exposed for tests ----------------------------------------------------
 */

/* The UMAP part of the loss for given embeddings e [n_vert, 2]: positive
 * pairs (pu[i], pv[i]) for i < n_pos and negative pairs (nu[i], nv[i]) for
 * i < n_neg, mean over all pairs. If de [n_vert, 2] is not NULL the gradient
 * d(loss)/de is ADDED to it. Returns the loss. */
double td_vis_umap_loss(const float *e, const int32_t *pu, const int32_t *pv,
                        int64_t n_pos, const int32_t *nu, const int32_t *nv,
                        int64_t n_neg, float a, float b, float *de);

#endif
