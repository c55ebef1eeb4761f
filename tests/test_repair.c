/* Model repair (MODE, docs/repair.md): the pool and starved labels of
 * `tardis train` (--pool, --class-fraction), the diagnosis of a run with a
 * planted bug, heat maps against a naive computation, a small repair end to
 * end, and the refusals. Runs the `tardis` command on a slice of
 * Fashion-MNIST. */
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_util.h"
#include "harness.h"
#include "repair/select.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/repair.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "test_util.h"
#include "train/pool.h"

static char bin[4096], dir[4096];

static void test_pool_split(void) {
  enum { N = 1000, C = 4 };
  int32_t y[N];
  for (int i = 0; i < N; i++)
    y[i] = i % C;
  int32_t *t, *p, *t2, *p2;
  int64_t nt, np, nt2, np2;
  td_err err = {0};
  CHECK_OK(td__pool_split(y, N, C, 0.4, "1:0.1", 7, &t, &nt, &p, &np, &err),
           &err);
  CHECK_INT(np, ==, 400); /* 100 of each label */
  /* label 1: 10 % of its 150 remaining; the others all 150 */
  CHECK_INT(nt, ==, 3 * 150 + 15);
  char role[N] = {0};
  int per[C] = {0};
  for (int64_t i = 0; i < nt; i++)
    role[t[i]] |= 1, per[y[t[i]]]++;
  for (int64_t i = 0; i < np; i++)
    role[p[i]] |= 2;
  int both = 0, sorted = 1;
  for (int i = 0; i < N; i++)
    both += role[i] == 3;
  for (int64_t i = 1; i < np; i++)
    sorted &= p[i] > p[i - 1];
  CHECK_INT(both, ==, 0);
  CHECK(sorted);
  CHECK_INT(per[1], ==, 15);
  CHECK_INT(per[0], ==, 150);
  /* the same seed draws the same split, another seed another one */
  CHECK_OK(td__pool_split(y, N, C, 0.4, "1:0.1", 7, &t2, &nt2, &p2, &np2, &err),
           &err);
  CHECK(nt2 == nt && !memcmp(t, t2, (size_t)nt * sizeof *t));
  free(t2);
  free(p2);
  CHECK_OK(td__pool_split(y, N, C, 0.4, "1:0.1", 8, &t2, &nt2, &p2, &np2, &err),
           &err);
  CHECK(memcmp(p, p2, (size_t)np * sizeof *p) != 0);
  free(t);
  free(p);
  free(t2);
  free(p2);
  double frac[C];
  static const char *const bad[] = {"1",           "1:0",   "1:1.5", "4:0.5",
                                    "1:0.5,1:0.2", "x:0.1", "1:0.1,"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK_INT(td__class_fraction_parse(bad[i], C, frac, &err), ==, TD_EARG);
  CHECK_INT(td__class_fraction_parse("4:0.5", C, frac, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "label 4 is not in 0..3");
}

/* The buggy run the later tests diagnose and repair: labels 0 and 6 starved
 * (5 % of their share), half the training set in the pool. */
/* MODE's split of a round between two labels past θ by as much: the one
 * trained on 1/20 of the data of the others gets most of the picks, the
 * healthy label the other share, at random; no pick twice; no label past
 * its room. */
static void test_select_starved_quota(void) {
  enum { C = 3, N = 300, D = 4 };
  int32_t y[N], avail[N], out[N];
  float repr[N * D], w[C * D], dhm[C * D];
  for (int i = 0; i < N; i++) {
    y[i] = i % C;
    avail[i] = i;
    for (int j = 0; j < D; j++)
      repr[i * D + j] = (float)((i * 7 + j * 3) % 11) - 5;
  }
  for (int j = 0; j < C * D; j++)
    w[j] = dhm[j] = (float)(j % 5) - 2;
  td_label_diag L[C] = {{.n_train = 1000, .train_acc = 0.82},
                        {.n_train = 50, .train_acc = 0.82},
                        {.n_train = 1000, .train_acc = 0.99}};
  L[0].verdict = L[1].verdict = TD_VERDICT_UNDERFIT;
  L[2].verdict = TD_VERDICT_HEALTHY;
  td_diagnosis g = {.n_classes = C, .labels = L, .layer = -1, .dim = D};
  g.probe_w = w;
  g.dhm_under = g.dhm_over = g.hm_correct = g.hm_confused = dhm;
  td__diag_data d = {.C = C, .n_train = N, .repr_train = repr, .D = D};
  td_rng rng;
  td_rng_seed(&rng, 3);
  td__select_ctx c = {&g,  &d,   y,    avail,          N,   100,
                      0.2, 0.92, 0.10, TD_SELECT_MODE, &rng};
  int64_t n = 0, per[C];
  td_err err = {0};
  CHECK_OK(td__select(&c, out, &n, per, &err), &err);
  CHECK_INT(n, ==, 100);
  /* 80 for the buggy labels by severity 0.10 each plus starvation 0.95 */
  CHECK_INT(per[1], ==, 73);
  CHECK_INT(per[0], ==, 7);
  CHECK_INT(per[2], ==, 20);
  char seen[N] = {0};
  int twice = 0;
  for (int64_t i = 0; i < n; i++) {
    twice += seen[out[i]];
    seen[out[i]] = 1;
  }
  CHECK_INT(twice, ==, 0);
  /* as much data for both: an even split, each within its room (the best
   * supplied label's 1000 plus 100 / 3 = 34), the rest to the healthy one */
  L[1].n_train = 1000;
  CHECK_OK(td__select(&c, out, &n, per, &err), &err);
  CHECK_INT(per[0], ==, 34);
  CHECK_INT(per[1], ==, 34);
  CHECK_INT(per[2], ==, 32);
  /* No label is flooded: the label far past θ, trained on as much data as
   * the best-supplied one, gets no more than that label's count plus an
   * even share of the round (100 + 34 - 100 = 34; severity alone would give
   * it 79 of 80); the rest of the buggy labels' share goes to the other
   * buggy label, which has room for it (100 + 34 - 60 = 74). */
  L[0] = (td_label_diag){.n_train = 100, .train_acc = 0.42};
  L[1] = (td_label_diag){.n_train = 60, .train_acc = 0.91};
  L[2] = (td_label_diag){.n_train = 100, .train_acc = 0.99};
  L[0].verdict = L[1].verdict = TD_VERDICT_UNDERFIT;
  L[2].verdict = TD_VERDICT_HEALTHY;
  CHECK_OK(td__select(&c, out, &n, per, &err), &err);
  CHECK_INT(n, ==, 100);
  CHECK_INT(per[0], ==, 34);
  CHECK_INT(per[1], ==, 46);
  CHECK_INT(per[2], ==, 20);
  /* a label short of data has the room to catch up */
  L[0].n_train = 10;
  CHECK_OK(td__select(&c, out, &n, per, &err), &err);
  CHECK_INT(per[0], >=, 79);
}

/* Within a starved label MODE takes the pool inputs most like those the
 * model misses (least similar to dhm_under = correct - missed), and the
 * rest of the round from the labels the model takes the starved label's
 * trained-on inputs for (its look-alikes), not from the other healthy
 * labels. Label 0 (starved) has 60 pool inputs: 30 like its correct ones
 * (feature 0), 30 like its missed ones (feature 1); its trained-on inputs
 * are predicted as label 1. Then every label buggy: no pick twice. */
static void test_select_ranking_lookalikes(void) {
  enum { C = 4, NP = 180, NT = 40, N = NP + NT, D = 2 };
  int32_t y[N], avail[NP], out[N], pred[N], trained[NT];
  float repr[N * D] = {0}, w[C * D], dhm[C * D] = {0};
  for (int i = 0; i < N; i++) {
    y[i] = i < 60 ? 0 : i < NP ? 1 + i % 3 : (i - NP) % 4 ? 1 + i % 3 : 0;
    pred[i] = y[i];
    if (i < NP)
      avail[i] = i;
    else
      trained[i - NP] = i;
    repr[i * D + (i % 2)] = 1; /* even: feature 0, odd: feature 1 */
  }
  for (int i = NP; i < N; i++)
    if (y[i] == 0)
      pred[i] = (i / 4) % 2 ? 1 : 0; /* half of them missed, as 1 */
  for (int j = 0; j < C * D; j++)
    w[j] = 1;
  dhm[0] = 1, dhm[1] = -1; /* label 0: correct inputs feature 0, missed 1 */
  td_label_diag L[C] = {{.n_train = 10, .train_acc = 0.5},
                        {.n_train = 200, .train_acc = 0.99},
                        {.n_train = 200, .train_acc = 0.99},
                        {.n_train = 200, .train_acc = 0.99}};
  L[0].verdict = TD_VERDICT_UNDERFIT;
  L[1].verdict = L[2].verdict = L[3].verdict = TD_VERDICT_HEALTHY;
  td_diagnosis g = {.n_classes = C, .labels = L, .layer = -1, .dim = D};
  g.probe_w = w;
  g.dhm_under = g.dhm_over = g.hm_correct = g.hm_confused = dhm;
  td__diag_data d = {.C = C,
                     .n_train = N,
                     .repr_train = repr,
                     .D = D,
                     .pred_train = pred,
                     .trained = trained,
                     .n_trained = NT};
  td_rng rng;
  td_rng_seed(&rng, 5);
  td__select_ctx c = {&g,  &d,   y,    avail,          NP,  25,
                      0.2, 0.92, 0.10, TD_SELECT_MODE, &rng};
  int64_t n = 0, per[C];
  td_err err = {0};
  CHECK_OK(td__select(&c, out, &n, per, &err), &err);
  CHECK_INT(n, ==, 25);
  CHECK_INT(per[0], ==, 20);
  CHECK_INT(per[1], ==, 5); /* the look-alike takes the whole rest */
  int missed_like = 0;
  for (int64_t i = 0; i < n; i++)
    missed_like += y[out[i]] == 0 && out[i] % 2;
  if (missed_like != 20)
    fprintf(stderr, "picked %d of label 0 like its missed inputs\n",
            missed_like);
  CHECK_INT(missed_like, ==, 20);
  /* no prediction recorded: the rest from every healthy label */
  d.pred_train = NULL;
  c.k = 100;
  CHECK_OK(td__select(&c, out, &n, per, &err), &err);
  CHECK_INT(per[0], ==, 60); /* its whole pool: 80 wanted */
  CHECK(per[2] > 0 && per[3] > 0);
  /* every label buggy: the rest from the whole pool, never a pick twice */
  for (int l = 1; l < C; l++)
    L[l].verdict = TD_VERDICT_UNDERFIT, L[l].train_acc = 0.8;
  c.k = 170;
  CHECK_OK(td__select(&c, out, &n, per, &err), &err);
  CHECK_INT(n, ==, 170);
  char seen[N] = {0};
  int twice = 0;
  for (int64_t i = 0; i < n; i++) {
    twice += seen[out[i]];
    seen[out[i]] = 1;
  }
  CHECK_INT(twice, ==, 0);
}

static char buggy[4200];

static void test_train_pool(void) {
  char out[4200], args[9000], path[4300];
  snprintf(buggy, sizeof buggy, "%s/buggy", dir);
  snprintf(out, sizeof out, "%s/train.txt", dir);
  snprintf(args, sizeof args,
           "train --out '%s' --limit 6000 --epochs 6 --pool 0.5 "
           "--class-fraction 0:0.05,6:0.05 --threads 2 --quiet --seed 3",
           buggy);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  int64_t np = 0, nt = 0, n_lab = 0;
  snprintf(path, sizeof path, "%s/pool.npy", buggy);
  int32_t *pool = td_t_load_i32(path, &np);
  snprintf(path, sizeof path, "%s/epochs/0006/trained.npy", buggy);
  int32_t *tr = td_t_load_i32(path, &nt);
  snprintf(path, sizeof path, "%s/train_labels.npy", buggy);
  int32_t *y = td_t_load_i32(path, &n_lab);
  CHECK(pool && tr && y);
  if (!pool || !tr || !y)
    goto out;
  CHECK_INT(n_lab, ==, 6000);
  CHECK(np > 2900 && np < 3100);
  int per[10] = {0}, overlap = 0;
  char *in_pool = calloc(6000, 1);
  for (int64_t i = 0; i < np; i++)
    in_pool[pool[i]] = 1;
  for (int64_t i = 0; i < nt; i++)
    per[y[tr[i]]]++, overlap += in_pool[tr[i]];
  free(in_pool);
  CHECK_INT(overlap, ==, 0);
  CHECK(per[0] < 30 && per[6] < 30);
  CHECK(per[1] > 250 && per[9] > 250);
  snprintf(path, sizeof path, "%s/run.json", buggy);
  char *rj = td_t_slurp(path);
  CHECK(rj && strstr(rj, "\"class_fraction\": \"0:0.05,6:0.05\""));
  free(rj);
  /* tardis info still reads and validates it */
  snprintf(args, sizeof args, "info '%s'", buggy);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  char *txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "run is valid"));
  free(txt);
out:
  free(pool);
  free(tr);
  free(y);
}

