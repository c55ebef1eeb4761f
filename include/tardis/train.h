/* tardis/train.h — the built-in subject trainer: trains a classifier on a
 * dataset and records every epoch as a run (run format v1).
 *
 *     td_train_opts o;
 *     td_train_opts_default(&o);
 *     o.out = "runs/fmnist"; o.epochs = 30; o.noise = 0.1;
 *     td_train_result r;
 *     if (td_train(&o, &r, &err)) fprintf(stderr, "%s\n", err.msg);
 *
 * Recording: after each epoch the parameters are snapshotted, the
 * representations, logits and losses of every sample are computed from the
 * snapshot on all cores, and a writer thread stores them (with the head and
 * the checkpoint) while the next epoch trains.
 * Each epoch directory appears atomically when complete.
 */
#ifndef TARDIS_TRAIN_H
#define TARDIS_TRAIN_H

#include <stdint.h>

#include "tardis/dataset.h"
#include "tardis/error.h"
#include "tardis/nn.h"

typedef struct td_train_progress {
  int epoch, epochs;    /* current epoch (1-based) and total */
  int64_t step, steps;  /* batch within the epoch */
  double loss;          /* running mean loss of this epoch */
  double samples_per_s; /* training throughput so far in this epoch */
  int epoch_done;       /* 1 once per finished epoch (metrics below set) */
  double train_acc, test_acc, epoch_seconds;
} td_train_progress;

