/* tardis/metrics.h — quality metrics of a projection (DESIGN §3.7).
 *
 * All are rates in [0, 1] except temporal_corr (a correlation in [−1, 1]).
 * The exact high-dimensional kNN is the expensive part (seconds for
 * 60k × 128), so every neighbour-based metric has a form that takes a
 * precomputed td_knn; the 2-D neighbours are always computed exactly, with
 * td_knn_2d's grid search (much faster than td_knn_exact in 2-D).
 *
 *     td_knn hi;                                    // e.g. reused from the
 *     td_knn_exact(repr, n, D, 20, &hi, &err);      // projection step
 *     int ks[3] = {10, 15, 20};
 *     double nn[3];
 *     td_metric_nn_preservation_knn(&hi, emb, ks, 3, nn, &err);
 *
 *     double ppr, dconf;
 *     td_metric_ppr(head, repr, recon, n, &ppr, &dconf);
 *
 *     td_temporal *tc;                              // fed epoch by epoch
 *     td_temporal_new(n, 15, &tc, &err);
 *     for each epoch: td_temporal_add(tc, &knn_of_epoch, emb_of_epoch, &err);
 *     double corr;
 *     td_temporal_result(tc, &corr, NULL);
 *     td_temporal_free(tc);
 *
 * Neighbours are Euclidean, self excluded, ties broken by the smaller index
 * (as td_knn_exact does).
 */
#ifndef TARDIS_METRICS_H
#define TARDIS_METRICS_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/knn.h"
#include "tardis/run.h"
#include "tardis/territory.h"

/* Mean over rows of |a_i ∩ b_i| / k, using the first k neighbours of each
 * list (k <= a->k, b->k; a->n == b->n). 0 for an empty graph. */
double td_metric_knn_overlap(const td_knn *a, const td_knn *b, int k);

/* nn@k: mean over points of |kNN_high(i) ∩ kNN_2d(i)| / k, with x [n, D]
 * the representations and y [n, 2] their projections. Computes both graphs
 * exactly (td_knn_exact and td_knn_2d). Requires 1 <= k <= n − 1. */
TD_NODISCARD int td_metric_nn_preservation(const float *x, int64_t n, int D,
                                           const float *y, int k, double *out,
                                           td_err *err);

/* nn@k for several k at once (ks[0..n_k)), from a precomputed exact
 * high-dimensional graph `high` of y's n points (high->k >= every ks[i]);
 * the 2-D graph is computed once with the largest k. out[i] is nn@ks[i]. */
TD_NODISCARD int td_metric_nn_preservation_knn(const td_knn *high,
                                               const float *y, const int *ks,
                                               int n_k, double *out,
                                               td_err *err);

/* boundary_nn@k: neighbour preservation with the neighbours taken only
 * among the boundary samples xb [nb, D] (projected to yb [nb, 2]).
 *  - xq == NULL: the queries are the boundary samples themselves, self
 *    excluded (requires k <= nb − 1);
 *  - otherwise: the queries are other points xq [nq, D] projected to
 *    yq [nq, 2] (DVI's evaluation uses the training samples), each one's
 *    k nearest boundary samples in high-D against those in 2-D
 *    (requires k <= nb). */
TD_NODISCARD int td_metric_boundary_nn(const float *xb, const float *yb,
                                       int64_t nb, const float *xq,
                                       const float *yq, int64_t nq, int D,
                                       int k, double *out, td_err *err);

/* ppr: the fraction of the n rows whose argmax head(x_rec) equals argmax
 * head(x) (ties: smaller index); inv_conf_diff: the mean of
 * |softmax(head(x))_c − softmax(head(x_rec))_c| with c = argmax head(x).
 * x and x_rec are [n, head in_dim]; x_rec is decoder(encoder(x)). Either
 * output may be NULL. Returns TD_OK, TD_ENOMEM, or TD_EARG (n < 1). The
 * result does not depend on the thread count. */
TD_NODISCARD int td_metric_ppr(const td_head *head, const float *x,
                               const float *x_rec, int64_t n, double *ppr,
                               double *inv_conf_diff);

/* temporal_corr, accumulated one epoch at a time so that only the previous
 * epoch's kNN lists and embedding are held. For each sample i and each pair
 * of consecutive epochs (t−1, t): r_t = |kNN_{t−1}(i) ∩ kNN_t(i)| / k (high
 * dimensional neighbours) and m_t = ‖y_t(i) − y_{t−1}(i)‖ (2-D movement).
 * The per-sample value is the Pearson correlation of r and m over the
 * pairs, 0 when undefined (fewer than two pairs, or no variation in r or
 * in m); temporal_corr is its mean over samples. Negative is good: a sample
 * whose neighbourhood changes more should move more. */
typedef struct td_temporal td_temporal;

/* n samples, k neighbours per list (k >= 1). Free with td_temporal_free. */
TD_NODISCARD int td_temporal_new(int64_t n, int k, td_temporal **out,
                                 td_err *err);
/* Feeds the next epoch: its high-D graph (high->n == n, high->k >= k; only
 * the first k neighbours are used) and its embedding y [n, 2]. Both are
 * copied as needed; the caller may free them afterwards. */
TD_NODISCARD int td_temporal_add(td_temporal *tc, const td_knn *high,
                                 const float *y, td_err *err);
/* Number of epochs fed so far. */
int td_temporal_n_epochs(const td_temporal *tc);
/* *mean (may be NULL) receives temporal_corr; per_sample (may be NULL) the
 * n per-sample correlations. */
void td_temporal_result(const td_temporal *tc, double *mean,
                        double *per_sample);
void td_temporal_free(td_temporal *tc); /* NULL is fine */

/* boundary_kept: the fraction of the nb boundary samples whose projection
 * yb [nb, 2] lands in a boundary (white) cell of the territory; points
 * outside the extent count as not kept. 0 when nb == 0. */
double td_metric_boundary_kept(const td_territory *t, const float *yb,
                               int64_t nb);

/* How the drawn territory agrees with the samples drawn on it. For the n
 * samples x [n, D] placed at y [n, 2]:
 *   on_boundary  the fraction sitting in a boundary (white) cell;
 *   agree        the fraction whose cell's class equals argmax head(x)
 *                (white cells count too: the class under the white);
 *   unsure       the fraction whose own logit gap (td_logit_gap of
 *                head(x)) is below TD_TERRITORY_BOUNDARY_CONF — where the
 *                classifier itself is unsure, white is the right colour.
 *   unsure_area  the fraction of the territory's cells that are white
 *                (what boundary_kept is to be read against: a band covering
 *                a tenth of the canvas keeps a tenth of random points).
 * Points outside the extent count as neither on the boundary nor agreeing.
 * Returns TD_OK, TD_ENOMEM or TD_EARG (n < 1). */
typedef struct td_territory_fit {
  double on_boundary, agree, unsure, unsure_area;
} td_territory_fit;
TD_NODISCARD int td_metric_territory_fit(const td_territory *t,
                                         const td_head *head, const float *x,
                                         const float *y, int64_t n,
                                         td_territory_fit *out);

#endif