static void test_train_pool_refusals(void) {
  char out[4200], args[9000];
  snprintf(out, sizeof out, "%s/refuse.txt", dir);
  snprintf(args, sizeof args,
           "train --out '%s/r1' --limit 600 --epochs 1 --pool 0.5 "
           "--tasks 0-4,5-9 --epochs-per-task 1 --quiet",
           dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
  char *txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "not with --select, --tasks or --from"));
  free(txt);
  snprintf(args, sizeof args,
           "train --out '%s/r2' --limit 600 --epochs 1 "
           "--class-fraction 12:0.5 --quiet",
           dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
  txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "label 12 is not in 0..9"));
  free(txt);
  snprintf(args, sizeof args,
           "train --out '%s/r3' --limit 600 --epochs 1 --pool 1 --quiet", dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 2);
}

/* Loads a float32 array into a malloc'd copy with its element count. */
static float *load_f32(const char *path, int64_t *n) {
  td_array a;
  td_err err = {0};
  if (td_npy_load(path, &a, &err) != TD_OK)
    return NULL;
  float *v = NULL;
  if (a.dtype == TD_F32 && (v = malloc(a.nbytes ? a.nbytes : 1))) {
    memcpy(v, a.data, a.nbytes);
    *n = (int64_t)(a.nbytes / 4);
  }
  td_array_close(&a);
  return v;
}

