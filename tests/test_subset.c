/* Storage choices of run format v1 (docs/storage.md): subset runs
 * (RUN/subset.npy, one row per recorded sample) and float16 arrays. First
 * on a synthetic run written through the library (the view a subset run
 * reads as, and a clear error for every malformed subset.npy), then through
 * the `tardis` command on small real data (train --record-subset /
 * --repr-dtype, project, eval, suspects, diagnose, and the server's
 * per-sample routes). */
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "run/run_json.h"
#include "server_util.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"
#include "tardis/server.h"
#include "toy_run.h"

#define N 20
#define K 5
#define D 4
#define C 3

static const int32_t SUB[K] = {2, 5, 7, 11, 19};

static void pathf(char *buf, size_t len, const char *dir, const char *rel) {
  if (td_pathf(buf, len, NULL, "%s/%s", dir, rel))
    buf[0] = 0;
}

/* One epoch of K recorded rows: float16 representations and logits the
 * head reproduces (computed from the rounded representations). */
static int write_epoch(const char *dir, int epoch, td_err *err) {
  uint16_t r16[K * D], z16[K * C];
  float x[K * D], w[C * D], b[C] = {0.1f, -0.2f, 0.3f}, loss[K];
  for (int i = 0; i < C * D; i++)
    w[i] = (float)((i * 7 + epoch) % 5) - 2.0f;
  for (int i = 0; i < K * D; i++) {
    r16[i] = td_f32_to_f16((float)((i * 3 + epoch) % 11) / 4.0f - 1.0f);
    x[i] = td_f16_to_f32(r16[i]);
  }
  for (int i = 0; i < K; i++) {
    loss[i] = 0.5f + (float)i;
    for (int j = 0; j < C; j++) {
      float s = b[j];
      for (int k = 0; k < D; k++)
        s += w[j * D + k] * x[i * D + k];
      z16[i * C + j] = td_f32_to_f16(s);
    }
  }
  td_epoch_writer *wr;
  int rc = td_epoch_begin(dir, epoch, &wr, err);
  if (rc)
    return rc;
  rc = td_t_toy_put(wr, "train_repr", TD_F16, K, D, r16, err);
  if (!rc)
    rc = td_t_toy_put(wr, "train_logits", TD_F16, K, C, z16, err);
  if (!rc)
    rc = td_t_toy_put(wr, "train_loss", TD_F32, K, 0, loss, err);
  /* the commit adds the copy of subset.npy */
  json_t *ej = json_pack("{s:i}", "epoch", epoch);
  return td_t_toy_end(wr, rc, ej, w, b, D, C, err);
}

static int make_run(const char *dir, td_err *err) {
  static char c0[] = "a", c1[] = "b", c2[] = "c";
  char *classes[C] = {c0, c1, c2};
  td_run_meta m;
  td_t_toy_meta(&m, "subset", classes, C, N, 0, D);
  m.has_input_shape = 1;
  m.input_shape[0] = 1;
  m.input_shape[1] = 2;
  m.input_shape[2] = 2;
  int32_t lab[N], truth[N];
  uint8_t in[N * 4];
  for (int i = 0; i < N; i++) {
    lab[i] = i % C;
    truth[i] = (i + 1) % C;
    for (int k = 0; k < 4; k++)
      in[i * 4 + k] = (uint8_t)i;
  }
  td_array a;
  int64_t s_in[4] = {N, 1, 2, 2};
  int rc = td_run_create(dir, &m, 1, err);
  if (!rc)
    rc = td_t_toy_i32(dir, "subset", SUB, K, err);
  if (!rc)
    rc = td_t_toy_i32(dir, "train_labels", lab, N, err);
  if (!rc)
    rc = td_t_toy_i32(dir, "train_truth", truth, N, err);
  td_array_wrap(&a, TD_U8, 4, s_in, in);
  if (!rc)
    rc = td_run_write_array(dir, "train_inputs", &a, err);
  for (int e = 1; !rc && e <= 2; e++)
    rc = write_epoch(dir, e, err);
  return rc;
}

