/* The recorder (internal to src/train): after each epoch it evaluates a
 * snapshot of the net — weights and batchnorm's running statistics as they
 * were at the end of the epoch — on every training, test and OOD sample, and
 * writes the epoch (representations, logits, losses, head, checkpoint and
 * trainer state) into the run on a thread of its own while the next epoch
 * trains. docs/engine.md "Recording" describes the costs. */
#ifndef TD_TRAIN_RECORD_H
#define TD_TRAIN_RECORD_H

#include <pthread.h>
#include <stdint.h>

#include "tardis/nn.h"
#include "tardis/rng.h"
#include "tardis/train.h"
#include "train/continual.h"

/* Shared, read-only inputs of one split. */
typedef struct td__split {
  const float *x;
  const int32_t *labels; /* training labels (possibly noisy) */
  const int32_t *truth;  /* clean labels, or NULL */
  int64_t n;
} td__split;

/* What a split's evaluation gives. */
typedef struct td__split_eval {
  float *repr, *logits, *loss; /* [n, D], [n, C], [n] */
  double mean_loss, acc, acc_truth;
} td__split_eval;

typedef struct td__recorder {
  pthread_t thread;
  int running;
  int overlap;      /* evaluate on the writer thread, beside the next epoch */
  int job_overlaps; /* the current job does */
  /* the job */
  td_net *snap;
  td_net_infer *infer; /* the inference path's context, on snap */
  int epoch;
  double seconds, lr, inflight_loss;
  /* fixed context */
  td__split train, test, ood; /* ood.n == 0: not recorded */
  int n_classes, repr_dim;
  const char *run_dir;
  int save_model;
  td__split_eval ev_train, ev_test, ev_ood;
  /* results */
  int rc;
  td_err err;
  double busy_seconds;     /* writer thread */
  double eval_seconds;     /* forward passes of the recording (wall) */
  double eval_cpu_seconds; /* process CPU time of those not overlapped */
  /* continual learning: the tasks (NULL: none) and a copy of the epoch's
   * trained-on set, taken when the job starts */
  const td__continual *cl;
  int32_t *trained;
  int64_t n_trained;
  int task;
  /* what is written (docs/storage.md): representations as float16, and
   * only the rows rec_idx[0..n_rec) of the training split (NULL: all) */
  int repr_f16;
  int32_t *rec_idx; /* owned */
  int64_t n_rec;
  /* --select: the samples every epoch trains on (ascending; NULL: none) */
  const int32_t *sel;
  int64_t n_sel;
  /* the trainer state at the end of the epoch, saved with the checkpoint
   * so that --resume continues exactly (opt_snap[i] NULL: no buffer i) */
  const char *optimizer;
  float *opt_snap[2];
  int64_t opt_steps;
  td_rng rng;
} td__recorder;

/* The training samples a subset run records (--record-subset K of n):
 * drawn from the seed for a new run (ascending), RUN/subset.npy for a
 * resumed one. *idx is malloc'd. */
TD_NODISCARD int td__record_subset_prepare(const td_train_opts *o, int64_t n,
                                           int32_t **idx, td_err *err);

/* Sets up r for net: the snapshot, the inference context, the evaluation
 * buffers of splits of n_train, n_test and n_ood samples, and copies of the
 * optimizer's buffers. r's other fixed fields are the caller's to fill.
 * TD_OK or TD_ENOMEM (err set). */
TD_NODISCARD int td__recorder_init(td__recorder *r, const td_net *net,
                                   td_optim *opt, const char *optimizer,
                                   const int64_t n[3], int C, td_err *err);
/* Waits for the writer, then frees everything td__recorder_init made. */
void td__recorder_free(td__recorder *r);

/* Records epoch `epoch` of net: waits for the previous epoch's writer,
 * snapshots net, opt and rng, evaluates every split on every core, then
 * writes the epoch on the writer thread. Where the trainer leaves a core
 * idle (td_threads() below the CPUs) the writer thread evaluates the
 * snapshot itself, on one thread, while the next epoch trains — not for the
 * `last` epoch, after which nothing trains. The arrays are the same either
 * way. TD_OK, or an error in r->err. */
TD_NODISCARD int td__recorder_start(td__recorder *r, const td_net *net,
                                    td_optim *opt, const td_rng *rng, int epoch,
                                    double seconds, double lr, double inflight,
                                    int last);
/* CPU seconds used by the process so far (every thread). */
double td__cpu_now(void);
/* Waits for the current writer; returns its status (error in r->err). */
int td__recorder_wait(td__recorder *r);

/* Evaluates split s of net with the inference context (NULL: the plain
 * td_net_predict): representations and logits, per-sample losses, mean
 * loss and accuracies. TD_OK or TD_ENOMEM. */
TD_NODISCARD int td__record_eval(const td_net *net, td_net_infer *infer,
                                 const td__split *s, int C, td__split_eval *ev);

#endif