/* The planted bug: the starved labels 0 and 6 are flagged, a label trained
 * on its full share (1, trousers, the easiest) is not. theta 0.8: a short
 * run on 3,000 samples fits the hard labels (shirts, coats) to ~0.85 only. */
static void test_diagnose_planted_bug(void) {
  td_diagnose_opts o;
  td_diagnose_opts_default(&o);
  o.theta = 0.8;
  td_diagnosis *d = NULL;
  td_err err = {0};
  CHECK_OK(td_diagnose(buggy, &o, &d, &err), &err);
  if (!d)
    return;
  CHECK_INT(d->epoch, ==, 6);
  CHECK(d->labels[0].verdict != TD_VERDICT_HEALTHY);
  CHECK(d->labels[6].verdict != TD_VERDICT_HEALTHY);
  CHECK_INT(d->labels[1].verdict, ==, TD_VERDICT_HEALTHY);
  CHECK_INT(d->labels[0].n_train, <, 30);
  CHECK(d->labels[0].test_acc < 0.3 && d->labels[1].test_acc > 0.85);
  int64_t row = 0;
  for (int j = 0; j < 10; j++)
    row += d->confusion[j];
  CHECK_INT(row, ==, d->labels[0].n_test);
  /* probes on both hidden layers of the MLP; heat maps at one of them */
  CHECK_INT(d->n_probes, ==, 2);
  CHECK(d->layer == 0 || d->layer == 1);
  CHECK(d->probes[1].test_acc > 0.5);
  CHECK_INT(d->has_model, ==, 1);
  td_diagnosis_free(d);
  /* through the command: the files, the JSON */
  char out[4200], args[9000], path[4400];
  snprintf(out, sizeof out, "%s/diag.txt", dir);
  snprintf(args, sizeof args, "diagnose '%s' --json --theta 0.8", buggy);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  char *txt = td_t_slurp(out);
  json_t *j = txt ? json_loads(txt, 0, NULL) : NULL;
  CHECK(j != NULL);
  json_t *l0 = json_array_get(json_object_get(j, "labels"), 0);
  CHECK(strcmp(json_string_value(json_object_get(l0, "verdict")), "healthy"));
  json_decref(j);
  free(txt);
  static const char *const files[] = {"diagnosis.json", "dhm_under.npy",
                                      "dhm_under.png", "hm_correct.png",
                                      "probe_w.npy"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    snprintf(path, sizeof path, "%s/diagnosis/epoch_0006/%s", buggy, files[i]);
    CHECK(td_path_exists(path));
  }
}

