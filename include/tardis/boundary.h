/* tardis/boundary.h — boundary samples: points on the classifier's decision
 * boundaries (DESIGN §3.4), made by representation-space mixup and judged by
 * the epoch's classifier head.
 *
 * For a pair of samples x1, x2 predicted as different classes c1, c2, the
 * mixing weight λ ∈ [0.5, 1] of λ·x1 + (1 − λ)·x2 is bisected until the head
 * can hardly tell c1 from c2 (td_logit_gap below tol). Successful mixes are
 * the boundary samples; every pair of predicted classes contributes about
 * the same number, and within a class the samples already close to the
 * other class (small logit gap) are drawn more often.
 *
 *     td_boundary_params p;
 *     td_boundary_params_default(&p, n, C);  // budget = n / C, 8 steps, 0.1
 *     p.seed = 42;
 *     float *b;
 *     int32_t *pair;
 *     int64_t nb;
 *     if (td_boundary_generate(head, repr, logits, n, D, C, &p, &b, &pair,
 *                              &nb, &err) != TD_OK) { ... }
 *     // b[i*D .. i*D+D): boundary sample i; pair[2i], pair[2i+1]: its classes
 *     free(b);
 *     free(pair);
 *
 * Results depend only on the inputs and the seed, not on the thread count.
 */
#ifndef TARDIS_BOUNDARY_H
#define TARDIS_BOUNDARY_H

#include <stdint.h>

#include "tardis/error.h"
#include "tardis/nn.h"
#include "tardis/run.h"

typedef struct td_boundary_params {
  int64_t budget; /* wanted number of boundary samples; <= 0: n / C,
                     at most TD_BOUNDARY_BUDGET_MAX */
  int max_steps;  /* bisection steps per attempt; <= 0: 8 */
  float tol;      /* success when td_logit_gap < tol; <= 0: 0.1 */
  uint64_t seed;  /* every random choice derives from it */
} td_boundary_params;

/* The default budget's ceiling: every vertex of the complex is linked to
 * its nearest boundary samples by an exact search, whose cost grows with
 * n x budget, so an uncapped n / C made the projection quadratic in n
 * (docs/scale.md; 60k x 10 classes: 6,000, under the cap). */
#define TD_BOUNDARY_BUDGET_MAX 10000

/* Fills the defaults: budget = min(n / C, TD_BOUNDARY_BUDGET_MAX) (at least
 * 1), max_steps 8, tol 0.1, seed 0. */
void td_boundary_params_default(td_boundary_params *p, int64_t n, int C);

/* The gap between the two largest of C logits z after min-max
 * normalisation: with z' = (z − min z) / (max z − min z), the gap is
 * top1' − top2' = (z_(1) − z_(2)) / (z_(1) − z_min), in [0, 1], 0 on a tie.
 * Two degenerate cases are defined so that the gap stays continuous and 0
 * means "undecided":
 *  - all logits equal: 0;
 *  - C == 2: min-max normalisation would always give 1, so the gap is the
 *    difference of the two softmax probabilities, tanh(|z0 − z1| / 2).
 * C == 1 gives 1. top1 / top2 (either may be NULL) receive the classes of
 * the largest and second largest logit (ties: the smaller index first). */
float td_logit_gap(const float *z, int C, int *top1, int *top2);

/* Generates boundary samples.
 *   head    the epoch's classifier head, D -> C
 *   x       float [n, D] representations
 *   logits  float [n, C] the head's outputs for x as recorded; the predicted
 *           class of a sample is its argmax (ties: the smaller index)
 *   p       parameters; NULL: defaults with seed 0
 * Pairs of predicted classes {c1, c2} are balanced: the budget is split
 * evenly over the pairs that yield boundary samples; pairs whose mixes never
 * reach the boundary are given up after a bounded number of attempts and
 * their share goes to the others, so *n_out may fall short of the budget
 * (0 when fewer than two classes are predicted). An attempt succeeds when
 * the mix's gap is below tol and its two top classes are exactly c1 and c2.
 * On success *out is a malloc'd float [n_out, D] and *pair a malloc'd int32
 * [n_out, 2] holding (c1, c2) for each sample, c1 being the class of the
 * sample weighted by λ >= 0.5; the caller frees both (NULL when n_out = 0).
 * On failure (TD_EARG, TD_ENOMEM) the outputs are untouched. */
TD_NODISCARD int td_boundary_generate(const td_head *head, const float *x,
                                      const float *logits, int64_t n, int D,
                                      int C, const td_boundary_params *p,
                                      float **out, int32_t **pair,
                                      int64_t *n_out, td_err *err);

/* Input-space mixup (DVI's original), for runs whose full model is known
 * (the tardis trainer's checkpoint): the same pairing and bisection, but the
 * mix λ·u1 + (1 − λ)·u2 is formed from raw inputs [n, in] (as the model
 * takes them) and judged by the whole model. The boundary samples returned
 * in *out [n_out, D] are the model's activations of the successful mixes at
 * layer repr_layer (D = its width) — the representation space the
 * projection works in. logits [n, C] are the model's outputs for the inputs;
 * *pair as above. */
TD_NODISCARD int td_boundary_generate_input(const td_net *net, int repr_layer,
                                            const float *inputs,
                                            const float *logits, int64_t n,
                                            const td_boundary_params *p,
                                            float **out, int32_t **pair,
                                            int64_t *n_out, td_err *err);

#endif