static int open_validate(const char *dir, td_err *err) {
  td_run *run;
  int rc = td_run_open(dir, &run, err);
  if (!rc)
    rc = td_run_validate(run, NULL, NULL, err);
  td_run_close(run);
  return rc;
}

static void save_i32(const char *dir, const char *rel, const int32_t *v,
                     int64_t n) {
  char p[4400];
  td_err err;
  pathf(p, sizeof p, dir, rel);
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, &n, v, &err), &err);
}

/* ---- the library -------------------------------------------------------- */

static void test_view(void) {
  const char *dir = td_t_tmpdir("subset_view");
  td_err err;
  CHECK_OK(make_run(dir, &err), &err);
  char p[4400];
  pathf(p, sizeof p, dir, "epochs/0002/subset.npy");
  CHECK(td_path_exists(p)); /* td_epoch_commit copied it */
  td_run *run;
  CHECK_OK(td_run_open(dir, &run, &err), &err);
  if (!run)
    return;
  CHECK_OK(td_run_validate(run, NULL, NULL, &err), &err);
  CHECK_OK(td_run_require_all_samples(run, "x", &err) == TD_OK ? TD_EARG
                                                               : TD_OK,
           &err);
  CHECK_STR_CONTAINS(err.msg, "records only 5 of the 20 training samples");
  const td_run_meta *m = td_run_get_meta(run);
  CHECK_INT(m->n_train, ==, K);
  CHECK_INT(td_run_n_train_all(run), ==, N);
  const int32_t *sub = td_run_subset(run), *lab = td_run_train_labels(run);
  CHECK(sub != NULL);
  td_array t, in, z, r;
  CHECK_OK(td_run_load(run, -1, "train_truth", &t, &err), &err);
  CHECK_OK(td_run_load(run, -1, "train_inputs", &in, &err), &err);
  CHECK_OK(td_run_load_f32(run, 2, "train_logits", &z, &err), &err);
  CHECK_OK(td_run_load_f32(run, 2, "train_repr", &r, &err), &err);
  CHECK_INT(t.shape[0], ==, K);
  CHECK_INT(in.shape[0], ==, K);
  CHECK_INT(z.dtype, ==, TD_F32);
  CHECK_INT(z.shape[0], ==, K);
  CHECK_INT(r.dtype, ==, TD_F32);
  for (int i = 0; sub && i < K; i++) {
    CHECK_INT(sub[i], ==, SUB[i]);
    CHECK_INT(lab[i], ==, SUB[i] % C);
    CHECK_INT(((const int32_t *)t.data)[i], ==, (SUB[i] + 1) % C);
    CHECK_INT(((const uint8_t *)in.data)[i * 4 + 3], ==, SUB[i]);
  }
  td_array_close(&t);
  td_array_close(&in);
  td_array_close(&z);
  td_array_close(&r);
  /* the subset is fixed once an epoch exists */
  td_array a;
  int64_t k = K;
  td_array_wrap(&a, TD_I32, 1, &k, (void *)(uintptr_t)SUB);
  CHECK_INT(td_run_write_array(dir, "subset", &a, &err), ==, TD_ESTATE);
  CHECK_STR_CONTAINS(err.msg, "subset.npy: the run has recorded epochs");
  td_run_close(run);
}

/* One malformed subset: rebuilt, tampered with, refused naming the file. */
#define BAD(rel, vals, n, code, want)                                          \
  do {                                                                         \
    CHECK_OK(make_run(dir, &err), &err);                                       \
    int32_t v_[] = vals;                                                       \
    save_i32(dir, rel, v_, n);                                                 \
    CHECK_INT(open_validate(dir, &err), ==, code);                             \
    CHECK_STR_CONTAINS(err.msg, want);                                         \
  } while (0)
#define L(...)                                                                 \
  { __VA_ARGS__ }

