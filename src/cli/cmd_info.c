/* tardis info RUN: what a run holds, and whether it is valid. */
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "run/run_json.h"
#include "tardis/run.h"

static const char *const top_files[] = {"train_labels", "test_labels",
                                        "train_truth", "train_inputs",
                                        "test_inputs"};
static const char *const epoch_files[] = {
    "test_repr", "test_logits", "train_loss", "subset", "trained", "model"};
static const char *const metrics[] = {"train_loss", "train_acc", "test_loss",
                                      "test_acc", "seconds"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void progress_cb(int i, int n, void *ctx) {
  (void)ctx;
  if (i < n)
    fprintf(stderr, "\rvalidating epoch %d/%d", i + 1, n);
  else
    fprintf(stderr, "\r%40s\r", "");
  fflush(stderr);
}

/* epoch.json of an epoch, or NULL when unreadable (validation reports it). */
static json_t *epoch_json(const td_run *run, int epoch) {
  json_t *j = NULL;
  if (td__run_load_epoch_json(run, epoch, &j, NULL) != TD_OK)
    return NULL;
  return j;
}

static json_t *summary_json(const td_run *run) {
  const td_run_meta *m = td_run_get_meta(run);
  json_t *o = td__run_meta_json(m), *files = json_object();
  json_t *epochs = json_array();
  for (size_t i = 0; i < COUNT(top_files); i++)
    json_object_set_new(files, top_files[i],
                        json_boolean(td_run_has(run, -1, top_files[i])));
  for (int i = 0; i < td_run_n_epochs(run); i++) {
    int ep = td_run_epoch_number(run, i);
    json_t *e = json_object(), *ef = json_object(), *j = epoch_json(run, ep);
    json_object_set_new(e, "epoch", json_integer(ep));
    for (size_t k = 0; k < COUNT(metrics); k++) {
      json_t *v = j ? json_object_get(j, metrics[k]) : NULL;
      json_object_set_new(e, metrics[k], v ? json_incref(v) : json_null());
    }
    for (size_t k = 0; k < COUNT(epoch_files); k++)
      json_object_set_new(ef, epoch_files[k],
                          json_boolean(td_run_has(run, ep, epoch_files[k])));
    json_object_set_new(e, "files", ef);
    json_array_append_new(epochs, e);
    json_decref(j);
  }
  if (td_run_subset(run)) { /* as /api/run: n_train is the K recorded */
    json_object_set_new(o, "subset", json_true());
    json_object_set_new(o, "n_train_all",
                        json_integer(td_run_n_train_all(run)));
  }
  json_object_set_new(o, "dir", json_string(td_run_dir(run)));
  json_object_set_new(o, "files", files);
  json_object_set_new(o, "epochs", epochs);
  return o;
}

static void print_metric(const json_t *j, const char *key, int width,
                         int prec) {
  const json_t *v = j ? json_object_get(j, key) : NULL;
  if (v && json_is_number(v))
    printf(" %*.*f", width, prec, json_number_value(v));
  else
    printf(" %*s", width, "-");
}

static void print_epochs(const td_run *run) {
  int n = td_run_n_epochs(run);
  if (n == 0) {
    printf("epochs      none recorded yet\n");
    return;
  }
  int first = td_run_epoch_number(run, 0),
      last = td_run_epoch_number(run, n - 1);
  printf("epochs      %d (%d to %d%s)\n", n, first, last,
         last - first + 1 != n ? ", with gaps" : "");
  printf("per epoch  ");
  for (size_t k = 0; k < COUNT(epoch_files); k++) {
    int have = 0;
    for (int i = 0; i < n; i++)
      have += td_run_has(run, td_run_epoch_number(run, i), epoch_files[k]);
    printf(" %s %d/%d%s", epoch_files[k], have, n,
           k + 1 < COUNT(epoch_files) ? "," : "\n");
  }
  printf("\n%6s %11s %10s %10s %9s %8s\n", "epoch", "train_loss", "train_acc",
         "test_loss", "test_acc", "seconds");
  for (int i = 0; i < n; i++) {
    int ep = td_run_epoch_number(run, i);
    json_t *j = epoch_json(run, ep);
    printf("%6d", ep);
    print_metric(j, "train_loss", 11, 4);
    print_metric(j, "train_acc", 10, 4);
    print_metric(j, "test_loss", 10, 4);
    print_metric(j, "test_acc", 9, 4);
    print_metric(j, "seconds", 8, 2);
    printf("\n");
    json_decref(j);
  }
}

static void print_summary(const td_run *run) {
  const td_run_meta *m = td_run_get_meta(run);
  printf("run         %s\n", m->name);
  printf("directory   %s\n", td_run_dir(run));
  printf("producer    %s\n", m->producer);
  printf("created     %s\n", m->created);
  printf("classes     %d:", m->n_classes);
  for (int i = 0; i < m->n_classes; i++)
    printf(" %s%s", m->classes[i], i + 1 < m->n_classes ? "," : "");
  if (td_run_subset(run))
    printf("\ntrain       %lld samples, %lld recorded (subset.npy)\n",
           (long long)td_run_n_train_all(run), (long long)m->n_train);
  else
    printf("\ntrain       %lld samples\n", (long long)m->n_train);
  printf("test        %lld samples\n", (long long)m->n_test);
  printf("repr_dim    %d\n", m->repr_dim);
  if (m->has_input_shape)
    printf("input       %d×%d×%d\n", m->input_shape[0], m->input_shape[1],
           m->input_shape[2]);
  else
    printf("input       -\n");
  if (m->parent[0])
    printf("parent      %s, epoch %d (fine-tuned from it)\n", m->parent,
           m->parent_epoch);
  printf("files      ");
  for (size_t i = 0; i < COUNT(top_files); i++)
    if (td_run_has(run, -1, top_files[i]))
      printf(" %s.npy", top_files[i]);
  printf("\n");
  print_epochs(run);
}

int td_cmd_info(int argc, char **argv) {
  int as_json = 0, quick = 0;
  const char *dir = NULL;
  td_opt opts[] = {
      TD_OPT_FLAG("json", &as_json, "print a machine-readable summary instead"),
      TD_OPT_FLAG("quick", &quick,
                  "skip the full validation (only run.json, labels and the\n"
                  "epoch list are checked)"),
      TD_OPT_END};
  const td_arg_pos pos[] = {{"RUN", &dir}, {0}};
  td_args_cmd cmd = {
      .name = "info",
      .usage = "info [--json] [--quick] RUN",
      .about = "Summarises the run directory RUN (metadata, files, per-epoch "
               "metrics)\nand checks every file of every epoch against run "
               "format v1.",
      .after = "Exit status: 0 valid, 1 invalid or unreadable, 2 bad usage.",
      .opts = opts,
      .pos = pos};
  int status;
  if (!td_args_parse(&cmd, argc, argv, &status))
    return status;
  td_run *run;
  td_err err;
  if (td_run_open(dir, &run, &err) != TD_OK) {
    fprintf(stderr, "tardis: error: %s\n", err.msg);
    return 1;
  }
  json_t *summary = NULL;
  if (as_json) {
    summary = summary_json(run);
  } else {
    print_summary(run);
    fflush(stdout);
  }
  int rc = TD_OK;
  if (!quick)
    rc = td_run_validate(run, isatty(2) ? progress_cb : NULL, NULL, &err);
  if (as_json) {
    json_object_set_new(summary, "valid",
                        quick ? json_null() : json_boolean(rc == TD_OK));
    json_object_set_new(summary, "error",
                        rc ? json_string(err.msg) : json_null());
    json_dumpf(summary, stdout, JSON_INDENT(2));
    printf("\n");
    json_decref(summary);
  } else if (quick) {
    printf("\nfull validation skipped (--quick)\n");
  } else if (rc == TD_OK) {
    printf("\nrun is valid\n");
  }
  if (rc)
    fprintf(stderr, "tardis: error: %s\n", err.msg);
  td_run_close(run);
  return rc ? 1 : 0;
}
