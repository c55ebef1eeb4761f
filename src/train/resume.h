/* Continuing training (internal to src/train): --resume continues a run from
 * its last checkpoint, --from fine-tunes a checkpoint into a child run; both
 * restore what a run recorded of itself (run.json's "train", an epoch's
 * model/ and trainer/). --select reads the samples to train on. */
#ifndef TD_TRAIN_RESUME_H
#define TD_TRAIN_RESUME_H

#include <jansson.h>

#include "tardis/fsutil.h"
#include "tardis/nn.h"
#include "tardis/rng.h"
#include "tardis/train.h"

typedef struct td__cont {
  json_t *root;                /* run.json of the run continued from (the
                                  options' strings point into it) */
  int epoch;                   /* its epoch the net comes from */
  char run_dir[TD_PATH_MAX];   /* absolute path of that run */
  char model_dir[TD_PATH_MAX]; /* its epochs/NNNN/model; "" for a new net */
  char state_dir[TD_PATH_MAX]; /* resume: its epochs/NNNN/trainer */
  char labels[TD_PATH_MAX];    /* --from a run trained with --labels: its
                                  train_labels.npy, the child's labels */
} td__cont;

/* --resume: o = the run's own options (epochs from `in` when > 0), and c
 * the last epoch that has a checkpoint and trainer state. Stale temporary
 * epochs of a killed trainer are removed. */
TD_NODISCARD int td__resume_prepare(const td_train_opts *in, td_train_opts *o,
                                    td__cont *c, td_err *err);
/* --from: o = in with the parent's data, labels and model options. */
TD_NODISCARD int td__from_prepare(const td_train_opts *in, td_train_opts *o,
                                  td__cont *c, td_err *err);
void td__cont_free(td__cont *c);

/* The trainer state of an epoch, RUN/epochs/NNNN/trainer/ (written into
 * the epoch before it is committed): state.json (epoch, the shuffling
 * stream's xoshiro state, optimizer name and step count) and optim_<i>.npy
 * (the optimizer's buffers, float32 [n_params]). bufs[i] NULL: none. */
TD_NODISCARD int td__state_save(const char *epoch_dir, int epoch,
                                const td_rng *rng, const char *optimizer,
                                int64_t steps, float *const bufs[2], size_t n,
                                td_err *err);
TD_NODISCARD int td__state_load(const char *dir, const char *optimizer,
                                td_rng *rng, td_optim *opt, size_t n,
                                td_err *err);

/* The selection file: int32 or int64 [K], K >= 1, distinct indices in
 * [0, n); *idx (malloc'd, ascending) and *k. */
TD_NODISCARD int td__select_load(const char *path, int64_t n, int32_t **idx,
                                 int64_t *k, td_err *err);

#endif
