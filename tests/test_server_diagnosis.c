/* Black-box tests of GET /api/diagnosis[...] and /api/repair (docs/api.md):
 * a small run served in-process on an ephemeral port, with the files that
 * `tardis diagnose` and `tardis repair` write (docs/repair.md) written here
 * by hand, good and bad, while the server runs. */
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>

#include "harness.h"
#include "http_client.h"
#include "run/run_json.h"
#include "server_util.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"
#include "tardis/server.h"
#include "toy_run.h"

#define N 12
#define M 6
#define D 3
#define C 3

static char run_dir[4300];
static int port;

static int write_epoch(int epoch, td_err *err) {
  float repr[N * D], trepr[M * D], logits[N * C], tlogits[M * C];
  for (int i = 0; i < N * D; i++)
    repr[i] = (float)(i % 7) * 0.1f;
  for (int i = 0; i < M * D; i++)
    trepr[i] = (float)(i % 5) * 0.1f;
  for (int i = 0; i < N * C; i++)
    logits[i] = (float)((i * epoch) % 9) * 0.1f;
  for (int i = 0; i < M * C; i++)
    tlogits[i] = (float)(i % 4) * 0.1f;
  td_epoch_writer *wr;
  int rc = td_epoch_begin(run_dir, epoch, &wr, err);
  if (rc)
    return rc;
  rc = td_t_toy_reprs(wr, N, M, D, C, repr, trepr, logits, tlogits, err);
  json_t *ej = json_pack("{s:i, s:f}", "epoch", epoch, "train_loss", 1.0);
  float w[C * D] = {0}, b[C] = {0};
  return td_t_toy_end(wr, rc, ej, w, b, D, C, err);
}

static int make_fixture(td_err *err) {
  const char *tmp = td_t_tmpdir("test_server_diagnosis");
  if (!tmp)
    return td_err_set(err, TD_EIO, "no temp dir");
  snprintf(run_dir, sizeof run_dir, "%s/run", tmp);
  static char *classes[C] = {"a", "b", "c"};
  td_run_meta m;
  td_t_toy_meta(&m, "diag", classes, C, N, M, D);
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
  for (int e = 1; !rc && e <= 2; e++)
    rc = write_epoch(e, err);
  return rc;
}

/* Writes len bytes (len < 0: a string) to RUN/rel, making its directory. */
static int put(const char *rel, const void *data, long len) {
  char p[4600], dir[4600];
  snprintf(p, sizeof p, "%s/%s", run_dir, rel);
  snprintf(dir, sizeof dir, "%s", p);
  *strrchr(dir, '/') = '\0';
  td_err err;
  if (td_mkdirs(dir, &err))
    return -1;
  FILE *f = fopen(p, "wb");
  if (!f)
    return -1;
  size_t n = len < 0 ? strlen(data) : (size_t)len;
  size_t w = fwrite(data, 1, n, f);
  return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* The status and error message of a request (message copied into buf). */
static int error_of(const char *path, char *buf, size_t len) {
  int st;
  json_t *j = td_t_get_json(port, path, &st);
  const char *e = json_string_value(json_object_get(j, "error"));
  snprintf(buf, len, "%s", e ? e : "");
  json_decref(j);
  if (!e)
    fprintf(stderr, "  %s: %d without an error message\n", path, st);
  return st;
}

static const char diag2[] =
    "{\"epoch\": 2, \"has_model\": true, \"train_acc\": 0.5, \"test_acc\": "
    "0.5, \"n_buggy\": 1, \"labels\": [{\"label\": 0, \"verdict\": "
    "\"underfitting\"}, {\"label\": 1, \"verdict\": \"healthy\"}, "
    "{\"label\": 2, \"verdict\": \"overfitting\"}], \"confusion\": [[1, 1, "
    "0], [0, 2, 0], [0, 0, 2]], \"probes\": [{\"layer\": 0, \"dim\": 4}], "
    "\"heatmaps\": {\"layer\": 0, \"dim\": 4, \"pooled\": false}}";
/* Any bytes behind the signature: the server serves the file as written. */
static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
                                    '\n', 0,   0,   0,   13,   'I',  'H',
                                    'D',  'R', 1,   2,   3,    4};

static void test_absent(void) {
  int st;
  json_t *j = td_t_get_json(port, "/api/diagnosis", &st);
  CHECK_INT(st, ==, 200);
  CHECK_INT(json_array_size(json_object_get(j, "epochs")), ==, 0);
  CHECK(json_is_false(json_object_get(j, "repaired")));
  json_decref(j);
  char msg[1024];
  CHECK_INT(error_of("/api/diagnosis/2", msg, sizeof msg), ==, 404);
  CHECK_STR_CONTAINS(msg, "tardis diagnose");
  CHECK_INT(error_of("/api/diagnosis/2/hm_correct.png", msg, sizeof msg), ==,
            404);
  CHECK_STR_CONTAINS(msg, "tardis diagnose");
  CHECK_INT(error_of("/api/repair", msg, sizeof msg), ==, 404);
  CHECK_STR_CONTAINS(msg, "repair.json");
}

