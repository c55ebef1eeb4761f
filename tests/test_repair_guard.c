/* The "no new bug" guard of tardis repair (--max-label-loss D,
 * docs/repair.md#the-no-new-bug-guard): the offset fitting against a grid
 * search and on a planted problem, the held-out set, the checks on the net
 * and the options, and a small repair end to end with and without the guard
 * (the checkpoints differ only in the last bias, by the recorded offsets;
 * the recorded logits are the guarded checkpoint's). Runs `tardis` on a
 * slice of Fashion-MNIST. */
#include <jansson.h>
#include <math.h>

#include "cli_util.h"
#include "harness.h"
#include "repair/guard.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/nn.h"
#include "tardis/parallel.h"
#include "tardis/repair.h"
#include "tardis/rng.h"
#include "test_util.h"

static char bin[4096], dir[4096], buggy[4200];

/* (shortfall, balanced) a strictly better than b, as the fit compares. */
static int obj_better(double sa, double ba, double sb, double bb) {
  if (sa < sb - 1e-12)
    return 1;
  return sa <= sb + 1e-12 && ba > bb + 1e-12;
}

/* Random problems of 3 labels and 40 samples: the fit converges, is no
 * worse than no offsets, and no single offset on a fine grid beats it. */
static void test_fit_grid(void) {
  enum { C = 3, N = 40 };
  td_rng rng;
  td_rng_seed(&rng, 5);
  int worse = 0, beaten = 0, unconverged = 0, improved = 0;
  for (int trial = 0; trial < 30; trial++) {
    float z[N * C];
    int32_t y[N];
    double base[C], delta[C], zero[C] = {0, 0, 0};
    for (int i = 0; i < N; i++) {
      y[i] = (int32_t)td_rng_below(&rng, C);
      for (int k = 0; k < C; k++)
        z[i * C + k] = 4 * td_rng_uniform(&rng) - 2 + (k == y[i] ? 0.8f : 0.0f);
    }
    for (int l = 0; l < C; l++)
      base[l] = 0.5 + 0.5 * (double)td_rng_uniform(&rng);
    td__guard_fit_info info;
    CHECK_INT(td__guard_fit(z, y, N, C, base, 0.05, delta, &info), ==, TD_OK);
    unconverged += !info.converged;
    double s0, b0, s, b;
    td__guard_objective(z, y, N, C, base, 0.05, zero, &s0, &b0, NULL);
    td__guard_objective(z, y, N, C, base, 0.05, delta, &s, &b, NULL);
    CHECK_NEAR(s, info.shortfall, 1e-12);
    CHECK_NEAR(b, info.balanced, 1e-12);
    worse += obj_better(s0, b0, s, b);
    improved += obj_better(s, b, s0, b0);
    for (int l = 0; l < C; l++) {
      double d[C];
      memcpy(d, delta, sizeof d);
      for (int g = -1200; g <= 1200; g++) {
        d[l] = g * 0.005;
        double sg, bg;
        td__guard_objective(z, y, N, C, base, 0.05, d, &sg, &bg, NULL);
        if (obj_better(sg, bg, s, b)) {
          fprintf(stderr,
                  "  trial %d: label %d at %.3f gives (%.4f, %.4f), the "
                  "fit (%.4f, %.4f)\n",
                  trial, l, d[l], sg, bg, s, b);
          beaten++;
          break;
        }
      }
    }
  }
  CHECK_INT(unconverged, ==, 0);
  CHECK_INT(worse, ==, 0);
  CHECK_INT(beaten, ==, 0);
  CHECK(improved > 10); /* the fit does move the offsets */
}

/* A planted problem: label 0's inputs are taken for label 2 by a margin
 * under 1 and label 2's are won by more than 1, so an offset of about +1
 * on label 0 meets every constraint (base 1, D 0); the fit finds one. */
