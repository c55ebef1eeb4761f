/* tardis repair: MODE's repair of a buggy model (docs/repair.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "tardis/repair.h"

/* The worst per-label held-out loss against the parent, in points, and its
 * label. */
static double worst_loss(const double *acc, const double *parent, int C,
                         int *label) {
  double w = HUGE_VAL;
  *label = -1;
  for (int l = 0; l < C; l++)
    if (!isnan(parent[l]) && 100 * (acc[l] - parent[l]) < w) {
      w = 100 * (acc[l] - parent[l]);
      *label = l;
    }
  return *label < 0 ? 0 : w;
}

/* One line per guarded round (docs/repair.md#the-no-new-bug-guard). */
static void print_guard(const td_repair_result *r, const td_repair_opts *o) {
  for (int i = 0; i < r->n_rounds; i++) {
    const td_repair_round *rd = &r->rounds[i];
    if (!rd->guarded)
      continue;
    int lb, la;
    double b = worst_loss(rd->guard.acc_before, rd->guard.acc_parent,
                          r->n_classes, &lb);
    double a = worst_loss(rd->guard.acc_after, rd->guard.acc_parent,
                          r->n_classes, &la);
    printf("round %d guard: offsets fitted on %lld held-out pool samples; "
           "worst held-out loss %+.1f -> %+.1f points",
           i + 1, (long long)rd->guard.n_held, b, a);
    if (rd->guard.met)
      printf(" (every label within %.1f)\n", 100 * o->max_label_loss);
    else
      printf("; NOT MET: label %d stays %.1f points below the parent, "
             "past %.1f (the best offsets found are applied)\n",
             la, -a, 100 * o->max_label_loss);
  }
}

static void print_text(const td_repair_result *r, const td_repair_opts *o) {
  printf("%s: %d rounds, %lld pool samples added (%s), %.1f s (%.1f s CPU)\n",
         o->out, r->n_rounds, (long long)r->n_selected,
         td_select_name(o->strategy), r->seconds, r->cpu_seconds);
  printf("test accuracy %.4f -> %.4f%s\n", r->test_before, r->test_after,
         r->stopped_clean ? " (no label buggy any more)" : "");
  printf("label  before  after   change  added\n");
  for (int l = 0; l < r->n_classes; l++) {
    int64_t added = 0;
    for (int i = 0; i < r->n_rounds; i++)
      added += r->rounds[i].per_label[l];
    printf("%5d  %6.1f  %6.1f  %+6.1f  %5lld\n", l, 100 * r->acc_before[l],
           100 * r->acc_after[l], 100 * (r->acc_after[l] - r->acc_before[l]),
           (long long)added);
  }
  print_guard(r, o);
}

