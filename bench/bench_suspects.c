/* bench_suspects — the suspicious-sample recommender against a simulated
 * user on real runs (DESIGN §5): cumulative precision after R rounds of K
 * for several shares of mistaken answers, next to the baselines on the same
 * run and K (random choice, DeepDebugger's four-feature ridge, each single
 * score ranked once), the time of one feedback round (fit + rank), the
 * precision per round for simulated users with another intent, and how
 * often the suggested label is the clean one (docs/suspects.md).
 *
 *   bench_suspects RUN... [--rounds 10] [--k 50] [--seeds 5] [--method M]
 *                  [--variants I,J]   (only these rows of the table, from 0)
 *
 * Each run needs train_truth.npy. Simulations with mistakes are averaged
 * over --seeds seeds (which answers get flipped); the minimum is shown too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tardis/parallel.h"
#include "tardis/run.h"
#include "tardis/suspects.h"

typedef struct variant {
  const char *name;
  td_rec_model model;
  double blend;
  unsigned features, prior;
  int fixed; /* 1: no cross-validated trust */
  int pairs; /* 0: no class-pair term; 1: the default one; 2: the earlier
                one (shrunk effects, ⌊k/10⌋ places of exploration, no
                spread over pairs) */
  int prop;  /* 1: the neighbour term */
} variant;

#define DD_FEATURES                                                            \
  ((1u << TD_SUS_RARITY_POS) | (1u << TD_SUS_RARITY_VEL) |                     \
   (1u << TD_SUS_RARITY_ACC) | (1u << TD_SUS_UNCERTAINTY))

#define PRIOR_MEAN3                                                            \
  ((1u << TD_SUS_AUM) | (1u << TD_SUS_LOSS) | (1u << TD_SUS_CONFIDENCE))

#define PRIOR_F                                                                \
  ((1u << TD_SUS_AUM) | (1u << TD_SUS_LOSS) | (1u << TD_SUS_CONFIDENCE) |      \
   (1u << TD_SUS_FORGETTING))

static const variant variants[] = {
    {"tardis: prior, class-pair learner when the prior fails (default)",
     TD_REC_RIDGE, 1.0, 0, 0, 0, 1, 0},
    {"--no-pairs: prior, ridge when the prior fails", TD_REC_RIDGE, 1.0, 0, 0,
     0, 0, 0},
    {"earlier --pairs (shrunk effects, fixed exploration)", TD_REC_RIDGE, 1.0,
     0, 0, 0, 2, 0},
    {"--no-pairs + neighbour term", TD_REC_RIDGE, 1.0, 0, 0, 0, 0, 1},
    {"default + neighbour term", TD_REC_RIDGE, 1.0, 0, 0, 0, 1, 1},
    {"prior, logistic + pairs when the prior fails", TD_REC_LOGISTIC, 1.0, 0, 0,
     0, 1, 0},
    {"prior+forgetting, ridge + pairs when it fails", TD_REC_RIDGE, 1.0, 0,
     PRIOR_F, 0, 1, 0},
    {"ridge + prior, fixed blend 1", TD_REC_RIDGE, 1.0, 0, 0, 1, 0, 0},
    {"prior + pair term (fixed blend 0)", TD_REC_RIDGE, 0.0, 0, 0, 1, 1, 0},
    {"ridge alone (all features)", TD_REC_RIDGE, -1, 0, 0, 1, 0, 0},
    {"ridge + pairs alone", TD_REC_RIDGE, -1, 0, 0, 1, 1, 0},
    {"DeepDebugger: 4-feature ridge", TD_REC_RIDGE, -1, DD_FEATURES,
     DD_FEATURES, 1, 0, 0},
    {"default, prior the mean of aum, loss, confidence (before issue 12's "
     "fifth pass)",
     TD_REC_RIDGE, 1.0, 0, PRIOR_MEAN3, 0, 1, 0},
};
#define NV (int)(sizeof variants / sizeof variants[0])