static void test_fit_planted(void) {
  enum { C = 3, N = 60 };
  float z[N * C];
  int32_t y[N];
  for (int i = 0; i < N; i++) {
    y[i] = i % C;
    float u = (float)(i / C) / (N / C); /* in [0, 1) */
    float *r = z + i * C;
    r[0] = 0;
    r[1] = y[i] == 1 ? 3 : -1;
    r[2] = y[i] == 0 ? 0.1f + 0.8f * u : y[i] == 2 ? 1.5f + u : 0;
  }
  double base[C] = {1, 1, 1}, delta[C], acc[C], zero[C] = {0, 0, 0}, s, b;
  td__guard_objective(z, y, N, C, base, 0, zero, &s, &b, acc);
  CHECK_NEAR(acc[0], 0, 1e-12); /* the planted bug */
  CHECK(s > 0.9);
  td__guard_fit_info info;
  CHECK_INT(td__guard_fit(z, y, N, C, base, 0, delta, &info), ==, TD_OK);
  td__guard_objective(z, y, N, C, base, 0, delta, &s, &b, acc);
  CHECK_NEAR(s, 0, 1e-12);
  for (int l = 0; l < C; l++)
    CHECK_NEAR(acc[l], 1, 1e-12);
  CHECK(delta[0] - delta[2] > 0.9 && delta[0] - delta[2] < 1.5);
  /* no sample: nothing to fit */
  CHECK_INT(td__guard_fit(z, y, 0, C, base, 0, delta, &info), ==, TD_OK);
  CHECK(info.converged && delta[0] == 0 && delta[1] == 0 && delta[2] == 0);
}

/* The reservation rule (TD__HELDOUT_PCT % of a label's pool rounded up,
 * at least min(pool, TD__HELDOUT_MIN), at most TD__HELDOUT_MAX) against a
 * naive computation of it. */
static void test_reserve_count(void) {
  for (int64_t P = 0; P <= 20000; P += P < 2000 ? 1 : 97) {
    double share = ceil((double)P * TD__HELDOUT_PCT / 100 - 1e-9);
    double want = fmin(share, TD__HELDOUT_MAX);
    want = fmax(want, fmin((double)P, TD__HELDOUT_MIN));
    want = fmin(want, (double)P);
    if (td__guard_reserve_count(P) != (int64_t)want) {
      fprintf(stderr, "  P %lld: %lld, want %g\n", (long long)P,
              (long long)td__guard_reserve_count(P), want);
      CHECK(0);
      break;
    }
  }
  CHECK_INT(td__guard_reserve_count(1000), ==,
            300); /* the rule as documented */
  CHECK_INT(td__guard_reserve_count(100), ==, 50);
  CHECK_INT(td__guard_reserve_count(30), ==, 30);
  CHECK_INT(td__guard_reserve_count(3000), ==, 500);
}

/* The draw on a synthetic pool: per-label counts follow the rule, the
 * samples are pool samples of the label, in pool order, without repeats;
 * the same at 1 and 4 threads and for the same seed, another for another
 * seed. */
