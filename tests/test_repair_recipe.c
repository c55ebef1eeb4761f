/* The fine-tuning recipe of tardis repair (docs/repair.md): the trainer's
 * repeated samples (td_train_opts.select_times: how many times a selected
 * sample is trained on per epoch, kept as select_times.npy and repeated by
 * --resume), repair's --pick-repeat (every pick that many times against the
 * replayed training set), --balance (every label about as often as the
 * largest) and --lr-scale (the parent's rate times F). On a small synthetic
 * dataset directory (--data). */
#include <dirent.h>
#include <string.h>

#include "harness.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/repair.h"
#include "tardis/rng.h"
#include "tardis/run.h"
#include "tardis/train.h"
#include "test_util.h"

static char dir[4096], data[4200];

enum { N = 800, M = 200, CH = 1, H = 6, W = 6, C = 4 };

static int save(const char *d, const char *name, td_dtype t, int ndim,
                const int64_t *shape, const void *v) {
  char path[8400];
  snprintf(path, sizeof path, "%s/%s", d, name);
  td_err err;
  return td_npy_save_raw(path, t, ndim, shape, v, &err);
}

/* A learnable dataset: class c brightens row c of the image. */
static void make_dataset(const char *d) {
  td_err err;
  CHECK_OK(td_mkdirs(d, &err), &err);
  td_rng rng;
  td_rng_seed(&rng, 11);
  for (int split = 0; split < 2; split++) {
    int64_t n = split ? M : N;
    float *x = malloc((size_t)n * CH * H * W * sizeof *x);
    int64_t *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) {
      y[i] = (int64_t)td_rng_below(&rng, C);
      for (int k = 0; k < CH * H * W; k++)
        x[i * CH * H * W + k] =
            (k / W == y[i] ? 0.7f : 0.2f) + 0.3f * td_rng_uniform(&rng);
    }
    int64_t xs[4] = {n, CH, H, W};
    CHECK_INT(save(d, split ? "test_inputs.npy" : "train_inputs.npy", TD_F32, 4,
                   xs, x),
              ==, 0);
    CHECK_INT(save(d, split ? "test_labels.npy" : "train_labels.npy", TD_I64, 1,
                   &n, y),
              ==, 0);
    free(x);
    free(y);
  }
  static const char names[] = "[\"a\", \"b\", \"c\", \"d\"]";
  char path[8400];
  snprintf(path, sizeof path, "%s/classes.json", d);
  CHECK_OK(td_write_file_atomic(path, names, strlen(names), &err), &err);
}

static void opts_for(td_train_opts *o, const char *out, int epochs) {
  td_train_opts_default(o);
  o->data = data;
  o->out = out;
  o->epochs = epochs;
  o->batch = 16;
  o->hidden = "16,8";
  o->threads = 1;
  o->lr = 0.05;
}

/* Whether every file of two runs' checkpoints at epoch ep is the same. */
static int same_model(const char *r1, const char *r2, int ep) {
  char a[8400], b[8400];
  snprintf(a, sizeof a, "%s/epochs/%04d/model", r1, ep);
  DIR *d = opendir(a);
  int ok = d != NULL, n = 0;
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(a, sizeof a, "%s/epochs/%04d/model/%s", r1, ep, e->d_name);
    snprintf(b, sizeof b, "%s/epochs/%04d/model/%s", r2, ep, e->d_name);
    ok &= td_t_same_bytes(a, b);
    n++;
  }
  if (d)
    closedir(d);
  return ok && n > 0;
}

typedef struct steps_seen {
  int64_t steps; /* the largest step count of an epoch reported */
} steps_seen;

static void count_steps(const td_train_progress *p, void *ctx) {
  steps_seen *s = ctx;
  if (!p->epoch_done && p->steps > s->steps)
    s->steps = p->steps;
}

/* 100 selected samples, every third of them (in the given order) 3 times,
 * the others once. */
