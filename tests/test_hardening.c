/* Regression tests of issue 14's defects, each on a copy of one small real
 * run: a projection of the wrong dimension, absurd territory extents,
 * unaligned .npy data, FIFOs in place of files, a head that no longer
 * reproduces the logits, resuming from a damaged projection, the suspects
 * cache and run.json, stale temporary epochs, `train --force` on a failing
 * disk and `render` on one. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"
#include "tardis/suspects.h"

static char bin[4096], dir[4096], base[4200], run[4200];
static char *out_txt;

/* Runs a shell command (fmt: %1$s the binary, %2$s the run copy) with
 * stdout+stderr in out_txt; returns its exit status. */
static int sh(const char *fmt) {
  char body[16384], cmd[24000], out[4300];
  snprintf(body, sizeof body, fmt, bin, run);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  snprintf(cmd, sizeof cmd, "( %s ) > '%s' 2>&1", body, out);
  int st = system(cmd);
  free(out_txt);
  out_txt = NULL;
  size_t len;
  if (td_read_file(out, &out_txt, &len, NULL) != TD_OK)
    out_txt = NULL;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* A fresh copy of the projected base run at `run`. */
static int fresh(void) {
  char cmd[16000];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", run, base, run);
  return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *p, size_t len, const char *rel) {
  snprintf(p, len, "%s/%s", run, rel);
}

/* Rewrites a float32 .npy in place of rel: values scaled by k, or the first
 * value set to v when k is 0. */
static int edit_f32(const char *rel, float k, float v) {
  char p[4400];
  path_of(p, sizeof p, rel);
  td_array a, c;
  td_err err;
  if (td_npy_load(p, &a, &err) || td_array_alloc(&c, a.dtype, a.ndim, a.shape))
    return -1;
  memcpy(c.data, a.data, a.nbytes);
  td_array_close(&a);
  float *x = c.data;
  if (k == 0)
    x[0] = v;
  else
    for (int64_t i = 0; i < td_array_count(&c); i++)
      x[i] *= k;
  int rc = td_npy_save(p, &c, &err);
  td_array_close(&c);
  return rc;
}

static void test_projection_dimension(void) {
  CHECK_INT(fresh(), ==, 0);
  for (int D = 200; D >= 100; D -= 100) {
    static float z[3 * 200];
    int64_t sh3[2] = {3, D};
    char p[4400];
    path_of(p, sizeof p, "vis/dvi/epoch_0002/pca.npy");
    CHECK_OK(td_npy_save_raw(p, TD_F32, 2, sh3, z, NULL), NULL);
    CHECK_INT(sh("%1$s eval %2$s"), ==, 1);
    CHECK_STR_CONTAINS(out_txt, "pca.npy: expected float32 3×128");
  }
}

static void test_territory_extent(void) {
  CHECK_INT(fresh(), ==, 0);
  char p[4400];
  path_of(p, sizeof p, "vis/dvi/epoch_0002/territory.json");
  const char *bad = "{\"extent\": [-1e308, -13, 1e308, 8], \"res\": 256}";
  CHECK_OK(td_write_file_atomic(p, bad, strlen(bad), NULL), NULL);
  CHECK_INT(sh("%1$s eval %2$s"), ==, 1);
  CHECK_STR_CONTAINS(out_txt, "territory.json: expected");
  CHECK_INT(sh("%1$s render %2$s --epoch 2 --out %2$s/x.png"), ==, 1);
  CHECK_STR_CONTAINS(out_txt, "territory.json: expected");
}

/* numpy reads a file whose data starts at any offset; elements must not be
 * read in place at an unaligned address (UBSan, strict-alignment CPUs). */
static void test_unaligned_npy(void) {
  char p[4400];
  snprintf(p, sizeof p, "%s/odd.npy", dir);
  static const char head[] = "\x93NUMPY\x01\x00\x3b\x00"
                             "{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (3,), } \n";
  /* 10 + 59 = 69: the data starts at an odd offset */
  float v[3] = {1.5f, -2.25f, 1e-3f};
  unsigned char buf[128];
  size_t hn = sizeof head - 1;
  CHECK_INT(hn, ==, 69);
  memcpy(buf, head, hn);
  memcpy(buf + hn, v, sizeof v);
  CHECK_OK(td_write_file_atomic(p, buf, hn + sizeof v, NULL), NULL);
  td_array a;
  td_err err;
  CHECK_OK(td_npy_load(p, &a, &err), &err);
  CHECK_INT((uintptr_t)a.data % 8, ==, 0);
  CHECK(!memcmp(a.data, v, sizeof v));
  td_array_close(&a);
}

static void test_fifo(void) {
  static const char *const files[] = {"epochs/0002/head.json",
                                      "epochs/0002/train_repr.npy", "run.json",
                                      "vis/dvi/epoch_0002/territory.json"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    CHECK_INT(fresh(), ==, 0);
    char p[4400];
    path_of(p, sizeof p, files[i]);
    CHECK_INT(unlink(p), ==, 0);
    CHECK_INT(mkfifo(p, 0644), ==, 0);
    const char *cmd =
        i == 3 ? "timeout 20 %1$s eval %2$s" : "timeout 20 %1$s info %2$s";
    CHECK_INT(sh(cmd), ==, 1); /* 124: timed out, the old hang */
    CHECK_STR_CONTAINS(out_txt, "not a regular file (a FIFO)");
    CHECK_STR_CONTAINS(out_txt, files[i]);
  }
}

static void test_head_not_reproducing(void) {
  CHECK_INT(fresh(), ==, 0);
  CHECK_INT(edit_f32("epochs/0002/head_0_w.npy", 2.0f, 0), ==, 0);
  static const char *const cmds[] = {
      "%1$s project %2$s",  "%1$s project %2$s --force --epochs 2:2 --res 16",
      "%1$s eval %2$s",     "%1$s render %2$s --epoch 2 --out %2$s/x.png",
      "%1$s suspects %2$s", "%1$s alerts %2$s"};
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
    CHECK_INT(sh(cmds[i]), ==, 1);
    CHECK_STR_CONTAINS(out_txt, "head.json: the head does not reproduce");
  }
}