/* td_heatmap against the definition, on random data. */
static void test_heatmap_naive(void) {
  enum { N = 200, DIM = 7, C = 3 };
  float f[N * DIM], w[C * DIM], out[C * DIM];
  int32_t mem[N];
  td_rng r;
  td_rng_seed(&r, 5);
  for (int i = 0; i < N * DIM; i++)
    f[i] = td_rng_normal(&r);
  for (int i = 0; i < C * DIM; i++)
    w[i] = td_rng_normal(&r);
  for (int i = 0; i < N; i++)
    mem[i] = (int32_t)td_rng_below(&r, C + 1) - 1; /* -1: in no set */
  mem[0] = 2;
  td_heatmap(f, N, DIM, w, C, mem, out);
  double worst = 0;
  for (int l = 0; l < C; l++)
    for (int j = 0; j < DIM; j++) {
      double s = 0;
      int n = 0;
      for (int i = 0; i < N; i++)
        if (mem[i] == l)
          s += (double)f[i * DIM + j] * (double)w[l * DIM + j], n++;
      double want = n ? s / n : 0;
      double e = fabs(want - (double)out[l * DIM + j]);
      worst = e > worst ? e : worst;
    }
  CHECK_NEAR(worst, 0, 1e-5);
}

/* The written hm_correct.npy at the representation (layer -1 = the recorded
 * train_repr.npy) against a naive computation from the run's own files. */
