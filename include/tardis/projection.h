/* tardis/projection.h — a fitted 2-D projection of one epoch, whatever the
 * method: encode representations to the canvas and decode canvas points back
 * to representations the classifier head can judge.
 *
 *     td_projection *pj;
 *     td_projection_load("RUN/vis/dvi/epoch_0007", 128, &pj, &err);
 *     td_projection_encode(pj, repr, n, xy);     // [n, D] -> [n, 2]
 *     td_projection_decode(pj, xy, n, recon);    // [n, 2] -> [n, D]
 *     td_projection_free(pj);
 *
 * Methods: "dvi" (the encoder/decoder networks of vismodel.h) and "pca" (the
 * linear baseline: the top two principal axes; decoding is the exact
 * least-squares inverse).
 */
#ifndef TARDIS_PROJECTION_H
#define TARDIS_PROJECTION_H

#include <stdint.h>

#include "tardis/error.h"

typedef struct td_projection td_projection;

/* Loads the model stored in a vis epoch directory (model/ for dvi, pca.npy
 * for pca) of a run whose representations have repr_dim columns: a model of
 * another dimension is refused (TD_ESHAPE, naming the file), since encoding
 * or decoding with it would read or write past the rows. Free with
 * td_projection_free. */
TD_NODISCARD int td_projection_load(const char *epoch_dir, int repr_dim,
                                    td_projection **out, td_err *err);
void td_projection_free(td_projection *pj);
int td_projection_repr_dim(const td_projection *pj);
const char *td_projection_method(const td_projection *pj);
TD_NODISCARD int td_projection_encode(const td_projection *pj, const float *x,
                                      int64_t n, float *y);
TD_NODISCARD int td_projection_decode(const td_projection *pj, const float *y,
                                      int64_t n, float *x);

/* PCA: fits mean [D] and the top two principal axes comps [2, D] (unit rows)
 * of x [n, D] by power iteration on the covariance. If prev_comps is not
 * NULL each axis's sign is chosen to agree with it (stable animations). */
TD_NODISCARD int td_pca_fit(const float *x, int64_t n, int D,
                            const float *prev_comps, float *mean, float *comps,
                            td_err *err);
/* Writes epoch_dir/pca.npy: float32 [3, D] = {mean, axis 1, axis 2}. */
TD_NODISCARD int td_pca_save(const char *epoch_dir, int D, const float *mean,
                             const float *comps, td_err *err);

#endif
