/* Class-incremental training: which samples each epoch trains on.
 *
 * Task t trains on the samples whose (training) label is a class of task t.
 * With a replay buffer of N samples, every epoch of task t > 0 also trains
 * on N samples of the earlier tasks' classes, shuffled into the same batch
 * stream. The buffer is class-balanced: N is shared out evenly over the
 * earlier classes (a class with fewer samples than its share gives the rest
 * to the others), and each class contributes a prefix of its own seeded
 * random order. When a task ends, its classes join the buffer and every
 * class's share shrinks, so the buffer of task t holds only samples that
 * were in the buffer of task t-1 or in task t-1 itself, as a real memory of
 * fixed size would. */
#include "train/continual.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/alloc.h"
#include "tardis/rng.h"

/* A class number at *p (advancing it), or -1. */
static long parse_class(const char **p) {
  if (**p < '0' || **p > '9')
    return -1;
  long v = 0;
  while (**p >= '0' && **p <= '9' && v < 1000000)
    v = v * 10 + (*(*p)++ - '0');
  return v;
}

int td__tasks_parse(const char *spec, int n_classes, int *task_of_class,
                    int *n_tasks, td_err *err) {
  for (int c = 0; c < n_classes; c++)
    task_of_class[c] = -1;
  *n_tasks = 0;
  const char *p = spec;
  int t = 0;
  for (;;) {
    long lo = parse_class(&p), hi = lo;
    if (lo >= 0 && *p == '-') {
      p++;
      hi = parse_class(&p);
    }
    if (lo < 0 || hi < 0 || (*p && *p != ',' && *p != '+'))
      return td_err_set(err, TD_EARG,
                        "--tasks '%s': expected tasks such as 0-4,5-9 or "
                        "0+3,1+2 (classes, ranges a-b, '+' within a task, "
                        "',' between tasks) at \"%s\"",
                        spec, p);
    if (hi < lo || hi >= n_classes)
      return td_err_set(err, TD_EARG,
                        "--tasks '%s': %ld-%ld is not a range of classes in "
                        "[0, %d)",
                        spec, lo, hi, n_classes);
    for (long c = lo; c <= hi; c++) {
      if (task_of_class[c] >= 0)
        return td_err_set(err, TD_EARG,
                          "--tasks '%s': class %ld is in task %d and again "
                          "in task %d",
                          spec, c, task_of_class[c], t);
      task_of_class[c] = t;
    }
    if (*p == '+') {
      p++;
      continue;
    }
    if (++t > TD__MAX_TASKS)
      return td_err_set(err, TD_EARG, "--tasks '%s': at most %d tasks", spec,
                        TD__MAX_TASKS);
    if (!*p++)
      break;
  }
  *n_tasks = t;
  return TD_OK;
}

/* Groups the training indices by class, each class in a seeded random
 * order (counting sort, then a shuffle per class). */
static int group_by_class(td__continual *c, uint64_t seed) {
  int C = c->n_classes;
  c->by_class = td_malloc((size_t)(c->n ? c->n : 1) * sizeof *c->by_class);
  c->class_start = td_calloc((size_t)C + 1, sizeof *c->class_start);
  c->quota = td_malloc((size_t)C * sizeof *c->quota);
  if (!c->by_class || !c->class_start || !c->quota)
    return TD_ENOMEM;
  for (int64_t i = 0; i < c->n; i++)
    c->class_start[c->labels[i] + 1]++;
  for (int k = 0; k < C; k++)
    c->class_start[k + 1] += c->class_start[k];
  int64_t *fill = td_malloc((size_t)C * sizeof *fill);
  if (!fill)
    return TD_ENOMEM;
  memcpy(fill, c->class_start, (size_t)C * sizeof *fill);
  for (int64_t i = 0; i < c->n; i++)
    c->by_class[fill[c->labels[i]]++] = (int32_t)i;
  td_free(fill);
  td_rng rng;
  td_rng_seed(&rng, seed ^ 0x7265706c6179ULL); /* "replay" */
  for (int k = 0; k < C; k++)
    td_rng_shuffle_i32(&rng, c->by_class + c->class_start[k],
                       c->class_start[k + 1] - c->class_start[k]);
  return TD_OK;
}

