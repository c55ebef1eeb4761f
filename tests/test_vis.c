/* RUN/vis/ through the vis module: what the writer commits the readers load,
 * what the table forbids neither writes nor reads, an unfinished epoch stays
 * invisible and is cleared on resume, and paths that do not fit are refused.
 */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <sys/wait.h>

#include "harness.h"
#include "sus_fixture.h"
#include "tardis/vis.h"

#define B 5 /* boundary samples */
#define R 8 /* territory resolution */

static char run_dir[4096];

static void fill(float *v, int64_t n, float base) {
  for (int64_t i = 0; i < n; i++)
    v[i] = base + 0.25f * (float)i;
}

static void dims_of(td_vis_dims *d) {
  td_vis_dims_unknown(d);
  d->n_train = SF_N;
  d->n_test = SF_N / 3;
  d->n_ood = 0;
  d->n_boundary = B;
  d->repr_dim = SF_D;
  d->res = R;
}

/* Every file the table asks of a pca epoch; train_embedding starts at base.
 * Stops before the files listed in skip (a comma-separated list). */
static int put_epoch(td_vis_writer *w, float base, const char *skip,
                     td_err *err) {
  static float tr[SF_N * 2], te[SF_N / 3 * 2], br[B * SF_D], be[B * 2];
  static float conf[R * R], pca[3 * SF_D];
  static int32_t pairs[B * 2];
  static uint8_t cls[R * R];
  fill(tr, SF_N * 2, base);
  fill(te, SF_N / 3 * 2, -base);
  fill(br, B * SF_D, 1);
  fill(be, B * 2, 2);
  fill(conf, R * R, 0);
  fill(pca, 3 * SF_D, 0.5f);
  int64_t ps[2] = {B, 2}, rs[2] = {R, R};
  int rc = TD_OK;
#define PUT(name, call)                                                        \
  if (rc == TD_OK && !strstr(skip, name))                                      \
  rc = (call)
  PUT("train_embedding",
      td_vis_put_f32(w, "train_embedding.npy", tr, SF_N, 2, err));
  PUT("test_embedding",
      td_vis_put_f32(w, "test_embedding.npy", te, SF_N / 3, 2, err));
  PUT("boundary_repr",
      td_vis_put_f32(w, "boundary_repr.npy", br, B, SF_D, err));
  PUT("boundary_pairs",
      td_vis_put_array(w, "boundary_pairs.npy", TD_I32, 2, ps, pairs, err));
  PUT("boundary_embedding",
      td_vis_put_f32(w, "boundary_embedding.npy", be, B, 2, err));
  PUT("territory_class",
      td_vis_put_array(w, "territory_class.npy", TD_U8, 2, rs, cls, err));
  PUT("territory_conf",
      td_vis_put_f32(w, "territory_conf.npy", conf, R, R, err));
  PUT("territory.json",
      td_vis_put_json(w, "territory.json",
                      "{\"res\": 8, \"extent\": [0, 0, 1, 1]}", err));
  PUT("projection.json",
      td_vis_put_json(w, "projection.json", "{\"epoch\": 1}", err));
  PUT("pca", td_vis_put_f32(w, "pca.npy", pca, 3, SF_D, err));
#undef PUT
  return rc;
}

static int write_epoch(int epoch, float base, td_err *err) {
  td_vis_dims d;
  dims_of(&d);
  td_vis_writer *w;
  int rc = td_vis_epoch_begin(run_dir, "pca", epoch, &d, &w, err);
  if (rc)
    return rc;
  if ((rc = put_epoch(w, base, "", err))) {
    td_vis_epoch_abort(w);
    return rc;
  }
  return td_vis_epoch_commit(w, err);
}

/* Entries of RUN/vis/pca whose name starts with prefix. */
static int count_entries(const char *prefix) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/vis/pca", run_dir);
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d)))
    n += !strncmp(de->d_name, prefix, strlen(prefix));
  if (d)
    closedir(d);
  return n;
}

