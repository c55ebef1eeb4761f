/* Internal to src/repair: the pieces td_diagnose and td_repair share. */
#ifndef TD_REPAIR_INTERNAL_H
#define TD_REPAIR_INTERNAL_H

#include <stdint.h>

#include "tardis/nn.h"
#include "tardis/repair.h"
#include "tardis/run.h"

/* What a diagnosis reads of a run's epoch. */
typedef struct td__diag_data {
  int C;
  int64_t n_train, n_test;
  const int32_t *y_train; /* owned by the run */
  int32_t *y_test;        /* [n_test] */
  int32_t *pred_train, *pred_test;
  int32_t *trained; /* the trained-on samples (ascending) */
  int64_t n_trained;
  td_net *net;                   /* the epoch's checkpoint, or NULL */
  td_array x_train, x_test;      /* inputs (with net) */
  float *repr_train, *repr_test; /* without net: [n, D] */
  int D;
  td_head *head;
} td__diag_data;

TD_NODISCARD int td__diag_data_load(const td_run *run, int epoch,
                                    td__diag_data *d, td_err *err);
void td__diag_data_free(td__diag_data *d);

/* td_diagnose on an opened run, keeping what it read in *d (the caller
 * frees it with td__diag_data_free when TD_OK). */
TD_NODISCARD int td__diagnose_run(const td_run *run, const td_diagnose_opts *o,
                                  td_diagnosis **out, td__diag_data *d,
                                  td_err *err);

/* The same without probes and heat maps (layer -2, probe_w and the maps
 * NULL): what tardis repair needs after its last round. */
TD_NODISCARD int td__diagnose_metrics(const td_run *run,
                                      const td_diagnose_opts *o,
                                      td_diagnosis **out, td__diag_data *d,
                                      td_err *err);

/* Per-label metrics, confusion and verdicts into diag (allocated there). */
TD_NODISCARD int td__label_metrics(const td__diag_data *d, double theta,
                                   double gamma, td_diagnosis *diag);

/* Features of layer `layer` (-1: the recorded representation) for the m
 * samples rows[] of a split (test != 0: the test split): out [m, dim];
 * spatial activations are averaged over H and W. */
TD_NODISCARD int td__features(const td__diag_data *d, int test, int layer,
                              const int32_t *rows, int64_t m, float *out,
                              td_err *err);
/* td__features for n layers at once, each for its own rows of the split
 * (layer k: the m[k] rows rows[k], into out[k] [m[k], dim]); the layers
 * with the same rows share one forward pass, up to the deepest of them:
 * the same bytes as a td__features call per layer. */
TD_NODISCARD int td__features_layers(const td__diag_data *d, int test, int n,
                                     const int *layers, int32_t *const *rows,
                                     const int64_t *m, float *const *out,
                                     td_err *err);
/* The width td__features gives for the layer, and whether it pools. */
int td__feature_dim(const td__diag_data *d, int layer, int *pooled);

/* A linear softmax probe fitted on the features of up to o->probe_max
 * trained-on samples of the layer; w [C, dim] (weights on the raw features)
 * and b [C]; its accuracies on the trained-on and test samples. */
TD_NODISCARD int td__probe_fit(const td__diag_data *d, int layer,
                               const td_diagnose_opts *o, float *w, float *b,
                               double *train_acc, double *test_acc,
                               td_err *err);

/* td__probe_fit for n layers, sharing the passes td__features_layers can
 * share (every layer's test rows, when the test set is no larger than
 * o->probe_max; its trained-on rows too when those are): the probe of
 * layers[k] into w[k] (b: scratch [C]), train_acc[k], test_acc[k]; the same
 * results as a td__probe_fit per layer. */
TD_NODISCARD int
td__probe_fit_layers(const td__diag_data *d, int n, const int *layers,
                     const td_diagnose_opts *o, float *const *w, float *b,
                     double *train_acc, double *test_acc, td_err *err);

/* The heat maps and differential maps of diag at diag->layer. */
TD_NODISCARD int td__diag_heatmaps(const td__diag_data *d, td_diagnosis *diag,
                                   td_err *err);

/* A [rows, cols] map as a PNG (diverging blue-white-red, scaled by its
 * largest magnitude), written to path. */
TD_NODISCARD int td__heatmap_png(const float *m, int rows, int cols,
                                 const char *path, td_err *err);

#endif
