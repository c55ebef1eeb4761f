/* Continual learning in the run format: the optional "tasks" and
 * "epochs_per_task" of run.json, and the per-task fields of epoch.json
 * ("task", "task_acc"). The tasks are sets of classes trained in sequence;
 * they partition a subset of the classes (no class in two tasks). */
#include <stdio.h>
#include <string.h>

#include "run/run_internal.h"

/* Checks one task's class list, marking its classes as task t. */
static int parse_task(const json_t *v, const char *path, int t, int n_classes,
                      int *task_of_class, td_err *err) {
  if (!json_is_array(v) || json_array_size(v) == 0)
    return td_err_set(
        err, TD_EFORMAT,
        "%s: \"tasks\"[%d] should be a non-empty array of class "
        "indices, found %s",
        path, t, json_is_array(v) ? "an empty array" : td__json_type_str(v));
  size_t i;
  json_t *c;
  json_array_foreach(v, i, c) {
    if (!json_is_integer(c))
      return td_err_set(err, TD_EFORMAT,
                        "%s: \"tasks\"[%d][%zu] should be a class index, "
                        "found %s",
                        path, t, i, td__json_type_str(c));
    json_int_t k = json_integer_value(c);
    if (k < 0 || k >= n_classes)
      return td_err_set(err, TD_EVALUE,
                        "%s: \"tasks\"[%d][%zu] is %lld, expected a class in "
                        "[0, %d)",
                        path, t, i, (long long)k, n_classes);
    if (task_of_class[k] >= 0)
      return td_err_set(err, TD_EVALUE,
                        "%s: class %lld is in task %d and again in task %d "
                        "(tasks must not share classes)",
                        path, (long long)k, task_of_class[k], t);
    task_of_class[k] = t;
  }
  return TD_OK;
}

int td__tasks_from_json(const json_t *root, const char *path, td_run_meta *m,
                        td_err *err) {
  json_t *v = json_object_get(root, "tasks");
  json_t *ept = json_object_get(root, "epochs_per_task");
  m->n_tasks = 0;
  m->task_of_class = NULL;
  m->epochs_per_task = 0;
  if (!v || json_is_null(v)) {
    if (ept && !json_is_null(ept))
      return td_err_set(err, TD_EFORMAT,
                        "%s: \"epochs_per_task\" is given but \"tasks\" is "
                        "not",
                        path);
    return TD_OK;
  }
  if (!json_is_array(v) || json_array_size(v) == 0)
    return td_err_set(
        err, TD_EFORMAT,
        "%s: field \"tasks\" should be a non-empty array of "
        "class lists such as [[0,1],[2,3]], found %s",
        path, json_is_array(v) ? "an empty array" : td__json_type_str(v));
  if (json_array_size(v) > (size_t)m->n_classes)
    return td_err_set(err, TD_EVALUE,
                      "%s: %zu tasks but only %d classes (each task needs a "
                      "class of its own)",
                      path, json_array_size(v), m->n_classes);
  if (ept && !json_is_null(ept) &&
      (!json_is_integer(ept) || json_integer_value(ept) < 1 ||
       json_integer_value(ept) > INT32_MAX))
    return td_err_set(err, TD_EFORMAT,
                      "%s: field \"epochs_per_task\" should be a positive "
                      "integer, found %s",
                      path, td__json_type_str(ept));
  int *toc = td_malloc((size_t)m->n_classes * sizeof *toc);
  if (!toc)
    return td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
  for (int c = 0; c < m->n_classes; c++)
    toc[c] = -1;
  int rc = TD_OK;
  for (size_t t = 0; !rc && t < json_array_size(v); t++)
    rc = parse_task(json_array_get(v, t), path, (int)t, m->n_classes, toc, err);
  if (rc) {
    td_free(toc);
    return rc;
  }
  m->n_tasks = (int)json_array_size(v);
  m->task_of_class = toc;
  m->epochs_per_task = json_is_integer(ept) ? (int)json_integer_value(ept) : 0;
  return TD_OK;
}