static void test_bad_subsets(void) {
  const char *dir = td_t_tmpdir("subset_bad");
  td_err err;
  BAD("subset.npy", L(2, 5, 7, 11, 20), 5, TD_ERANGE,
      "/subset.npy: entry 4 is 20, expected a training index in [0, 20)");
  BAD("subset.npy", L(2, 7, 5, 11, 19), 5, TD_EVALUE,
      "/subset.npy: entry 2 is 5, not above entry 1 (7); expected training "
      "indices sorted ascending, each once");
  BAD("epochs/0002/subset.npy", L(2, 5, 7, 11, 18), 5, TD_EVALUE,
      "epochs/0002/subset.npy: entry 4 is 18, but ");
  BAD("epochs/0002/subset.npy", L(2, 5, 7, 11), 4, TD_EVALUE,
      "epochs/0002/subset.npy: 4 entries, but ");
  CHECK_STR_CONTAINS(err.msg, "the same samples in every epoch");
  /* the run's subset says 4 rows, the epochs hold 5 */
  BAD("subset.npy", L(2, 5, 7, 11), 4, TD_EVALUE,
      "epochs/0001/subset.npy: 5 entries, but ");

  /* rows that do not match the subset */
  CHECK_OK(make_run(dir, &err), &err);
  char p[4400];
  pathf(p, sizeof p, dir, "epochs/0001/train_repr.npy");
  float big[N * D] = {0};
  int64_t s_nd[2] = {N, D};
  CHECK_OK(td_npy_save_raw(p, TD_F32, 2, s_nd, big, &err), &err);
  CHECK_INT(open_validate(dir, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/train_repr.npy: expected 5×4 "
                              "float32 or float16 (one row per entry of "
                              "subset.npy), found 20×4 float32");
  /* an epoch without its copy */
  CHECK_OK(make_run(dir, &err), &err);
  pathf(p, sizeof p, dir, "epochs/0001/subset.npy");
  unlink(p);
  CHECK_INT(open_validate(dir, &err), ==, TD_ENOENT);
  CHECK_STR_CONTAINS(err.msg, "epochs/0001/subset.npy: no such file");
  /* an empty subset */
  CHECK_OK(make_run(dir, &err), &err);
  pathf(p, sizeof p, dir, "subset.npy");
  int64_t zero = 0;
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, &zero, SUB, &err), &err);
  CHECK_INT(open_validate(dir, &err), ==, TD_ESHAPE);
  CHECK_STR_CONTAINS(err.msg, "subset.npy: empty");

  /* the writer: a copy that differs from the run's */
  CHECK_OK(make_run(dir, &err), &err);
  td_epoch_writer *w;
  CHECK_OK(td_epoch_begin(dir, 3, &w, &err), &err);
  int32_t other[K] = {1, 5, 7, 11, 19};
  int64_t k = K;
  td_array a;
  td_array_wrap(&a, TD_I32, 1, &k, other);
  CHECK_INT(td_epoch_add_array(w, "subset.npy", &a, &err), ==, TD_EVALUE);
  CHECK_STR_CONTAINS(err.msg, "epochs/0003/subset.npy: entry 0 is 1, but ");
  td_epoch_abort(w);
}

/* ---- the command line --------------------------------------------------- */

static const char *bin, *dir;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[16384], full[17000];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  snprintf(full, sizeof full, "%s >'%s/out.txt' 2>'%s/err.txt'", cmd, dir, dir);
  int st = system(full);
  int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  if (rc) { /* the log explains a failure */
    char p[4400], *txt = NULL;
    size_t len;
    snprintf(p, sizeof p, "%s/err.txt", dir);
    if (td_read_file(p, &txt, &len, NULL) == TD_OK)
      fprintf(stderr, "  [%s] exit %d: %s\n", cmd, rc, txt);
    free(txt);
  }
  return rc;
}