static void test_list(void) {
  /* written in this order; listed sorted. Not listed: a diagnosis being
   * written (.tmp-PID), a directory without diagnosis.json, stray names. */
  CHECK_INT(put("diagnosis/epoch_0002/diagnosis.json", diag2, -1), ==, 0);
  CHECK_INT(put("diagnosis/epoch_0001/diagnosis.json", "{oops", -1), ==, 0);
  CHECK_INT(put("diagnosis/epoch_0003.tmp-77/diagnosis.json", diag2, -1), ==,
            0);
  CHECK_INT(put("diagnosis/epoch_0004/hm_correct.png", png, sizeof png), ==, 0);
  CHECK_INT(put("diagnosis/epoch_5/diagnosis.json", diag2, -1), ==, 0);
  CHECK_INT(put("diagnosis/epoch_00002/diagnosis.json", diag2, -1), ==, 0);
  int st;
  json_t *j = td_t_get_json(port, "/api/diagnosis", &st);
  CHECK_INT(st, ==, 200);
  json_t *e = json_object_get(j, "epochs");
  int ok = json_array_size(e) == 2 &&
           json_integer_value(json_array_get(e, 0)) == 1 &&
           json_integer_value(json_array_get(e, 1)) == 2;
  if (!ok) {
    char *s = json_dumps(j, 0);
    fprintf(stderr, "  list: %s\n", s ? s : "?");
    free(s);
  }
  json_decref(j);
  CHECK(ok);
}

static void test_one(void) {
  CHECK_INT(put("diagnosis/epoch_0002/hm_correct.png", png, sizeof png), ==, 0);
  int st;
  json_t *j = td_t_get_json(port, "/api/diagnosis/2", &st);
  CHECK_INT(st, ==, 200);
  CHECK_INT(json_array_size(json_object_get(j, "labels")), ==, C);
  json_t *maps = json_object_get(j, "maps");
  const char *url = json_string_value(json_object_get(maps, "hm_correct"));
  int ok = url && !strcmp(url, "/api/diagnosis/2/hm_correct.png") &&
           json_object_size(maps) == 1;
  json_decref(j);
  CHECK(ok);

  td_t_resp r;
  td_t_http(port, "GET", "/api/diagnosis/2/hm_correct.png", NULL, &r);
  char ct[64], etag[128];
  int same = r.status == 200 && r.blen == sizeof png &&
             !memcmp(r.body, png, sizeof png);
  const char *t = td_t_header(&r, "Content-Type", ct, sizeof ct);
  const char *et = td_t_header(&r, "ETag", etag, sizeof etag);
  td_t_resp_free(&r);
  CHECK(same);
  CHECK(t && !strcmp(t, "image/png"));
  CHECK(et != NULL);

  /* revalidation: 304 while unchanged */
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET /api/diagnosis/2/hm_correct.png HTTP/1.1\r\nHost: "
                   "127.0.0.1:%d\r\nIf-None-Match: %s\r\nConnection: "
                   "close\r\n\r\n",
                   port, etag);
  td_t_http_raw(port, req, (size_t)n, &r);
  int st304 = r.status;
  td_t_resp_free(&r);
  CHECK_INT(st304, ==, 304);
}