static void test_resume_from_damaged_projection(void) {
  CHECK_INT(fresh(), ==, 0);
  CHECK_INT(edit_f32("vis/dvi/epoch_0001/train_embedding.npy", 0, NAN), ==, 0);
  char p[4400];
  path_of(p, sizeof p, "vis/dvi/epoch_0002");
  td_remove_tree_best_effort(p);
  CHECK_INT(sh("%1$s project %2$s --res 16"), ==, 1);
  CHECK_STR_CONTAINS(out_txt, "continues from the projection of epoch 1, "
                              "which is unusable");
  CHECK_STR_CONTAINS(out_txt, "train_embedding.npy");
}

static void test_suspects_cache_keyed_on_run_json(void) {
  CHECK_INT(fresh(), ==, 0);
  td_run *r;
  td_err err;
  td_sus_features f;
  int cached = -1;
  CHECK_OK(td_run_open(run, &r, &err), &err);
  CHECK_OK(td_sus_features_get(r, NULL, &f, &cached, NULL, &err), &err);
  td_sus_features_close(&f);
  CHECK_OK(td_sus_features_get(r, NULL, &f, &cached, NULL, &err), &err);
  td_sus_features_close(&f);
  td_run_close(r);
  CHECK_INT(cached, ==, 1);
  /* the same size and mtime, another class list */
  char p[4400], cmd[30000];
  path_of(p, sizeof p, "run.json");
  snprintf(cmd, sizeof cmd,
           "cp -p '%s' '%s.orig' && sed -i 's/\"Bag\"/\"Bog\"/' '%s' && "
           "touch -r '%s.orig' '%s'",
           p, p, p, p, p);
  CHECK_INT(system(cmd), ==, 0);
  CHECK_OK(td_run_open(run, &r, &err), &err);
  CHECK_OK(td_sus_features_get(r, NULL, &f, &cached, NULL, &err), &err);
  td_sus_features_close(&f);
  td_run_close(r);
  CHECK_INT(cached, ==, 0);
}