static char *out_txt(void) {
  char p[4400], *txt = NULL;
  size_t len;
  snprintf(p, sizeof p, "%s/out.txt", dir);
  if (td_read_file(p, &txt, &len, NULL) != TD_OK)
    return NULL;
  return txt;
}

/* project, eval and suspects each succeed on the run. */
static void commands_work(const char *run) {
  CHECK_INT(sh("'%s' info '%s'", bin, run), ==, 0);
  char *txt = out_txt();
  CHECK_STR_CONTAINS(txt ? txt : "", "run is valid");
  free(txt);
  CHECK_INT(sh("'%s' project '%s' --res 32", bin, run), ==, 0);
  CHECK_INT(sh("'%s' eval '%s' --json", bin, run), ==, 0);
  CHECK_INT(sh("'%s' suspects '%s' --k 5 --json", bin, run), ==, 0);
}

static td_server *serve(const char *run) {
  td_server_opts o;
  td_t_server_opts(&o, run);
  td_server *s = td_t_server_start(&o, NULL);
  if (!s)
    td_t_failed_checks++;
  else
    td_t_use_token(s);
  return s;
}

static void test_cli_float16(void) {
  char run[4300];
  snprintf(run, sizeof run, "%s/f16", dir);
  CHECK_INT(sh("'%s' train --out '%s' --epochs 2 --limit 600 --repr-dtype "
               "f16 --no-model --quiet",
               bin, run),
            ==, 0);
  td_run *r;
  td_err err;
  td_array a;
  CHECK_OK(td_run_open(run, &r, &err), &err);
  if (!r)
    return;
  CHECK_OK(td_run_load(r, 2, "train_repr", &a, &err), &err);
  CHECK_INT(a.dtype, ==, TD_F16);
  td_array_close(&a);
  CHECK_OK(td_run_load(r, 2, "test_repr", &a, &err), &err);
  CHECK_INT(a.dtype, ==, TD_F16);
  td_array_close(&a);
  td_run_close(r);
  commands_work(run);
  td_server *s = serve(run);
  if (!s)
    return;
  int port = td_server_port(s), st;
  json_t *j = td_t_get_json(port, "/api/samples/3?split=train&epoch=2", &st);
  CHECK_INT(st, ==, 200);
  CHECK(json_array_size(json_object_get(j, "logits")) == 10);
  CHECK(json_object_get(j, "sample") == NULL); /* an ordinary run */
  json_decref(j);
  td_t_resp resp;
  td_t_http(port, "GET", "/api/samples/3/neighbors?split=train&epoch=2", NULL,
            &resp);
  CHECK_INT(resp.status, ==, 200);
  td_t_resp_free(&resp);
  td_server_stop(s);
}

/* The server names the rows of a subset run by their training samples. */
static void check_served_subset(const char *run, const int32_t *sub,
                                const int32_t *full_labels, int64_t k) {
  td_server *s = serve(run);
  if (!s)
    return;
  int port = td_server_port(s), st;
  json_t *j = td_t_get_json(port, "/api/run", &st);
  CHECK_INT(st, ==, 200);
  CHECK(json_is_true(json_object_get(j, "subset")));
  CHECK_INT(json_integer_value(json_object_get(j, "n_train")), ==, k);
  CHECK_INT(json_integer_value(json_object_get(j, "n_train_all")), ==, 600);
  json_decref(j);
  td_t_resp resp;
  td_t_http(port, "GET", "/api/subset", NULL, &resp);
  CHECK_INT(resp.status, ==, 200);
  CHECK_INT((int64_t)resp.blen, ==, k * 4);
  CHECK(resp.body && memcmp(resp.body, sub, (size_t)k * 4) == 0);
  td_t_resp_free(&resp);
  for (int64_t i = 0; i < k; i += k / 4) {
    char path[128];
    snprintf(path, sizeof path, "/api/samples/%lld?split=train&epoch=2",
             (long long)i);
    j = td_t_get_json(port, path, &st);
    CHECK_INT(st, ==, 200);
    CHECK_INT(json_integer_value(json_object_get(j, "index")), ==, i);
    CHECK_INT(json_integer_value(json_object_get(j, "sample")), ==, sub[i]);
    CHECK_INT(json_integer_value(json_object_get(j, "label")), ==,
              full_labels[sub[i]]);
    json_decref(j);
  }
  td_t_http(port, "GET", "/api/epochs/2/embedding?split=train", NULL, &resp);
  CHECK_INT(resp.status, ==, 200);
  CHECK_INT((int64_t)resp.blen, ==, k * 2 * 4);
  td_t_resp_free(&resp);
  char path[128];
  snprintf(path, sizeof path, "/api/samples/%lld?split=train", (long long)k);
  td_t_http(port, "GET", path, NULL, &resp);
  CHECK_INT(resp.status, ==, 404); /* rows stop at K */
  td_t_resp_free(&resp);
  td_server_stop(s);
}