static void test_reserve(void) {
  enum { N = 9000, C = 4 };
  int32_t *y = malloc(N * sizeof *y), *pool = malloc(N * sizeof *pool);
  int32_t *h[3] = {malloc(N * sizeof(int32_t)), malloc(N * sizeof(int32_t)),
                   malloc(N * sizeof(int32_t))};
  int64_t np = 0, per[C] = {0}, got[C] = {0}, n[3];
  for (int i = 0; i < N; i++) { /* labels of 3 sizes and a small one */
    y[i] = i % 7 == 0 ? 3 : i % 3;
    if (i % 2 == 0 || y[i] == 3)
      per[y[i]]++, pool[np++] = i;
  }
  td_set_threads(1);
  n[0] = td__guard_reserve(pool, np, y, C, 7, h[0]);
  td_set_threads(4);
  n[1] = td__guard_reserve(pool, np, y, C, 7, h[1]);
  td_set_threads(0);
  n[2] = td__guard_reserve(pool, np, y, C, 8, h[2]);
  int64_t want = 0;
  for (int l = 0; l < C; l++)
    want += td__guard_reserve_count(per[l]);
  CHECK_INT(n[0], ==, want);
  CHECK_INT(n[1], ==, n[0]);
  CHECK(n[0] == n[1] && !memcmp(h[0], h[1], (size_t)n[0] * sizeof(int32_t)));
  CHECK(n[2] != n[0] || memcmp(h[0], h[2], (size_t)n[0] * sizeof(int32_t)));
  char *in_pool = calloc(N, 1);
  for (int64_t i = 0; i < np; i++)
    in_pool[pool[i]] = 1;
  for (int64_t i = 0; i < n[0]; i++) {
    CHECK(in_pool[h[0][i]]);
    CHECK(i == 0 || h[0][i] > h[0][i - 1]); /* the pool is ascending */
    got[y[h[0][i]]]++;
  }
  for (int l = 0; l < C; l++)
    CHECK_INT(got[l], ==, td__guard_reserve_count(per[l]));
  /* a pool too small for the share: all of a label under 50 */
  CHECK_INT(td__guard_reserve(pool, 40, y, C, 7, h[2]), ==, 40);
  free(in_pool);
  free(y);
  free(pool);
  for (int k = 0; k < 3; k++)
    free(h[k]);
}

static void test_check_net(void) {
  td_err err = {0};
  td_layer_spec ok[2] = {{.kind = TD_LAYER_DENSE, .out = 4, .act = TD_ACT_RELU},
                         {.kind = TD_LAYER_DENSE, .out = 3}};
  td_net *net = td_net_new_layers(5, 1, 1, 2, ok);
  CHECK_OK(td__guard_check_net(net, &err), &err);
  td_net_free(net);
  ok[1].act = TD_ACT_RELU;
  net = td_net_new_layers(5, 1, 1, 2, ok);
  CHECK_INT(td__guard_check_net(net, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "dense with relu");
  td_net_free(net);
  td_layer_spec pool[2] = {{.kind = TD_LAYER_CONV, .out = 3, .kernel = 3},
                           {.kind = TD_LAYER_AVGPOOL_GLOBAL}};
  net = td_net_new_layers(1, 6, 6, 2, pool);
  CHECK_INT(td__guard_check_net(net, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "last layer is avgpool_global");
  td_net_free(net);
}

/* The hook on its own: the offsets it fits and adds to the last bias are
 * the same bytes at 1 and 4 threads (td_net_predict over 10 chunks). */
static void test_hook_threads(void) {
  enum { N = 5000, IN = 20, C = 4 };
  td_layer_spec L[2] = {{.kind = TD_LAYER_DENSE, .out = 16, .act = TD_ACT_RELU},
                        {.kind = TD_LAYER_DENSE, .out = C}};
  td_net *net = td_net_new_layers(IN, 1, 1, 2, L);
  td_rng rng;
  td_rng_seed(&rng, 9);
  td_net_init(net, &rng);
  uint8_t *x = malloc((size_t)N * IN);
  int32_t y[N], pred[N], held[N];
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < IN; j++)
      x[i * IN + j] = (uint8_t)td_rng_below(&rng, 256);
    y[i] = (int32_t)td_rng_below(&rng, C);
    pred[i] = i % 3 ? y[i] : (y[i] + 1) % C; /* the parent: 2/3 right */
    held[i] = i;
  }
  td_array xa = {.dtype = TD_U8, .ndim = 2, .shape = {N, IN}, .data = x};
  td_repair_guard out[2] = {{0}};
  float bias[2][C];
  for (int t = 0; t < 2; t++) {
    td_net *c = td_net_clone(net);
    td__guard g = {.D = 0.01,
                   .C = C,
                   .x = &xa,
                   .y = y,
                   .parent_pred = pred,
                   .held = held,
                   .n_held = N,
                   .out = &out[t]};
    td_set_threads(t ? 4 : 1);
    td_err err = {0};
    CHECK_OK(td__guard_hook(&g, c, 1, &err), &err);
    memcpy(bias[t], td_net_bias(c, 1), sizeof bias[t]);
    for (int l = 0; l < C; l++)
      CHECK(bias[t][l] == td_net_bias(net, 1)[l] + (float)out[t].offsets[l]);
    td_net_free(c);
  }
  td_set_threads(0);
  CHECK(!memcmp(bias[0], bias[1], sizeof bias[0]));
  CHECK(!memcmp(out[0].offsets, out[1].offsets, C * sizeof(double)));
  CHECK(!memcmp(out[0].acc_before, out[1].acc_before, C * sizeof(double)));
  CHECK_INT(out[0].n_held, ==, N);
  CHECK(out[0].offsets[0] != 0 || out[0].offsets[1] != 0 ||
        out[0].offsets[2] != 0 || out[0].offsets[3] != 0);
  td__guard_round_free(&out[0]);
  td__guard_round_free(&out[1]);
  td_net_free(net);
  free(x);
}

