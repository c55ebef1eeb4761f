/* Choosing pool samples for a repair round (internal to src/repair). */
#ifndef TD_REPAIR_SELECT_H
#define TD_REPAIR_SELECT_H

#include "repair/repair_internal.h"
#include "tardis/rng.h"

typedef struct td__select_ctx {
  const td_diagnosis *g;  /* the current model's diagnosis */
  const td__diag_data *d; /* its data (features of pool samples) */
  const int32_t *y;       /* training labels [n_train] */
  const int32_t *avail;   /* pool samples not chosen yet */
  int64_t n_avail;
  int64_t k; /* how many to choose */
  double other_share, theta, gamma;
  td_select_strategy strategy;
  td_rng *rng;
} td__select_ctx;

/* Chooses up to k of the available samples into out [k]; *n how many,
 * per_label [C] how many of each label. */
TD_NODISCARD int td__select(const td__select_ctx *c, int32_t *out, int64_t *n,
                            int64_t *per_label, td_err *err);

#endif
