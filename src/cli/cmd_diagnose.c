/* tardis diagnose: per-label bugs of a recorded model (docs/repair.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "tardis/repair.h"
#include "tardis/run.h"

static void print_pct(double x) {
  if (isnan(x))
    printf("      -");
  else
    printf(" %6.1f", 100 * x);
}

static void print_text(const td_diagnosis *d, const td_run_meta *m,
                       const char *path) {
  printf("epoch %d: train acc %.4f (trained-on samples), test acc %.4f\n\n",
         d->epoch, d->train_acc, d->test_acc);
  printf("label  name          n_train  train%%  test%%  prec%%  verdict       "
         "confused with\n");
  for (int l = 0; l < d->n_classes; l++) {
    const td_label_diag *L = &d->labels[l];
    printf("%5d  %-12.12s %8lld ", l, m->classes[l], (long long)L->n_train);
    print_pct(L->train_acc);
    print_pct(L->test_acc);
    print_pct(L->precision);
    printf("  %-12s  %s\n", td_verdict_name(L->verdict),
           L->confused >= 0 ? m->classes[L->confused] : "-");
  }
  printf("\nlayer probes (linear softmax on frozen features%s):\n",
         d->has_model ? "" : "; the head at the representation");
  for (int k = 0; k < d->n_probes; k++) {
    const td_probe_diag *p = &d->probes[k];
    printf("  layer %2d  dim %5d%s  train %.4f  test %.4f%s\n", p->layer,
           p->dim, p->pooled ? " (pooled)" : "         ", p->train_acc,
           p->test_acc, p->layer == d->layer ? "  <- heat maps" : "");
  }
  printf("\nheat maps written to %s\n", path);
}

int td_cmd_diagnose(int argc, char **argv) {
  const char *dir = NULL;
  td_diagnose_opts o;
  td_diagnose_opts_default(&o);
  int json = 0;
  td_opt opts[] = {
      TD_OPT_INT("epoch", &o.epoch, 0, TD_ARG_INF, "E",
                 "the epoch to diagnose (default the last)"),
      TD_OPT_DOUBLE("theta", &o.theta, 0, 1, TD_ARG_GT, "T",
                    "underfitting: train accuracy below T (default 0.92)"),
      TD_OPT_DOUBLE("gamma", &o.gamma, 0, 1, TD_ARG_LT, "G",
                    "overfitting: train - test accuracy above G\n"
                    "(default 0.10)"),
      TD_OPT_INT("layer", &o.layer, -1, TD_ARG_INF, "L",
                 "heat maps at this layer of the checkpoint (-1: the\n"
                 "representation); default: probe every hidden layer\n"
                 "and take the one where the probes saturate"),
      TD_OPT_FLAG("json", &json, "print the diagnosis as JSON"),
      TD_OPT_END};
  const td_arg_pos pos[] = {{"RUN", &dir}, {0}};
  td_args_cmd cmd = {
      .name = "diagnose",
      .usage = "diagnose RUN [--epoch E] [--json] [--theta T] [--gamma G]",
      .about = "Per-label accuracy, precision, recall, confusion and verdict "
               "(underfitting, overfitting, healthy); linear probes on every "
               "hidden layer; heat maps and differential heat maps under "
               "RUN/diagnosis/ (docs/repair.md).",
      .opts = opts,
      .pos = pos};
  int status;
  if (!td_args_parse(&cmd, argc, argv, &status))
    return status;
  td_err err = {0};
  td_diagnosis *d = NULL;
  td_run *run = NULL;
  char path[4096];
  int rc = td_run_open(dir, &run, &err);
  if (!rc)
    rc = td_diagnose(dir, &o, &d, &err);
  const td_run_meta *m = rc ? NULL : td_run_get_meta(run);
  if (!rc)
    rc = td_diagnosis_write(dir, d, (const char *const *)m->classes, path,
                            sizeof path, &err);
  if (rc) {
    fprintf(stderr, "tardis diagnose: error: %s\n",
            err.msg[0] ? err.msg : td_strerror(rc));
    td_diagnosis_free(d);
    td_run_close(run);
    return 1;
  }
  if (json) {
    char *s = td_diagnosis_json(d, (const char *const *)m->classes);
    printf("%s\n", s ? s : "null");
    free(s);
  } else {
    print_text(d, m, path);
  }
  td_diagnosis_free(d);
  td_run_close(run);
  return 0;
}
