/* Internal pieces shared by the run reader, writer and head (src/run/). */
#ifndef TD_RUN_INTERNAL_H
#define TD_RUN_INTERNAL_H

#include <limits.h>
#include <stdarg.h>

#include "run/run_json.h"
#include "tardis/alloc.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"

#define TD__RUN_PRODUCER "tardis 0.1.0"

struct td_run {
  char *dir;        /* as given, without trailing '/' */
  td_run_meta meta; /* owns meta.classes; n_train is K in a subset run */
  int64_t n_all;    /* run.json's n_train */
  td_array subset;  /* RUN/subset.npy, int32 [K]; data NULL in ordinary runs */
  td_array labels;  /* train labels, int32 [meta.n_train] (gathered) */
  int *epochs;      /* ascending epoch numbers */
  int n_epochs;
};

struct td_epoch_writer {
  char run_dir[TD_PATH_MAX];
  char tmp[TD_PATH_MAX];    /* RUN/epochs/.tmp-NNNN-<pid> */
  char final_[TD_PATH_MAX]; /* RUN/epochs/NNNN */
  int epoch;
  td_run_meta meta; /* from run.json, owns classes */
  td_array subset;  /* RUN/subset.npy (int32) of a subset run, else data NULL */
};

/* Directory name of an epoch: "0007", wider past 9999. */
void td__epoch_name(int epoch, char *buf, size_t len);

/* A plain file name: not empty, no '/', not starting with '.' (so neither
 * "." nor ".." nor hidden files). */
int td__plain_name(const char *name);

/* JSON type in words, for messages ("string", "integer", ...). */
const char *td__json_type_str(const json_t *v);

/* run.json: read + check into *m (m->classes owned by m), or write. */
TD_NODISCARD int td__meta_read(const char *run_dir, td_run_meta *m,
                               td_err *err);
TD_NODISCARD int td__meta_from_json(const json_t *root, const char *path,
                                    td_run_meta *m, td_err *err);
TD_NODISCARD json_t *td__meta_to_json(const td_run_meta *m);
TD_NODISCARD int td__meta_check(const td_run_meta *m,
                                td_err *err); /* for writers */
void td__meta_free(td_run_meta *m);

/* Known arrays of a run and their rules. */
typedef struct td__array_spec td__array_spec;
/* The spec of `base` (name without ".npy") at top level (in_epoch == 0) or in
 * an epoch (in_epoch == 1); NULL when it is not a known array. */
const td__array_spec *td__spec_find(const char *base, int in_epoch);
/* Checks dtype, shape and values of `a` (loaded from `path`) against the
 * spec and meta (m->n_train is run.json's N). n_rec is the number of
 * training samples an epoch records: N, or K in a subset run. */
TD_NODISCARD int td__spec_check(const td__array_spec *s, const td_run_meta *m,
                                int64_t n_rec, const char *path,
                                const td_array *a, td_err *err);
/* Whether the spec's array has one row per recorded training sample
 * (train_repr, train_logits, train_loss). */
int td__spec_is_recorded(const td__array_spec *s);
/* Whether it is a top-level array with one row per training sample (N rows
 * even in a subset run: train_labels, train_truth, train_inputs). */
int td__spec_is_per_train(const td__array_spec *s);
/* Loads RUN/subset.npy as int32 into *out (data NULL when the run has none),
 * checked against m. */
TD_NODISCARD int td__subset_load(const char *run_dir, const td_run_meta *m,
                                 td_array *out, td_err *err);
/* Checks an epoch's subset.npy at `path` against the run's (run_subset:
 * data NULL for an ordinary run, where the file must be absent). Messages
 * name `shown` (the writer's final path for its temporary file). */
TD_NODISCARD int td__subset_check_epoch(const char *path, const char *shown,
                                        const char *run_dir,
                                        const td_run_meta *m,
                                        const td_array *run_subset,
                                        td_err *err);
/* out = the rows subset[0..K) of a (any dtype and trailing shape), owned. */
TD_NODISCARD int td__gather_rows(const td_array *a, const td_array *subset,
                                 td_array *out, td_err *err);
/* Loads the .npy at path and checks it against spec s (see td__spec_check);
 * index and label arrays stored as int64 come back as int32. */
TD_NODISCARD int td__load_checked(const td_run_meta *m, int64_t n_rec,
                                  const td__array_spec *s, const char *path,
                                  td_array *out, td_err *err);
/* Whether the spec's array holds integer labels / indices (int32 or int64). */
int td__spec_is_int(const td__array_spec *s);
/* Converts an int64 array into a new owned int32 array (values must fit). */
TD_NODISCARD int td__to_i32(const td_array *src, td_array *dst, td_err *err);

/* Reads and checks an epoch.json file for epoch number `epoch`. *out may be
 * NULL when only the check is wanted. */
TD_NODISCARD int td__epoch_json_read(const char *path, int epoch, json_t **out,
                                     td_err *err);

/* Continual learning (src/run/tasks.c). Reads the optional "tasks" and
 * "epochs_per_task" of run.json into m (m->n_classes must be set). */
TD_NODISCARD int td__tasks_from_json(const json_t *root, const char *path,
                                     td_run_meta *m, td_err *err);
/* Checks the tasks of metadata given to a writer. */
TD_NODISCARD int td__tasks_check(const td_run_meta *m, td_err *err);
/* Adds "tasks" and "epochs_per_task" to o when the run has tasks; -1 when
 * out of memory. */
int td__tasks_to_json(const td_run_meta *m, json_t *o);
/* Checks epoch.json's "task" (a task index) and "task_acc" (per-task
 * accuracies) against the run's tasks. */
TD_NODISCARD int td__epoch_json_check_tasks(const json_t *j,
                                            const td_run_meta *m,
                                            const char *path, td_err *err);

/* Makes sure an error message from a lower layer names `path`. */
void td__err_name_path(td_err *err, const char *path);

#endif
