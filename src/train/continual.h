/* Class-incremental training for the subject trainer: the tasks (sets of
 * classes) trained in sequence, the samples each epoch trains on, and the
 * experience-replay buffer. Internal to src/train. */
#ifndef TD_TRAIN_CONTINUAL_H
#define TD_TRAIN_CONTINUAL_H

#include <stdint.h>

#include "tardis/error.h"

#define TD__MAX_TASKS 256

typedef struct td__continual {
  int n_tasks, n_classes, epochs_per_task;
  int *task_of_class;    /* [n_classes]: the task of each class, or -1 */
  int64_t replay;        /* replay buffer size N (0: none) */
  const int32_t *labels; /* training labels [n] (borrowed) */
  int64_t n;
  int task; /* the task the current set belongs to; -1 before the first */
  int32_t *trained; /* [n]: the current epoch's samples, ascending */
  int64_t n_trained, n_replay;
  /* Replay: the training indices grouped by class (class_start[c] ..
   * class_start[c+1]), each class in a seeded random order; the buffer of
   * task t takes a prefix of every earlier class. */
  int32_t *by_class;
  int64_t *class_start; /* [n_classes + 1] */
  int64_t *quota;       /* [n_classes]: scratch, the buffer's share */
} td__continual;

/* Parses a task list: tasks separated by ',', the classes of a task by '+',
 * each item a class "3" or an inclusive range "0-4". So "0-4,5-9" is two
 * tasks of five classes, "0+3,1+2" two tasks of two. Fills task_of_class
 * [n_classes] (-1 for classes in no task) and *n_tasks; refuses classes out
 * of range, empty tasks, a class in two tasks and more than TD__MAX_TASKS
 * tasks. */
TD_NODISCARD int td__tasks_parse(const char *spec, int n_classes,
                                 int *task_of_class, int *n_tasks, td_err *err);

/* Sets up tasks from `spec` over labels[n]; the replay buffer's choice is
 * seeded by `seed`. Free with td__continual_free. */
TD_NODISCARD int td__continual_init(td__continual *c, const char *spec,
                                    int epochs_per_task, int64_t replay,
                                    const int32_t *labels, int64_t n,
                                    int n_classes, uint64_t seed, td_err *err);
void td__continual_free(td__continual *c);

/* The task of epoch `epoch` (1-based). */
int td__continual_task_of_epoch(const td__continual *c, int epoch);

/* Makes c->trained the sample set of `task`: its classes' samples plus the
 * replay buffer drawn from the earlier tasks' classes. */
void td__continual_select(td__continual *c, int task);

/* acc[t] = accuracy (argmax of logits[n, C] against labels) over the samples
 * whose label is in task t; NaN for a task without samples. */
void td__continual_task_acc(const td__continual *c, const float *logits,
                            const int32_t *labels, int64_t n, double *acc);

#endif