static void test_bad_requests(void) {
  static const struct {
    const char *path;
    int status;
    const char *msg;
  } bad[] = {
      {"/api/diagnosis/x", 400, "bad epoch"},
      {"/api/diagnosis/-1", 400, "bad epoch"},
      {"/api/diagnosis/99999999999", 400, "bad epoch"},
      {"/api/diagnosis/2x/hm_correct.png", 400, "bad epoch"},
      {"/api/diagnosis/2/run.json", 404, "no heat map"},
      {"/api/diagnosis/2/hm_correct", 404, "no heat map"},
      {"/api/diagnosis/2/hm_correct.npy", 404, "no heat map"},
      {"/api/diagnosis/2/diagnosis.json", 404, "no heat map"},
      {"/api/diagnosis/2/hm_missed.png", 404, "tardis diagnose"},
      {"/api/diagnosis/2/..%2F..%2Frun.json", 404, ""},
      {"/api/diagnosis/2/../../run.json", 404, ""},
      {"/api/diagnosis/2/hm_correct.png/x", 404, "no such route"},
      {"/api/diagnosis/7", 404, "tardis diagnose RUN --epoch 7"},
      {"/api/diagnosis/1", 500, "diagnosis.json"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char msg[1024];
    int st = error_of(bad[i].path, msg, sizeof msg);
    if (st != bad[i].status || !strstr(msg, bad[i].msg))
      fprintf(stderr, "  %s: %d %s\n", bad[i].path, st, msg);
    CHECK_INT(st, ==, bad[i].status);
    CHECK_STR_CONTAINS(msg, bad[i].msg);
  }
  td_t_resp r;
  td_t_http(port, "POST", "/api/diagnosis", "{}", &r);
  int st = r.status;
  td_t_resp_free(&r);
  CHECK_INT(st, ==, 405);
}

/* Files that are not what docs/repair.md says: 500 naming the file. */
static void test_bad_files(void) {
  static const struct {
    const char *text, *msg;
  } bad[] = {
      {"[1]", "not a JSON object"},
      {"{\"epoch\": 3, \"labels\": [], \"confusion\": []}",
       "\"epoch\" is not the epoch of its directory"},
      {"{\"epoch\": 2, \"labels\": [{}, {}], \"confusion\": [], \"probes\": "
       "[]}",
       "\"labels\""},
      {"{\"epoch\": 2, \"labels\": [{}, {}, {}], \"confusion\": [[1, 2, 3], "
       "[1, 2], [1, 2, 3]], \"probes\": []}",
       "\"confusion\""},
      {"{\"epoch\": 2, \"labels\": [{}, {}, {}], \"confusion\": [[1, 2, 3], "
       "[1, 2, 3], [1, 2, 3]]}",
       "\"probes\""},
  };
  char msg[1024];
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK_INT(put("diagnosis/epoch_0002/diagnosis.json", bad[i].text, -1), ==,
              0);
    int st = error_of("/api/diagnosis/2", msg, sizeof msg);
    if (st != 500 || !strstr(msg, bad[i].msg))
      fprintf(stderr, "  case %zu: %d %s\n", i, st, msg);
    CHECK_INT(st, ==, 500);
    CHECK_STR_CONTAINS(msg, bad[i].msg);
    CHECK_STR_CONTAINS(msg, "epoch_0002/diagnosis.json");
  }
  CHECK_INT(put("diagnosis/epoch_0002/diagnosis.json", diag2, -1), ==, 0);
  CHECK_INT(put("diagnosis/epoch_0002/dhm_under.png", "not a png", -1), ==, 0);
  CHECK_INT(error_of("/api/diagnosis/2/dhm_under.png", msg, sizeof msg), ==,
            500);
  CHECK_STR_CONTAINS(msg, "dhm_under.png: not a PNG");
}

static const char repair_ok[] =
    "{\"run\": \"/x/parent\", \"strategy\": \"mode\", \"budget\": 4, "
    "\"rounds\": [{\"round\": 1, \"epoch_before\": 0, \"epoch_after\": 1, "
    "\"selected\": [3, 11], \"test_after\": 0.5}, {\"round\": 2, "
    "\"epoch_before\": 1, \"epoch_after\": 2, \"selected\": [0]}]}";

static void test_repair(void) {
  CHECK_INT(put("repair.json", repair_ok, -1), ==, 0);
  int st;
  json_t *j = td_t_get_json(port, "/api/repair", &st);
  CHECK_INT(st, ==, 200);
  json_t *rounds = json_object_get(j, "rounds");
  int ok = json_array_size(rounds) == 2 &&
           json_array_size(
               json_object_get(json_array_get(rounds, 0), "selected")) == 2 &&
           !strcmp(json_string_value(json_object_get(j, "strategy")), "mode");
  json_decref(j);
  CHECK(ok);
  j = td_t_get_json(port, "/api/diagnosis", &st);
  int rep = json_is_true(json_object_get(j, "repaired"));
  json_decref(j);
  CHECK(rep);

  static const struct {
    const char *text, *msg;
  } bad[] = {
      {"{\"rounds\": 3}", "\"rounds\" is not an array"},
      {"{\"rounds\": [{\"epoch_before\": 0, \"epoch_after\": 1, "
       "\"selected\": [12]}]}",
       "round 1: \"selected\" holds something that is not a training index"},
      {"{\"rounds\": [{\"epoch_before\": 0, \"epoch_after\": 1, "
       "\"selected\": []}, {\"epoch_before\": -1, \"epoch_after\": 1, "
       "\"selected\": []}]}",
       "round 2: \"epoch_before\""},
      {"{\"rounds\": [{\"epoch_before\": 0, \"epoch_after\": 1}]}",
       "\"selected\" is not an array"},
      {"{\"rounds\": [], \"rounds\": []}", "duplicate"},
  };
  char msg[1024];
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK_INT(put("repair.json", bad[i].text, -1), ==, 0);
    st = error_of("/api/repair", msg, sizeof msg);
    if (st != 500 || !strstr(msg, bad[i].msg))
      fprintf(stderr, "  case %zu: %d %s\n", i, st, msg);
    CHECK_INT(st, ==, 500);
    CHECK_STR_CONTAINS(msg, bad[i].msg);
  }
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
  td_server *srv = td_t_server_start(&o, &port);
  if (!srv)
    return 1;
  td_t_use_token(srv);
  RUN(test_absent);
  RUN(test_list);
  RUN(test_one);
  RUN(test_bad_requests);
  RUN(test_bad_files);
  RUN(test_repair);
  td_server_stop(srv);
  return td_t_finish();
}
