/* Projection at scale (docs/scale.md): above a size where it pays, the
 * complex and the layout are fitted on a fixed random sample of the training
 * points whose size comes from SentryCam's relative-density curve, and the
 * other points are placed by the fitted encoder, refined by their nearest
 * sample points in the representation space. Internal to src/proj. */
#ifndef TARDIS_PROJ_SCALE_H
#define TARDIS_PROJ_SCALE_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/knn.h"

/* The density rule's inputs and result. */
typedef struct td__scale_density {
  double ratio;      /* the chosen subset ratio, in [0.1, 0.5] */
  double density[5]; /* relative density of subsets of 10 %, 20 % .. 50 % */
} td__scale_density;

/* SentryCam's rule: the relative density rho(r) of a subset of ratio r is
 * the mean distance of probe points to their 15 nearest neighbours in the
 * full set over that in the subset (1 for r = 1, smaller for sparser
 * subsets). The ratio is the smallest r in {0.1 .. 0.5} whose slope to
 * the full set, (1 - rho(r)) / (1 - r), is <= 0.25 (0.5 when none is).
 * Measured on a uniform proxy of at most 40,000 rows of x [n, d] and 1,000
 * probes outside it (the curve depends on r, not on n). */
TD_NODISCARD int td__scale_density_ratio(const float *x, int64_t n, int d,
                                         uint64_t seed, td__scale_density *out,
                                         td_err *err);

/* s of the n rows, uniformly, by a partial Fisher-Yates shuffle seeded by
 * seed, sorted ascending; td_malloc'd, NULL when out of memory. */
int64_t *td__scale_sample_rows(int64_t n, int64_t s, uint64_t seed);

/* Places the points that are not in the sample: y [n, 2] holds every
 * point's encoder position on entry; for each non-sample row, its `cand`
 * nearest sample points on the canvas (by its encoder position) are
 * ranked by distance in the representation space, and the row moves to
 * the weighted mean of the drawn positions (pos [s, 2]) of the k nearest
 * of them (weights exp(-(d - d_1) / mean(d - d_1)), UMAP's membership);
 * with pred [n] (predicted classes; may be NULL) only candidates of the
 * row's own class count, when there are any. alt [n, 2] (may be NULL)
 * receives, for the same rows, a position beside the nearest of them (the
 * fallback for a point the decoder would give another class). rows [s]
 * ascending. With graph (the sample's kNN graph in the representation
 * space, indices into the sample; may be NULL) and pred, the nearest
 * sample points are searched in the graph instead, from the canvas
 * candidates and a few sample points of the row's predicted class
 * (n_classes of them, <= 256): the sample's true neighbours, not only
 * those the encoder put near it; the search compares rows on a one-byte
 * grid and ranks its final beam by exact distances (docs/scale.md).
 * Deterministic at any thread count. */
TD_NODISCARD int td__scale_refine(const float *x, int64_t n, int d,
                                  const int64_t *rows, int64_t s,
                                  const float *pos, const int32_t *pred,
                                  int n_classes, const td_knn *graph, float *y,
                                  float *alt, td_err *err);

#endif
