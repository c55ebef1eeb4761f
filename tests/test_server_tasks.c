/* Black-box tests of the server's continual-learning and alert routes
 * (docs/api.md): a small run with two tasks, trained.npy in some epochs and
 * a hand-written RUN/alerts.jsonl, served in-process on an ephemeral port. */
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

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
#define M 8
#define D 3
#define C 4

static char run_dir[4300], alerts_path[4400];
static int port;
/* epoch 1 trains task 0 (classes 0, 1), epoch 2 task 1 plus a replay of
 * two samples; epoch 3 records no trained.npy */
static const int32_t trained1[10] = {0, 1, 4, 5, 8, 9, 12, 13, 16, 17};
static const int32_t trained2[12] = {0, 2, 3, 5, 6, 7, 10, 11, 14, 15, 18, 19};

static int write_epoch(int epoch, const int32_t *trained, int64_t k,
                       td_err *err) {
  float repr[N * D], trepr[M * D], logits[N * C], tlogits[M * C];
  for (int i = 0; i < N * D; i++)
    repr[i] = (float)(i % 7) * 0.1f;
  for (int i = 0; i < M * D; i++)
    trepr[i] = (float)(i % 5) * 0.1f;
  for (int i = 0; i < N * C; i++)
    logits[i] = (float)((i * epoch) % 9) * 0.1f;
  for (int i = 0; i < M * C; i++)
    tlogits[i] = (float)(i % 3) * 0.1f;
  td_epoch_writer *wr;
  int rc = td_epoch_begin(run_dir, epoch, &wr, err);
  if (rc)
    return rc;
  rc = td_t_toy_reprs(wr, N, M, D, C, repr, trepr, logits, tlogits, err);
  if (!rc && trained)
    rc = td_t_toy_put(wr, "trained", TD_I32, k, 0, trained, err);
  json_t *ej = json_pack("{s:i,s:f,s:i,s:{s:[f,f],s:[f,f]}}", "epoch", epoch,
                         "train_loss", 1.0 / epoch, "task", epoch == 1 ? 0 : 1,
                         "task_acc", "train", 0.9 / epoch, 0.25 * epoch, "test",
                         0.8 / epoch, 0.2 * epoch);
  /* a head the logits need not match: only `tardis info --check` would look */
  float w[C * D] = {0}, b[C] = {0};
  return td_t_toy_end(wr, rc, ej, w, b, D, C, err);
}

static int make_fixture(td_err *err) {
  const char *tmp = td_t_tmpdir("test_server_tasks");
  if (!tmp)
    return td_err_set(err, TD_EIO, "no temp dir");
  snprintf(run_dir, sizeof run_dir, "%s/run", tmp);
  snprintf(alerts_path, sizeof alerts_path, "%s/alerts.jsonl", run_dir);
  static char *classes[C] = {"a", "b", "c", "d"};
  static int task_of_class[C] = {0, 0, 1, 1};
  td_run_meta m;
  td_t_toy_meta(&m, "tasks", classes, C, N, M, D);
  m.n_tasks = 2;
  m.task_of_class = task_of_class;
  m.epochs_per_task = 1;
  int rc = td_run_create(run_dir, &m, 0, err);
  int32_t labels[N], tlabels[M];
  for (int i = 0; i < N; i++)
    labels[i] = i % C;
  for (int i = 0; i < M; i++)
    tlabels[i] = i % C;
  if (!rc)
    rc = td_t_toy_i32(run_dir, "train_labels", labels, N, err);
  if (!rc)
    rc = td_t_toy_i32(run_dir, "test_labels", tlabels, M, err);
  if (!rc)
    rc = write_epoch(1, trained1, 10, err);
  if (!rc)
    rc = write_epoch(2, trained2, 12, err);
  if (!rc)
    rc = write_epoch(3, NULL, 0, err);
  return rc;
}

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fputs(text, f);
  return fclose(f);
}

/* The error message of a failed request, or "" (copied into buf). */
static const char *error_of(const char *path, int *status, char *buf,
                            size_t len) {
  json_t *j = td_t_get_json(port, path, status);
  const char *e = json_string_value(json_object_get(j, "error"));
  snprintf(buf, len, "%s", e ? e : "");
  json_decref(j);
  return buf;
}

