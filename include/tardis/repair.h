/* tardis/repair.h — model repair after MODE (FSE 2018; DESIGN §3.10,
 * docs/repair.md): per-label diagnosis of a recorded run, layer probes,
 * heat maps and differential heat maps, and the repair loop that fine-tunes
 * a buggy model on pool samples chosen by them.
 *
 *     td_diagnose_opts o;
 *     td_diagnose_opts_default(&o);
 *     td_diagnosis *d;
 *     if (td_diagnose("runs/buggy", &o, &d, &err)) puts(err.msg);
 *     for (int l = 0; l < d->n_classes; l++)
 *       printf("%d %s\n", l, td_verdict_name(d->labels[l].verdict));
 *     td_diagnosis_free(d);
 *
 *     td_repair_opts r;
 *     td_repair_opts_default(&r);
 *     r.run = "runs/buggy"; r.out = "runs/fixed"; r.budget = 2000;
 *     td_repair_result res;
 *     td_repair(&r, &res, &err);   // then td_repair_result_free(&res)
 */
#ifndef TARDIS_REPAIR_H
#define TARDIS_REPAIR_H

#include <stdint.h>

#include "tardis/error.h"

typedef enum {
  TD_VERDICT_HEALTHY,
  TD_VERDICT_UNDERFIT, /* train accuracy < theta */
  TD_VERDICT_OVERFIT,  /* train - test accuracy > gamma */
  TD_VERDICT_COUNT
} td_verdict;

/* "healthy", "underfitting", "overfitting". */
const char *td_verdict_name(td_verdict v);

typedef struct td_label_diag {
  int64_t n_train, n_test; /* trained-on samples and test samples */
  double train_acc, test_acc, precision, recall; /* test precision/recall;
                                                    NAN when undefined */
  td_verdict verdict;
  int confused; /* the label its test samples are most often taken for (-1:
                   none) */
} td_label_diag;

typedef struct td_probe_diag {
  int layer; /* the checkpoint's layer; -1: the recorded representation */
  int dim;   /* feature width (channels for pooled spatial layers) */
  int pooled;
  double train_acc, test_acc;
} td_probe_diag;

typedef struct td_diagnose_opts {
  int epoch;         /* -1: the last recorded */
  double theta;      /* underfitting below this train accuracy: 0.92 */
  double gamma;      /* overfitting above this train - test gap: 0.10 */
  int layer;         /* -2: probe every hidden layer and take the one where
                        the probes saturate; -1: the representation; >= 0:
                        that layer of the checkpoint */
  int probe_epochs;  /* passes of the probe's training: 10 */
  int64_t probe_max; /* at most this many samples per split fit/score a
                        probe: 5000 */
  double saturation; /* the first layer within this of the best probe's
                        test accuracy saturates: 0.01 */
  uint64_t seed;     /* probe sampling and initialisation: 1 */
} td_diagnose_opts;

void td_diagnose_opts_default(td_diagnose_opts *o);

typedef struct td_diagnosis {
  int epoch, n_classes;
  int has_model; /* a checkpoint was probed; 0: PyTorch run, head as probe */
  double train_acc, test_acc; /* over trained-on / test samples */
  td_label_diag *labels;      /* [C] */
  int64_t *confusion;         /* [C, C] test: row = label, col = predicted */
  td_probe_diag *probes;      /* [n_probes] */
  int n_probes;
  int layer, dim; /* where the heat maps are (layer as in td_probe_diag) */
  int pooled;
  float *probe_w; /* [C, dim]: the probe's weights (dense layout) */
  /* Heat maps [C, dim], row l = HM_l(S) = mean over x in S of
   * f(x) ⊙ W_probe[l], over the trained-on samples, S: */
  float *hm_correct;  /* inputs of l predicted l */
  float *hm_missed;   /* inputs of l predicted as another label */
  float *hm_wrong;    /* inputs of other labels predicted l */
  float *hm_confused; /* inputs of l predicted as labels[l].confused */
  /* Differential maps: under = correct - missed (what l's correct inputs
   * have that its missed ones lack); over = correct - wrong. */
  float *dhm_under, *dhm_over;
} td_diagnosis;

/* Diagnoses an epoch of the run at dir. Runs without a checkpoint (PyTorch)
 * get per-label metrics and heat maps at the representation with the head
 * as the probe (a one-layer head; a deeper one gets a probe fitted on the
 * representation). */
TD_NODISCARD int td_diagnose(const char *dir, const td_diagnose_opts *o,
                             td_diagnosis **out, td_err *err);
void td_diagnosis_free(td_diagnosis *d);

/* The diagnosis as JSON text (malloc'd; NULL on out of memory); with the
 * class names of the run when names is not NULL. */
char *td_diagnosis_json(const td_diagnosis *d, const char *const *names);

/* Writes RUN/diagnosis/epoch_NNNN/: diagnosis.json, the heat maps as .npy
 * (float32 [C, dim]) and PNG; built in a temporary directory and renamed
 * into place, so a killed process leaves no half-written diagnosis. *path
 * (may be NULL) receives the directory. */
TD_NODISCARD int td_diagnosis_write(const char *dir, const td_diagnosis *d,
                                    const char *const *names, char *path,
                                    size_t len, td_err *err);