static void test_round_trip(void) {
  td_err err;
  CHECK_OK(write_epoch(2, 3.0f, &err), &err);
  CHECK_OK(write_epoch(4, 5.0f, &err), &err);
  CHECK_INT(count_entries(".tmp-"), ==, 0);
  td_run *run;
  CHECK_OK(td_run_open(run_dir, &run, &err), &err);
  int *eps, n;
  CHECK_OK(td_vis_list_epochs(run, "pca", &eps, &n, &err), &err);
  CHECK_INT(n, ==, 2);
  CHECK_INT(eps[0], ==, 2);
  CHECK_INT(eps[1], ==, 4);
  free(eps);
  td_array y;
  CHECK_OK(td_vis_load_embedding(run_dir, "pca", 4, "train", SF_N, &y, &err),
           &err);
  CHECK_INT(y.shape[0], ==, SF_N);
  CHECK_NEAR(((const float *)y.data)[3], 5.0f + 0.75f, 0);
  td_array_close(&y);
  CHECK_OK(td_vis_load_embedding(run_dir, "pca", 4, "boundary", -1, &y, &err),
           &err);
  CHECK_INT(y.shape[0], ==, B);
  td_array_close(&y);
  char dir[4200];
  CHECK_OK(td_vis_epoch_find(run, "pca", 2, dir, sizeof dir, &err), &err);
  CHECK_STR_CONTAINS(dir, "/vis/pca/epoch_0002");
  td_vis_dims d;
  td_vis_dims_of_run(run, &d);
  CHECK_OK(td_vis_check_epoch(dir, "pca", &d, &err), &err);
  /* the method decides what is required: a dvi epoch needs model/ */
  CHECK_INT(td_vis_check_epoch(dir, "dvi", &d, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "model");
  CHECK_INT(td_vis_epoch_find(run, "pca", 3, dir, sizeof dir, &err), ==,
            TD_ENOENT);
  CHECK_INT(td_vis_list_epochs(run, "dvi", &eps, &n, &err), ==, TD_ENOENT);
  td_run_close(run);
}

/* Replacing an epoch (a live draft by its fit) never leaves a moment
 * without it: a child process rewrites epoch 6 again and again while this
 * one looks for its territory.json; with remove-then-rename the look
 * finds the gap. The last write is the one that stays. */
static void test_replace_never_vanishes(void) {
  td_err err;
  CHECK_OK(write_epoch(6, 0.0f, &err), &err);
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/vis/pca/epoch_0006/territory.json",
           run_dir);
  enum { REWRITES = 60 };
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    for (int k = 1; k <= REWRITES; k++)
      if (write_epoch(6, (float)k, &err)) {
        fprintf(stderr, "rewrite %d: %s\n", k, err.msg);
        _exit(1);
      }
    _exit(0);
  }
  long looks = 0, missing = 0;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    looks++;
    missing += !td_path_exists(probe);
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  fprintf(stderr, "  %ld looks during %d rewrites, %ld found no epoch\n", looks,
          REWRITES, missing);
  CHECK_INT(missing, ==, 0);
  CHECK_INT(count_entries(".tmp-"), ==, 0);
  td_array y;
  CHECK_OK(td_vis_load_embedding(run_dir, "pca", 6, "train", SF_N, &y, &err),
           &err);
  CHECK_NEAR(((const float *)y.data)[0], (float)REWRITES, 0);
  td_array_close(&y);
}

