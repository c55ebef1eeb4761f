/* Held-out pools and starved labels (internal to src/train): which training
 * samples a run trains on when it keeps a pool out of training (--pool) or
 * starves labels (--class-fraction). docs/run-format.md#pools. */
#ifndef TD_TRAIN_POOL_H
#define TD_TRAIN_POOL_H

#include <stdint.h>

#include "tardis/error.h"

#define TD__MAX_CLASSES_FRACTION 1024

/* "L:F,L:F,..." into frac[0..C) (1 for labels not named); each L a label in
 * [0, C) named once, each F in (0, 1]. NULL or "" leaves every label at 1. */
TD_NODISCARD int td__class_fraction_parse(const char *s, int C, double *frac,
                                          td_err *err);

/* Splits the n training samples (labels in [0, C)) by the seed: per label,
 * round(pool * n_l) samples go to the pool, and of the others
 * max(1, round(frac_l * rest)) are trained on (the rest are dropped: neither
 * trained on nor in the pool). *trained and *pool are malloc'd, ascending;
 * a pool may be empty (*pool NULL, *n_pool 0). */
TD_NODISCARD int td__pool_split(const int32_t *labels, int64_t n, int C,
                                double pool, const char *class_fraction,
                                uint64_t seed, int32_t **trained,
                                int64_t *n_trained, int32_t **pool_idx,
                                int64_t *n_pool, td_err *err);

/* A copy of k selected indices (td_train_opts.select_idx), sorted, checked
 * to be distinct and in [0, n). */
TD_NODISCARD int td__select_copy(const int32_t *idx, int64_t k, int64_t n,
                                 int32_t **out, td_err *err);

#endif