static void test_train_buggy(void) {
  char out[4200], args[9000];
  snprintf(buggy, sizeof buggy, "%s/buggy", dir);
  snprintf(out, sizeof out, "%s/train.txt", dir);
  snprintf(args, sizeof args,
           "train --out '%s' --limit 6000 --epochs 6 --pool 0.5 "
           "--class-fraction 0:0.05,6:0.05 --threads 2 --quiet --seed 3",
           buggy);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
}

static void repair_opts(td_repair_opts *o, const char *out, double D) {
  td_repair_opts_default(o);
  o->run = buggy;
  o->out = out;
  o->force = 1;
  o->budget = 600;
  o->epochs_per_round = 2;
  o->threads = 2;
  o->quiet = 1;
  o->max_label_loss = D;
}

static td_net *load_net(const char *run, int ep) {
  char path[4400];
  snprintf(path, sizeof path, "%s/epochs/%04d/model", run, ep);
  td_net *net = NULL;
  td_err err = {0};
  if (td_net_load(path, &net, &err) != TD_OK)
    fprintf(stderr, "  %s: %s\n", path, err.msg);
  return net;
}

/* Loads a float32 .npy of the run's epoch (or the run, ep < 0). */
static int load_arr(const char *run, int ep, const char *name, td_array *a) {
  char path[4400];
  if (ep >= 0)
    snprintf(path, sizeof path, "%s/epochs/%04d/%s.npy", run, ep, name);
  else
    snprintf(path, sizeof path, "%s/%s.npy", run, name);
  td_err err = {0};
  int rc = td_npy_load(path, a, &err);
  if (rc)
    fprintf(stderr, "  %s: %s\n", path, err.msg);
  return rc;
}

/* The recorded logits of a split equal a fresh td_net_predict of the
 * checkpoint (within td_net_infer's documented tolerance). */
static void check_logits(const char *run, int ep, td_net *net, int test) {
  td_array x, z;
  if (load_arr(run, -1, test ? "test_inputs" : "train_inputs", &x) ||
      load_arr(run, ep, test ? "test_logits" : "train_logits", &z)) {
    CHECK(0);
    return;
  }
  int in = td_net_in_dim(net), C = td_net_out_dim(net);
  int64_t n = x.shape[0];
  float *xf = malloc((size_t)(n * in) * sizeof *xf);
  float *out = malloc((size_t)(n * C) * sizeof *out);
  CHECK(x.dtype == TD_U8 && z.dtype == TD_F32 && xf && out);
  if (x.dtype == TD_U8 && z.dtype == TD_F32 && xf && out) {
    for (int64_t k = 0; k < n * in; k++)
      xf[k] = (float)((const uint8_t *)x.data)[k] * (1.0f / 255.0f);
    CHECK_INT(td_net_predict(net, xf, n, out, -1, NULL), ==, TD_OK);
    const float *rz = z.data;
    double most = 0, diff = 0;
    for (int64_t k = 0; k < n * C; k++) {
      most = fmax(most, fabs((double)rz[k]));
      diff = fmax(diff, fabs((double)rz[k] - (double)out[k]));
    }
    if (diff > 1e-5 * (1 + most))
      fprintf(stderr, "  %s logits differ by %g (largest %g)\n",
              test ? "test" : "train", diff, most);
    CHECK(diff <= 1e-5 * (1 + most));
  }
  free(xf);
  free(out);
  td_array_close(&x);
  td_array_close(&z);
}