static const double mistakes[] = {0, 0.03, 0.05, 0.10};
#define NM 4

/* Simulated users who want something other than the noisy labels: one
 * confusion (labelled Shirt, favoured as T-shirt over the early epochs),
 * samples fitted late (first_fit >= 0.5), and the noisy labels among one
 * class pair only (labelled Pullover, truly Coat: the class pair nobody
 * named). Precision of each round of the default recommender. */
static void intents(const td_sus_features *f, const uint8_t *noisy, int rounds,
                    int k) {
  const char *names[] = {"one confusion (label Shirt, early class T-shirt)",
                         "fitted late (first_fit >= 0.5)",
                         "noise of one pair (label Pullover, early Coat)"};
  uint8_t *want = malloc((size_t)f->n);
  if (!want || !f->labels || f->n_classes != 10) {
    free(want);
    return;
  }
  printf(
      "\nsimulated users with another intent: precision of each round "
      "(the default recommender, then --no-pairs; no mistakes)\n\n| intent | "
      "wanted |");
  for (int t = 0; t < rounds; t++)
    printf(" %d |", t + 1);
  printf("\n|---|---|");
  for (int t = 0; t < rounds; t++)
    printf("---|");
  printf("\n");
  for (int u = 0; u < 6; u++) {
    int pairs = u < 3;
    int64_t nw = 0;
    for (int64_t i = 0; i < f->n; i++) {
      const float *x = f->x + i * TD_SUS_FEATURE_COUNT;
      int e = (int)x[TD_SUS_EARLY_CLASS], y = f->labels[i];
      want[i] = u % 3 == 0   ? y == 6 && e == 0
                : u % 3 == 1 ? x[TD_SUS_FIRST_FIT] >= 0.5f
                             : noisy[i] && y == 2 && e == 4;
      nw += want[i];
    }
    td_sim_opts o;
    td_sim_opts_default(&o);
    o.rounds = rounds;
    o.k = k;
    o.rec.pairs = pairs;
    td_sim_result r;
    td_err err;
    if (nw == 0 || td_sim_run(f, want, &o, &r, &err))
      continue;
    printf("| %s%s | %lld |", names[u % 3], pairs ? "" : ", --no-pairs",
           (long long)nw);
    for (int t = 0; t < rounds;
         t++) { /* hits of the round, rounded: no -0.00 */
      double h = r.cum_precision[t] * (t + 1) * k -
                 (t ? r.cum_precision[t - 1] * t * k : 0);
      printf(" %.2f |", (double)(long)(h + 0.5) / k);
    }
    printf("\n");
    td_sim_result_close(&r);
  }
  free(want);
}

/* Hits of each round from the cumulative precision, rounded (no -0.00). */
static void print_rounds(const double *cum, int rounds, int k) {
  for (int t = 0; t < rounds; t++) {
    double h = cum[t] * (t + 1) * k - (t ? cum[t - 1] * t * k : 0);
    printf(" %.2f |", (double)(long)(h + 0.5) / k);
  }
  printf("\n");
}

/* How often the suggested label is the clean one, for the truly
 * mislabelled among the prior's top `top`. */
static void suggestions(const td_run *run, const td_sus_features *f,
                        const int32_t *truth, const uint8_t *noisy, int top) {
  td_recommender *rec;
  td_err err;
  int8_t *v = malloc((size_t)f->n);
  int32_t *idx = malloc(sizeof *idx * (size_t)top);
  td_sus_suggestion *sg = malloc(sizeof *sg * (size_t)top);
  if (v && idx && sg && !td_rec_new(f, NULL, &rec, &err)) {
    memset(v, -1, (size_t)f->n);
    int n = td_rec_next(rec, v, top, idx, NULL, NULL);
    td_rec_free(rec);
    double t0 = td_now();
    if (!td_sus_suggest(run, idx, n, 0, sg, &err)) {
      int nn = 0, right = 0, model = 0, knn = 0;
      for (int j = 0; j < n; j++)
        if (noisy[idx[j]]) {
          nn++;
          right += sg[j].label == truth[idx[j]];
          model += sg[j].model_class == truth[idx[j]];
          knn += sg[j].knn_class == truth[idx[j]];
        }
      printf("\nsuggested labels of the %d truly mislabelled among the "
             "prior's top %d: clean label suggested %.3f (model alone %.3f, "
             "neighbours alone %.3f); %.2f s\n",
             nn, n, nn ? (double)right / nn : 0, nn ? (double)model / nn : 0,
             nn ? (double)knn / nn : 0, td_now() - t0);
    }
  }
  free(v);
  free(idx);
  free(sg);
}