typedef struct td_train_opts {
  const char *dataset;   /* "fashion-mnist" */
  const char *data_dir;  /* NULL: default location */
  const char *data;      /* a dataset directory of .npy arrays instead
                            (td_dataset_load_dir, docs/engine.md), or NULL */
  const char *model;     /* "mlp" or "cnn" (docs/engine.md) */
  const char *hidden;    /* mlp: the hidden widths, "512,512,128"; the last
                            is the representation (NULL: "256,128") */
  int batchnorm;         /* cnn: batch normalisation after each conv */
  const char *augment;   /* NULL, "shift", "flip" or "shift,flip": random
                            shifts of up to 2 px and horizontal flips of the
                            training images, drawn from the seed */
  const char *optimizer; /* "sgd" (momentum) or "adam" */
  int epochs, batch;
  double lr, momentum;
  /* Failure scenarios (docs/alerts.md): the learning rate of epoch
   * lr_spike_epoch (0: none) is multiplied by lr_spike_factor, and every
   * epoch's by lr_grow^(epoch − 1) (1: constant). */
  int lr_spike_epoch;
  double lr_spike_factor, lr_grow;
  double noise; /* fraction of training labels to corrupt */
  td_noise_type noise_type;
  int64_t limit; /* use the first `limit` training samples (0: all); the test
                    set is cut to limit/6 */
  uint64_t seed;
  int threads;     /* 0: all CPUs */
  const char *out; /* run directory; NULL: train without recording */
  int force;       /* replace an existing run */
  int save_model;  /* write the full checkpoint into each epoch's model/ */
  /* Recording (docs/storage.md): repr_f16 stores the representations (train,
   * test, ood) as float16; record_subset K > 0 records only K training
   * samples, drawn from the seed and the same in every epoch (a subset run:
   * RUN/subset.npy). Every sample is still evaluated for epoch.json. */
  int repr_f16;
  int64_t record_subset;
  /* record_last_only: record only the last epoch of this call (and a child
   * run's epoch 0), not every one: tardis repair records its rounds' ends. */
  int record_last_only;
  const char *ood; /* NULL, or "inverted": also record intensity-inverted
                      test images (ood_inputs.npy; ood_repr/ood_logits per
                      epoch) to test detectors of unusual inputs */
  const char *name;
  /* Continual learning (class-incremental): NULL, or the tasks, e.g.
   * "0-4,5-9" (classes a-b, '+' within a task, ',' between tasks), trained
   * in sequence for epochs_per_task epochs each; epochs must then be 0
   * (derived) or n_tasks * epochs_per_task. Each epoch trains only on the
   * current task's samples plus, with replay > 0, a class-balanced buffer of
   * `replay` samples of the earlier tasks. Every epoch still records all
   * samples, and which ones it trained on (trained.npy). */
  const char *tasks;
  int epochs_per_task;
  int64_t replay;
  /* Training on chosen samples: NULL, or an .npy of distinct training
   * indices (int32 or int64 [K]); each epoch trains on them only, records
   * all samples, and which ones it trained on (trained.npy). */
  const char *select;
  /* The same from memory (select NULL): n_select_idx distinct indices, kept
   * in the run as RUN/select.npy, which run.json's "select" then names (so
   * --resume finds them); with --resume they replace the run's selection
   * from the next epoch on (tardis repair's rounds). */
  const int32_t *select_idx;
  int64_t n_select_idx;
  /* With select_idx: select_times[i] (in [1, 1000]) is how many times
   * select_idx[i] is trained on per epoch (NULL: once each). Kept as
   * RUN/select_times.npy, aligned with select.npy, so --resume repeats
   * them; trained.npy still lists each sample once. tardis repair weights
   * its picks against the replayed training set with it. */
  const int32_t *select_times;
  /* Corrections (docs/suspects.md): labels = NULL, or an .npy of the
   * training labels to train on (int32, int64 or uint8 [N], values in
   * [0, C); e.g. tardis suspects --export's train_labels_fixed.npy) instead
   * of the dataset's (no --noise with it; a child run of --from takes them
   * instead of its parent's). The run records them as its train_labels.npy,
   * so every reader uses them. exclude = NULL, or an .npy of distinct
   * training indices to leave out (int32/int64; e.g. the export's
   * accepted.npy): the run trains on all the others, kept as an in-memory
   * selection (RUN/select.npy). Not with select, tasks or pool. */
  const char *labels;
  const char *exclude;
  /* A pool held out of training (docs/run-format.md#pools): per label, a
   * fraction `pool` of the training samples is kept out (RUN/pool.npy), and
   * class_fraction ("L:F,...", NULL: none) trains on only a fraction F of
   * label L's other samples (starved labels); drawn from the seed. */
  double pool;
  const char *class_fraction;
  /* Continuing: resume = a run written by td_train, continued from its last
   * checkpoint up to `epochs` (0: the run's own) with the options, optimiser
   * state and random streams it was trained with (the options above other
   * than epochs, threads and progress are ignored). from = "RUN" or
   * "RUN:EPOCH" (default its last): fine-tunes that checkpoint into a new
   * run at `out` whose run.json names it as parent; data, labels and model
   * come from the parent, the optimisation from these options. */
  const char *resume;
  const char *from;
  /* A continued run reuses what its source run stored instead of computing
   * it again (docs/repair.md#time): the inputs (train_inputs.npy and
   * test_inputs.npy are mapped, not decoded, and a child run's copies are
   * hard links), and a child run's epoch 0, which links the parent's
   * recorded arrays of that epoch (same weights, samples and labels).
   * no_reuse = 1 decodes and evaluates everything afresh (the same bytes:
   * tests compare both ways). */
  int no_reuse;
  /* Called for each epoch that is recorded, after its training and just
   * before its snapshot is taken (so the recorded arrays, head and
   * checkpoint show what it leaves in net): may change net's parameters
   * (tardis repair's guard adds offsets to the last bias). Not for a child
   * run's epoch 0. A non-zero return (with err set) ends training with that
   * error. NULL: none. */
  int (*before_record)(void *ctx, td_net *net, int epoch, td_err *err);
  void *before_record_ctx;
  void (*progress)(const td_train_progress *p, void *ctx);
  void *progress_ctx;
} td_train_opts;

typedef struct td_train_result {
  int epochs; /* trained by this call (a resumed run: the new ones) */
  int last_epoch;
  double train_seconds;  /* wall time of the training loops (no recording) */
  double total_seconds;  /* wall time including waiting for the recorder */
  double record_seconds; /* time the writer thread spent (overlapped) */
  double record_eval_seconds;     /* forward passes for recording (wall; they
                                     overlap with training where the trainer
                                     leaves cores idle, docs/engine.md) */
  double train_cpu_seconds;       /* process CPU time of the training loops */
  double record_eval_cpu_seconds; /* CPU time of the forward passes, on
                                     whichever thread they ran */
  double record_blocked_seconds;  /* wall time training waited for the
                                     recorder after each epoch but the last
                                     (whose recording nothing overlaps) */
  double final_train_acc, final_test_acc, final_test_loss;
  int64_t n_flipped;
} td_train_result;

void td_train_opts_default(td_train_opts *o);
TD_NODISCARD int td_train(const td_train_opts *o, td_train_result *res,
                          td_err *err);

#endif
