/* The recorder (internal to src/train): after each epoch it evaluates a
 * snapshot of the net — weights and batchnorm's running statistics as they
 * were at the end of the epoch — on every training, test and OOD sample, and
 * writes the epoch (representations, logits, losses, head, checkpoint and
 * trainer state) into the run on a thread of its own while the next epoch
 * trains. docs/engine.md "Recording" describes the costs. */
#ifndef TD_TRAIN_RECORD_H
#define TD_TRAIN_RECORD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "tardis/nn.h"
#include "tardis/rng.h"
#include "tardis/train.h"
#include "train/continual.h"

/* Shared, read-only inputs of one split: float rows x [n, in], or (x
 * NULL) byte rows x8 [n, in] that stand for x8 / 255, converted a batch or
 * a chunk at a time (td__split_rows) instead of as a float copy of the
 * whole split. */
typedef struct td__split {
  const float *x;
  const int32_t *labels; /* training labels (possibly noisy) */
  const int32_t *truth;  /* clean labels, or NULL */
  int64_t n;
  const uint8_t *x8;
  int in; /* the row width, with x8 */
} td__split;

/* The float a byte input stands for, v / 255 as the trainer has always
 * computed it ((float)v * (1.0f / 255.0f); through int32_t, which converts
 * exactly too, so that gcc vectorises it): a row converted anywhere is the
 * same bytes. */
static inline float td__u8_unit(uint8_t v) {
  return (float)(int32_t)v * (1.0f / 255.0f);
}

/* Rows [r0, r0+m) of s as floats into out [m, in]. */
void td__split_rows(const td__split *s, int64_t r0, int64_t m, float *out);

/* What a split's evaluation gives. */
typedef struct td__split_eval {
  float *repr, *logits, *loss; /* [n, D], [n, C], [n] */
  double mean_loss, acc, acc_truth;
} td__split_eval;

/* What an epoch records beside the arrays: its trainer state and metadata,
 * copied when the epoch ends (training goes on mutating the originals). */
typedef struct td__rec_epoch {
  int epoch;
  double seconds, lr, inflight_loss;
  /* continual learning: the task and a copy of the trained-on set */
  int task;
  int64_t n_trained;
  int32_t *trained; /* owned; NULL without tasks */
  /* the trainer state, saved with the checkpoint so that --resume
   * continues exactly (opt_snap[i] NULL: no buffer i; owned) */
  float *opt_snap[2];
  int64_t opt_steps;
  td_rng rng;
} td__rec_epoch;