/* Heat maps of one set of samples: out[l] = mean over the rows i with
 * member[i] == l of f[i] ⊙ w[l] for every l in [0, C) (zero for an empty
 * set). f [n, dim], w [C, dim], out [C, dim]; member -1 excludes a row. */
void td_heatmap(const float *f, int64_t n, int dim, const float *w, int C,
                const int32_t *member, float *out);

/* ---- repair ------------------------------------------------------------ */

typedef enum {
  TD_SELECT_MODE,         /* by similarity to the differential heat maps */
  TD_SELECT_RANDOM,       /* uniform from the pool */
  TD_SELECT_LABEL_RANDOM, /* MODE's count per label, random within it */
  TD_SELECT_COUNT
} td_select_strategy;

const char *td_select_name(td_select_strategy s);

typedef struct td_repair_opts {
  const char *run;      /* the buggy run (a tardis run with a pool) */
  int epoch;            /* its epoch to repair: -1 the last */
  const char *out;      /* the repaired child run */
  int force;            /* replace an existing out */
  int64_t budget;       /* pool samples to add in all: 2000 */
  int rounds;           /* at most this many rounds: 1 */
  int epochs_per_round; /* fine-tuning passes per round: 4 */
  double lr;            /* fine-tuning rate; 0: the run's own times lr_scale */
  double lr_scale;      /* with lr 0: the parent's rate times this: 2 */
  double lr_decay;      /* the rate is multiplied by this after each
                           fine-tuning epoch (td_train_opts.lr_grow): 0.5 */
  /* Replay: each round fine-tunes on every pick so far plus this many of
   * the parent's trained-on samples, drawn anew each round (0: all of
   * them, MODE's retraining on the training set plus the picks) */
  int64_t replay;
  /* Each pick is trained on this many times per fine-tuning epoch, the
   * replayed samples once (td_train_opts.select_times), so that the picks
   * are not drowned in the replayed training set: 1 */
  int pick_repeat;
  /* 1: every sample of the fine-tuning set is repeated so that each label
   * counts about as much as the best-supplied one (its count
   * round(largest label's / its own), at most 1000; after pick_repeat) */
  int balance;
  double other_share; /* the share of each round's picks drawn at random
                         from the buggy labels' look-alikes (the labels
                         the model takes their inputs for): 0.2 */
  /* label-random makes MODE's choice each round and redraws the same
   * number per label at random within each label */
  td_select_strategy strategy;
  uint64_t seed;
  int threads; /* 0: all CPUs */
  td_diagnose_opts diag;
  int quiet;
  /* Only choose: MODE's (or the strategy's) picks of one round of `budget`
   * samples from the current model, written to `out` as an .npy (int32
   * [K], pool indices = training indices); nothing is trained, so runs
   * without a checkpoint (PyTorch, heat maps from the head) work too. */
  int select_only;
  /* td_train_opts.no_reuse for the fine-tuning: decode the dataset and
   * evaluate the child's epoch 0 afresh instead of reusing the parent's
   * stored inputs and recording (the same bytes; for tests and timings) */
  int no_reuse;
  /* The "no new bug" guard (docs/repair.md#the-no-new-bug-guard): >= 0,
   * after each round's fine-tuning per-label offsets are fitted on held-out
   * pool samples and added to the output layer's bias, so that no label's
   * held-out accuracy is more than this below the parent's (as far as
   * offsets can); in [0, 1). Negative: off (the default). The held-out
   * samples are reserved from the pool at random (from seed) before any
   * selection: no strategy picks them, nothing trains on them. */
  double max_label_loss;
} td_repair_opts;

void td_repair_opts_default(td_repair_opts *o);

/* What the "no new bug" guard did in one round, before the round's epoch
 * was recorded: offsets added to the last bias, and the per-label accuracy
 * on the n_held held-out pool samples of the parent, of the round's model
 * before the guard and after it ([C] each; NAN: no sample). */
typedef struct td_repair_guard {
  int64_t n_held;
  double *offsets, *acc_parent, *acc_before, *acc_after;
  int met; /* every label within max_label_loss of the parent's */
  int sweeps, converged;
  double cpu_seconds; /* the fit and its forward pass */
} td_repair_guard;

typedef struct td_repair_round {
  int epoch_before, epoch_after;  /* of out (0: the parent's state) */
  int64_t n_selected;             /* this round's picks */
  int64_t *per_label;             /* [C] picks per label */
  int32_t *selected;              /* [n_selected] training indices */
  double *acc_before, *acc_after; /* [C] test accuracy per label */
  double test_before, test_after;
  int n_buggy_before, n_buggy_after;
  double seconds, cpu_seconds;
  int guarded; /* 1: the guard ran, guard holds what it did */
  td_repair_guard guard;
} td_repair_round;

typedef struct td_repair_result {
  int n_classes, n_rounds;
  td_repair_round *rounds;
  int64_t n_selected; /* in all */
  int64_t n_heldout;  /* with the guard: the pool samples it reserved */
  double seconds, cpu_seconds;
  double test_before, test_after;
  double *acc_before, *acc_after; /* [C] */
  int stopped_clean;              /* 1: no label was buggy any more */
} td_repair_result;

TD_NODISCARD int td_repair(const td_repair_opts *o, td_repair_result *res,
                           td_err *err);
void td_repair_result_free(td_repair_result *r);
/* The result as JSON text (malloc'd). */
char *td_repair_json(const td_repair_result *r, const td_repair_opts *o);

#endif
