/* The projection methods behind one interface: td_project (project.c) runs
 * the epochs and writes them through the vis writer; a method fits an epoch,
 * places its points on the canvas and stores its model. Each keeps what the
 * next epoch needs from this one in its own state. */
#ifndef TARDIS_PROJ_METHOD_H
#define TARDIS_PROJ_METHOD_H

#include <stdint.h>

#include "tardis/array.h"
#include "tardis/knn.h"
#include "tardis/nn.h"
#include "tardis/project.h"
#include "tardis/run.h"
#include "tardis/territory.h"

/* One epoch's inputs, loaded by td_project. */
typedef struct td__proj_epoch {
  td_array train, test; /* float32 representations */
  td_array ood;         /* optional out-of-distribution set (train --ood) */
  td_array logits;
  td_head *head;
  int64_t n, m, mo;
  int D, C;
  float *bnd;     /* [nb, D] boundary samples */
  int32_t *pairs; /* [nb, 2] */
  int64_t nb;
} td__proj_epoch;

typedef struct td__proj_method {
  const char *name;
  int boundary; /* fits on boundary samples too (td_project_opts.boundary) */
  /* 1: a state made by resume places every point with the model's encoder
   * (place() does not copy a layout), so it can draw a draft of a later
   * epoch (td_project_draft). */
  int drafts;
  void *(*state_new)(void);
  void (*state_free)(void *st);
  /* Warm start from a finished epoch (the newest before the first epoch to
   * do). A file of it that cannot be read is an error (naming the file),
   * never a silent cold start. NULL: nothing to resume. */
  int (*resume)(void *st, const td_run *run, int epoch, const char *dir,
                td_err *err);
  /* Fits the epoch; the state then holds its model. */
  int (*fit)(void *st, const td_project_opts *o, const td__proj_epoch *e,
             double *knn_s, double *fit_s, td_err *err);
  /* Canvas positions of the epoch's training, test, boundary and ood
   * points (y[0..3], [n|m|nb|mo, 2]; NULL where there are none). */
  int (*place)(const void *st, const td__proj_epoch *e, float *const y[4],
               td_err *err);
  /* Canvas → representation for the territory; ctx is the state. */
  td_decode_fn decode;
  /* Writes the model into the epoch directory (model/, pca.npy). */
  int (*save)(const void *st, const char *dir, td_err *err);
  /* Drafts only (NULL otherwise): after a fit, makes place() encode every
   * point with the model rather than copy the fitted layout, so the state
   * can draw later epochs (td_drafter: a model fitted on one epoch's
   * sample draws the epochs that follow). */
  void (*forget_layout)(void *st);
  /* Projection at scale (NULL: the method fits every point). The fitted
   * layout, training rows first then boundary samples (*n_train, *n_vert
   * rows); NULL before any fit. */
  const float *(*layout)(const void *st, int64_t *n_train, int64_t *n_vert);
  /* Before a fit on the sample rows [s] of n points: a state resumed from
   * an epoch's files holds all n points' positions and classes; keep the
   * sample's (a state that already holds s rows is left alone). */
  int (*restrict_rows)(void *st, const int64_t *rows, int64_t s, int64_t n);
  /* The kNN graph (representation space) of the last fit's training rows,
   * indices into them; NULL when there is none. */
  const td_knn *(*graph)(const void *st);
} td__proj_method;

extern const td__proj_method td__proj_pca;
extern const td__proj_method td__proj_dvi;

#endif
