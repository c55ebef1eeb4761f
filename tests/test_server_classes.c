/* A run of 300 classes through the server end to end (issue 14: labels
 * >= 256 came back wrapped from /api/labels, 299 as 43, and
 * /api/predictions refused them with a 500). Class numbers go out as int16
 * once a run has more than 256 classes (docs/api.md). */
#include <jansson.h>

#include "harness.h"
#include "http_client.h"
#include "run/run_json.h"
#include "server_util.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"
#include "tardis/server.h"
#include "toy_run.h"

#define C 300
#define N 600 /* every class twice */

static char run_dir[4200];
static int port;

/* One epoch whose head is the identity on one-hot representations, so
 * that sample i is predicted as its label i % C. */
static int write_epoch(td_err *err) {
  static float repr[N * C], w[C * C], b[C];
  for (int i = 0; i < N; i++)
    repr[i * C + i % C] = 1;
  for (int k = 0; k < C; k++)
    w[k * C + k] = 1;
  td_epoch_writer *wr;
  int rc = td_epoch_begin(run_dir, 1, &wr, err);
  if (rc)
    return rc;
  rc = td_t_toy_put(wr, "train_repr", TD_F32, N, C, repr, err);
  if (!rc)
    rc = td_t_toy_put(wr, "train_logits", TD_F32, N, C, repr, err);
  return td_t_toy_end(wr, rc, json_pack("{s:i}", "epoch", 1), w, b, C, C, err);
}

static int make_run(td_err *err) {
  static char names[C][8];
  static char *classes[C];
  for (int k = 0; k < C; k++) {
    snprintf(names[k], sizeof names[k], "c%d", k);
    classes[k] = names[k];
  }
  td_run_meta m;
  td_t_toy_meta(&m, "classes-300", classes, C, N, 0, C);
  int rc = td_run_create(run_dir, &m, 1, err);
  static int32_t labels[N];
  for (int i = 0; i < N; i++)
    labels[i] = i % C;
  if (!rc)
    rc = td_t_toy_i32(run_dir, "train_labels", labels, N, err);
  return rc ? rc : write_epoch(err);
}

/* A class array of the API: int16, N long, class i % C at i. */
static void check_classes(const char *path) {
  td_t_resp r;
  td_t_http(port, "GET", path, NULL, &r);
  char dtype[32] = "", shape[32] = "";
  CHECK_INT(r.status, ==, 200);
  td_t_header(&r, "X-Tardis-Dtype", dtype, sizeof dtype);
  td_t_header(&r, "X-Tardis-Shape", shape, sizeof shape);
  CHECK(!strcmp(dtype, "int16"));
  CHECK_INT(atoi(shape), ==, N);
  CHECK_INT((long)r.blen, ==, (long)(N * sizeof(int16_t)));
  int wrong = 0;
  for (int i = 0; r.blen == N * sizeof(int16_t) && i < N; i++) {
    int16_t v;
    memcpy(&v, r.body + 2 * i, sizeof v);
    wrong += v != i % C;
  }
  if (wrong)
    fprintf(stderr, "  %s: %d classes wrong\n", path, wrong);
  CHECK_INT(wrong, ==, 0);
  td_t_resp_free(&r);
}

static void test_labels(void) { check_classes("/api/labels"); }

static void test_predictions(void) {
  check_classes("/api/epochs/1/predictions");
}

/* One sample's JSON names its class >= 256 as it is. */
static void test_sample(void) {
  int st;
  json_t *j = td_t_get_json(port, "/api/samples/299?epoch=1", &st);
  CHECK_INT(st, ==, 200);
  CHECK_INT(json_integer_value(json_object_get(j, "label")), ==, 299);
  json_decref(j);
}

int main(void) {
  td_err err;
  snprintf(run_dir, sizeof run_dir, "%s/run", td_t_tmpdir("server_classes"));
  if (make_run(&err)) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    return 1;
  }
  td_server_opts o;
  td_t_server_opts(&o, run_dir);
  td_server *srv = td_t_server_start(&o, &port);
  if (!srv)
    return 1;
  RUN(test_labels);
  RUN(test_predictions);
  RUN(test_sample);
  td_server_stop(srv);
  return td_t_finish();
}