static void test_heatmap_files(void) {
  char out[4200], args[9000], path[4400];
  snprintf(out, sizeof out, "%s/diag_repr.txt", dir);
  snprintf(args, sizeof args, "diagnose '%s' --layer -1 --epoch 5", buggy);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  int64_t nr = 0, nz = 0, nw = 0, nh = 0, nt = 0, ny = 0;
  snprintf(path, sizeof path, "%s/epochs/0005/train_repr.npy", buggy);
  float *repr = load_f32(path, &nr);
  snprintf(path, sizeof path, "%s/epochs/0005/train_logits.npy", buggy);
  float *z = load_f32(path, &nz);
  snprintf(path, sizeof path, "%s/diagnosis/epoch_0005/probe_w.npy", buggy);
  float *w = load_f32(path, &nw);
  snprintf(path, sizeof path, "%s/diagnosis/epoch_0005/hm_correct.npy", buggy);
  float *hm = load_f32(path, &nh);
  snprintf(path, sizeof path, "%s/epochs/0005/trained.npy", buggy);
  int32_t *tr = td_t_load_i32(path, &nt);
  snprintf(path, sizeof path, "%s/train_labels.npy", buggy);
  int32_t *y = td_t_load_i32(path, &ny);
  CHECK(repr && z && w && hm && tr && y);
  if (repr && z && w && hm && tr && y) {
    int D = 128, C = 10;
    CHECK_INT(nh, ==, C * D);
    double sum[10][128] = {{0}}, worst = 0, scale = 0;
    int cnt[10] = {0};
    for (int64_t k = 0; k < nt; k++) {
      int i = tr[k], best = 0;
      for (int c = 1; c < C; c++)
        best = z[i * C + c] > z[i * C + best] ? c : best;
      if (best != y[i])
        continue;
      cnt[best]++;
      for (int j = 0; j < D; j++)
        sum[best][j] += (double)repr[(int64_t)i * D + j];
    }
    for (int l = 0; l < C; l++)
      for (int j = 0; j < D; j++) {
        double want = cnt[l] ? sum[l][j] / cnt[l] * (double)w[l * D + j] : 0.0;
        double e = fabs(want - (double)hm[l * D + j]);
        worst = e > worst ? e : worst;
        scale = fabs(want) > scale ? fabs(want) : scale;
      }
    CHECK(scale > 0);
    CHECK_NEAR(worst / scale, 0, 1e-3);
  }
  free(repr);
  free(z);
  free(w);
  free(hm);
  free(tr);
  free(y);
}

/* A run without checkpoints (as recorded from PyTorch): per-label metrics,
 * heat maps at the representation with the head as the probe. */
static void test_diagnose_no_model(void) {
  char out[4200], args[9000], run[4300];
  snprintf(run, sizeof run, "%s/nomodel", dir);
  snprintf(out, sizeof out, "%s/nomodel.txt", dir);
  snprintf(args, sizeof args,
           "train --out '%s' --limit 1200 --epochs 2 --no-model --quiet", run);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  td_diagnose_opts o;
  td_diagnose_opts_default(&o);
  td_diagnosis *d = NULL;
  td_err err = {0};
  CHECK_OK(td_diagnose(run, &o, &d, &err), &err);
  if (!d)
    return;
  CHECK_INT(d->has_model, ==, 0);
  CHECK_INT(d->layer, ==, -1);
  CHECK_INT(d->dim, ==, 128);
  CHECK_NEAR(d->probes[0].test_acc, d->test_acc, 0);
  td_diagnosis_free(d);
}

static void test_diagnose_errors(void) {
  char out[4200], args[9000];
  snprintf(out, sizeof out, "%s/derr.txt", dir);
  snprintf(args, sizeof args, "diagnose '%s' --epoch 99", buggy);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
  char *txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "has no epoch 99 (recorded: 1 to 6)"));
  free(txt);
  snprintf(args, sizeof args, "diagnose '%s/nothing'", dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
  snprintf(args, sizeof args, "diagnose '%s' --layer 7", buggy);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
  txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "hidden layers are 0 to 1"));
  free(txt);
}

/* A small repair end to end: the starved label 0 improves, FIXED is a
 * child run whose epochs continue from the parent's state and whose
 * trained-on samples are the parent's plus pool samples. */
static void test_repair_end_to_end(void) {
  char out[4200], args[9000], fixed[4300], path[4400];
  snprintf(fixed, sizeof fixed, "%s/fixed", dir);
  snprintf(out, sizeof out, "%s/repair.txt", dir);
  snprintf(args, sizeof args,
           "repair '%s' --out '%s' --budget 600 --rounds 2 "
           "--epochs-per-round 2 --json "
           "--threads 2",
           buggy, fixed);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  char *txt = td_t_slurp(out);
  json_t *j = txt ? json_loads(txt, 0, NULL) : NULL;
  CHECK(j != NULL);
  free(txt);
  if (!j)
    return;
  double b0 =
      json_number_value(json_array_get(json_object_get(j, "acc_before"), 0));
  double a0 =
      json_number_value(json_array_get(json_object_get(j, "acc_after"), 0));
  CHECK(b0 < 0.3);
  CHECK(a0 > b0 + 0.2);
  CHECK_INT(json_integer_value(json_object_get(j, "n_selected")), ==, 600);
  CHECK_INT(json_array_size(json_object_get(j, "rounds")), ==, 2);
  json_t *r0 = json_array_get(json_object_get(j, "rounds"), 0);
  json_t *per = json_object_get(r0, "per_label");
  CHECK(json_integer_value(json_array_get(per, 0)) > 50);
  json_decref(j);
  snprintf(path, sizeof path, "%s/run.json", fixed);
  txt = td_t_slurp(path);
  CHECK(txt && strstr(txt, "\"parent\"") && strstr(txt, "/buggy"));
  free(txt);
  /* epoch 0 is the parent's state, then 2 rounds x 2 epochs, recorded at
   * each round's end only */
  static const char *const recorded[] = {"0000", "0002", "0004"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/epochs/%s/test_logits.npy", fixed,
             recorded[i]);
    CHECK(td_path_exists(path));
  }
  snprintf(path, sizeof path, "%s/epochs/0001", fixed);
  CHECK(!td_path_exists(path));
  snprintf(path, sizeof path, "%s/epochs/0003", fixed);
  CHECK(!td_path_exists(path));
  snprintf(path, sizeof path, "%s/epochs/0004/trained.npy", fixed);
  int64_t nt = 0, np = 0, nb = 0;
  int32_t *tr = td_t_load_i32(path, &nt);
  snprintf(path, sizeof path, "%s/epochs/0006/trained.npy", buggy);
  int32_t *before = td_t_load_i32(path, &nb);
  snprintf(path, sizeof path, "%s/pool.npy", buggy);
  int32_t *pool = td_t_load_i32(path, &np);
  CHECK(tr && before && pool);
  if (tr && before && pool) {
    CHECK_INT(nt, ==, nb + 600);
    char *in_pool = calloc(6000, 1);
    int64_t from_pool = 0;
    for (int64_t i = 0; i < np; i++)
      in_pool[pool[i]] = 1;
    for (int64_t i = 0; i < nt; i++)
      from_pool += in_pool[tr[i]];
    CHECK_INT(from_pool, ==, 600);
    free(in_pool);
  }
  free(tr);
  free(before);
  free(pool);
  snprintf(path, sizeof path, "%s/repair.json", fixed);
  CHECK(td_path_exists(path));
  snprintf(args, sizeof args, "info '%s'", fixed);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
}

