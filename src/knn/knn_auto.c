/* The choice between exact search and NN-descent. A front file of its own,
 * so that the two builders never call each other. */
#include <stdint.h>

#include "tardis/knn.h"

int td_knn_auto(const float *x, int64_t n, int d, int k, uint64_t seed,
                td_knn *out, td_err *err) {
  if (n <= TD_KNN_AUTO_EXACT_MAX)
    return td_knn_exact(x, n, d, k, out, err);
  td_nnd_params p;
  td_nnd_params_default(&p);
  p.seed = seed;
  return td_knn_nndescent(x, n, d, k, &p, out, err);
}
