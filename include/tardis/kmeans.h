/* tardis/kmeans.h — k-means clustering (Euclidean).
 *
 *     float cent[30 * 64];
 *     int32_t *as = malloc(n * sizeof *as);
 *     if (td_kmeans(x, n, 64, 30, 50, seed, cent, as, &err) != TD_OK) { ... }
 *     // cent[j * 64 ..]: centroid j; as[i]: the centroid nearest row i.
 *
 * Deterministic for a given seed. Thread count: td_threads().
 */
#ifndef TARDIS_KMEANS_H
#define TARDIS_KMEANS_H

#include <stdint.h>

#include "tardis/error.h"

/* Lloyd's k-means with k-means++ seeding on a subsample. x: [n, dim];
 * centroids: [k, dim] out; assign: [n] out (may be NULL). k <= n. Stops
 * after max_iter iterations or once fewer than 0.1 % of the rows change
 * cluster. TD_EARG unless 0 < k <= n and dim > 0; TD_ENOMEM. */
TD_NODISCARD int td_kmeans(const float *x, int64_t n, int dim, int k,
                           int max_iter, uint64_t seed, float *centroids,
                           int32_t *assign, td_err *err);

#endif