static void test_run_tasks(void) {
  int st;
  json_t *j = td_t_get_json(port, "/api/run", &st);
  CHECK_INT(st, ==, 200);
  json_t *t = json_object_get(j, "tasks");
  CHECK_INT(json_array_size(t), ==, 2);
  CHECK_INT(json_integer_value(json_array_get(json_array_get(t, 1), 0)), ==, 2);
  CHECK_INT(json_integer_value(json_object_get(j, "epochs_per_task")), ==, 1);
  json_decref(j);

  /* task and task_acc of each epoch, through the list the UI loads */
  j = td_t_get_json(port, "/api/epochs", &st);
  CHECK_INT(st, ==, 200);
  json_t *eps = json_object_get(j, "epochs");
  CHECK_INT(json_array_size(eps), ==, 3);
  json_t *m2 = json_object_get(json_array_get(eps, 1), "metrics");
  CHECK_INT(json_integer_value(json_object_get(m2, "task")), ==, 1);
  json_t *acc = json_object_get(json_object_get(m2, "task_acc"), "test");
  CHECK_INT(json_array_size(acc), ==, 2);
  CHECK_NEAR(json_real_value(json_array_get(acc, 1)), 0.4, 1e-9);
  json_decref(j);
}

static void check_trained(const char *path, const int32_t *want, int64_t k) {
  td_t_resp r;
  td_t_http(port, "GET", path, NULL, &r);
  char shape[32], dtype[32], ks[32];
  snprintf(ks, sizeof ks, "%lld", (long long)k);
  CHECK_INT(r.status, ==, 200);
  const char *sh = td_t_header(&r, "X-Tardis-Shape", shape, sizeof shape);
  const char *dt = td_t_header(&r, "X-Tardis-Dtype", dtype, sizeof dtype);
  int ok = sh && !strcmp(sh, ks) && dt && !strcmp(dt, "int32") &&
           r.blen == (size_t)k * 4 && !memcmp(r.body, want, r.blen);
  td_t_resp_free(&r);
  CHECK(ok);
}

static void test_trained(void) {
  check_trained("/api/epochs/1/trained", trained1, 10);
  check_trained("/api/epochs/2/trained", trained2, 12);
  char msg[512];
  int st;
  error_of("/api/epochs/3/trained", &st, msg, sizeof msg);
  CHECK_INT(st, ==, 404);
  CHECK_STR_CONTAINS(msg, "trained.npy");
  error_of("/api/epochs/9/trained", &st, msg, sizeof msg);
  CHECK_INT(st, ==, 404);
  error_of("/api/epochs/x1/trained", &st, msg, sizeof msg);
  CHECK_INT(st, ==, 400);

  /* a bad trained.npy is the run's fault: 500 naming the file */
  char p[4500];
  snprintf(p, sizeof p, "%s/epochs/0003/trained.npy", run_dir);
  int32_t bad[3] = {3, 2, 1};
  int64_t s3[1] = {3};
  td_err err;
  CHECK_OK(td_npy_save_raw(p, TD_I32, 1, s3, bad, &err), &err);
  error_of("/api/epochs/3/trained", &st, msg, sizeof msg);
  remove(p);
  CHECK_INT(st, ==, 500);
  CHECK_STR_CONTAINS(msg, "trained.npy");
}

static void test_alerts_absent(void) {
  int st;
  json_t *j = td_t_get_json(port, "/api/alerts", &st);
  CHECK_INT(st, ==, 200);
  CHECK(json_is_array(j) && json_array_size(j) == 0);
  json_decref(j);
}

static const char good_alerts[] =
    "{\"epoch\": 2, \"metric\": \"knn_agreement\", \"value\": 0.41, "
    "\"expected\": 0.83, \"severity\": \"critical\", \"message\": \"kNN "
    "label agreement fell\", \"classes\": [0, 1], \"z\": -6.5}\n"
    "\n"
    "{\"epoch\": 3, \"metric\": \"spread\", \"value\": 2, \"expected\": "
    "null, \"severity\": \"warning\", \"message\": \"spread grew\"}\n";

static void test_alerts(void) {
  CHECK_INT(write_text(alerts_path, good_alerts), ==, 0);
  int st;
  json_t *j = td_t_get_json(port, "/api/alerts", &st);
  CHECK_INT(st, ==, 200);
  CHECK_INT(json_array_size(j), ==, 2);
  json_t *a = json_array_get(j, 0);
  CHECK_INT(json_integer_value(json_object_get(a, "epoch")), ==, 2);
  CHECK_INT(json_array_size(json_object_get(a, "classes")), ==, 2);
  CHECK_NEAR(json_real_value(json_object_get(a, "z")), -6.5, 1e-9); /* kept */
  CHECK(json_is_null(json_object_get(json_array_get(j, 1), "expected")));
  json_decref(j);

  /* a last line still being appended (no newline yet) is left out */
  char partial[sizeof good_alerts + 64];
  snprintf(partial, sizeof partial, "%s{\"epoch\": 4, \"met", good_alerts);
  CHECK_INT(write_text(alerts_path, partial), ==, 0);
  j = td_t_get_json(port, "/api/alerts", &st);
  CHECK_INT(st, ==, 200);
  CHECK_INT(json_array_size(j), ==, 2);
  json_decref(j);
}

