/* bench_repair — MODE's repair against its controls (DESIGN §5,
 * docs/repair.md). For each scenario it trains a buggy model with a pool,
 * then from the same checkpoint: MODE, uniform random pool samples and
 * label-matched random ones (same budget, seed and schedule), and full
 * retraining from scratch on the trained-on samples plus the whole pool.
 * Prints test accuracy before and after each, per-label changes, wall and
 * CPU time (getrusage: the machine is shared, wall time is noisy).
 *
 *   bench_repair [--limit N] [--budget B] [--rounds R] [--epochs E]
 *                [--epochs-per-round K] [--lr-decay F] [--replay N]
 *                [--seeds S] [--threads T] [--no-reuse 0|1]
 *                [--scenario starved|overfit|all] [--model mlp|cnn]
 *                [--dir DIR]
 *
 * Scenarios: "starved": labels 0 and 6 train on 5 % of their share, half
 * the training set is the pool; "overfit": 15 % of the training set trains
 * (the rest is the pool) for many epochs, so train accuracy runs away from
 * test accuracy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/parallel.h"
#include "tardis/repair.h"
#include "tardis/run.h"
#include "tardis/train.h"

#define C 10

typedef struct cfg {
  int64_t limit, budget;
  int64_t replay;
  double lr_decay;
  int rounds, epochs, epr, seeds, threads;
  int no_reuse; /* td_repair_opts.no_reuse: the repairs decode and
                   evaluate afresh, as before the reuse of the parent's */
  const char *scenario, *model, *dir;
} cfg;

typedef struct outcome {
  double test, acc[C], wall, cpu;
} outcome;