int td_cmd_repair(int argc, char **argv) {
  td_repair_opts o;
  td_repair_opts_default(&o);
  static const char *const strategies[] = {"mode", "random", "label-random",
                                           NULL};
  static const int strategy_values[] = {TD_SELECT_MODE, TD_SELECT_RANDOM,
                                        TD_SELECT_LABEL_RANDOM};
  int strategy = TD_SELECT_MODE, json = 0;
  td_opt opts[] = {
      {.name = "out",
       .short_name = 'o',
       .kind = TD_ARG_STRING,
       .dst = &o.out,
       .flags = TD_ARG_REQUIRED,
       .meta = "FIXED",
       .help = "the repaired run to write (a child run of RUN)"},
      TD_OPT_INT("epoch", &o.epoch, 0, TD_ARG_INF, "E",
                 "the epoch of RUN to repair (default the last)"),
      TD_OPT_INT64("budget", &o.budget, 1, TD_ARG_INF, "N",
                   "pool samples to add in all (default 2000)"),
      TD_OPT_INT("rounds", &o.rounds, 1, TD_ARG_INF, "R",
                 "at most R rounds of select, fine-tune, diagnose\n"
                 "(default 1)"),
      TD_OPT_INT("epochs-per-round", &o.epochs_per_round, 1, TD_ARG_INF, "K",
                 "fine-tuning passes per round (default 4)"),
      TD_OPT_INT64("replay", &o.replay, 0, TD_ARG_INF, "N",
                   "the parent's trained-on samples replayed with\n"
                   "the picks each round (0: all; default all)"),
      TD_OPT_INT("pick-repeat", &o.pick_repeat, 1, 1000, "R",
                 "each pick is trained on R times per fine-tuning\n"
                 "epoch, the replayed samples once (default 1)"),
      TD_OPT_FLAG("balance", &o.balance,
                  "repeat the fine-tuning samples so that every\n"
                  "label counts about as much as the largest"),
      TD_OPT_DOUBLE("lr-decay", &o.lr_decay, 0, 1, TD_ARG_GT, "F",
                    "the rate's factor after each fine-tuning epoch\n"
                    "(default 0.5; 1: constant)"),
      TD_OPT_DOUBLE("lr", &o.lr, 0, TD_ARG_INF, TD_ARG_GT, "X",
                    "fine-tuning rate (default: RUN's own times\n"
                    "--lr-scale)"),
      TD_OPT_DOUBLE("lr-scale", &o.lr_scale, 0, TD_ARG_INF, TD_ARG_GT, "F",
                    "without --lr: fine-tune at RUN's rate times F\n"
                    "(default 2)"),
      TD_OPT_CHOICE("strategy", &strategy, strategies, strategy_values,
                    "mode (default): by the differential heat maps;\n"
                    "random: uniform from the pool; label-random:\n"
                    "MODE's count per label, random within each"),
      TD_OPT_DOUBLE("other-share", &o.other_share, 0, 1, TD_ARG_LT, "F",
                    "share of each round drawn at random from the\n"
                    "buggy labels' look-alikes (default 0.2)"),
      TD_OPT_DOUBLE("max-label-loss", &o.max_label_loss, 0, 1, TD_ARG_LT, "D",
                    "guard: after each round, offsets on the output\n"
                    "bias fitted on pool samples reserved at random\n"
                    "before selection (30 % per label, 50..500) so\n"
                    "that no label's accuracy there falls more than D\n"
                    "below RUN's (default off)"),
      TD_OPT_DOUBLE("theta", &o.diag.theta, 0, 1, TD_ARG_GT, "T",
                    "underfitting below this train accuracy (0.92)"),
      TD_OPT_DOUBLE("gamma", &o.diag.gamma, 0, 1, TD_ARG_LT, "G",
                    "overfitting above this train - test gap (0.10)"),
      TD_OPT_SEED("seed", &o.seed, "default 1"),
      TD_OPT_INT("threads", &o.threads, 0, TD_ARG_INF, "T",
                 "default: all CPUs"),
      TD_OPT_FLAG("select-only", &o.select_only,
                  "only choose: write --budget pool indices to --out\n"
                  "(an .npy) for your own fine-tuning loop; works on\n"
                  "runs recorded from PyTorch"),
      TD_OPT_FLAG("force", &o.force, "replace an existing FIXED"),
      TD_OPT_FLAG("json", &json, "print the rounds as JSON"),
      TD_OPT_FLAG("quiet", &o.quiet, "no progress output"),
      TD_OPT_END};
  const td_arg_pos pos[] = {{"RUN", &o.run}, {0}};
  td_args_cmd cmd = {
      .name = "repair",
      .usage = "repair RUN --out FIXED [--budget N] [--rounds R] "
               "[--strategy mode|random|label-random] [--seed S] [--json]",
      .about = "Repairs a buggy model (MODE): diagnoses it, adds pool "
               "samples chosen by the differential heat maps of its buggy "
               "labels, fine-tunes, and diagnoses again until no label is "
               "buggy or the budget is spent (docs/repair.md).",
      .opts = opts,
      .pos = pos};
  int status;
  if (!td_args_parse(&cmd, argc, argv, &status))
    return status;
  o.strategy = (td_select_strategy)strategy;
  if (json)
    o.quiet = 1;
  td_repair_result r;
  td_err err = {0};
  int rc = td_repair(&o, &r, &err);
  if (rc) {
    fprintf(stderr, "tardis repair: error: %s\n",
            err.msg[0] ? err.msg : td_strerror(rc));
    td_repair_result_free(&r);
    return 1;
  }
  if (o.select_only) {
    printf("%lld pool samples chosen (%s) written to %s; per label:",
           (long long)r.n_selected, td_select_name(o.strategy), o.out);
    for (int l = 0; l < r.n_classes; l++)
      printf(" %lld", (long long)r.rounds[0].per_label[l]);
    printf("\n");
  } else if (r.n_rounds == 0)
    printf("nothing to repair: no label of %s is buggy\n", o.run);
  else if (json) {
    char *s = td_repair_json(&r, &o);
    printf("%s\n", s ? s : "null");
    free(s);
  } else {
    print_text(&r, &o);
  }
  td_repair_result_free(&r);
  return 0;
}