static void test_stale_temporary_epochs(void) {
  CHECK_INT(fresh(), ==, 0);
  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  CHECK(pid > 0);
  waitpid(pid, NULL, 0); /* pid is now a dead writer */
  char stale[4400], live[4400];
  snprintf(stale, sizeof stale, "%s/epochs/.tmp-0009-%d", run, (int)pid);
  snprintf(live, sizeof live, "%s/epochs/.tmp-0008-1", run); /* init lives */
  CHECK_INT(mkdir(stale, 0755), ==, 0);
  CHECK_INT(mkdir(live, 0755), ==, 0);
  td_epoch_writer *w;
  td_err err;
  CHECK_OK(td_epoch_begin(run, 3, &w, &err), &err);
  td_epoch_abort(w);
  CHECK(!td_path_exists(stale));
  CHECK(td_path_exists(live));
}

static void test_force_keeps_old_run(void) {
  CHECK_INT(fresh(), ==, 0);
  /* a file size limit fails the new run's first big write (EFBIG), as a
   * full disk would */
  CHECK_INT(sh("trap '' XFSZ; ulimit -f 100; %1$s train --out %2$s --force "
               "--limit 2000 --epochs 1 --quiet"),
            ==, 1);
  CHECK_INT(sh("%1$s info %2$s"), ==, 0);
  CHECK_STR_CONTAINS(out_txt, "run is valid");
  CHECK_STR_CONTAINS(out_txt, "300"); /* the old run's n_train */
  CHECK_INT(sh("ls -d %2$s.old-* 2>/dev/null | wc -l"), ==, 0);
  CHECK(out_txt && out_txt[0] == '0');
  /* and a forced run that succeeds replaces it */
  CHECK_INT(sh("%1$s train --out %2$s --force --limit 360 --epochs 1 --quiet"),
            ==, 0);
  CHECK_INT(sh("%1$s info %2$s --quick"), ==, 0);
  CHECK_STR_CONTAINS(out_txt, "360");
}

static void test_render_write_error(void) {
  CHECK_INT(fresh(), ==, 0);
  CHECK_INT(sh("trap '' XFSZ; ulimit -f 8; %1$s render %2$s --epoch 2 --out "
               "%2$s/big.png"),
            ==, 1);
  CHECK_STR_CONTAINS(out_txt, "big.png.tmp.");
  CHECK_STR_CONTAINS(out_txt, strerror(EFBIG));
  CHECK_INT(
      sh("trap '' XFSZ; ulimit -f 8; %1$s render %2$s --gif %2$s/big.gif"), ==,
      1);
  CHECK_STR_CONTAINS(out_txt, "big.gif.tmp.");
  CHECK_STR_CONTAINS(out_txt, strerror(EFBIG));
}

int main(void) {
  const char *b = getenv("TD_BIN");
  if (!b) {
    fprintf(stderr, "TD_BIN is not set (ctest sets it to the tardis binary)\n");
    return 1;
  }
  snprintf(bin, sizeof bin, "%s", b);
  snprintf(dir, sizeof dir, "%s", td_t_tmpdir("hardening"));
  snprintf(base, sizeof base, "%s/base", dir);
  snprintf(run, sizeof run, "%s/run", dir);
  if (sh("rm -rf %2$s && %1$s train --out %2$s --limit 300 --epochs 2 "
         "--quiet && %1$s project %2$s --res 16") != 0 ||
      rename(run, base) != 0) {
    fprintf(stderr, "cannot make the base run:\n%s\n", out_txt);
    return 1;
  }
  RUN(test_projection_dimension);
  RUN(test_territory_extent);
  RUN(test_unaligned_npy);
  RUN(test_fifo);
  RUN(test_head_not_reproducing);
  RUN(test_resume_from_damaged_projection);
  RUN(test_suspects_cache_keyed_on_run_json);
  RUN(test_stale_temporary_epochs);
  RUN(test_force_keeps_old_run);
  RUN(test_render_write_error);
  free(out_txt);
  return td_t_finish();
}