static int bench_run(const char *dir, const char *method, int rounds, int k,
                     int seeds, unsigned only) {
  td_err err;
  td_run *run;
  if (td_run_open(dir, &run, &err)) {
    fprintf(stderr, "bench_suspects: %s\n", err.msg);
    return 1;
  }
  td_array truth;
  if (td_run_load(run, -1, "train_truth", &truth, &err)) {
    fprintf(stderr, "bench_suspects: %s\n", err.msg);
    td_run_close(run);
    return 1;
  }
  td_sus_opts so;
  td_sus_opts_default(&so);
  so.method = method;
  td_sus_features f;
  char note[256];
  int cached;
  double t0 = td_now();
  if (td_sus_features_get(run, &so, &f, &cached, note, &err)) {
    fprintf(stderr, "bench_suspects: %s\n", err.msg);
    td_array_close(&truth);
    td_run_close(run);
    return 1;
  }
  double tf = td_now() - t0;
  const int32_t *lab = td_run_train_labels(run);
  const int32_t *tr = truth.data;
  uint8_t *noisy = malloc((size_t)f.n);
  int64_t nn = 0;
  for (int64_t i = 0; i < f.n; i++)
    nn += noisy[i] = lab[i] != tr[i];
  printf("\n## %s\n\nN = %lld, noisy %lld (%.1f %%), %d epochs; trajectory: "
         "%s%s%s; features %s in %.2f s\n\n",
         dir, (long long)f.n, (long long)nn, 100.0 * (double)nn / (double)f.n,
         f.n_epochs, f.has_trajectory ? f.method : "none",
         f.has_trajectory ? "" : " — ", f.has_trajectory ? "" : note,
         cached ? "from the cache" : "computed", tf);
  printf("cumulative precision after %d rounds of %d (mean over %d seeds; "
         "min in brackets)\n\n",
         rounds, k, seeds);
  printf("| method | mistakes 0 %% | 3 %% | 5 %% | 10 %% | round ms |\n");
  printf("|---|---|---|---|---|---|\n");
  double *cum = malloc(sizeof(double) * (size_t)rounds);
  /* each variant's precision per round at 0 % mistakes, printed after */
  double *per = calloc((size_t)NV * (size_t)rounds, sizeof *per);
  for (int v = 0; v < NV; v++) {
    if (!(only >> v & 1u))
      continue;
    printf("| %s |", variants[v].name);
    double ms = 0;
    for (int m = 0; m < NM; m++) {
      double sum = 0, mn = 1;
      int ns = mistakes[m] > 0 ? seeds : 1;
      for (int s = 0; s < ns; s++) {
        td_sim_opts o;
        td_sim_opts_default(&o);
        o.rounds = rounds;
        o.k = k;
        o.mistakes = mistakes[m];
        o.seed = (uint64_t)s + 1;
        o.rec.model = variants[v].model;
        o.rec.blend = variants[v].blend;
        o.rec.features = variants[v].features;
        o.rec.prior = variants[v].prior;
        o.rec.adaptive = !variants[v].fixed;
        o.rec.pairs = variants[v].pairs != 0;
        if (variants[v].pairs == 2) {
          o.rec.explore = 1;
          o.rec.pair_within = -1;
          o.rec.pair_spread = 0;
        }
        o.rec.prop = variants[v].prop;
        td_sim_result r;
        if (td_sim_run(&f, noisy, &o, &r, &err)) {
          fprintf(stderr, "bench_suspects: %s\n", err.msg);
          continue;
        }
        double p = r.cum_precision[rounds - 1];
        if (m == 0 && per)
          memcpy(per + (size_t)v * (size_t)rounds, r.cum_precision,
                 sizeof *per * (size_t)rounds);
        sum += p;
        mn = p < mn ? p : mn;
        if (m == NM - 1 && s == 0)
          ms = r.feedback_ms_median;
        td_sim_result_close(&r);
      }
      if (ns > 1)
        printf(" %.3f (%.3f) |", sum / ns, mn);
      else
        printf(" %.3f |", sum);
    }
    printf(" %.3f |\n", ms);
  }
  printf("\nprecision of each round, 0 %% mistakes\n\n| method |");
  for (int t = 0; t < rounds; t++)
    printf(" %d |", t + 1);
  printf("\n|---|");
  for (int t = 0; t < rounds; t++)
    printf("---|");
  printf("\n");
  for (int v = 0; v < NV && per; v++)
    if (only >> v & 1u) {
      printf("| %s |", variants[v].name);
      print_rounds(per + (size_t)v * (size_t)rounds, rounds, k);
    }
  for (int j = TD_SUS_AUM; j <= TD_SUS_CONFIDENCE; j++) {
    td_sim_single(&f, noisy, j, rounds, k, 1, cum);
    printf("| %s alone |", td_sus_feature_name(j));
    print_rounds(cum, rounds, k);
  }
  free(per);
  printf("\nbaselines ranked once (top %d, no feedback):\n\n", rounds * k);
  printf("| score | precision@%d |\n|---|---|\n", rounds * k);
  double rs = 0;
  for (int s = 0; s < seeds; s++) {
    td_sim_single(&f, noisy, -1, rounds, k, (uint64_t)s + 1, cum);
    rs += cum[rounds - 1];
  }
  printf("| random choice (mean of %d) | %.3f |\n", seeds, rs / seeds);
  for (int j = 0; j < TD_SUS_FEATURE_COUNT; j++) {
    if ((!f.has_trajectory && j <= TD_SUS_RARITY_ACC) ||
        !td_sus_feature_is_score(j))
      continue;
    td_sim_single(&f, noisy, j, rounds, k, 1, cum);
    printf("| %s | %.3f |\n", td_sus_feature_name(j), cum[rounds - 1]);
  }
  intents(&f, noisy, rounds, k);
  suggestions(run, &f, tr, noisy, rounds * k);
  free(cum);
  free(noisy);
  td_sus_features_close(&f);
  td_array_close(&truth);
  td_run_close(run);
  return 0;
}

