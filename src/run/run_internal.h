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
  td_run_meta meta; /* owns meta.classes */
  td_array labels;  /* train labels, int32 [n_train] */
  int *epochs;      /* ascending epoch numbers */
  int n_epochs;
};

struct td_epoch_writer {
  char run_dir[TD_PATH_MAX];
  char tmp[TD_PATH_MAX];    /* RUN/epochs/.tmp-NNNN-<pid> */
  char final_[TD_PATH_MAX]; /* RUN/epochs/NNNN */
  int epoch;
  td_run_meta meta; /* from run.json, owns classes */
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
 * spec and meta. */
TD_NODISCARD int td__spec_check(const td__array_spec *s, const td_run_meta *m,
                                const char *path, const td_array *a,
                                td_err *err);
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