int td__tasks_check(const td_run_meta *m, td_err *err) {
  if (m->n_tasks == 0)
    return m->epochs_per_task == 0
               ? TD_OK
               : td_err_set(err, TD_EARG,
                            "run metadata: epochs_per_task without tasks");
  if (m->n_tasks < 0 || m->n_tasks > m->n_classes || !m->task_of_class ||
      m->epochs_per_task < 0)
    return td_err_set(err, TD_EARG,
                      "run metadata: %d tasks for %d classes is not valid",
                      m->n_tasks, m->n_classes);
  for (int t = 0; t < m->n_tasks; t++) {
    int used = 0;
    for (int c = 0; c < m->n_classes; c++)
      used |= m->task_of_class[c] == t;
    if (!used)
      return td_err_set(err, TD_EARG, "run metadata: task %d has no class", t);
  }
  for (int c = 0; c < m->n_classes; c++)
    if (m->task_of_class[c] < -1 || m->task_of_class[c] >= m->n_tasks)
      return td_err_set(err, TD_EARG,
                        "run metadata: class %d is in task %d, expected -1 "
                        "or a task in [0, %d)",
                        c, m->task_of_class[c], m->n_tasks);
  return TD_OK;
}

/* Adds "tasks" (class lists, classes ascending) and, when known,
 * "epochs_per_task" to o. Nothing when the run has no tasks. */
int td__tasks_to_json(const td_run_meta *m, json_t *o) {
  if (m->n_tasks == 0)
    return 0;
  json_t *tasks = json_array();
  int bad = !tasks;
  for (int t = 0; !bad && t < m->n_tasks; t++) {
    json_t *list = json_array();
    bad = json_array_append_new(tasks, list) != 0;
    for (int c = 0; !bad && c < m->n_classes; c++)
      if (m->task_of_class[c] == t)
        bad = json_array_append_new(list, json_integer(c)) != 0;
  }
  bad |= json_object_set_new(o, "tasks", tasks) != 0;
  if (!bad && m->epochs_per_task > 0)
    bad = json_object_set_new(o, "epochs_per_task",
                              json_integer(m->epochs_per_task)) != 0;
  return bad ? -1 : 0;
}

/* "task_acc": {"train": [..], "test": [..]}, each list optional with one
 * number (or null) per task. */
static int check_task_acc(const json_t *acc, const td_run_meta *m,
                          const char *path, td_err *err) {
  if (!json_is_object(acc))
    return td_err_set(err, TD_EFORMAT,
                      "%s: field \"task_acc\" should be an object such as "
                      "{\"train\": [..], \"test\": [..]}, found %s",
                      path, td__json_type_str(acc));
  static const char *const splits[] = {"train", "test"};
  for (int s = 0; s < 2; s++) {
    json_t *l = json_object_get(acc, splits[s]);
    if (!l)
      continue;
    if (!json_is_array(l) || json_array_size(l) != (size_t)m->n_tasks)
      return td_err_set(err, TD_EFORMAT,
                        "%s: \"task_acc\".\"%s\" should be an array of %d "
                        "numbers (one per task), found %s",
                        path, splits[s], m->n_tasks,
                        json_is_array(l) ? "another length"
                                         : td__json_type_str(l));
    for (size_t i = 0; i < json_array_size(l); i++) {
      json_t *x = json_array_get(l, i);
      if (!json_is_number(x) && !json_is_null(x))
        return td_err_set(err, TD_EFORMAT,
                          "%s: \"task_acc\".\"%s\"[%zu] should be a number, "
                          "found %s",
                          path, splits[s], i, td__json_type_str(x));
    }
  }
  return TD_OK;
}

int td__epoch_json_check_tasks(const json_t *j, const td_run_meta *m,
                               const char *path, td_err *err) {
  json_t *task = json_object_get(j, "task");
  json_t *acc = json_object_get(j, "task_acc");
  if ((task || acc) && m->n_tasks == 0)
    return td_err_set(err, TD_EFORMAT,
                      "%s: has \"%s\" but run.json defines no \"tasks\"", path,
                      task ? "task" : "task_acc");
  if (task && !json_is_null(task) &&
      (!json_is_integer(task) || json_integer_value(task) < 0 ||
       json_integer_value(task) >= m->n_tasks))
    return td_err_set(err, TD_EVALUE,
                      "%s: field \"task\" should be a task index in [0, %d), "
                      "found %s",
                      path, m->n_tasks,
                      json_is_integer(task) ? "one outside"
                                            : td__json_type_str(task));
  return acc ? check_task_acc(acc, m, path, err) : TD_OK;
}
