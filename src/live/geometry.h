/* The geometry of one epoch's representations (src/live/geometry.c), for
 * the alerts state (src/live/alerts.c) and its tests. */
#ifndef TD_LIVE_GEOMETRY_H
#define TD_LIVE_GEOMETRY_H

#include <stdint.h>

#include "tardis/alerts.h"

/* What one epoch's computation needs besides the epoch's arrays: the fixed
 * subsample and what the previous epoch left (its neighbour lists and
 * predictions on the subsample). */
typedef struct td__geom {
  int64_t n;       /* samples */
  int d, C, m, k;  /* width, classes, subsample size, neighbours */
  int32_t *sample; /* [m] ascending row indices */
  int32_t *nn;     /* [m, k] neighbour lists of the last epoch, each sorted */
  int32_t *pred;   /* [m] predicted classes of the last epoch */
  int have_prev;   /* nn and pred hold an epoch */
} td__geom;

/* Chooses the subsample (m = min(sample, n), seeded) and allocates the
 * lists. n >= 2; k is cut to m − 1 … n − 1 as needed. */
TD_NODISCARD int td__geom_init(td__geom *g, int64_t n, int d, int C, int sample,
                               int k, uint64_t seed, td_err *err);
void td__geom_close(td__geom *g);

/* Computes the metrics of one epoch: x [n, d] representations, labels [n]
 * in [0, C), logits [n, C].
 * vals receives TD_GEOM_COUNT values (test metrics are left as they are),
 * per_class [TD_GEOM_COUNT × C] the same per class (NaN where a metric has
 * no per-class form or the class is empty), pair the two classes of the
 * closest centres. On success the neighbour lists and predictions become
 * the previous epoch's; on failure g is unchanged. */
TD_NODISCARD int td__geom_epoch(td__geom *g, const float *x,
                                const int32_t *labels, const float *logits,
                                double *vals, double *per_class, int pair[2],
                                td_err *err);

#endif