static double cpu_now(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
         (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

static void die(const char *what, const td_err *err) {
  fprintf(stderr, "bench_repair: %s: %s\n", what, err->msg);
  exit(1);
}

/* Per-label test accuracy of a run's last epoch, from its test logits. */
static void measure(const char *dir, outcome *o) {
  td_run *run;
  td_err err = {0};
  if (td_run_open(dir, &run, &err))
    die(dir, &err);
  int ep = td_run_epoch_number(run, td_run_n_epochs(run) - 1);
  td_array z, y;
  if (td_run_load_f32(run, ep, "test_logits", &z, &err) ||
      td_run_load(run, -1, "test_labels", &y, &err))
    die(dir, &err);
  int64_t n = y.shape[0], ok[C] = {0}, cnt[C] = {0}, all = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *r = (const float *)z.data + i * C;
    int b = 0, l = ((const int32_t *)y.data)[i];
    for (int c = 1; c < C; c++)
      b = r[c] > r[b] ? c : b;
    cnt[l]++;
    ok[l] += b == l;
    all += b == l;
  }
  o->test = (double)all / (double)n;
  for (int c = 0; c < C; c++)
    o->acc[c] = cnt[c] ? (double)ok[c] / (double)cnt[c] : (double)NAN;
  td_array_close(&z);
  td_array_close(&y);
  td_run_close(run);
}

static void base_opts(const cfg *g, td_train_opts *t, const char *out,
                      uint64_t seed) {
  td_train_opts_default(t);
  t->out = out;
  t->force = 1;
  t->model = g->model;
  t->limit = g->limit;
  t->seed = seed;
  t->threads = g->threads;
}

/* The buggy parent of a scenario. */
static void train_buggy(const cfg *g, const char *scen, const char *out,
                        uint64_t seed, outcome *o) {
  td_train_opts t;
  base_opts(g, &t, out, seed);
  if (!strcmp(scen, "starved")) {
    t.pool = 0.5;
    t.class_fraction = "0:0.05,6:0.05";
    t.epochs = g->epochs;
  } else {
    t.pool = 0.85;
    t.epochs = g->epochs * 3;
    t.optimizer = "adam";
    t.lr = 0.001;
  }
  td_train_result r;
  td_err err = {0};
  double w0 = td_now(), c0 = cpu_now();
  if (td_train(&t, &r, &err))
    die("training the buggy model", &err);
  o->wall = td_now() - w0;
  o->cpu = cpu_now() - c0;
  measure(out, o);
}

/* Full retraining from scratch on the parent's trained-on samples plus the
 * whole pool, with the parent's options. */
static void retrain(const cfg *g, const char *scen, const char *parent,
                    const char *out, uint64_t seed, outcome *o) {
  td_run *run;
  td_err err = {0};
  if (td_run_open(parent, &run, &err))
    die(parent, &err);
  int ep = td_run_epoch_number(run, td_run_n_epochs(run) - 1);
  td_array tr, pool;
  if (td_run_load(run, ep, "trained", &tr, &err) ||
      td_run_load(run, -1, "pool", &pool, &err))
    die(parent, &err);
  int64_t n = tr.shape[0] + pool.shape[0];
  int32_t *sel = malloc((size_t)n * sizeof *sel);
  memcpy(sel, tr.data, (size_t)tr.shape[0] * 4);
  memcpy(sel + tr.shape[0], pool.data, (size_t)pool.shape[0] * 4);
  td_train_opts t;
  base_opts(g, &t, out, seed);
  t.select_idx = sel;
  t.n_select_idx = n;
  t.epochs = !strcmp(scen, "starved") ? g->epochs : g->epochs * 3;
  if (strcmp(scen, "starved")) {
    t.optimizer = "adam";
    t.lr = 0.001;
  }
  td_train_result r;
  double w0 = td_now(), c0 = cpu_now();
  if (td_train(&t, &r, &err))
    die("full retraining", &err);
  o->wall = td_now() - w0;
  o->cpu = cpu_now() - c0;
  measure(out, o);
  free(sel);
  td_array_close(&tr);
  td_array_close(&pool);
  td_run_close(run);
}

static void repair(const cfg *g, const char *parent, const char *out,
                   td_select_strategy s, uint64_t seed, outcome *o) {
  td_repair_opts r;
  td_repair_opts_default(&r);
  r.run = parent;
  r.out = out;
  r.force = 1;
  r.budget = g->budget;
  r.rounds = g->rounds;
  r.epochs_per_round = g->epr;
  r.lr_decay = g->lr_decay;
  r.replay = g->replay;
  r.strategy = s;
  r.seed = seed;
  r.threads = g->threads;
  r.no_reuse = g->no_reuse;
  r.quiet = 1;
  td_repair_result res;
  td_err err = {0};
  double w0 = td_now(), c0 = cpu_now();
  if (td_repair(&r, &res, &err))
    die("repair", &err);
  o->wall = td_now() - w0;
  o->cpu = cpu_now() - c0;
  td_repair_result_free(&res);
  measure(out, o);
}

enum { BUGGY, MODE, RANDOM, LABEL_RANDOM, RETRAIN, N_METHODS };
static const char *const method_names[] = {
    "buggy model", "MODE", "uniform random", "label-random", "full retraining"};

/* The machine's load (1-minute average): CPU times under load are longer
 * than on an idle machine, and the docs state it with the figures. */
static double load_now(void) {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : (double)NAN;
}

static void report(const char *scen, outcome res[][N_METHODS], int seeds) {
  printf("\n== %s: mean of %d seed(s), load average now %.1f ==\n", scen, seeds,
         load_now());
  printf("%-16s %8s %9s %9s %9s %8s\n", "method", "test", "min/max", "worst",
         "wall s", "CPU s");
  for (int m = 0; m < N_METHODS; m++) {
    double t = 0, w = 0, c = 0, lo = 1, hi = 0, worst = 0;
    for (int s = 0; s < seeds; s++) {
      t += res[s][m].test;
      w += res[s][m].wall;
      c += res[s][m].cpu;
      lo = fmin(lo, res[s][m].test);
      hi = fmax(hi, res[s][m].test);
      for (int l = 0; m && l < C; l++) /* largest per-label loss */
        worst = fmin(worst, res[s][m].acc[l] - res[s][BUGGY].acc[l]);
    }
    printf("%-16s %8.4f %4.2f/%4.2f %+9.4f %9.1f %8.1f\n", method_names[m],
           t / seeds, lo, hi, worst, w / seeds, c / seeds);
  }
  printf("per-label test accuracy (mean):\nlabel");
  for (int m = 0; m < N_METHODS; m++)
    printf(" %15.15s", method_names[m]);
  printf("\n");
  for (int l = 0; l < C; l++) {
    printf("%5d", l);
    for (int m = 0; m < N_METHODS; m++) {
      double a = 0;
      for (int s = 0; s < seeds; s++)
        a += res[s][m].acc[l];
      printf(" %15.4f", a / seeds);
    }
    printf("\n");
  }
  double dm = 0, dr = 0, dl = 0, tr = 0, tm = 0;
  for (int s = 0; s < seeds; s++) {
    dm += res[s][MODE].test - res[s][RANDOM].test;
    dl += res[s][MODE].test - res[s][LABEL_RANDOM].test;
    dr += res[s][RETRAIN].test - res[s][MODE].test;
    tm += res[s][MODE].cpu;
    tr += res[s][RETRAIN].cpu;
  }
  double sd = 0; /* spread of MODE - uniform random over the seeds */
  for (int s = 0; s < seeds; s++) {
    double e = res[s][MODE].test - res[s][RANDOM].test - dm / seeds;
    sd += e * e;
  }
  printf("MODE - uniform random: %+.2f points, sd over seeds %.2f (target "
         ">= +3)\n",
         100 * dm / seeds, seeds > 1 ? 100 * sqrt(sd / (seeds - 1)) : 0.0);
  printf("MODE - label-random:   %+.2f points\n", 100 * dl / seeds);
  printf("retraining - MODE:     %+.2f points\n", 100 * dr / seeds);
  printf("MODE CPU time / full retraining CPU time: %.3f (target <= 0.2)\n",
         tm / tr);
}

static void scenario(const cfg *g, const char *scen) {
  outcome(*res)[N_METHODS] = calloc((size_t)g->seeds, sizeof *res);
  char p[4096], o[4200];
  for (int s = 0; s < g->seeds; s++) {
    uint64_t seed = (uint64_t)s + 1;
    snprintf(p, sizeof p, "%s/%s_%s_%d", g->dir, scen, g->model, s);
    train_buggy(g, scen, p, seed, &res[s][BUGGY]);
    static const td_select_strategy st[] = {TD_SELECT_MODE, TD_SELECT_RANDOM,
                                            TD_SELECT_LABEL_RANDOM};
    for (int k = 0; k < 3; k++) {
      snprintf(o, sizeof o, "%s_%s", p, td_select_name(st[k]));
      repair(g, p, o, st[k], seed, &res[s][MODE + k]);
    }
    snprintf(o, sizeof o, "%s_retrain", p);
    retrain(g, scen, p, o, seed, &res[s][RETRAIN]);
    fprintf(stderr,
            "%s seed %d: buggy %.4f mode %.4f random %.4f "
            "label-random %.4f retrain %.4f\n",
            scen, s + 1, res[s][BUGGY].test, res[s][MODE].test,
            res[s][RANDOM].test, res[s][LABEL_RANDOM].test,
            res[s][RETRAIN].test);
  }
  report(scen, res, g->seeds);
  free(res);
}

int main(int argc, char **argv) {
  cfg g = {.limit = 20000,
           .budget = 2000,
           .replay = 0,
           .lr_decay = 0.5,
           .rounds = 1,
           .epochs = 12,
           .epr = 4,
           .seeds = 1,
           .threads = 1,
           .scenario = "all",
           .model = "mlp",
           .dir = "/tmp/bench_repair"};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--limit"))
      g.limit = atoll(v);
    else if (!strcmp(k, "--budget"))
      g.budget = atoll(v);
    else if (!strcmp(k, "--rounds"))
      g.rounds = atoi(v);
    else if (!strcmp(k, "--lr-decay"))
      g.lr_decay = atof(v);
    else if (!strcmp(k, "--replay"))
      g.replay = atoll(v);
    else if (!strcmp(k, "--epochs"))
      g.epochs = atoi(v);
    else if (!strcmp(k, "--epochs-per-round"))
      g.epr = atoi(v);
    else if (!strcmp(k, "--seeds"))
      g.seeds = atoi(v);
    else if (!strcmp(k, "--threads"))
      g.threads = atoi(v);
    else if (!strcmp(k, "--scenario"))
      g.scenario = v;
    else if (!strcmp(k, "--model"))
      g.model = v;
    else if (!strcmp(k, "--dir"))
      g.dir = v;
    else if (!strcmp(k, "--no-reuse"))
      g.no_reuse = atoi(v);
    else {
      fprintf(stderr, "bench_repair: unknown option %s\n", k);
      return 2;
    }
  }
  if (g.limit < 1000 || g.budget < 1 || g.rounds < 1 || g.epochs < 1 ||
      g.epr < 1 || g.seeds < 1 || !(g.lr_decay > 0 && g.lr_decay <= 1) ||
      g.replay < 0) {
    fprintf(stderr, "bench_repair: bad arguments\n");
    return 2;
  }
  td_err err = {0};
  if (td_mkdirs(g.dir, &err))
    die(g.dir, &err);
  printf("bench_repair: %s, limit %lld, budget %lld, %d rounds x %d "
         "epochs, lr decay %g, replay %lld (0: all), parent %d epochs, %d "
         "thread(s)\n",
         g.model, (long long)g.limit, (long long)g.budget, g.rounds, g.epr,
         g.lr_decay, (long long)g.replay, g.epochs, g.threads);
  if (!strcmp(g.scenario, "starved") || !strcmp(g.scenario, "all"))
    scenario(&g, "starved");
  if (!strcmp(g.scenario, "overfit") || !strcmp(g.scenario, "all"))
    scenario(&g, "overfit");
  return 0;
}