/* The writer refuses what the table forbids, naming the file. */
static void test_writer_refuses(void) {
  td_err err;
  td_vis_dims d;
  dims_of(&d);
  td_vis_writer *w;
  CHECK_OK(td_vis_epoch_begin(run_dir, "pca", 5, &d, &w, &err), &err);
  float v[SF_N * 2];
  fill(v, SF_N * 2, 0);
  CHECK_INT(td_vis_put_f32(w, "train_embedding.npy", v, SF_N - 1, 2, &err), ==,
            TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "train_embedding.npy: expected float32 [N, 2]");
  CHECK_STR_CONTAINS(err.msg, "N = 300");
  v[7] = NAN;
  CHECK_INT(td_vis_put_f32(w, "train_embedding.npy", v, SF_N, 2, &err), ==,
            TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "train_embedding.npy: value 7 is NaN");
  int64_t sh[2] = {SF_N, 2};
  CHECK_INT(td_vis_put_array(w, "train_embedding.npy", TD_I32, 2, sh, v, &err),
            ==, TD_ESHAPE);
  CHECK_INT(td_vis_put_f32(w, "notes.npy", v, 1, 2, &err), ==, TD_EARG);
  /* an epoch with a required file missing is never published */
  CHECK_OK(put_epoch(w, 1.0f, "test_embedding", &err), &err);
  CHECK_INT(td_vis_epoch_commit(w, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "test_embedding.npy: missing");
  CHECK(!td_vis_epoch_done(run_dir, "pca", 5));
  CHECK_INT(count_entries(".tmp-"), ==, 0);
}

/* Files spoiled on disk after the commit: every reader refuses them with a
 * message naming the file. */
static void test_reader_refuses(void) {
  td_err err;
  CHECK_OK(write_epoch(6, 1.0f, &err), &err);
  char p[4400];
  CHECK_OK(td_vis_epoch_path(run_dir, "pca", 6, "train_embedding.npy", p,
                             sizeof p, &err),
           &err);
  int32_t iv[SF_N * 2] = {0};
  float fv[SF_N * 3];
  fill(fv, SF_N * 3, 0);
  int64_t sh[2] = {SF_N, 2}, sh3[2] = {SF_N, 3};
  td_array y;
  CHECK_OK(td_npy_save_raw(p, TD_I32, 2, sh, iv, &err), &err);
  CHECK_INT(td_vis_load_embedding(run_dir, "pca", 6, "train", SF_N, &y, &err),
            ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, p);
  CHECK_STR_CONTAINS(err.msg, "found int32");
  CHECK_OK(td_npy_save_raw(p, TD_F32, 2, sh3, fv, &err), &err);
  CHECK_INT(td_vis_load_embedding(run_dir, "pca", 6, "train", SF_N, &y, &err),
            ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "train_embedding.npy: expected float32 [N, 2]");
  CHECK_INT(
      td_vis_load_embedding(run_dir, "pca", 6, "train", SF_N + 1, &y, &err), ==,
      TD_ESHAPE);
  fv[2 * 10 + 1] = INFINITY;
  CHECK_OK(td_npy_save_raw(p, TD_F32, 2, sh, fv, &err), &err);
  CHECK_INT(td_vis_load_embedding(run_dir, "pca", 6, "train", SF_N, &y, &err),
            ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "train_embedding.npy: value 21 is NaN");
  CHECK_INT(
      td_vis_load_embedding(run_dir, "pca", 6, "sideways", SF_N, &y, &err), ==,
      TD_EARG);
  CHECK_INT(td_vis_load_embedding(run_dir, "pca", 6, "ood", -1, &y, &err), ==,
            TD_ENOENT);
}

/* A pid that is certainly not running: a child that has exited. */
static int dead_pid(void) {
  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  waitpid(pid, NULL, 0);
  return (int)pid;
}

static void test_unfinished_epoch(void) {
  td_err err;
  td_vis_dims d;
  dims_of(&d);
  td_vis_writer *w;
  CHECK_OK(td_vis_epoch_begin(run_dir, "pca", 1, &d, &w, &err), &err);
  CHECK_OK(put_epoch(w, 0, "pca", &err), &err);
  /* while it is written, readers do not see it */
  td_run *run;
  CHECK_OK(td_run_open(run_dir, &run, &err), &err);
  int *eps, n;
  CHECK_OK(td_vis_list_epochs(run, "pca", &eps, &n, &err), &err);
  for (int i = 0; i < n; i++)
    CHECK(eps[i] != 1);
  free(eps);
  CHECK(!td_vis_epoch_done(run_dir, "pca", 1));
  CHECK_INT(count_entries(".tmp-0001-"), ==, 1);
  /* the writer is killed: its directory now belongs to a dead process */
  char dead[4400];
  snprintf(dead, sizeof dead, "%s/vis/pca/.tmp-0001-%d", run_dir, dead_pid());
  CHECK_INT(rename(td_vis_writer_dir(w), dead), ==, 0);
  free(w); /* what the killed process would have lost */
  /* a writer on another host sharing RUN (mpirun over hosts): its pid
   * says nothing here, so its directory stays */
  char other[4400];
  snprintf(other, sizeof other, "%s/vis/pca/.tmp-0002-other.host-%d", run_dir,
           dead_pid());
  CHECK_INT(mkdir(other, 0755), ==, 0);
  /* a live writer's directory is left alone ... */
  td_vis_writer *live;
  CHECK_OK(td_vis_epoch_begin(run_dir, "pca", 3, &d, &live, &err), &err);
  CHECK(!td_path_exists(dead)); /* ... the dead one's is cleared */
  CHECK(td_path_exists(other));
  td_vis_epoch_abort(live);
  CHECK_OK(td_remove_tree(other, &err), &err);
  CHECK_INT(count_entries(".tmp-"), ==, 0);
  td_run_close(run);
}

static void test_paths(void) {
  td_err err;
  char buf[64];
  CHECK_OK(td_vis_epoch_path("/r", "dvi", 7, "territory.json", buf, sizeof buf,
                             &err),
           &err);
  CHECK(!strcmp(buf, "/r/vis/dvi/epoch_0007/territory.json"));
  CHECK_OK(td_vis_suspects_path("/r", "pca", "npy", buf, sizeof buf, &err),
           &err);
  CHECK(!strcmp(buf, "/r/vis/suspects-pca.npy"));
  CHECK_OK(
      td_vis_method_path("/r", "dvi", "metrics.json", buf, sizeof buf, &err),
      &err);
  CHECK(!strcmp(buf, "/r/vis/dvi/metrics.json"));
  /* too long: refused with a message, and the buffer is left empty */
  static char longdir[6000];
  memset(longdir, 'a', sizeof longdir - 1);
  longdir[0] = '/';
  CHECK_INT(td_vis_epoch_path("/r", "dvi", 7, "territory.json", buf, 20, &err),
            ==, TD_ERANGE);
  CHECK_STR_CONTAINS(err.msg, "path too long");
  CHECK(buf[0] == '\0');
  char big[4096];
  CHECK_INT(td_vis_epoch_dir(longdir, "dvi", 1, big, sizeof big), ==,
            TD_ERANGE);
  td_vis_dims d;
  dims_of(&d);
  td_vis_writer *w;
  CHECK_INT(td_vis_epoch_begin(longdir, "dvi", 1, &d, &w, &err), ==, TD_ERANGE);
  CHECK(w == NULL);
  td_array y;
  CHECK_INT(td_vis_load_embedding(longdir, "dvi", 1, "train", -1, &y, &err), ==,
            TD_ERANGE);
  /* a method is a plain name */
  CHECK_INT(td_vis_method_dir("/r", "../x", big, sizeof big, &err), ==,
            TD_EARG);
  CHECK_INT(td_vis_epoch_path("/r", "", 1, "f", big, sizeof big, &err), ==,
            TD_EARG);
  CHECK_INT(td_vis_epoch_begin(run_dir, "a/b", 1, &d, &w, &err), ==, TD_EARG);
}

/* The table is what docs/vis-format.md lists. */
static void test_spec_documented(void) {
  char *doc;
  size_t len, n;
  td_err err;
  const char *src = getenv("TD_SRC"); /* set by CTest */
  CHECK(src != NULL);
  char path[4200];
  snprintf(path, sizeof path, "%s/docs/vis-format.md", src);
  CHECK_OK(td_read_file(path, &doc, &len, &err), &err);
  const td_vis_file_spec *s = td_vis_spec(&n);
  for (size_t i = 0; i < n; i++) {
    CHECK_STR_CONTAINS(doc, s[i].name);
    if (s[i].kind == TD_VIS_NPY) {
      char want[64];
      snprintf(want, sizeof want, "%s", td_dtype_name(s[i].dtype));
      CHECK_STR_CONTAINS(doc, want);
    }
  }
  free(doc);
}

int main(void) {
  const char *tmp = td_t_tmpdir("test_vis");
  td_err err;
  if (!tmp)
    return 1;
  if (snprintf(run_dir, sizeof run_dir, "%.4000s/run", tmp) >=
      (int)sizeof run_dir)
    return 1;
  if (sf_make_run(run_dir, 0, 0, &err)) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    return 1;
  }
  RUN(test_round_trip);
  RUN(test_replace_never_vanishes);
  RUN(test_writer_refuses);
  RUN(test_reader_refuses);
  RUN(test_unfinished_epoch);
  RUN(test_paths);
  RUN(test_spec_documented);
  return td_t_finish();
}
