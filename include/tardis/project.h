/* tardis/project.h — projects every recorded epoch of a run to 2-D
 * (DeepVisualInsight): boundary samples, fuzzy complex, encoder/decoder
 * warm-started from the previous epoch, embeddings and the territory grid,
 * written to RUN/vis/<method>/epoch_NNNN/ (docs/vis-format.md).
 *
 *     td_project_opts o;
 *     td_project_opts_default(&o);
 *     td_project_summary s;
 *     if (td_project(run, &o, &s, &err)) ...
 *
 * Resumable: epochs already projected are skipped, and the newest finished
 * one (on disk) warm-starts the next.
 */
#ifndef TARDIS_PROJECT_H
#define TARDIS_PROJECT_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/run.h"
#include "tardis/vis.h" /* td_vis_epoch_dir, formerly declared here */

typedef struct td_project_progress {
  int index, count; /* epoch being projected: index of count to do */
  int epoch;        /* its number */
  const char
      *stage;     /* "boundary", "knn", "fit", "territory", "write", "done" */
  double seconds; /* for "done": the epoch's total time */
} td_project_progress;

/* Overrides of the projection model's parameters (td_vis_params, whose
 * defaults depend on the representation width and the number of points;
 * docs/projection.md): a negative value keeps the default. */
typedef struct td_project_vis {
  int hidden;             /* width of the nets' hidden layers */
  int layout_epochs;      /* cold layout epochs */
  int warm_layout_epochs; /* warm layout epochs */
  int distil_epochs;      /* cold distillation sweeps */
  int warm_distil_epochs; /* warm distillation sweeps */
  int distil_points;      /* points per distillation sweep */
  int n_negatives;        /* layout negatives per edge */
  int dec_on_layout;      /* the decoder learns layout position -> point */
  float lambda_head;      /* weight of the head-consistency term */
  float warm_alpha;       /* initial layout step when warm-started */
  int polish_rounds;      /* decoder polish rounds at most (0: off) */
} td_project_vis;

/* Runs of more training points than this are projected at scale when
 * td_project_opts.scale is -1 (docs/scale.md: where the sampled fit pays). */
#define TD_PROJECT_SCALE_AUTO_MIN 200000
/* Bounds of the density rule's sample (docs/scale.md). */
#define TD_PROJECT_SCALE_SAMPLE_MIN 20000
#define TD_PROJECT_SCALE_SAMPLE_MAX 100000

enum {
  TD_SCALE_PLACE_KNN = 0,     /* encoder, then the nearest sample points
                                 searched in the sample's kNN graph */
  TD_SCALE_PLACE_ENCODER = 1, /* the encoder alone */
  TD_SCALE_PLACE_CANVAS = 2   /* encoder, then the nearest sample points
                                 among those near it on the canvas */
};

typedef struct td_project_opts {
  const char *method;       /* "dvi" (default) or "pca" */
  int epoch_from, epoch_to; /* inclusive range of epoch numbers; 0: open */
  int k;                    /* neighbours of the complex (15) */
  int territory_res;        /* R (256) */
  int boundary;             /* generate boundary samples (1) */
  int boundary_input;       /* mix raw inputs through the epoch's full model
                               (model/ checkpoint + train_inputs.npy) instead
                               of representations judged by the head (0) */
  int temporal;             /* td_vis_temporal; -1: the default */
  uint64_t seed;
  int force; /* re-project epochs that are already done */
  /* The class-aware complex and the warm start (docs/projection.md,
   * measured defaults in brackets): */
  float cross_weight; /* edges between predicted classes scaled by (0.01) */
  int links;          /* class links per training point (5) */
  float link_weight;  /* their weight (1) */
  int independent;    /* 1: no warm start, each epoch on its own (0) */
  int neighbour_init; /* warm start moves points by kNN change (1) */
  int relocate;       /* points whose class changed start beside a point
                         of their new class (1) */
  int hogwild;        /* the layout's lock-free scheme, reproducible only
                         on one thread (td_vis_params.hogwild) (0) */
  td_project_vis vis; /* all -1 */
  /* Projection at scale (docs/scale.md): fit on a fixed sample of the
   * training points, place the others by the encoder and their nearest
   * sample points. */
  int scale;            /* -1: above TD_PROJECT_SCALE_AUTO_MIN points (-1);
                           0: never; 1: always */
  int64_t scale_sample; /* the sample's size; 0: SentryCam's density rule,
                           clamped to [TD_PROJECT_SCALE_SAMPLE_MIN, _MAX] */
  int scale_place;      /* TD_SCALE_PLACE_KNN (default), _ENCODER, _CANVAS */
  void (*progress)(const td_project_progress *p, void *ctx);
  void *progress_ctx;
} td_project_opts;

typedef struct td_project_summary {
  int projected, skipped;
  double seconds, first_seconds, max_later_seconds;
} td_project_summary;

void td_project_opts_default(td_project_opts *o);

/* Projects the epochs of an opened run. */
TD_NODISCARD int td_project(td_run *run, const td_project_opts *o,
                            td_project_summary *s, td_err *err);

/* ---- an open projection (live mode, include/tardis/live.h) ----------- */

/* Keeps the method's state (model, kNN graph, the temporal anchors' memory)
 * between calls, so that epochs projected one at a time as they are recorded
 * come out as `tardis project` would draw them. */
typedef struct td_projector td_projector;