/* Held-out accuracy per label from an epoch's recorded train logits. */
static void held_acc(const char *run, int ep, const int32_t *held, int64_t n,
                     const int32_t *y, int C, double *acc, int64_t *nl) {
  td_array z;
  int64_t ok[16] = {0};
  memset(nl, 0, (size_t)C * sizeof *nl);
  if (load_arr(run, ep, "train_logits", &z)) {
    CHECK(0);
    return;
  }
  const float *v = z.data;
  for (int64_t i = 0; i < n; i++) {
    const float *r = v + (int64_t)held[i] * C;
    int best = 0;
    for (int k = 1; k < C; k++)
      best = r[k] > r[best] ? k : best;
    nl[y[held[i]]]++;
    ok[y[held[i]]] += best == y[held[i]];
  }
  for (int l = 0; l < C; l++)
    acc[l] = nl[l] ? (double)ok[l] / (double)nl[l] : (double)NAN;
  td_array_close(&z);
}

/* The reserved held-out set the repair recorded (FIXED/heldout.npy). */
static int64_t held_set(const char *run, int32_t **held) {
  char path[4400];
  snprintf(path, sizeof path, "%s/heldout.npy", run);
  int64_t n = -1;
  *held = td_t_load_i32(path, &n);
  return *held ? n : -1;
}

/* The same repair with the guard at D = 0.02 and 0.05 (the same reserved
 * samples, so the same picks): training is the same up to the hook, so the
 * checkpoints differ only in the last layer's bias, by the recorded
 * offsets; the recorded logits are the guarded checkpoint's; the held-out
 * accuracies in repair.json are what the recording shows. Without the
 * guard (for test_reserved_set): no guard record, no heldout.npy. */
