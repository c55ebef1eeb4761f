/* Reproducible projections, through the `tardis` command: the same run,
 * options and seed give bit-identical RUN/vis/ files whatever --threads,
 * and when projected twice. The one exception is what a projection measures
 * about itself: the stage timings of projection.json, which are left out of
 * the comparison by name (every other byte of every file must match). */
#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli_util.h"
#include "harness.h"
#include "tardis/fsutil.h"

static char bin[4096], dir[4096];

/* The wall-clock fields put_timing writes into each epoch's projection.json;
 * nothing else in vis/ depends on time. */
static const char *const timing_keys[] = {
    "seconds",     "boundary_seconds",  "knn_seconds",
    "fit_seconds", "territory_seconds", "write_seconds"};
#define N_TIMING_KEYS (sizeof timing_keys / sizeof timing_keys[0])

static int shell(const char *cmd) {
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int is_projection_json(const char *path) {
  const char *slash = strrchr(path, '/');
  return strcmp(slash ? slash + 1 : path, "projection.json") == 0;
}

/* projection.json with the timings removed; each must be there, a number. */
static json_t *load_untimed(const char *path) {
  json_error_t je;
  json_t *j = json_load_file(path, 0, &je);
  if (!j) {
    fprintf(stderr, "  %s: %s\n", path, je.text);
    return NULL;
  }
  for (size_t i = 0; i < N_TIMING_KEYS; i++) {
    if (!json_is_number(json_object_get(j, timing_keys[i]))) {
      fprintf(stderr, "  %s: no number \"%s\"\n", path, timing_keys[i]);
      json_decref(j);
      return NULL;
    }
    json_object_del(j, timing_keys[i]);
  }
  return j;
}

static int same_file(const char *a, const char *b) {
  char *da = NULL, *db = NULL;
  size_t la = 0, lb = 0;
  int ok = td_read_file(a, &da, &la, NULL) == TD_OK &&
           td_read_file(b, &db, &lb, NULL) == TD_OK;
  if (ok && !(la == lb && memcmp(da, db, la) == 0)) {
    ok = 0;
    if (is_projection_json(a)) {
      json_t *ja = load_untimed(a), *jb = load_untimed(b);
      ok = ja && jb && json_equal(ja, jb);
      json_decref(ja);
      json_decref(jb);
    }
  }
  free(da);
  free(db);
  if (!ok)
    fprintf(stderr, "  %s and %s differ\n", a, b);
  return ok;
}

/* Compares every regular file under a (recursively) with its namesake under
 * b; returns the number of files compared, or -1 on a difference. */
static int64_t same_tree(const char *a, const char *b) {
  DIR *d = opendir(a);
  if (!d) {
    fprintf(stderr, "  %s: cannot open\n", a);
    return -1;
  }
  int64_t n = 0;
  struct dirent *e;
  while (n >= 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    char pa[8192], pb[8192];
    struct stat st;
    snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
    snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
    if (stat(pa, &st) != 0) {
      n = -1;
    } else if (S_ISDIR(st.st_mode)) {
      int64_t m = same_tree(pa, pb);
      n = m < 0 ? -1 : n + m;
    } else {
      n = same_file(pa, pb) ? n + 1 : -1;
    }
  }
  closedir(d);
  return n;
}

/* The two vis/ trees hold the same files with the same contents. */
static int same_vis(const char *run_a, const char *run_b) {
  char a[4400], b[4400];
  snprintf(a, sizeof a, "%s/%s/vis", dir, run_a);
  snprintf(b, sizeof b, "%s/%s/vis", dir, run_b);
  int64_t na = same_tree(a, b), nb = same_tree(b, a);
  if (na >= 0 && na != nb)
    fprintf(stderr, "  %s has %lld files, %s %lld\n", a, (long long)na, b,
            (long long)nb);
  /* a real projection: two epochs of at least the arrays, model and JSON */
  return na >= 20 && na == nb;
}

/* Projects a copy of the trained run (dir/run) into dir/<name>. */
static int project(const char *name, const char *threads) {
  char cmd[6 * 4096 + 256];
  snprintf(cmd, sizeof cmd,
           "cp -r '%s/run' '%s/%s' && '%s' project '%s/%s' --threads %s "
           "> '%s/%s.log' 2>&1",
           dir, dir, name, bin, dir, name, threads, dir, name);
  return shell(cmd);
}

static void test_threads_and_repeat(void) {
  /* Two epochs, so the second is fitted against the first (the temporal
   * anchor); a slice of Fashion-MNIST small enough to take seconds. */
  char cmd[3 * 4096 + 256];
  snprintf(cmd, sizeof cmd,
           "'%s' train --out '%s/run' --epochs 2 --limit 1000 --noise 0.1 "
           "--seed 3 --quiet > '%s/train.log' 2>&1",
           bin, dir, dir);
  CHECK_INT(shell(cmd), ==, 0);
  CHECK_INT(project("t1", "1"), ==, 0);
  CHECK_INT(project("t2", "2"), ==, 0);
  CHECK_INT(project("t3", "3"), ==, 0);
  CHECK_INT(project("t2b", "2"), ==, 0);
  CHECK(same_vis("t1", "t2"));
  CHECK(same_vis("t1", "t3"));
  CHECK(same_vis("t2", "t2b"));
}

int main(void) {
  if (td_t_cli_setup(bin, sizeof bin, dir, sizeof dir, "determinism"))
    return 1;
  RUN(test_threads_and_repeat);
  return td_t_finish();
}
