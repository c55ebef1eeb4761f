/* Internal to src/repair: the "no new bug" guard of tardis repair
 * (--max-label-loss D, docs/repair.md#the-no-new-bug-guard). After each
 * round's fine-tuning, per-label offsets on the output layer's bias are
 * fitted on held-out pool samples so that no label's held-out accuracy falls
 * more than D below the parent's, and added to the bias before the round's
 * epoch is recorded. */
#ifndef TD_REPAIR_GUARD_H
#define TD_REPAIR_GUARD_H

#include <stdint.h>

#include "tardis/array.h"
#include "tardis/nn.h"
#include "tardis/repair.h"
#include "tardis/rng.h"

/* The objective at offsets delta [C] of logits z [n, C] with labels y [n]:
 * *shortfall = sum over labels l with samples of max(0, base[l] - D -
 * acc_l), *balanced = the mean of acc_l over those labels (a sample is
 * predicted argmax_k z[k] + delta[k], the first on ties). base [C]: the
 * accuracy each label must keep (minus D). acc (may be NULL) receives
 * acc_l [C] (NAN: no sample). */
void td__guard_objective(const float *z, const int32_t *y, int64_t n, int C,
                         const double *base, double D, const double *delta,
                         double *shortfall, double *balanced, double *acc);

typedef struct td__guard_fit_info {
  double shortfall, balanced; /* the objective at the result */
  int sweeps;                 /* over every label */
  int converged;              /* 1: the last sweep changed nothing */
} td__guard_fit_info;

/* Coordinate ascent from delta = 0 on (-shortfall, balanced),
 * lexicographically: label after label, the offset of one label swept
 * exactly over the breakpoints where a sample changes its prediction, the
 * best interval taken (its midpoint; ties: the one nearest the current
 * offset) when it strictly improves the objective; until a sweep changes
 * nothing or 8 sweeps. Deterministic. delta [C] out. TD_OK or TD_ENOMEM. */
TD_NODISCARD int td__guard_fit(const float *z, const int32_t *y, int64_t n,
                               int C, const double *base, double D,
                               double *delta, td__guard_fit_info *info);

/* Frees what one round's guard (td_repair_guard, tardis/repair.h: owned
 * arrays [C]; acc_after filled by td__guard_finish) holds. */
void td__guard_round_free(td_repair_guard *g);

/* The hook's context: the held-out samples (td__guard_reserve) and the
 * parent's predictions; filled by the repair, read by td__guard_hook. */
typedef struct td__guard {
  double D;
  int C;
  const td_array *x;          /* the parent's train_inputs [N, in] */
  const int32_t *y;           /* training labels [N] */
  const int32_t *parent_pred; /* the parent's predicted labels [N] */
  const int32_t *held;        /* the held-out samples (training indices) */
  int64_t n_held;
  td_repair_guard *out; /* receives the round's record */
} td__guard;

/* The held-out set the guard fits on, reserved at random before any
 * selection (docs/repair.md#the-no-new-bug-guard): of a label with P pool
 * samples, td__guard_reserve_count(P) of them. */
#define TD__HELDOUT_PCT 30  /* share of each label's pool, in percent */
#define TD__HELDOUT_MIN 50  /* at least min(P, this) */
#define TD__HELDOUT_MAX 500 /* at most this */
int64_t td__guard_reserve_count(int64_t P);

/* Draws the held-out set from pool[n] (training indices, labels y): label
 * after label, td__guard_reserve_count of its pool samples by a partial
 * Fisher-Yates on a stream of its own derived from seed (so it is the same
 * for every strategy and at any thread count). held (room for n) receives
 * them in pool order; returns how many, or -1 out of memory. */
int64_t td__guard_reserve(const int32_t *pool, int64_t n, const int32_t *y,
                          int C, uint64_t seed, int32_t *held);

/* After the guarded epoch is recorded: acc_after and met of ctx->out from
 * the predictions of the guarded model on every training sample (the
 * argmax of its recorded train logits), so that they are what the
 * recording shows. */
void td__guard_finish(const td__guard *g, const int32_t *pred);

/* TD_OK when net's last layer is a dense layer without an activation (its
 * bias shifts each logit alone); else TD_EARG naming what it is. */
TD_NODISCARD int td__guard_check_net(const td_net *net, td_err *err);

/* td_train_opts.before_record for the guard: fits the offsets on the
 * held-out samples (one forward pass of net over them), adds them to net's
 * last bias, records what it did in ctx->out. */
TD_NODISCARD int td__guard_hook(void *ctx, td_net *net, int epoch, td_err *err);

#endif
