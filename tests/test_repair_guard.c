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

static void test_held_out(void) {
  int32_t y[10] = {0, 1, 0, 0, 2, 1, 0, 1, 1, 2};
  int32_t avail[8] = {9, 0, 2, 3, 5, 6, 7, 1}, held[8];
  int64_t n = td__guard_held_out(avail, 8, y, 3, 2, held);
  /* two of each label, the first in avail's order */
  int32_t want[5] = {9, 0, 2, 5, 7};
  CHECK_INT(n, ==, 5);
  for (int i = 0; i < 5 && n == 5; i++)
    CHECK_INT(held[i], ==, want[i]);
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
  td__guard_round out[2] = {{0}};
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

/* The held-out set of the repair's only round: the pool minus the picks,
 * up to 1,000 per label in pool order. */
static int64_t held_set(const td_repair_result *r, const int32_t *y,
                        int32_t **held) {
  char path[4400];
  snprintf(path, sizeof path, "%s/pool.npy", buggy);
  int64_t np = 0;
  int32_t *pool = td_t_load_i32(path, &np);
  *held = malloc((size_t)(np ? np : 1) * sizeof **held);
  if (!pool || !*held) {
    free(pool);
    return -1;
  }
  char *picked = calloc(6000, 1);
  for (int64_t k = 0; k < r->rounds[0].n_selected; k++)
    picked[r->rounds[0].selected[k]] = 1;
  int64_t m = 0, per[16] = {0};
  for (int64_t i = 0; i < np; i++)
    if (!picked[pool[i]] && per[y[pool[i]]] < 1000) {
      per[y[pool[i]]]++;
      (*held)[m++] = pool[i];
    }
  free(picked);
  free(pool);
  return m;
}

/* The same repair with and without the guard: training is the same up to
 * the hook, so the checkpoints differ only in the last layer's bias, by
 * the recorded offsets; the recorded logits are the guarded checkpoint's;
 * the held-out accuracies in repair.json are what the recording shows. */
static void test_repair_guarded(void) {
  char f0[4300], f1[4300];
  snprintf(f0, sizeof f0, "%s/plain", dir);
  snprintf(f1, sizeof f1, "%s/guarded", dir);
  td_repair_opts o;
  td_repair_result r0, r1;
  td_err err = {0};
  repair_opts(&o, f0, -1);
  CHECK_OK(td_repair(&o, &r0, &err), &err);
  repair_opts(&o, f1, 0.02);
  CHECK_OK(td_repair(&o, &r1, &err), &err);
  td_net *n0 = load_net(f0, 2), *n1 = load_net(f1, 2);
  CHECK(n0 && n1 && r0.n_rounds == 1 && r1.n_rounds == 1);
  if (!n0 || !n1 || r0.n_rounds != 1 || r1.n_rounds != 1)
    goto out;
  const td_repair_round *g = &r1.rounds[0];
  CHECK(!r0.rounds[0].guarded && g->guarded);
  CHECK(g->guard_held > 1000);
  int L = td_net_n_layers(n1), C = td_net_out_dim(n1);
  size_t off =
      td_net_layer_offset(n1, L - 1) + td_net_layer_n_params(n1, L - 1);
  size_t np = td_net_n_params(n1);
  CHECK_INT(off, ==, np); /* the last bias ends the buffer */
  const float *p0 = td_net_params_const(n0), *p1 = td_net_params_const(n1);
  CHECK(!memcmp(p0, p1, (np - (size_t)C) * sizeof *p0));
  int moved = 0;
  for (int l = 0; l < C; l++) {
    float want = p0[np - (size_t)C + (size_t)l] + (float)g->guard_offsets[l];
    CHECK(p1[np - (size_t)C + (size_t)l] == want);
    moved += g->guard_offsets[l] != 0;
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
  int64_t nh = y ? held_set(&r1, y, &held) : -1;
  CHECK_INT(nh, ==, g->guard_held);
  if (nh == g->guard_held) {
    double pa[16], ca[16];
    int64_t nl[16];
    held_acc(buggy, 6, held, nh, y, C, pa, nl);
    held_acc(f1, 2, held, nh, y, C, ca, nl);
    for (int l = 0; l < C; l++) {
      CHECK_NEAR(pa[l], g->guard_parent[l], 1e-12);
      CHECK(nl[l] > 0);
      CHECK_NEAR(ca[l], g->guard_after[l], 1e-12);
      if (g->guard_met)
        CHECK(g->guard_after[l] >= g->guard_parent[l] - 0.02 - 1e-12);
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
  CHECK(txt && !strstr(txt, "\"guard\"") && !strstr(txt, "max_label_loss"));
  free(txt);
out:
  td_net_free(n0);
  td_net_free(n1);
  td_repair_result_free(&r0);
  td_repair_result_free(&r1);
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
        json_integer_value(json_object_get(gd, "n_held")) > 1000);
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
  CHECK(!td_path_exists(fx));
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "repair_guard"))
    return 1;
  RUN(test_fit_grid);
  RUN(test_fit_planted);
  RUN(test_held_out);
  RUN(test_check_net);
  RUN(test_hook_threads);
  RUN(test_train_buggy);
  RUN(test_repair_guarded);
  RUN(test_cli);
  return td_t_finish();
}