/* A malformed complete line is refused, naming the file and the line. */
static void test_alerts_bad(void) {
  static const struct {
    const char *text, *msg;
  } bad[] = {
      {"{\"epoch\": 1, \"metric\": \"m\", \"value\": 1, \"expected\": 1, "
       "\"severity\": \"warning\", \"message\": \"x\"}\n{oops\n",
       "alerts.jsonl: line 2: "},
      {"[1, 2]\n", "line 1: not a JSON object"},
      {"{\"metric\": \"m\", \"value\": 1, \"expected\": 1, \"severity\": "
       "\"warning\", \"message\": \"x\"}\n",
       "line 1: \"epoch\" is not a non-negative integer"},
      {"{\"epoch\": 1.5, \"metric\": \"m\", \"value\": 1, \"expected\": 1, "
       "\"severity\": \"warning\", \"message\": \"x\"}\n",
       "\"epoch\""},
      {"{\"epoch\": 1, \"metric\": \"m\", \"value\": \"1\", \"expected\": 1, "
       "\"severity\": \"warning\", \"message\": \"x\"}\n",
       "\"value\" is not a number"},
      {"{\"epoch\": 1, \"metric\": \"m\", \"value\": 1, \"expected\": 1, "
       "\"message\": \"x\"}\n",
       "\"severity\" is not a string"},
      {"{\"epoch\": 1, \"metric\": \"m\", \"value\": 1, \"expected\": 1, "
       "\"severity\": \"warning\", \"message\": \"x\", \"classes\": [4]}\n",
       "\"classes\" holds something that is not a class index"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK_INT(write_text(alerts_path, bad[i].text), ==, 0);
    char msg[512];
    int st;
    error_of("/api/alerts", &st, msg, sizeof msg);
    if (st != 500 || !strstr(msg, bad[i].msg))
      fprintf(stderr, "  case %zu: %d %s\n", i, st, msg);
    CHECK_INT(st, ==, 500);
    CHECK_STR_CONTAINS(msg, bad[i].msg);
  }
  remove(alerts_path);
}

/* alerts.jsonl appearing, then growing, each send `event: alert`. */
static void test_alert_events(void) {
  int fd = td_t_connect(port);
  CHECK(fd >= 0);
  const char req[] = "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  td_t_send_all(fd, req, sizeof req - 1);
  static char acc[16384];
  size_t len = 0;
  int ok = td_t_read_until(fd, acc, sizeof acc, &len, ": connected", 1, 3000);
  int none_before = !strstr(acc, "event: alert");
  int first =
      ok && !write_text(alerts_path, good_alerts) &&
      td_t_read_until(fd, acc, sizeof acc, &len, "event: alert", 1, 5000);
  FILE *f = first ? fopen(alerts_path, "a") : NULL;
  if (f) {
    fputs("{\"epoch\": 3, \"metric\": \"m\", \"value\": 1, \"expected\": 1, "
          "\"severity\": \"warning\", \"message\": \"again\"}\n",
          f);
    ok = fclose(f) == 0;
  }
  int second =
      f && ok &&
      td_t_read_until(fd, acc, sizeof acc, &len, "event: alert", 2, 5000);
  if (!second)
    fprintf(stderr, "  stream: %s\n", acc);
  close(fd);
  CHECK(none_before);
  CHECK(first);
  CHECK(second);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  td_err err;
  if (make_fixture(&err)) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    return 1;
  }
  td_server_opts o;
  td_t_server_opts(&o, run_dir);
  o.poll_ms = 100;
  td_server *srv = td_t_server_start(&o, &port);
  if (!srv)
    return 1;
  RUN(test_run_tasks);
  RUN(test_trained);
  RUN(test_alerts_absent);
  RUN(test_alerts);
  RUN(test_alerts_bad);
  RUN(test_alert_events);
  td_server_stop(srv);
  return td_t_finish();
}
