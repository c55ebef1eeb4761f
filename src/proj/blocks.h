/* Projection in blocks of epochs (blocks.c, docs/scale.md "Across
 * processes"): the hooks it needs from project.c and the vis model, and the
 * canvas transforms. Internal to src/proj. */
#ifndef TARDIS_PROJ_BLOCKS_H
#define TARDIS_PROJ_BLOCKS_H

#include <stdint.h>

#include "tardis/project.h"
#include "tardis/vismodel.h"

/* The epochs td_project would project (run indices, malloc'd), in order. */
TD_NODISCARD int td__project_pending(const td_run *run,
                                     const td_project_opts *o, int **idx,
                                     int *n, td_project_summary *s,
                                     td_err *err);

/* Fits epoch cold on a fresh state without writing it; *y_train (malloc'd,
 * [n_train, 2]) is where write_epoch would draw the training points. The
 * next td_projector_epoch warm-starts from this fit. */
TD_NODISCARD int td__projector_fit_only(td_projector *p, int epoch,
                                        float **y_train, td_err *err);

/* A canvas transform y' = A y + t as {a, b, tx, c, d, ty}:
 * x' = a x + b y + tx, y' = c x + d y + ty. */
void td__affine_identity(double T[6]);
/* out = T after A (apply A first); out may alias neither. */
void td__affine_compose(const double T[6], const double A[6], double out[6]);
void td__affine_apply(const double T[6], float *y, int64_t n);
/* The similarity (rotation or reflection, uniform scale, translation)
 * taking x [n, 2] closest to y [n, 2] in least squares. */
void td__affine_procrustes(const float *x, const float *y, int64_t n,
                           double T[6]);

/* Moves the model's canvas by T (invertible): encode' = T(encode),
 * decode' = decode(T^-1 ·). TD_EVALUE when T is singular. */
TD_NODISCARD int td__vismodel_affine(td_vismodel *m, const double T[6]);

#endif