static int files_equal(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb, ca = 0, cb = 0;
  while (same && (ca = fgetc(fa)) != EOF) {
    cb = fgetc(fb);
    same = ca == cb;
  }
  if (same)
    same = fgetc(fb) == EOF;
  if (fa)
    fclose(fa);
  if (fb)
    fclose(fb);
  return same;
}

/* Of the n samples idx[], how many are in set[] (m samples, < 6000). */
static int64_t count_in(const int32_t *idx, int64_t n, const int32_t *set,
                        int64_t m) {
  char *in = calloc(6000, 1);
  int64_t k = 0;
  for (int64_t i = 0; in && i < m; i++)
    in[set[i]] = 1;
  for (int64_t i = 0; in && i < n; i++)
    k += in[idx[i]];
  free(in);
  return k;
}

/* --replay N: each round fine-tunes on every pick so far plus N of the
 * parent's trained-on samples drawn anew, the same at 1 and 2 threads. */
static void test_repair_replay(void) {
  char out[4200], args[20000], fx[2][4300], a[4400], b[4400];
  for (int t = 0; t < 2; t++) {
    snprintf(fx[t], sizeof fx[t], "%s/replay%d", dir, t + 1);
    snprintf(out, sizeof out, "%s/replay%d.txt", dir, t + 1);
    snprintf(args, sizeof args,
             "repair '%s' --out '%s' --budget 400 --rounds 2 --replay 500 "
             "--epochs-per-round 2 "
             "--lr-decay 0.5 --quiet --threads %d",
             buggy, fx[t], t + 1);
    CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  }
  snprintf(a, sizeof a, "%s/epochs/0006/trained.npy", buggy);
  snprintf(b, sizeof b, "%s/pool.npy", buggy);
  int64_t nb = 0, np = 0, n2 = 0, n4 = 0;
  int32_t *before = td_t_load_i32(a, &nb), *pool = td_t_load_i32(b, &np);
  snprintf(a, sizeof a, "%s/epochs/0002/trained.npy", fx[0]);
  snprintf(b, sizeof b, "%s/epochs/0004/trained.npy", fx[0]);
  int32_t *t2 = td_t_load_i32(a, &n2), *t4 = td_t_load_i32(b, &n4);
  CHECK(before && pool && t2 && t4);
  if (before && pool && t2 && t4) {
    CHECK_INT(n2, ==, 500 + 200);
    CHECK_INT(n4, ==, 500 + 400);
    CHECK_INT(count_in(t2, n2, pool, np), ==, 200);
    CHECK_INT(count_in(t4, n4, pool, np), ==, 400);
    CHECK_INT(count_in(t4, n4, before, nb), ==, 500);
    CHECK(count_in(t2, n2, t4, n4) < 700); /* the replay is drawn anew */
  }
  free(before);
  free(pool);
  free(t2);
  free(t4);
  /* training sums its gradients per thread, so the fine-tuned weights
   * differ in their last bits between thread counts; what round 1 chose
   * and trained on depends only on the parent and the seed */
  snprintf(a, sizeof a, "%s/epochs/0002/trained.npy", fx[0]);
  snprintf(b, sizeof b, "%s/epochs/0002/trained.npy", fx[1]);
  if (!files_equal(a, b))
    fprintf(stderr, "round 1 trained on other samples at 2 threads\n");
  CHECK(files_equal(a, b));
}

/* The files two repaired runs must hold byte for byte (epoch.json apart:
 * its "seconds" are a time). */
