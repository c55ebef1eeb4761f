/* Training labels and samples given by files (internal to src/train):
 * --labels replaces the training labels (a corrected label file, e.g.
 * `tardis suspects --export`'s train_labels_fixed.npy), --exclude trains on
 * every sample but the listed ones (its accepted.npy). docs/engine.md. */
#ifndef TD_TRAIN_LABELS_H
#define TD_TRAIN_LABELS_H

#include <stdint.h>

#include "tardis/dataset.h"
#include "tardis/error.h"
#include "tardis/train.h"
#include "train/resume.h"

/* The labels of a run trained with o->labels into labels[tr->n]: the file,
 * or on --resume the run's own train_labels.npy (which holds the file's
 * labels, so a moved file does not matter), read and checked by
 * td__label_file_read (data/label_file.h). *truth: the clean labels to
 * record beside them (train_truth.npy) — the train_truth.npy of the run
 * continued (--resume: its own; --from: the parent's) when it has one,
 * else the built-in dataset's labels (Fashion-MNIST's are the clean ones);
 * NULL for a dataset directory without one, or when the labels equal it.
 * *owned is what to free; *n_diff how many labels differ from *truth. */
TD_NODISCARD int td__labels_setup(const td_train_opts *o, const td__cont *c,
                                  const td_dataset *tr, int32_t *labels,
                                  const int32_t **truth, int32_t **owned,
                                  int64_t *n_diff, td_err *err);

/* --exclude: the training indices in [0, n) not in the file (int32/int64
 * [K], distinct), ascending, into *idx (malloc'd) and *k >= 1. */
TD_NODISCARD int td__exclude_load(const char *path, int64_t n, int32_t **idx,
                                  int64_t *k, td_err *err);

#endif