static void test_repair_guarded(void) {
  char f0[4300], f1[4300], f2[4300];
  snprintf(f0, sizeof f0, "%s/plain", dir);
  snprintf(f1, sizeof f1, "%s/guarded", dir);
  snprintf(f2, sizeof f2, "%s/guarded5", dir);
  td_repair_opts o;
  td_repair_result r0, r1, r2;
  td_err err = {0};
  repair_opts(&o, f0, -1);
  CHECK_OK(td_repair(&o, &r0, &err), &err);
  repair_opts(&o, f1, 0.02);
  CHECK_OK(td_repair(&o, &r1, &err), &err);
  repair_opts(&o, f2, 0.05);
  CHECK_OK(td_repair(&o, &r2, &err), &err);
  td_net *n2 = load_net(f2, 2), *n1 = load_net(f1, 2);
  CHECK(n2 && n1 && r0.n_rounds == 1 && r1.n_rounds == 1 && r2.n_rounds == 1);
  if (!n2 || !n1 || r0.n_rounds != 1 || r1.n_rounds != 1 || r2.n_rounds != 1)
    goto out;
  const td_repair_round *g = &r1.rounds[0];
  CHECK(!r0.rounds[0].guarded && g->guarded);
  CHECK(g->guard.n_held > 400 && g->guard.n_held == r1.n_heldout);
  int L = td_net_n_layers(n1), C = td_net_out_dim(n1);
  size_t off =
      td_net_layer_offset(n1, L - 1) + td_net_layer_n_params(n1, L - 1);
  size_t np = td_net_n_params(n1);
  CHECK_INT(off, ==, np); /* the last bias ends the buffer */
  const float *p2 = td_net_params_const(n2), *p1 = td_net_params_const(n1);
  CHECK(!memcmp(p2, p1, (np - (size_t)C) * sizeof *p2));
  CHECK(!memcmp(r1.rounds[0].selected, r2.rounds[0].selected,
                (size_t)r1.rounds[0].n_selected * sizeof(int32_t)));
  int moved = 0;
  for (int l = 0; l < C; l++) { /* the same bias before either guard */
    double b1 = p1[np - (size_t)C + (size_t)l] - (float)g->guard.offsets[l];
    double b2 =
        p2[np - (size_t)C + (size_t)l] - (float)r2.rounds[0].guard.offsets[l];
    CHECK_NEAR(b1, b2, 1e-5 * (1 + fabs(b1)));
    moved += g->guard.offsets[l] != 0;
  }
  CHECK(moved > 0);
  check_logits(f1, 2, n1, 0);
  check_logits(f1, 2, n1, 1);
  /* the held-out accuracies: the parent's from its recording, the guarded
   * model's from the child's, as repair.json says; within D where met */
  char path[4400];
  snprintf(path, sizeof path, "%s/train_labels.npy", buggy);
  int64_t ny = 0;
  int32_t *y = td_t_load_i32(path, &ny), *held = NULL;
  int64_t nh = y ? held_set(f1, &held) : -1;
  CHECK_INT(nh, ==, g->guard.n_held);
  if (nh == g->guard.n_held) {
    double pa[16], ca[16];
    int64_t nl[16];
    held_acc(buggy, 6, held, nh, y, C, pa, nl);
    held_acc(f1, 2, held, nh, y, C, ca, nl);
    for (int l = 0; l < C; l++) {
      CHECK_NEAR(pa[l], g->guard.acc_parent[l], 1e-12);
      CHECK(nl[l] > 0);
      CHECK_NEAR(ca[l], g->guard.acc_after[l], 1e-12);
      if (g->guard.met)
        CHECK(g->guard.acc_after[l] >= g->guard.acc_parent[l] - 0.02 - 1e-12);
    }
  }
  free(y);
  free(held);
  /* repair.json: the guard's record with the guarded run only */
  snprintf(path, sizeof path, "%s/repair.json", f1);
  char *txt = td_t_slurp(path);
  CHECK(txt && strstr(txt, "\"guard\"") && strstr(txt, "\"max_label_loss\""));
  free(txt);
  snprintf(path, sizeof path, "%s/repair.json", f0);
  txt = td_t_slurp(path);
  CHECK(txt && !strstr(txt, "\"guard\"") && !strstr(txt, "max_label_loss") &&
        !strstr(txt, "n_heldout"));
  free(txt);
  snprintf(path, sizeof path, "%s/heldout.npy", f0);
  CHECK(!td_path_exists(path)); /* guard off: nothing reserved */
  CHECK_INT(r0.n_heldout, ==, 0);
out:
  td_net_free(n2);
  td_net_free(n1);
  td_repair_result_free(&r0);
  td_repair_result_free(&r1);
  td_repair_result_free(&r2);
}

/* No sample of held (n, marked in a [6000] mask) is among the run's
 * picks or in any epoch's trained.npy (the parent's included). */