static const char *const same_files[] = {
    "train_inputs.npy",       "test_inputs.npy",
    "train_labels.npy",       "train_truth.npy",
    "test_labels.npy",        "select.npy",
    "%s/train_repr.npy",      "%s/train_logits.npy",
    "%s/train_loss.npy",      "%s/test_repr.npy",
    "%s/test_logits.npy",     "%s/head_0_w.npy",
    "%s/head_0_b.npy",        "%s/model/net.json",
    "%s/model/layer_0_w.npy", "%s/model/layer_2_w.npy",
    "%s/model/layer_2_b.npy", "%s/trainer/optim_0.npy",
    "%s/trainer/state.json",
};

/* epoch.json without "seconds", as canonical text. */
static char *epoch_json_sans_time(const char *path) {
  json_t *j = json_load_file(path, 0, NULL);
  if (!j)
    return NULL;
  json_object_del(j, "seconds");
  char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
  json_decref(j);
  return s;
}

/* 1 when two files are one (a hard link), -1 when this directory cannot
 * hold hard links at all, 0 otherwise. */
static int same_inode(const char *a, const char *b) {
  char x[4300], y[4300];
  snprintf(x, sizeof x, "%s/link_probe_a", dir);
  snprintf(y, sizeof y, "%s/link_probe_b", dir);
  FILE *f = fopen(x, "w");
  if (f)
    fclose(f);
  int can = f && link(x, y) == 0;
  unlink(x);
  unlink(y);
  if (!can)
    return -1;
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino &&
         sa.st_dev == sb.st_dev;
}

/* A repair reuses what its parent stored (td_repair_opts.no_reuse = 0):
 * the parent's inputs instead of the dataset's (and links them into the
 * child), the parent's recording of its last epoch as the child's epoch 0.
 * Both must give the bytes a repair that decodes and evaluates afresh
 * gives, every round (the second resumes the child); epoch 0 must be the
 * parent's last epoch; and the child must outlive its parent. */
static void test_repair_reuse(void) {
  char parent[4300], fx[2][4300], out[4400], args[9000], a[4600], b[4600];
  snprintf(parent, sizeof parent, "%s/reuse_parent", dir);
  snprintf(out, sizeof out, "%s/reuse_train.txt", dir);
  /* label noise: the child must draw the same noisy labels again */
  snprintf(args, sizeof args,
           "train --out '%s' --limit 1500 --epochs 2 --pool 0.5 "
           "--class-fraction 0:0.1 --noise 0.1 --threads 1 --quiet --seed 5",
           parent);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  for (int k = 0; k < 2; k++) {
    snprintf(fx[k], sizeof fx[k], "%s/reuse_fixed%d", dir, k);
    td_repair_opts o;
    td_repair_opts_default(&o);
    o.run = parent;
    o.out = fx[k];
    o.budget = 200;
    o.rounds = 2;
    o.epochs_per_round = 1;
    o.threads = 1;
    o.quiet = 1;
    o.no_reuse = k;                /* fx[1]: decoded and evaluated afresh */
    o.strategy = TD_SELECT_RANDOM; /* what is reused does not depend on it */
    td_repair_result res;
    td_err err = {0};
    int rc = td_repair(&o, &res, &err);
    if (rc)
      fprintf(stderr, "repair (no_reuse %d): %s\n", k, err.msg);
    CHECK_INT(rc, ==, TD_OK);
    if (!rc)
      CHECK_INT(res.n_rounds, ==, 2);
    td_repair_result_free(&res);
  }
  static const char *const epochs[] = {"epochs/0000", "epochs/0001",
                                       "epochs/0002"};
  int n_same = (int)(sizeof same_files / sizeof *same_files);
  for (int e = 0; e < 3; e++)
    for (int i = 0; i < n_same; i++) {
      if (e && !strchr(same_files[i], '%'))
        continue; /* the run-level files: once */
      char name[200];
      snprintf(name, sizeof name, same_files[i], epochs[e]);
      snprintf(a, sizeof a, "%s/%s", fx[0], name);
      snprintf(b, sizeof b, "%s/%s", fx[1], name);
      int same = td_path_exists(a) && files_equal(a, b);
      if (!same)
        fprintf(stderr, "%s differs with and without the reuse\n", name);
      CHECK(same);
    }
  for (int e = 0; e < 3; e++) {
    snprintf(a, sizeof a, "%s/%s/epoch.json", fx[0], epochs[e]);
    snprintf(b, sizeof b, "%s/%s/epoch.json", fx[1], epochs[e]);
    char *ja = epoch_json_sans_time(a), *jb = epoch_json_sans_time(b);
    if (!ja || !jb || strcmp(ja, jb))
      fprintf(stderr, "%s/epoch.json: %s against %s\n", epochs[e],
              ja ? ja : "(none)", jb ? jb : "(none)");
    CHECK(ja && jb && !strcmp(ja, jb));
    free(ja);
    free(jb);
  }
  /* epoch 0 is the parent's state: its recording of epoch 2, linked */
  static const char *const rec[] = {"train_repr", "train_logits", "train_loss",
                                    "test_repr", "test_logits"};
  for (int i = 0; i < 5; i++) {
    snprintf(a, sizeof a, "%s/epochs/0000/%s.npy", fx[0], rec[i]);
    snprintf(b, sizeof b, "%s/epochs/0002/%s.npy", parent, rec[i]);
    CHECK(files_equal(a, b));
    int one = same_inode(a, b);
    if (one == 0)
      fprintf(stderr, "%s is a copy, not a link of the parent's\n", a);
    CHECK(one != 0);
  }
  snprintf(a, sizeof a, "%s/train_inputs.npy", fx[0]);
  snprintf(b, sizeof b, "%s/train_inputs.npy", parent);
  CHECK(same_inode(a, b) != 0);
  /* the child outlives its parent */
  td_err err = {0};
  CHECK_OK(td_remove_tree(parent, &err), &err);
  snprintf(args, sizeof args, "info '%s'", fx[0]);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  char *txt = td_t_slurp(out);
  if (!txt || !strstr(txt, "run is valid"))
    fprintf(stderr, "tardis info of the child without its parent: %s\n",
            txt ? txt : "(no output)");
  CHECK(txt && strstr(txt, "run is valid"));
  free(txt);
  snprintf(a, sizeof a, "%s/epochs/0000/train_repr.npy", fx[0]);
  snprintf(b, sizeof b, "%s/epochs/0000/train_repr.npy", fx[1]);
  CHECK(files_equal(a, b));
}

