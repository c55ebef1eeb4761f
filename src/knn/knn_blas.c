/* OpenBLAS's own thread pool, switched off while our workers call sgemm:
 * each worker runs its sgemm single-threaded, so the two pools do not
 * oversubscribe the cores. */
#include <cblas.h>

#include "knn_blas.h"

int td__knn_blas_single(void) {
  int saved = openblas_get_num_threads();
  openblas_set_num_threads(1);
  return saved;
}

void td__knn_blas_restore(int saved) { openblas_set_num_threads(saved); }