/* --want IDX.npy: a simulated user who wants exactly the listed training
 * samples (e.g. out-of-distribution inputs mixed into the training set);
 * precision of each round for the default recommender, --no-pairs and
 * every single score ranked once. The run needs no train_truth.npy. */
static int bench_want(const char *dir, const char *method, const char *file,
                      int rounds, int k) {
  td_err err;
  td_run *run;
  td_array w = {0};
  td_sus_features f = {0};
  td_sus_opts so;
  td_sus_opts_default(&so);
  so.method = method;
  char note[256];
  int cached;
  if (td_run_open(dir, &run, &err)) {
    fprintf(stderr, "bench_suspects: %s\n", err.msg);
    return 1;
  }
  uint8_t *want = NULL;
  int rc = td_npy_load(file, &w, &err) ||
           td_sus_features_get(run, &so, &f, &cached, note, &err);
  if (!rc && (w.dtype != TD_I32 || w.ndim != 1))
    rc = td_err_set(&err, TD_EFORMAT, "%s: expected int32 [K]", file) != 0;
  if (!rc && !(want = calloc((size_t)f.n, 1)))
    rc = td_err_set(&err, TD_ENOMEM, "out of memory") != 0;
  int64_t nw = 0;
  for (int64_t i = 0; !rc && i < w.shape[0]; i++) {
    int32_t j = ((const int32_t *)w.data)[i];
    if (j >= 0 && j < f.n && !want[j])
      nw += want[j] = 1;
  }
  if (rc)
    fprintf(stderr, "bench_suspects: %s\n", err.msg);
  double *cum = rc ? NULL : malloc(sizeof(double) * (size_t)rounds);
  if (!rc && cum) {
    printf("\n## %s: a user who wants the %lld samples of %s\n\nprecision of "
           "each round of %d (no mistakes; single scores ranked once)\n\n"
           "| ranking |",
           dir, (long long)nw, file, k);
    for (int t = 0; t < rounds; t++)
      printf(" %d |", t + 1);
    printf("\n|---|");
    for (int t = 0; t < rounds; t++)
      printf("---|");
    printf("\n");
    for (int pairs = 1; pairs >= 0; pairs--) {
      td_sim_opts o;
      td_sim_opts_default(&o);
      o.rounds = rounds;
      o.k = k;
      o.rec.pairs = pairs;
      td_sim_result r;
      if (td_sim_run(&f, want, &o, &r, &err)) {
        fprintf(stderr, "bench_suspects: %s\n", err.msg);
        continue;
      }
      printf("| recommender%s |", pairs ? "" : ", --no-pairs");
      print_rounds(r.cum_precision, rounds, k);
      td_sim_result_close(&r);
    }
    for (int j = 0; j < TD_SUS_FEATURE_COUNT; j++) {
      if ((!f.has_trajectory && j <= TD_SUS_RARITY_ACC) ||
          !td_sus_feature_is_score(j))
        continue;
      td_sim_single(&f, want, j, rounds, k, 1, cum);
      printf("| %s |", td_sus_feature_name(j));
      print_rounds(cum, rounds, k);
    }
  }
  free(cum);
  free(want);
  td_array_close(&w);
  td_sus_features_close(&f);
  td_run_close(run);
  return rc;
}