int td__continual_init(td__continual *c, const char *spec, int epochs_per_task,
                       int64_t replay, const int32_t *labels, int64_t n,
                       int n_classes, uint64_t seed, td_err *err) {
  memset(c, 0, sizeof *c);
  c->n_classes = n_classes;
  c->epochs_per_task = epochs_per_task;
  c->replay = replay;
  c->labels = labels;
  c->n = n;
  c->task = -1;
  c->task_of_class = td_malloc((size_t)n_classes * sizeof *c->task_of_class);
  c->trained = td_malloc((size_t)n * sizeof *c->trained);
  if (!c->task_of_class || !c->trained || group_by_class(c, seed) != TD_OK) {
    td__continual_free(c);
    return td_err_set(err, TD_ENOMEM, "out of memory preparing the tasks");
  }
  int rc = td__tasks_parse(spec, n_classes, c->task_of_class, &c->n_tasks, err);
  if (rc)
    td__continual_free(c);
  return rc;
}

void td__continual_free(td__continual *c) {
  td_free(c->task_of_class);
  td_free(c->trained);
  td_free(c->by_class);
  td_free(c->class_start);
  td_free(c->quota);
  memset(c, 0, sizeof *c);
}

int td__continual_task_of_epoch(const td__continual *c, int epoch) {
  int t = (epoch - 1) / c->epochs_per_task;
  return t < c->n_tasks ? t : c->n_tasks - 1;
}

/* Shares `budget` out over the classes of tasks before `task`: as evenly as
 * the class sizes allow, leftovers going to the lowest classes. */
static void replay_quota(const td__continual *c, int task, int64_t budget,
                         int64_t *quota) {
  int C = c->n_classes, active = 0;
  for (int k = 0; k < C; k++) {
    quota[k] = 0;
    int tk = c->task_of_class[k];
    active += tk >= 0 && tk < task && c->class_start[k + 1] > c->class_start[k];
  }
  while (budget > 0 && active > 0) {
    int64_t share = budget / active;
    for (int k = 0; k < C && budget > 0; k++) {
      int tk = c->task_of_class[k];
      int64_t size = c->class_start[k + 1] - c->class_start[k];
      if (tk < 0 || tk >= task || quota[k] == size)
        continue;
      int64_t give = share ? share : 1;
      if (give > size - quota[k])
        give = size - quota[k];
      quota[k] += give;
      budget -= give;
      active -= quota[k] == size;
    }
  }
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

void td__continual_select(td__continual *c, int task) {
  int64_t m = 0, *q = c->quota;
  c->task = task;
  for (int64_t i = 0; i < c->n; i++)
    if (c->task_of_class[c->labels[i]] == task)
      c->trained[m++] = (int32_t)i;
  c->n_replay = 0;
  if (c->replay > 0) {
    replay_quota(c, task, c->replay, q);
    for (int k = 0; k < c->n_classes; k++)
      for (int64_t j = 0; j < q[k]; j++)
        c->trained[m + c->n_replay++] = c->by_class[c->class_start[k] + j];
  }
  c->n_trained = m + c->n_replay;
  qsort(c->trained, (size_t)c->n_trained, sizeof *c->trained, cmp_i32);
}

void td__continual_task_acc(const td__continual *c, const float *logits,
                            const int32_t *labels, int64_t n, double *acc) {
  int C = c->n_classes;
  int64_t hits[TD__MAX_TASKS] = {0}, count[TD__MAX_TASKS] = {0};
  for (int64_t i = 0; i < n; i++) {
    int t = c->task_of_class[labels[i]];
    if (t < 0)
      continue;
    const float *z = logits + (size_t)i * C;
    int best = 0;
    for (int k = 1; k < C; k++)
      if (z[k] > z[best])
        best = k;
    count[t]++;
    hits[t] += best == labels[i];
  }
  for (int t = 0; t < c->n_tasks; t++)
    acc[t] = count[t] ? (double)hits[t] / (double)count[t] : (double)NAN;
}