static int32_t sel_idx[100], sel_times[100], ones[100];
static void make_selection(void) {
  for (int i = 0; i < 100; i++) {
    sel_idx[i] = (int32_t)((i * 7 + 3) % N); /* distinct: 7 and 800 coprime */
    sel_times[i] = i % 3 == 0 ? 3 : 1;
    ones[i] = 1;
  }
}

/* An epoch trains on each sample its count: 34 x 3 + 66 = 168 samples, 11
 * batches of 16, against 7 for the 100 samples once each; counts of 1 are
 * the plain selection, byte for byte. */
static void test_select_times_steps(void) {
  char plain[4300], rep[4300], one[4300], path[4400];
  snprintf(plain, sizeof plain, "%s/plain", dir);
  snprintf(rep, sizeof rep, "%s/rep", dir);
  snprintf(one, sizeof one, "%s/one", dir);
  make_selection();
  td_train_opts o;
  td_train_result r;
  td_err err = {0};
  steps_seen seen = {0};
  opts_for(&o, plain, 2);
  o.select_idx = sel_idx;
  o.n_select_idx = 100;
  o.progress = count_steps;
  o.progress_ctx = &seen;
  CHECK_OK(td_train(&o, &r, &err), &err);
  CHECK_INT(seen.steps, ==, 7);
  snprintf(path, sizeof path, "%s/select_times.npy", plain);
  CHECK(!td_path_exists(path));
  seen.steps = 0;
  o.out = rep;
  o.select_times = sel_times;
  CHECK_OK(td_train(&o, &r, &err), &err);
  CHECK_INT(seen.steps, ==, 11);
  /* select_times.npy follows select.npy (ascending indices) */
  int64_t ns = 0, nt = 0;
  snprintf(path, sizeof path, "%s/select.npy", rep);
  int32_t *s = td_t_load_i32(path, &ns);
  snprintf(path, sizeof path, "%s/select_times.npy", rep);
  int32_t *t = td_t_load_i32(path, &nt);
  CHECK(s && t);
  if (s && t) {
    CHECK_INT(ns, ==, 100);
    CHECK_INT(nt, ==, 100);
    int64_t sum = 0, bad = 0;
    for (int64_t j = 0; j < ns; j++) {
      int want = 0;
      for (int i = 0; i < 100; i++)
        if (sel_idx[i] == s[j])
          want = sel_times[i];
      bad += t[j] != want;
      sum += t[j];
    }
    CHECK_INT(bad, ==, 0);
    CHECK_INT(sum, ==, 168);
  }
  free(s);
  free(t);
  /* trained.npy lists each sample once */
  snprintf(path, sizeof path, "%s/epochs/0002/trained.npy", rep);
  int64_t ntr = 0;
  int32_t *tr = td_t_load_i32(path, &ntr);
  CHECK(tr != NULL);
  free(tr);
  CHECK_INT(ntr, ==, 100);
  CHECK(!same_model(plain, rep, 2));
  o.out = one;
  o.select_times = ones;
  CHECK_OK(td_train(&o, &r, &err), &err);
  CHECK(same_model(plain, one, 2));
}

/* --resume without a new selection repeats the run's counts: 2 epochs and
 * a resume to 4 give the bytes of 4 epochs at once; a resume given a new
 * selection without counts drops select_times.npy. */
static void test_select_times_resume(void) {
  char full[4300], part[4300], path[4400];
  snprintf(full, sizeof full, "%s/full", dir);
  snprintf(part, sizeof part, "%s/part", dir);
  make_selection();
  td_train_opts o;
  td_train_result r;
  td_err err = {0};
  opts_for(&o, full, 4);
  o.select_idx = sel_idx;
  o.n_select_idx = 100;
  o.select_times = sel_times;
  CHECK_OK(td_train(&o, &r, &err), &err);
  o.out = part;
  o.epochs = 2;
  CHECK_OK(td_train(&o, &r, &err), &err);
  td_train_opts_default(&o);
  o.resume = part;
  o.epochs = 4;
  CHECK_OK(td_train(&o, &r, &err), &err);
  if (!same_model(full, part, 4))
    fprintf(stderr,
            "  the resumed run's epoch 4 differs from the full run's\n");
  CHECK(same_model(full, part, 4));
  o.epochs = 5;
  o.select_idx = sel_idx;
  o.n_select_idx = 50;
  CHECK_OK(td_train(&o, &r, &err), &err);
  snprintf(path, sizeof path, "%s/select_times.npy", part);
  CHECK(!td_path_exists(path));
}