static void test_repair_refusals(void) {
  char out[4200], args[9000], plain[4300];
  snprintf(out, sizeof out, "%s/rref.txt", dir);
  /* no checkpoint: a run recorded without one */
  snprintf(args, sizeof args, "repair '%s/nomodel' --out '%s/x1'", dir, dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
  char *txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "has no checkpoint (model/)"));
  free(txt);
  /* no pool */
  snprintf(plain, sizeof plain, "%s/plain", dir);
  snprintf(args, sizeof args, "train --out '%s' --limit 600 --epochs 1 --quiet",
           plain);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  snprintf(args, sizeof args, "repair '%s' --out '%s/x2'", plain, dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
  txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "has no pool (pool.npy)"));
  free(txt);
  /* a budget larger than the pool */
  snprintf(args, sizeof args, "repair '%s' --out '%s/x3' --budget 100000",
           buggy, dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 1);
  txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "--budget 100000 is larger than the pool"));
  free(txt);
  snprintf(args, sizeof args, "repair '%s'", buggy);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 2); /* --out is required */
}

/* --select-only on a run without checkpoints (as from PyTorch): the chosen
 * indices, all in the pool, distinct, in an .npy. */
static void test_select_only(void) {
  char out[4200], args[9000], run[4300], sel[4400], path[4400];
  snprintf(run, sizeof run, "%s/pt", dir);
  snprintf(sel, sizeof sel, "%s/sel.npy", dir);
  snprintf(out, sizeof out, "%s/selonly.txt", dir);
  snprintf(args, sizeof args,
           "train --out '%s' --limit 1200 --epochs 2 --no-model --pool 0.5 "
           "--class-fraction 3:0.1 --quiet",
           run);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  snprintf(args, sizeof args,
           "repair '%s' --select-only --out '%s' --budget 100", run, sel);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  char *txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "100 pool samples chosen (mode)"));
  free(txt);
  int64_t ns = 0, np = 0;
  int32_t *s = td_t_load_i32(sel, &ns);
  snprintf(path, sizeof path, "%s/pool.npy", run);
  int32_t *p = td_t_load_i32(path, &np);
  CHECK(s && p);
  if (s && p) {
    CHECK_INT(ns, ==, 100);
    char *in = calloc(1200, 1), *seen = calloc(1200, 1);
    int bad = 0;
    for (int64_t i = 0; i < np; i++)
      in[p[i]] = 1;
    for (int64_t i = 0; i < ns; i++) {
      bad += !in[s[i]] || seen[s[i]];
      seen[s[i]] = 1;
    }
    CHECK_INT(bad, ==, 0);
    free(in);
    free(seen);
  }
  free(s);
  free(p);
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "repair"))
    return 1;
  RUN(test_pool_split);
  RUN(test_select_starved_quota);
  RUN(test_select_ranking_lookalikes);
  RUN(test_train_pool);
  RUN(test_train_pool_refusals);
  RUN(test_heatmap_naive);
  RUN(test_diagnose_planted_bug);
  RUN(test_heatmap_files);
  RUN(test_diagnose_no_model);
  RUN(test_diagnose_errors);
  RUN(test_repair_end_to_end);
  RUN(test_repair_replay);
  RUN(test_repair_reuse);
  RUN(test_repair_refusals);
  RUN(test_select_only);
  return td_t_finish();
}