static void check_disjoint(const char *run, const td_repair_result *r,
                           const int32_t *held, int64_t n) {
  char *mask = calloc(6000, 1), path[4400];
  for (int64_t i = 0; i < n; i++)
    mask[held[i]] = 1;
  int clash = 0, files = 0;
  for (int i = 0; i < r->n_rounds; i++)
    for (int64_t k = 0; k < r->rounds[i].n_selected; k++)
      clash += mask[r->rounds[i].selected[k]];
  const char *runs[2] = {buggy, run};
  for (int k = 0; k < 2; k++)
    for (int ep = 0; ep <= 8; ep++) {
      snprintf(path, sizeof path, "%s/epochs/%04d/trained.npy", runs[k], ep);
      if (!td_path_exists(path))
        continue;
      int64_t m = 0;
      int32_t *t = td_t_load_i32(path, &m);
      CHECK(t != NULL);
      for (int64_t i = 0; t && i < m; i++)
        clash += mask[t[i]];
      files++;
      free(t);
    }
  if (clash)
    fprintf(stderr, "  %s: %d reserved samples picked or trained on\n", run,
            clash);
  CHECK_INT(clash, ==, 0);
  CHECK(files >= 2 + r->n_rounds); /* the parent's epochs and the child's */
  free(mask);
}

/* The reserved set: the same for MODE, random and label-random with one
 * seed, at 2, 1 and 4 threads; disjoint from every round's picks and
 * every trained-on set; per label as the rule says; guard off, the picks
 * do take samples the guard would have reserved. */
static void test_reserved_set(void) {
  char path[4400];
  snprintf(path, sizeof path, "%s/train_labels.npy", buggy);
  int64_t ny = 0, np = 0;
  int32_t *y = td_t_load_i32(path, &ny);
  snprintf(path, sizeof path, "%s/pool.npy", buggy);
  int32_t *pool = td_t_load_i32(path, &np);
  CHECK(y && pool && ny == 6000);
  int32_t *h[3] = {NULL, NULL, NULL};
  int64_t n[3] = {-1, -1, -1};
  char gd[4300];
  snprintf(gd, sizeof gd, "%s/guarded", dir); /* MODE, 2 threads */
  n[0] = held_set(gd, &h[0]);
  static const td_select_strategy st[2] = {TD_SELECT_RANDOM,
                                           TD_SELECT_LABEL_RANDOM};
  for (int k = 0; k < 2 && y && pool && ny == 6000; k++) {
    char out[4300];
    snprintf(out, sizeof out, "%s/reserved_%d", dir, k);
    td_repair_opts o;
    td_repair_result r;
    td_err err = {0};
    repair_opts(&o, out, 0.02);
    o.strategy = st[k];
    o.threads = k ? 4 : 1;
    o.rounds = k ? 1 : 2; /* random: two rounds of picks */
    o.epochs_per_round = 1;
    CHECK_OK(td_repair(&o, &r, &err), &err);
    n[k + 1] = held_set(out, &h[k + 1]);
    CHECK_INT(r.n_heldout, ==, n[k + 1]);
    if (h[k + 1])
      check_disjoint(out, &r, h[k + 1], n[k + 1]);
    td_repair_result_free(&r);
  }
  for (int k = 1; k < 3; k++)
    CHECK(n[k] == n[0] && h[0] && h[k] &&
          !memcmp(h[0], h[k], (size_t)n[0] * sizeof(int32_t)));
  int64_t per[16] = {0}, got[16] = {0}, want = 0;
  for (int64_t i = 0; pool && y && i < np; i++)
    per[y[pool[i]]]++;
  for (int64_t i = 0; h[0] && i < n[0]; i++)
    got[y[h[0][i]]]++;
  for (int l = 0; l < 10; l++) {
    CHECK_INT(got[l], ==, td__guard_reserve_count(per[l]));
    want += td__guard_reserve_count(per[l]);
  }
  CHECK_INT(n[0], ==, want);
  /* guard off (the plain MODE repair of test_repair_guarded): its picks
   * include samples the guard would have reserved */
  char *mask = calloc(6000, 1);
  for (int64_t i = 0; h[0] && i < n[0]; i++)
    mask[h[0][i]] = 1;
  snprintf(path, sizeof path, "%s/plain/repair.json", dir);
  json_t *j = json_load_file(path, 0, NULL);
  json_t *sel = json_object_get(json_array_get(json_object_get(j, "rounds"), 0),
                                "selected");
  int overlap = 0;
  for (size_t i = 0; i < json_array_size(sel); i++)
    overlap += mask[json_integer_value(json_array_get(sel, i))];
  CHECK(json_array_size(sel) == 600 && overlap > 0);
  json_decref(j);
  free(mask);
  for (int k = 0; k < 3; k++)
    free(h[k]);
  free(y);
  free(pool);
}

