/* bench_repair — MODE's repair against its controls (DESIGN §5,
 * docs/repair.md). For each scenario it trains a buggy model with a pool,
 * then from the same checkpoint: MODE, uniform random pool samples and
 * label-matched random ones (same budget, seed and schedule), and full
 * retraining from scratch on the trained-on samples plus the whole pool.
 * Prints test accuracy before and after each, per-label changes, wall and
 * CPU time (getrusage: the machine is shared, wall time is noisy).
 *
 *   bench_repair [--limit N] [--budget B | --budgets B1,B2,...]
 *                [--rounds R] [--epochs E]
 *                [--epochs-per-round K] [--lr-decay F] [--lr X]
 *                [--lr-scale F] [--replay N]
 *                [--pick-repeat R] [--balance 0|1]
 *                [--seeds S] [--threads T] [--no-reuse 0|1]
 *                [--scenario starved|overfit|all] [--model mlp|cnn]
 *                [--dir DIR] [--reuse 0|1] [--max-label-loss D]
 *
 * Several budgets (--budgets) repair the same buggy models and compare with
 * the same full retraining (neither depends on the budget), then print the
 * budget curve. --reuse 1 takes the buggy models and retrainings an earlier
 * invocation left in DIR (same options) instead of training them again.
 * --max-label-loss D turns on repair's guard for MODE and both controls
 * (full retraining is untouched).
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
#define MAX_BUDGETS 16

typedef struct cfg {
  int64_t limit, budgets[MAX_BUDGETS];
  int n_budgets, reuse;
  int64_t replay;
  int pick_repeat, balance;
  double lr_decay, lr, lr_scale; /* lr 0: the parent's times lr_scale */
  int rounds, epochs, epr, seeds, threads;
  int no_reuse;          /* td_repair_opts.no_reuse: the repairs decode and
                            evaluate afresh, as before the reuse of the parent's */
  double max_label_loss; /* td_repair_opts.max_label_loss: < 0 off */
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

/* With --reuse 1, a run left at out by an earlier invocation with the same
 * options stands for this one: its accuracies are read back, its times are
 * not known (NAN). For trying selections on the same parents. */
static int reused(const cfg *g, const char *out, outcome *o) {
  td_run *run;
  td_err err = {0};
  if (!g->reuse || td_run_open(out, &run, &err))
    return 0;
  int n = td_run_n_epochs(run);
  td_run_close(run);
  if (n < 1)
    return 0;
  measure(out, o);
  o->wall = o->cpu = (double)NAN;
  return 1;
}