/* Writes vis.json and prepares the method. The run and the strings in *o
 * must outlive the projector. Free with td_projector_close. */
TD_NODISCARD int td_projector_open(td_run *run, const td_project_opts *o,
                                   td_projector **out, td_err *err);
/* Projects one recorded epoch of the run (re-listed by td_run_refresh as
 * it grows), replacing a projection already there. Warm-starts from the
 * newest projected epoch recorded before it: from memory when that is the
 * epoch this projector fitted last, else from its files. *warm_from (may be
 * NULL) receives that epoch, -1 when cold; *seconds (may be NULL) the
 * epoch's time. */
TD_NODISCARD int td_projector_epoch(td_projector *p, int epoch, int *warm_from,
                                    double *seconds, td_err *err);
void td_projector_close(td_projector *p); /* NULL is fine */

/* A draft of a recorded epoch (live mode): its points placed, and its
 * territory drawn, by the encoder/decoder of `from`, a fully fitted
 * projected epoch, with no fit of its own — a few hundred ms where a fit
 * takes seconds. Written through the vis writer like any epoch, with
 * "draft": true in projection.json (td_vis_epoch_is_draft) and no boundary
 * samples; a later td_projector_epoch or td_project replaces it, and no
 * warm start ever starts from it. Only methods with a parametric model
 * (dvi) draw drafts: others give TD_EARG. *seconds may be NULL. */
TD_NODISCARD int td_project_draft(td_run *run, const td_project_opts *o,
                                  int epoch, int from, double *seconds,
                                  td_err *err);

/* A preview (live mode, once training has ended with many epochs still to
 * fit): a full fit of `epoch` out of order, warm-started from `from` (a
 * fully fitted epoch; -1: cold) instead of its predecessor, written as a
 * draft with "draft_fitted": true. It looks as good as a fit, but it is not
 * what `tardis project` draws, so the in-order fit replaces it later and no
 * warm start starts from it. td_project_can_preview: whether the method and
 * run allow one (dvi, not at scale). *seconds may be NULL. */
int td_project_can_preview(const td_run *run, const td_project_opts *o);
TD_NODISCARD int td_project_preview(td_run *run, const td_project_opts *o,
                                    int epoch, int from, double *seconds,
                                    td_err *err);

/* Projection in K blocks of consecutive epochs, one per process (the
 * MPI driver of `tardis project`, docs/scale.md "Across processes"): block
 * r projects the r-th of K contiguous shares of the epochs td_project would
 * do, as td_project does; a block after the first starts from its own cold
 * fit of the epoch before it (its border, fitted but not written by it).
 * Once every block is written, each block's border fit is aligned onto
 * the border epoch as written by the block before (td_project_block_border:
 * a similarity transform of the canvas), the transforms are chained from
 * block 0, and each block's epochs are rewritten through its chained
 * transform (td_project_block_align): positions, model and territory. Block
 * 0 is exactly td_project's output for its epochs. The steps are collective
 * in this order: open every block (each reads which epochs are done before
 * any is written), fit every block, take every border, align every block.
 * dvi only (TD_EARG otherwise). */
typedef struct td_project_block td_project_block;
TD_NODISCARD int td_project_block_open(td_run *run, const td_project_opts *o,
                                       int rank, int size,
                                       td_project_block **out, td_err *err);
TD_NODISCARD int td_project_block_fit(td_project_block *b,
                                      td_project_summary *s, td_err *err);
/* T = {a, b, tx, c, d, ty}: x' = a x + b y + tx, y' = c x + d y + ty; the
 * identity for block 0 and for a block that needed no border fit. */
TD_NODISCARD int td_project_block_border(const td_project_block *b, double T[6],
                                         td_err *err);
/* chained: the composition of the borders' transforms of blocks 1..rank. */
TD_NODISCARD int td_project_block_align(td_project_block *b,
                                        const double chained[6], td_err *err);
/* Chains the K transforms of td_project_block_border (borders[6 * r]) into
 * block rank's: borders[1] after ... after borders[rank]. */
void td_project_block_chain(const double *borders, int rank, double out[6]);
void td_project_block_close(td_project_block *b); /* NULL is fine */

/* A cold draft (live mode, before any epoch is fully fitted): the method's
 * model fitted on a sample of n_sample of the epoch's training points (all
 * of them when there are fewer; no boundary samples, chosen by o->seed),
 * then every point of the epoch placed and its territory drawn by it, as
 * td_project_draft does. At 60k a sample of a few thousand costs a second
 * or two where the full cold fit costs ~17 CPU-s (docs/performance.md).
 * The epoch is written with "draft": true, "draft_from": epoch and
 * "draft_sample": the sample's size; the model is kept in *out to draw
 * later epochs (td_drafter_draw) until a fully fitted one can. The run and
 * the strings in *o must outlive it. Only methods with drafts (dvi). */
typedef struct td_drafter td_drafter;
TD_NODISCARD int td_drafter_cold(td_run *run, const td_project_opts *o,
                                 int epoch, int64_t n_sample, td_drafter **out,
                                 double *seconds, td_err *err);
/* A draft of a recorded epoch placed by the drafter's model (marked as
 * above, draft_from: the drafter's epoch). */
TD_NODISCARD int td_drafter_draw(td_drafter *d, int epoch, double *seconds,
                                 td_err *err);
int td_drafter_epoch(const td_drafter *d); /* the epoch it was fitted on */
void td_drafter_close(td_drafter *d);      /* NULL is fine */

#endif
