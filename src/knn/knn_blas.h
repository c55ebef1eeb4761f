/* OpenBLAS thread count around parallel sections that call sgemm from
 * td_parallel_for workers (kNN, boundary sampling, the ppr metric). */
#ifndef TD_KNN_KNN_BLAS_H
#define TD_KNN_KNN_BLAS_H

/* Saves OpenBLAS's thread count and makes it single-threaded; returns the
 * saved count for td__knn_blas_restore. */
int td__knn_blas_single(void);
void td__knn_blas_restore(int saved);

#endif