/* "0,2,5" → bits 0, 2 and 5 (variant numbers, from 0). */
static unsigned variant_mask(const char *s) {
  unsigned m = 0;
  while (*s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s)
      break;
    if (v >= 0 && v < NV)
      m |= 1u << v;
    s = *end == ',' ? end + 1 : end;
  }
  return m;
}

int main(int argc, char **argv) {
  int rounds = 10, k = 50, seeds = 5, rc = 0;
  unsigned only = ~0u;
  const char *method = NULL, *want = NULL;
  const char *runs[16];
  int nr = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--k") && i + 1 < argc)
      k = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
      seeds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--method") && i + 1 < argc)
      method = argv[++i];
    else if (!strcmp(argv[i], "--variants") && i + 1 < argc)
      only = variant_mask(argv[++i]);
    else if (!strcmp(argv[i], "--want") && i + 1 < argc)
      want = argv[++i];
    else if (argv[i][0] != '-' && nr < 16)
      runs[nr++] = argv[i];
    else {
      fprintf(stderr, "usage: bench_suspects RUN... [--rounds R] [--k K] "
                      "[--seeds S] [--method M] [--variants I,J] "
                      "[--want IDX.npy]\n");
      return 2;
    }
  }
  if (nr == 0 || rounds < 1 || k < 1 || seeds < 1) {
    fprintf(stderr, "usage: bench_suspects RUN... [--rounds R] [--k K] "
                    "[--seeds S] [--method M] [--variants I,J] "
                    "[--want IDX.npy]\n");
    return 2;
  }
  for (int i = 0; i < nr; i++)
    rc |= want ? bench_want(runs[i], method, want, rounds, k)
               : bench_run(runs[i], method, rounds, k, seeds, only);
  return rc;
}