static void test_select_times_refused(void) {
  char out[4300];
  snprintf(out, sizeof out, "%s/refused", dir);
  make_selection();
  sel_times[5] = 0;
  td_train_opts o;
  td_train_result r;
  td_err err = {0};
  opts_for(&o, out, 1);
  o.select_idx = sel_idx;
  o.n_select_idx = 100;
  o.select_times = sel_times;
  CHECK_INT(td_train(&o, &r, &err), ==, TD_ERANGE);
  CHECK_STR_CONTAINS(err.msg, "outside [1, 1000]");
}

/* --pick-repeat R: the child run's select_times.npy gives every pick R and
 * every replayed sample 1, in both rounds; the picks are the same as
 * without it (the choice does not depend on the recipe). */
static void test_repair_pick_repeat(void) {
  char buggy[4300], fx[2][4300], path[4400];
  snprintf(buggy, sizeof buggy, "%s/buggy", dir);
  td_train_opts o;
  td_train_result tr;
  td_err err = {0};
  opts_for(&o, buggy, 4);
  o.pool = 0.5;
  o.class_fraction = "0:0.1";
  o.noise = 0.3; /* no label fits to theta: each round has picks to make */
  CHECK_OK(td_train(&o, &tr, &err), &err);
  for (int k = 0; k < 2; k++) {
    snprintf(fx[k], sizeof fx[k], "%s/fixed%d", dir, k);
    td_repair_opts ro;
    td_repair_opts_default(&ro);
    ro.run = buggy;
    ro.out = fx[k];
    ro.budget = 120;
    ro.rounds = 2;
    ro.epochs_per_round = 1;
    ro.strategy = TD_SELECT_RANDOM; /* every round picks */
    ro.pick_repeat = k ? 3 : 1;
    ro.threads = 1;
    ro.quiet = 1;
    td_repair_result res;
    CHECK_OK(td_repair(&ro, &res, &err), &err);
    CHECK_INT(res.n_rounds, ==, 2);
    td_repair_result_free(&res);
  }
  int64_t np = 0, ns = 0, nt = 0, ns0 = 0;
  snprintf(path, sizeof path, "%s/pool.npy", buggy);
  int32_t *pool = td_t_load_i32(path, &np);
  snprintf(path, sizeof path, "%s/select.npy", fx[1]);
  int32_t *s = td_t_load_i32(path, &ns);
  snprintf(path, sizeof path, "%s/select_times.npy", fx[1]);
  int32_t *t = td_t_load_i32(path, &nt);
  snprintf(path, sizeof path, "%s/select.npy", fx[0]);
  int32_t *s0 = td_t_load_i32(path, &ns0);
  CHECK(pool && s && t && s0);
  if (pool && s && t && s0) {
    char in_pool[N] = {0};
    for (int64_t i = 0; i < np; i++)
      in_pool[pool[i]] = 1;
    CHECK_INT(nt, ==, ns);
    int64_t picks = 0, bad = 0;
    for (int64_t j = 0; j < ns; j++) {
      picks += in_pool[s[j]];
      bad += t[j] != (in_pool[s[j]] ? 3 : 1);
    }
    CHECK_INT(picks, ==, 120); /* both rounds' picks, the last round */
    CHECK_INT(bad, ==, 0);
    CHECK_INT(ns0, ==, ns);
    CHECK(!memcmp(s, s0, (size_t)ns * sizeof *s));
  }
  free(pool);
  free(s);
  free(t);
  free(s0);
  snprintf(path, sizeof path, "%s/select_times.npy", fx[0]);
  CHECK(!td_path_exists(path));
  /* repair.json records the recipe */
  snprintf(path, sizeof path, "%s/repair.json", fx[1]);
  char *txt = NULL;
  size_t n = 0;
  CHECK_INT(td_read_file(path, &txt, &n, NULL), ==, TD_OK);
  int has = strstr(txt, "\"pick_repeat\": 3") != NULL;
  if (!has)
    fprintf(stderr, "  repair.json: %s\n", txt);
  free(txt);
  CHECK(has);
}

