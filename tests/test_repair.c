/* Model repair (MODE, docs/repair.md): the pool and starved labels of
 * `tardis train` (--pool, --class-fraction), the diagnosis of a run with a
 * planted bug, heat maps against a naive computation, a small repair end to
 * end, and the refusals. Runs the `tardis` command on a slice of
 * Fashion-MNIST. */
#include <jansson.h>
#include <math.h>
#include <sys/wait.h>

#include "harness.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"
#include "train/pool.h"

static char bin[4096], dir[4096];

/* Runs `tardis ARGS > out 2>&1`; returns the exit status. */
static int tardis(const char *out, const char *args) {
  char cmd[40000];
  snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", bin, args, out);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *slurp(const char *path) {
  char *data = NULL;
  size_t len;
  if (td_read_file(path, &data, &len, NULL) != TD_OK)
    return NULL;
  return data;
}

/* Loads an int32 index array (NULL when absent or of another type). */
static int32_t *load_i32(const char *path, int64_t *n) {
  td_array a;
  td_err err = {0};
  if (td_npy_load(path, &a, &err) != TD_OK)
    return NULL;
  int32_t *v = NULL;
  if (a.dtype == TD_I32 && a.ndim == 1 &&
      (v = malloc((size_t)(a.shape[0] ? a.shape[0] : 1) * sizeof *v))) {
    memcpy(v, a.data, (size_t)a.shape[0] * sizeof *v);
    *n = a.shape[0];
  }
  td_array_close(&a);
  return v;
}

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
static char buggy[4200];

static void test_train_pool(void) {
  char out[4200], args[9000], path[4300];
  snprintf(buggy, sizeof buggy, "%s/buggy", dir);
  snprintf(out, sizeof out, "%s/train.txt", dir);
  snprintf(args, sizeof args,
           "train --out '%s' --limit 6000 --epochs 6 --pool 0.5 "
           "--class-fraction 0:0.05,6:0.05 --threads 2 --quiet --seed 3",
           buggy);
  CHECK_INT(tardis(out, args), ==, 0);
  int64_t np = 0, nt = 0, n_lab = 0;
  snprintf(path, sizeof path, "%s/pool.npy", buggy);
  int32_t *pool = load_i32(path, &np);
  snprintf(path, sizeof path, "%s/epochs/0006/trained.npy", buggy);
  int32_t *tr = load_i32(path, &nt);
  snprintf(path, sizeof path, "%s/train_labels.npy", buggy);
  int32_t *y = load_i32(path, &n_lab);
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
  char *rj = slurp(path);
  CHECK(rj && strstr(rj, "\"class_fraction\": \"0:0.05,6:0.05\""));
  free(rj);
  /* tardis info still reads and validates it */
  snprintf(args, sizeof args, "info '%s'", buggy);
  CHECK_INT(tardis(out, args), ==, 0);
  char *txt = slurp(out);
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
  CHECK_INT(tardis(out, args), ==, 1);
  char *txt = slurp(out);
  CHECK(txt && strstr(txt, "not with --select, --tasks or --from"));
  free(txt);
  snprintf(args, sizeof args,
           "train --out '%s/r2' --limit 600 --epochs 1 "
           "--class-fraction 12:0.5 --quiet",
           dir);
  CHECK_INT(tardis(out, args), ==, 1);
  txt = slurp(out);
  CHECK(txt && strstr(txt, "label 12 is not in 0..9"));
  free(txt);
  snprintf(args, sizeof args,
           "train --out '%s/r3' --limit 600 --epochs 1 --pool 1 --quiet", dir);
  CHECK_INT(tardis(out, args), ==, 2);
}

int main(void) {
  const char *b = getenv("TD_BIN");
  if (!b) {
    fprintf(stderr, "TD_BIN is not set (ctest sets it to the tardis binary)\n");
    return 1;
  }
  snprintf(bin, sizeof bin, "%s", b);
  snprintf(dir, sizeof dir, "%s", td_t_tmpdir("repair"));
  RUN(test_pool_split);
  RUN(test_train_pool);
  RUN(test_train_pool_refusals);
  return td_t_finish();
}