typedef struct td__recorder {
  /* the job thread: writes the epoch evaluated before (if any), then, in
   * overlap mode, evaluates the current snapshot beside the next epoch */
  pthread_t thread;
  int running;
  int overlap;    /* evaluate on the job thread, beside the next epoch */
  int64_t bg_max; /* most chunks the job thread takes (tests; default all) */
  int bg_eval;    /* the current job evaluates in the background */
  int unwritten;  /* snap/cur are evaluated, not yet written */
  int bg_wrote;   /* the job thread got through the pass and wrote it */
  /* the snapshot being evaluated: weights and batchnorm's running
   * statistics at the end of the epoch, and its inference context */
  td_net *snap;
  td_net_infer *infer;
  td__rec_epoch cur;
  /* what the job thread writes: snap/cur, or in overlap mode the previous
   * epoch moved into wsnap/wr (NULL: nothing) */
  td_net *wsnap;
  td__rec_epoch wr;
  td_net *w_net;
  td__rec_epoch *w_ep;
  /* the pass in chunks of TD_NET_INFER_CHUNK rows over the three splits,
   * claimed by whichever thread comes first: each chunk's bytes do not
   * depend on who runs it */
  atomic_llong next_chunk, chunks_done;
  int64_t n_chunks, chunks0[4]; /* chunks0[k]: first chunk of split k */
  int n_slots;                  /* inference buffers: job thread + pool */
  double *slot_cpu;             /* CPU seconds per slot, this job */
  atomic_llong bg_cpu_ns;       /* job thread's evaluating CPU, all jobs */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int write_done; /* the job thread's write phase is over */
  int ready;      /* mu and cv initialised */
  /* fixed context */
  td__split train, test, ood; /* ood.n == 0: not recorded */
  int n_classes, repr_dim;
  const char *run_dir;
  int save_model;
  td__split_eval ev_train, ev_test, ev_ood;
  float **xbuf; /* per slot: a chunk of byte rows converted (NULL: none) */
  /* results */
  int rc;
  td_err err;
  double busy_seconds;     /* job thread */
  double eval_seconds;     /* wall time the trainer spent on the pass */
  double eval_cpu_seconds; /* CPU time of the pass, wherever it ran */
  /* continual learning: the tasks (NULL: none) */
  const td__continual *cl;
  /* what is written (docs/storage.md): representations as float16, and
   * only the rows rec_idx[0..n_rec) of the training split (NULL: all) */
  int repr_f16;
  int32_t *rec_idx; /* owned */
  int64_t n_rec;
  /* --select: the samples every epoch trains on (ascending; NULL: none) */
  const int32_t *sel;
  int64_t n_sel;
  const char *optimizer;
  /* while a child run's epoch 0 is written: the parent's epoch directory
   * whose arrays it links (td__recorder_start_linked) */
  const char *link_from;
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
/* Records the tasks' trained-on sets with each epoch (n: the training
 * split's size). TD_OK or TD_ENOMEM (err set). */
TD_NODISCARD int td__recorder_tasks(td__recorder *r, const td__continual *cl,
                                    int64_t n, td_err *err);
/* Finishes and writes what is pending, then frees everything td__recorder_init
 * made. */
void td__recorder_free(td__recorder *r);

/* Records epoch `epoch` of net: finishes the previous epoch's pass (the
 * trainer's threads take the chunks the job thread has not), snapshots net,
 * opt and rng, and hands the epoch to the job thread. In overlap mode (where
 * the trainer leaves a core idle, td_threads() below the CPUs;
 * TD_RECORD_OVERLAP=0|1 forces the choice) the job thread writes the
 * previous epoch if it is waiting, then evaluates this one on one thread
 * beside the next epoch's training and writes it if it gets through the
 * pass; the trainer finishes whatever is left when the next epoch ends.
 * Otherwise, and for the `last` epoch, the trainer evaluates the snapshot at
 * once on every core and the job thread only writes it. The arrays are the
 * same bytes either way, and an epoch is committed only once written. TD_OK,
 * or an error in r->err. */
TD_NODISCARD int td__recorder_start(td__recorder *r, const td_net *net,
                                    td_optim *opt, const td_rng *rng, int epoch,
                                    double seconds, double lr, double inflight,
                                    int last);
/* A child run's epoch 0 from its parent's recording instead of a pass:
 * the same weights (net, loaded from the parent's checkpoint of epoch
 * directory ep of run `parent`) on the same samples and labels give the
 * same arrays, so the parent's train_repr, train_logits, train_loss,
 * test_repr and test_logits are linked (td_epoch_link_array) and
 * epoch.json's statistics computed from the logits; the checkpoint, the
 * head and the trainer state are written as td__recorder_start writes
 * them. Written at once (nothing overlaps it). *linked = 0 (nothing done)
 * when the arrays would differ: another label or test set, a subset or
 * ood recording, a representation dtype or shape the parent did not
 * record. TD_OK, or an error in r->err. */
TD_NODISCARD int td__recorder_start_linked(td__recorder *r, const td_net *net,
                                           td_optim *opt, const td_rng *rng,
                                           double lr, const char *parent,
                                           const char *ep, int *linked);
/* CPU seconds used by the process so far (every thread). */
double td__cpu_now(void);
/* Finishes the pending pass and writes every evaluated epoch; returns the
 * status (error in r->err). */
int td__recorder_wait(td__recorder *r);
/* CPU seconds the job thread has spent evaluating so far (the trainer
 * subtracts them from its own process CPU time). */
double td__recorder_bg_cpu(td__recorder *r);

/* Evaluates split s of net with the inference context (NULL: the plain
 * td_net_predict): representations and logits, per-sample losses, mean
 * loss and accuracies. TD_OK or TD_ENOMEM. */
TD_NODISCARD int td__record_eval(const td_net *net, td_net_infer *infer,
                                 const td__split *s, int C, td__split_eval *ev);

#endif