/* The buggy parent of a scenario. */
static void train_buggy(const cfg *g, const char *scen, const char *out,
                        uint64_t seed, outcome *o) {
  if (reused(g, out, o))
    return;
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
  if (reused(g, out, o))
    return;
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

static void repair(const cfg *g, int64_t budget, const char *parent,
                   const char *out, td_select_strategy s, uint64_t seed,
                   outcome *o) {
  td_repair_opts r;
  td_repair_opts_default(&r);
  r.run = parent;
  r.out = out;
  r.force = 1;
  r.budget = budget;
  r.rounds = g->rounds;
  r.epochs_per_round = g->epr;
  r.lr_decay = g->lr_decay;
  r.lr = g->lr;
  r.lr_scale = g->lr_scale;
  r.replay = g->replay;
  r.pick_repeat = g->pick_repeat;
  r.balance = g->balance;
  r.strategy = s;
  r.seed = seed;
  r.threads = g->threads;
  r.no_reuse = g->no_reuse;
  r.max_label_loss = g->max_label_loss;
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

/* One seed's outcomes at one budget (buggy and retraining repeat across
 * budgets: neither depends on it). */
typedef outcome seed_res[N_METHODS];

/* Mean, smallest and largest over the seeds of a - b (b < 0: of a alone). */
static void diff_stats(seed_res *res, int seeds, int a, int b, double *mean,
                       double *lo, double *hi) {
  *mean = 0, *lo = INFINITY, *hi = -INFINITY;
  for (int s = 0; s < seeds; s++) {
    double d = res[s][a].test - (b >= 0 ? res[s][b].test : 0);
    *mean += d / seeds;
    *lo = fmin(*lo, d);
    *hi = fmax(*hi, d);
  }
}

/* The largest per-label loss of test accuracy of method m against the
 * buggy model, over every label and seed. */
static double worst_loss(seed_res *res, int seeds, int m) {
  double worst = 0;
  for (int s = 0; s < seeds; s++)
    for (int l = 0; l < C; l++)
      worst = fmin(worst, res[s][m].acc[l] - res[s][BUGGY].acc[l]);
  return worst;
}

/* The same against min(buggy, full retraining) per label: a label whose
 * recall the bug inflated (it received the starved labels' inputs) counts
 * only as far as it falls below what retraining on everything gets. */
static double worst_loss_fair(seed_res *res, int seeds, int m) {
  double worst = 0;
  for (int s = 0; s < seeds; s++)
    for (int l = 0; l < C; l++)
      worst = fmin(worst, res[s][m].acc[l] - fmin(res[s][BUGGY].acc[l],
                                                  res[s][RETRAIN].acc[l]));
  return worst;
}

static void report(const char *scen, int64_t budget, seed_res *res, int seeds) {
  printf("\n== %s, budget %lld: mean of %d seed(s), load average now %.1f "
         "==\n",
         scen, (long long)budget, seeds, load_now());
  printf("%-16s %8s %9s %9s %9s %9s %8s\n", "method", "test", "min/max",
         "worst", "worst*", "wall s", "CPU s");
  for (int m = 0; m < N_METHODS; m++) {
    double t, lo, hi, w = 0, c = 0;
    diff_stats(res, seeds, m, -1, &t, &lo, &hi);
    for (int s = 0; s < seeds; s++)
      w += res[s][m].wall / seeds, c += res[s][m].cpu / seeds;
    printf("%-16s %8.4f %4.2f/%4.2f %+9.4f %+9.4f %9.1f %8.1f\n",
           method_names[m], t, lo, hi, m ? worst_loss(res, seeds, m) : 0.0,
           m ? worst_loss_fair(res, seeds, m) : 0.0, w, c);
  }
  printf("(worst: the largest per-label loss against the buggy model over "
         "every seed; worst*: against min(buggy, full retraining) per "
         "label)\n");
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
  double dm, dl, dr, lo, hi, tm = 0, tr = 0;
  diff_stats(res, seeds, MODE, RANDOM, &dm, &lo, &hi);
  printf("MODE - uniform random: %+.2f points (seeds %+.2f to %+.2f; target "
         ">= +3)\n",
         100 * dm, 100 * lo, 100 * hi);
  diff_stats(res, seeds, MODE, LABEL_RANDOM, &dl, &lo, &hi);
  printf("MODE - label-random:   %+.2f points (seeds %+.2f to %+.2f)\n",
         100 * dl, 100 * lo, 100 * hi);
  diff_stats(res, seeds, RETRAIN, MODE, &dr, &lo, &hi);
  printf("retraining - MODE:     %+.2f points\n", 100 * dr);
  for (int s = 0; s < seeds; s++)
    tm += res[s][MODE].cpu, tr += res[s][RETRAIN].cpu;
  printf("MODE CPU time / full retraining CPU time: %.3f (target <= 0.2)\n",
         tm / tr);
}

/* The budget curve: one row per budget, the methods' mean test accuracy
 * and MODE's differences with their spread over the seeds. */
static void report_curve(const cfg *g, const char *scen, seed_res **res) {
  printf("\n== %s: budget curve, mean of %d seed(s) ==\n", scen, g->seeds);
  printf("%7s %7s %7s %7s %7s %7s %17s %17s %7s %7s %7s %7s %7s\n", "budget",
         "buggy", "MODE", "random", "lab-rnd", "retrain", "MODE-random",
         "MODE-lab-rnd", "wMODE", "wrand", "wlabrnd", "w*MODE", "w*rand");
  for (int b = 0; b < g->n_budgets; b++) {
    double v[N_METHODS], lo, hi, dm, dml, dmh, dl, dll, dlh;
    for (int m = 0; m < N_METHODS; m++)
      diff_stats(res[b], g->seeds, m, -1, &v[m], &lo, &hi);
    diff_stats(res[b], g->seeds, MODE, RANDOM, &dm, &dml, &dmh);
    diff_stats(res[b], g->seeds, MODE, LABEL_RANDOM, &dl, &dll, &dlh);
    printf("%7lld %7.4f %7.4f %7.4f %7.4f %7.4f %+5.2f (%+.1f,%+.1f) "
           "%+5.2f (%+.1f,%+.1f) %+7.1f %+7.1f %+7.1f %+7.1f %+7.1f\n",
           (long long)g->budgets[b], v[BUGGY], v[MODE], v[RANDOM],
           v[LABEL_RANDOM], v[RETRAIN], 100 * dm, 100 * dml, 100 * dmh,
           100 * dl, 100 * dll, 100 * dlh,
           100 * worst_loss(res[b], g->seeds, MODE),
           100 * worst_loss(res[b], g->seeds, RANDOM),
           100 * worst_loss(res[b], g->seeds, LABEL_RANDOM),
           100 * worst_loss_fair(res[b], g->seeds, MODE),
           100 * worst_loss_fair(res[b], g->seeds, RANDOM));
  }
  printf("(MODE-x: points, mean (smallest, largest over the seeds); wX: the "
         "worst per-label loss in points over every seed; w*X: against "
         "min(buggy, full retraining) per label)\n");
}

/* Every seed: the buggy model and full retraining once, then at each budget
 * MODE and its two controls from the same checkpoint. */
static void scenario(const cfg *g, const char *scen) {
  seed_res **res = calloc((size_t)g->n_budgets, sizeof *res);
  for (int b = 0; b < g->n_budgets; b++)
    res[b] = calloc((size_t)g->seeds, sizeof *res[b]);
  char p[4096], o[4200];
  for (int s = 0; s < g->seeds; s++) {
    uint64_t seed = (uint64_t)s + 1;
    outcome buggy, full;
    snprintf(p, sizeof p, "%s/%s_%s_%d", g->dir, scen, g->model, s);
    train_buggy(g, scen, p, seed, &buggy);
    snprintf(o, sizeof o, "%s_retrain", p);
    retrain(g, scen, p, o, seed, &full);
    static const td_select_strategy st[] = {TD_SELECT_MODE, TD_SELECT_RANDOM,
                                            TD_SELECT_LABEL_RANDOM};
    for (int b = 0; b < g->n_budgets; b++) {
      seed_res *r = &res[b][s];
      (*r)[BUGGY] = buggy;
      (*r)[RETRAIN] = full;
      for (int k = 0; k < 3; k++) {
        snprintf(o, sizeof o, "%s_%s", p, td_select_name(st[k]));
        repair(g, g->budgets[b], p, o, st[k], seed, &(*r)[MODE + k]);
      }
      fprintf(stderr,
              "%s seed %d budget %lld: buggy %.4f mode %.4f random %.4f "
              "label-random %.4f retrain %.4f\n",
              scen, s + 1, (long long)g->budgets[b], (*r)[BUGGY].test,
              (*r)[MODE].test, (*r)[RANDOM].test, (*r)[LABEL_RANDOM].test,
              (*r)[RETRAIN].test);
    }
  }
  for (int b = 0; b < g->n_budgets; b++)
    report(scen, g->budgets[b], res[b], g->seeds);
  if (g->n_budgets > 1)
    report_curve(g, scen, res);
  for (int b = 0; b < g->n_budgets; b++)
    free(res[b]);
  free(res);
}

/* "250,500,1000" into g->budgets; 0 when malformed. */
static int parse_budgets(cfg *g, const char *v) {
  g->n_budgets = 0;
  for (const char *q = v; *q;) {
    char *end;
    long long b = strtoll(q, &end, 10);
    if (end == q || b < 1 || g->n_budgets == MAX_BUDGETS ||
        (*end && *end != ','))
      return 0;
    g->budgets[g->n_budgets++] = b;
    q = *end ? end + 1 : end;
  }
  return g->n_budgets > 0;
}

int main(int argc, char **argv) {
  cfg g = {.limit = 20000,
           .budgets = {2000},
           .n_budgets = 1,
           .replay = 0,
           .pick_repeat = 1,
           .lr_scale = 2,
           .lr_decay = 0.5,
           .rounds = 1,
           .epochs = 12,
           .epr = 4,
           .seeds = 1,
           .threads = 1,
           .max_label_loss = -1,
           .scenario = "all",
           .model = "mlp",
           .dir = "/tmp/bench_repair"};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--limit"))
      g.limit = atoll(v);
    else if (!strcmp(k, "--budget") || !strcmp(k, "--budgets")) {
      if (!parse_budgets(&g, v)) {
        fprintf(stderr, "bench_repair: bad budget list %s\n", v);
        return 2;
      }
    } else if (!strcmp(k, "--reuse"))
      g.reuse = atoi(v);
    else if (!strcmp(k, "--rounds"))
      g.rounds = atoi(v);
    else if (!strcmp(k, "--lr-decay"))
      g.lr_decay = atof(v);
    else if (!strcmp(k, "--lr"))
      g.lr = atof(v);
    else if (!strcmp(k, "--lr-scale"))
      g.lr_scale = atof(v);
    else if (!strcmp(k, "--replay"))
      g.replay = atoll(v);
    else if (!strcmp(k, "--pick-repeat"))
      g.pick_repeat = atoi(v);
    else if (!strcmp(k, "--balance"))
      g.balance = atoi(v);
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
    else if (!strcmp(k, "--max-label-loss"))
      g.max_label_loss = atof(v);
    else {
      fprintf(stderr, "bench_repair: unknown option %s\n", k);
      return 2;
    }
  }
  if (g.limit < 1000 || g.rounds < 1 || g.epochs < 1 || g.epr < 1 ||
      g.seeds < 1 || !(g.lr_decay > 0 && g.lr_decay <= 1) || g.replay < 0 ||
      g.pick_repeat < 1 || g.lr < 0 || !(g.lr_scale > 0) ||
      !(g.max_label_loss < 1)) {
    fprintf(stderr, "bench_repair: bad arguments\n");
    return 2;
  }
  td_err err = {0};
  if (td_mkdirs(g.dir, &err))
    die(g.dir, &err);
  printf("bench_repair: %s, limit %lld, budget%s", g.model, (long long)g.limit,
         g.n_budgets > 1 ? "s" : "");
  for (int b = 0; b < g.n_budgets; b++)
    printf("%s%lld", b ? "," : " ", (long long)g.budgets[b]);
  printf(", %d rounds x %d "
         "epochs, lr %g (0: the parent's) x %g, decay %g, replay %lld (0: "
         "all), picks x%d, balance %d, parent %d epochs, %d thread(s)\n",
         g.rounds, g.epr, g.lr, g.lr_scale, g.lr_decay, (long long)g.replay,
         g.pick_repeat, g.balance, g.epochs, g.threads);
  if (g.max_label_loss >= 0)
    printf("guard: --max-label-loss %g for MODE and both controls\n",
           g.max_label_loss);
  if (!strcmp(g.scenario, "starved") || !strcmp(g.scenario, "all"))
    scenario(&g, "starved");
  if (!strcmp(g.scenario, "overfit") || !strcmp(g.scenario, "all"))
    scenario(&g, "overfit");
  return 0;
}