/* --balance: every label of the fine-tuning set counts about as much as
 * the best-supplied one (the starved label 0 ~10 times its samples). */
static void test_repair_balance(void) {
  char buggy[4300], fx[4300], path[4400];
  snprintf(buggy, sizeof buggy, "%s/buggy",
           dir); /* test_repair_pick_repeat's */
  snprintf(fx, sizeof fx, "%s/balanced", dir);
  td_repair_opts ro;
  td_repair_opts_default(&ro);
  ro.run = buggy;
  ro.out = fx;
  ro.budget = 40;
  ro.rounds = 1;
  ro.epochs_per_round = 1;
  ro.strategy = TD_SELECT_RANDOM;
  ro.balance = 1;
  ro.lr_scale = 3; /* the parent's 0.05: 0.15 for its one epoch */
  ro.threads = 1;
  ro.quiet = 1;
  td_repair_result res;
  td_err err = {0};
  CHECK_OK(td_repair(&ro, &res, &err), &err);
  td_repair_result_free(&res);
  int64_t ns = 0, nt = 0, ny = 0;
  snprintf(path, sizeof path, "%s/select.npy", fx);
  int32_t *s = td_t_load_i32(path, &ns);
  snprintf(path, sizeof path, "%s/select_times.npy", fx);
  int32_t *t = td_t_load_i32(path, &nt);
  snprintf(path, sizeof path, "%s/train_labels.npy", fx);
  int32_t *y = td_t_load_i32(path, &ny);
  CHECK(s && t && y && nt == ns);
  int64_t once[C] = {0}, tot[C] = {0}, lo = INT64_MAX, hi = 0;
  for (int64_t j = 0; s && t && y && j < ns; j++)
    once[y[s[j]]]++, tot[y[s[j]]] += t[j];
  for (int l = 0; l < C; l++) {
    lo = tot[l] < lo ? tot[l] : lo;
    hi = tot[l] > hi ? tot[l] : hi;
    fprintf(stderr, "  label %d: %lld samples, counted %lld times\n", l,
            (long long)once[l], (long long)tot[l]);
  }
  free(s);
  free(t);
  free(y);
  CHECK(once[0] * 3 < hi); /* starved */
  CHECK(lo * 3 > hi * 2);  /* each within a third of the largest */
  /* --lr-scale: the recorded rate of the fine-tuning epoch */
  snprintf(path, sizeof path, "%s/epochs/0001/epoch.json", fx);
  char *txt = NULL;
  size_t n = 0;
  CHECK_INT(td_read_file(path, &txt, &n, NULL), ==, TD_OK);
  const char *at = strstr(txt, "\"lr\":");
  double lr = at ? strtod(at + 5, NULL) : -1;
  if (!at)
    fprintf(stderr, "  %s: %s\n", path, txt);
  free(txt);
  CHECK_NEAR(lr, 0.15, 1e-6);
}

int main(void) {
  const char *t = td_t_tmpdir("repair_recipe");
  if (!t)
    return 1;
  snprintf(dir, sizeof dir, "%s", t);
  snprintf(data, sizeof data, "%s/data", dir);
  make_dataset(data);
  RUN(test_select_times_steps);
  RUN(test_select_times_resume);
  RUN(test_select_times_refused);
  RUN(test_repair_pick_repeat);
  RUN(test_repair_balance);
  return td_t_finish();
}
