/* tardis/evaluate.h — quality metrics of a run's projection, epoch by epoch
 * (DESIGN §3.7), written to RUN/vis/<method>/metrics.json.
 *
 *     td_eval_result r;
 *     td_evaluate(run, "dvi", NULL, NULL, &r, &err);
 *     printf("%f\n", r.epochs[0].nn_train[1]);   // nn@15 of the first epoch
 *     td_eval_result_free(&r);
 */
#ifndef TARDIS_EVALUATE_H
#define TARDIS_EVALUATE_H

#include "tardis/error.h"
#include "tardis/run.h"

#define TD_EVAL_NK 3 /* nn@k for k = 10, 15, 20 */
extern const int td_eval_ks[TD_EVAL_NK];

typedef struct td_eval_epoch {
  int epoch;
  double nn_train[TD_EVAL_NK], nn_test[TD_EVAL_NK]; /* test: NaN if none */
  double boundary_nn15; /* among boundary samples; NaN if fewer than 16 */
  double ppr, inv_conf_diff;
  double ppr_test; /* ppr of the test split; NaN if none */
  /* td_metric_territory_fit of the training samples on the stored
   * territory; NaN without one */
  double on_boundary, terr_agree, unsure, unsure_area;
  double boundary_kept; /* NaN if no boundary samples */
  double proj_seconds;  /* from projection.json */
  int64_t n_boundary;
} td_eval_epoch;

typedef struct td_eval_result {
  int n_epochs;
  td_eval_epoch *epochs;
  double temporal_corr_train; /* NaN with fewer than 3 epochs */
  double temporal_corr_test;
} td_eval_result;

/* Evaluates every projected epoch of `method`; progress(i, n, ctx) before
 * each. Writes metrics.json next to the epochs. */
TD_NODISCARD int td_evaluate(td_run *run, const char *method,
                             void (*progress)(int i, int n, void *ctx),
                             void *ctx, td_eval_result *out, td_err *err);
void td_eval_result_free(td_eval_result *r);

#endif