/* The command line: the summary's guard line, the JSON, the refusals. */
static void test_cli(void) {
  char out[4200], args[9000];
  snprintf(out, sizeof out, "%s/cli.txt", dir);
  snprintf(args, sizeof args,
           "repair '%s' --out '%s/c1' --budget 300 --epochs-per-round 1 "
           "--threads 2 --max-label-loss 0.05",
           buggy, dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  char *txt = td_t_slurp(out);
  CHECK(txt && strstr(txt, "round 1 guard: offsets fitted on ") &&
        strstr(txt, "held-out pool samples; worst held-out loss"));
  if (txt && !strstr(txt, "round 1 guard"))
    fprintf(stderr, "  output: %s\n", txt);
  free(txt);
  snprintf(args, sizeof args,
           "repair '%s' --out '%s/c2' --budget 300 --epochs-per-round 1 "
           "--threads 2 --max-label-loss 0 --json",
           buggy, dir);
  CHECK_INT(td_t_tardis(bin, out, args), ==, 0);
  txt = td_t_slurp(out);
  json_t *j = txt ? json_loads(txt, 0, NULL) : NULL;
  json_t *gd =
      json_object_get(json_array_get(json_object_get(j, "rounds"), 0), "guard");
  CHECK(gd && json_array_size(json_object_get(gd, "offsets")) == 10 &&
        json_integer_value(json_object_get(gd, "n_held")) > 400 &&
        json_integer_value(json_object_get(gd, "n_held")) ==
            json_integer_value(json_object_get(j, "n_heldout")));
  json_decref(j);
  free(txt);
  static const char *const bad[] = {"1", "-0.5", "nan", "x"};
  for (int i = 0; i < 4; i++) {
    snprintf(args, sizeof args, "repair '%s' --out '%s/c3' --max-label-loss %s",
             buggy, dir, bad[i]);
    CHECK_INT(td_t_tardis(bin, out, args), ==, 2);
  }
  td_repair_opts o;
  td_repair_result r;
  td_err err = {0};
  char fx[4300];
  snprintf(fx, sizeof fx, "%s/c4", dir);
  repair_opts(&o, fx, (double)NAN);
  CHECK_INT(td_repair(&o, &r, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "largest label loss in [0, 1)");
  td_repair_result_free(&r);
  repair_opts(&o, fx, 1);
  CHECK_INT(td_repair(&o, &r, &err), ==, TD_EARG);
  td_repair_result_free(&r);
  repair_opts(&o, fx, 0.01);
  o.select_only = 1;
  CHECK_INT(td_repair(&o, &r, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "not with --select-only");
  td_repair_result_free(&r);
  /* the budget must fit in the pool less the reserved samples: 2,900 of
   * 3,000 does without the guard, not with it (~900 reserved) */
  repair_opts(&o, fx, 0.01);
  o.budget = 2900;
  CHECK_INT(td_repair(&o, &r, &err), ==, TD_EARG);
  CHECK_STR_CONTAINS(err.msg, "larger than the pool less the held-out");
  td_repair_result_free(&r);
  CHECK(!td_path_exists(fx));
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "repair_guard"))
    return 1;
  RUN(test_fit_grid);
  RUN(test_fit_planted);
  RUN(test_reserve_count);
  RUN(test_reserve);
  RUN(test_check_net);
  RUN(test_hook_threads);
  RUN(test_train_buggy);
  RUN(test_repair_guarded);
  RUN(test_reserved_set);
  RUN(test_cli);
  return td_t_finish();
}