static void test_cli_subset(void) {
  char run[4300], p[4400];
  snprintf(run, sizeof run, "%s/sub", dir);
  CHECK_INT(sh("'%s' train --out '%s' --epochs 2 --limit 600 --record-subset "
               "100 --repr-dtype float16 --quiet",
               bin, run),
            ==, 0);
  td_err err;
  td_array sub = {0}, lab = {0};
  pathf(p, sizeof p, run, "subset.npy");
  CHECK_OK(td_npy_load(p, &sub, &err), &err);
  pathf(p, sizeof p, run, "train_labels.npy");
  CHECK_OK(td_npy_load(p, &lab, &err), &err);
  if (!sub.data || !lab.data)
    return;
  CHECK_INT(sub.shape[0], ==, 100);
  CHECK_INT(lab.shape[0], ==, 600);
  commands_work(run);
  /* suspects name the training samples */
  CHECK_INT(sh("'%s' suspects '%s' --k 5 --json", bin, run), ==, 0);
  char *txt = out_txt();
  json_t *o = txt ? json_loads(txt, 0, NULL) : NULL;
  json_t *items = json_object_get(o, "suspects"), *it;
  size_t i;
  CHECK_INT(json_array_size(items), ==, 5);
  json_array_foreach(items, i, it) {
    json_int_t row = json_integer_value(json_object_get(it, "index"));
    CHECK(row >= 0 && row < 100);
    if (row >= 0 && row < 100)
      CHECK_INT(json_integer_value(json_object_get(it, "sample")), ==,
                ((const int32_t *)sub.data)[row]);
  }
  json_decref(o);
  free(txt);
  /* what needs every sample says so */
  CHECK_INT(sh("'%s' diagnose '%s'", bin, run), ==, 1);
  pathf(p, sizeof p, dir, "err.txt");
  size_t len;
  if (td_read_file(p, &txt, &len, NULL) == TD_OK) {
    CHECK_STR_CONTAINS(txt, "records only 100 of the 600 training samples "
                            "(subset.npy); tardis diagnose needs");
    free(txt);
  }
  check_served_subset(run, sub.data, lab.data, 100);
  /* --resume goes on with the same subset */
  CHECK_INT(sh("'%s' train --resume '%s' --epochs 3 --quiet", bin, run), ==, 0);
  CHECK_INT(sh("'%s' info '%s'", bin, run), ==, 0);
  pathf(p, sizeof p, run, "epochs/0003/subset.npy");
  CHECK(td_path_exists(p));
  td_array_close(&sub);
  td_array_close(&lab);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  td_t_timeout_s = 120; /* the ASan build on a busy machine */
  RUN(test_view);
  RUN(test_bad_subsets);
  bin = getenv("TD_BIN");
  dir = td_t_tmpdir("subset_cli");
  if (!bin) {
    fprintf(stderr, "TD_BIN is not set (ctest sets it to the tardis binary)\n");
    return 1;
  }
  RUN(test_cli_float16);
  RUN(test_cli_subset);
  return td_t_finish();
}
