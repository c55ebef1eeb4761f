/* Black-box tests of `tardis serve` over loopback: a synthetic run and
 * projection on disk, the server in-process on an ephemeral port, and a
 * tiny HTTP/1.1 client on plain sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

#define N 40
#define M 10
#define D 4
#define C 3
#define R 8
#define NB 5

static char run_dir[4300], web_dir[4300], root_dir[4200];
static td_server *srv;
static int port;
static float emb1[N * 2];
static int32_t labels[N], truth[N], tlabels[M];
static float logits1[N * C];

/* ---- a synthetic run ---------------------------------------------------- */

/* Uniform in [-0.5, 0.5). */
static float lcg(uint32_t *s) { return td_t_lcg(s) - 0.5f; }

static int write_epoch(int epoch, td_err *err) {
  float repr[N * D], trepr[M * D], logits[N * C], tlogits[M * C], w[C * D],
      b[C];
  uint32_t seed = 77u + (uint32_t)epoch;
  for (int i = 0; i < C * D; i++)
    w[i] = lcg(&seed) * 4;
  for (int i = 0; i < C; i++)
    b[i] = lcg(&seed);
  for (int i = 0; i < N * D; i++)
    repr[i] = lcg(&seed);
  for (int i = 0; i < M * D; i++)
    trepr[i] = lcg(&seed);
  for (int i = 0; i < N + M; i++)
    for (int j = 0; j < C; j++) {
      const float *x = i < N ? repr + i * D : trepr + (i - N) * D;
      float s = b[j];
      for (int k = 0; k < D; k++)
        s += w[j * D + k] * x[k];
      if (i < N)
        logits[i * C + j] = s;
      else
        tlogits[(i - N) * C + j] = s;
    }
  if (epoch == 1)
    memcpy(logits1, logits, sizeof logits);
  td_epoch_writer *wr;
  int rc = td_epoch_begin(run_dir, epoch, &wr, err);
  if (rc)
    return rc;
  rc = td_t_toy_reprs(wr, N, M, D, C, repr, trepr, logits, tlogits, err);
  json_t *ej = json_pack("{s:i,s:f,s:f}", "epoch", epoch, "train_loss",
                         1.0 / epoch, "train_acc", 0.5);
  return td_t_toy_end(wr, rc, ej, w, b, D, C, err);
}

/* RUN/vis/dvi/epoch_NNNN as docs/vis-format.md describes it. */
static int write_projection(int epoch, td_err *err) {
  char dir[4500], p[4700];
  snprintf(dir, sizeof dir, "%s/vis/dvi/.tmp-%04d", run_dir, epoch);
  int rc = td_mkdirs(dir, err);
  float emb[N * 2], temb[M * 2], bemb[NB * 2], conf[R * R];
  uint8_t cls[R * R];
  for (int i = 0; i < N * 2; i++)
    emb[i] = (float)i * 0.25f + (float)epoch;
  for (int i = 0; i < M * 2; i++)
    temb[i] = -(float)i;
  for (int i = 0; i < NB * 2; i++)
    bemb[i] = (float)i;
  for (int i = 0; i < R * R; i++) {
    cls[i] = (uint8_t)(i % C);
    conf[i] = (float)(i % 10) / 10.0f;
  }
  if (epoch == 1)
    memcpy(emb1, emb, sizeof emb);
  if (!rc)
    rc = td_t_toy_embeddings(dir, N, M, emb, temb, err);
  if (!rc)
    rc = td_t_toy_npy(dir, "boundary_embedding.npy", TD_F32, NB, 2, bemb, err);
  if (!rc)
    rc = td_t_toy_npy(dir, "territory_class.npy", TD_U8, R, R, cls, err);
  if (!rc)
    rc = td_t_toy_npy(dir, "territory_conf.npy", TD_F32, R, R, conf, err);
  const char tj[] = "{\"res\": 8, \"extent\": [-1.0, -2.0, 3.0, 2.0]}";
  snprintf(p, sizeof p, "%s/territory.json", dir);
  if (!rc)
    rc = td_write_file_atomic(p, tj, sizeof tj - 1, err);
  if (rc)
    return rc;
  snprintf(p, sizeof p, "%s/vis/dvi/epoch_%04d", run_dir, epoch);
  if (rename(dir, p) != 0)
    return td_err_set(err, TD_EIO, "rename %s: %s", dir, strerror(errno));
  return TD_OK;
}

static int write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fputs(text, f);
  return fclose(f);
}

static int make_fixture(td_err *err) {
  const char *tmp = td_t_tmpdir("test_server");
  if (!tmp)
    return td_err_set(err, TD_EIO, "no temp dir");
  snprintf(root_dir, sizeof root_dir, "%s", tmp);
  snprintf(run_dir, sizeof run_dir, "%s/run", root_dir);
  snprintf(web_dir, sizeof web_dir, "%s/web", root_dir);
  static char *classes[C] = {"zero", "one", "two"};
  td_run_meta m;
  td_t_toy_meta(&m, "srvtest", classes, C, N, M, D);
  m.has_input_shape = 1;
  m.input_shape[0] = 1;
  m.input_shape[1] = 4;
  m.input_shape[2] = 4;
  int rc = td_run_create(run_dir, &m, 0, err);
  uint8_t inputs[N * 16];
  for (int i = 0; i < N; i++) {
    labels[i] = i % C;
    truth[i] = i % 7 == 0 ? (i + 1) % C : i % C; /* every 7th is noisy */
  }
  for (int i = 0; i < M; i++)
    tlabels[i] = (2 * i) % C;
  for (int i = 0; i < N * 16; i++)
    inputs[i] = (uint8_t)(i * 5);
  if (!rc)
    rc = td_t_toy_i32(run_dir, "train_labels", labels, N, err);
  if (!rc)
    rc = td_t_toy_i32(run_dir, "train_truth", truth, N, err);
  if (!rc)
    rc = td_t_toy_i32(run_dir, "test_labels", tlabels, M, err);
  int64_t s_in[4] = {N, 1, 4, 4};
  td_array a;
  td_array_wrap(&a, TD_U8, 4, s_in, inputs);
  if (!rc)
    rc = td_run_write_array(run_dir, "train_inputs", &a, err);
  if (!rc)
    rc = write_epoch(1, err);
  if (!rc)
    rc = write_epoch(2, err);
  if (!rc)
    rc = write_projection(1, err);
  char p[4500];
  snprintf(p, sizeof p, "%s/vis/dvi/metrics.json", run_dir);
  if (!rc && write_file(p, "{\"epochs\": [{\"epoch\": 1, \"nn@15\": 0.25}]}"))
    rc = td_err_set(err, TD_EIO, "%s", p);
  /* The web UI, a file outside it, and a symlink pointing out of it. */
  snprintf(p, sizeof p, "%s/assets", web_dir);
  if (!rc)
    rc = td_mkdirs(p, err);
  snprintf(p, sizeof p, "%s/index.html", web_dir);
  if (!rc && write_file(p, "<!doctype html><title>tardis</title>\n"))
    rc = TD_EIO;
  snprintf(p, sizeof p, "%s/assets/app.js", web_dir);
  if (!rc && write_file(p, "console.log('hi');\n"))
    rc = TD_EIO;
  snprintf(p, sizeof p, "%s/.hidden", web_dir);
  if (!rc && write_file(p, "hidden"))
    rc = TD_EIO;
  snprintf(p, sizeof p, "%s/secret.txt", root_dir);
  if (!rc && write_file(p, "TOP-SECRET"))
    rc = TD_EIO;
  char link[4500];
  snprintf(link, sizeof link, "%s/assets/evil.txt", web_dir);
  if (!rc && symlink(p, link) != 0)
    rc = td_err_set(err, TD_EIO, "symlink: %s", strerror(errno));
  return rc;
}

/* ---- the HTTP client (http_client.h) on this server's port ------------- */

typedef td_t_resp resp;

static void http_raw(const void *req, size_t len, resp *r) {
  td_t_http_raw(port, req, len, r);
}

static void http_get(const char *path, resp *r) {
  td_t_http(port, "GET", path, NULL, r);
}

/* Status and, for errors, that the body is JSON {"error": "..."}. */
#define CHECK_STATUS(path, want)                                               \
  do {                                                                         \
    resp r_;                                                                   \
    http_get(path, &r_);                                                       \
    int st_ = r_.status;                                                       \
    json_t *j_ = td_t_body_json(&r_);                                          \
    int ok_ = st_ < 400 || json_is_string(json_object_get(j_, "error"));       \
    json_decref(j_);                                                           \
    if (st_ != (want))                                                         \
      fprintf(stderr, "  %s -> %d: %.200s\n", path, st_,                       \
              r_.body ? r_.body : "");                                         \
    td_t_resp_free(&r_);                                                       \
    CHECK_INT(st_, ==, want);                                                  \
    CHECK(ok_);                                                                \
  } while (0)

static int argmax(const float *z) {
  int b = 0;
  for (int k = 1; k < C; k++)
    if (z[k] > z[b])
      b = k;
  return b;
}

/* ---- tests -------------------------------------------------------------- */

static void test_run_and_epochs(void) {
  resp r;
  char h[256];
  http_get("/api/run", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_STR_CONTAINS(td_t_header(&r, "Content-Type", h, sizeof h),
                     "application/json");
  json_t *j = td_t_body_json(&r);
  td_t_resp_free(&r);
  CHECK(j);
  CHECK_INT(json_integer_value(json_object_get(j, "n_train")), ==, N);
  CHECK_INT(json_integer_value(json_object_get(j, "n_test")), ==, M);
  CHECK_INT(json_integer_value(json_object_get(j, "repr_dim")), ==, D);
  CHECK_INT(json_array_size(json_object_get(j, "classes")), ==, C);
  CHECK_INT(json_array_size(json_object_get(j, "input_shape")), ==, 3);
  json_t *f = json_object_get(j, "files");
  CHECK(json_is_true(json_object_get(f, "train_truth")));
  CHECK(json_is_true(json_object_get(f, "train_inputs")));
  CHECK(json_is_false(json_object_get(f, "test_inputs")));
  CHECK_STR_CONTAINS(
      json_string_value(json_array_get(json_object_get(j, "methods"), 0)),
      "dvi");
  json_decref(j);

  http_get("/api/epochs", &r);
  CHECK_INT(r.status, ==, 200);
  j = td_t_body_json(&r);
  td_t_resp_free(&r);
  json_t *e = json_object_get(j, "epochs");
  CHECK_INT(json_array_size(e), ==, 2);
  json_t *e1 = json_array_get(e, 0), *e2 = json_array_get(e, 1);
  CHECK_INT(json_integer_value(json_object_get(e1, "epoch")), ==, 1);
  CHECK(json_is_true(json_object_get(e1, "projected")));
  CHECK(json_is_true(json_object_get(e1, "has_territory")));
  CHECK(json_is_false(json_object_get(e2, "projected")));
  CHECK_NEAR(
      json_real_value(json_object_get(json_object_get(e1, "quality"), "nn@15")),
      0.25, 1e-9);
  CHECK(json_is_null(json_object_get(e2, "quality")));
  CHECK_NEAR(json_number_value(
                 json_object_get(json_object_get(e2, "metrics"), "train_loss")),
             0.5, 1e-9);
  json_decref(j);

  http_get("/api/quality", &r);
  CHECK_INT(r.status, ==, 200);
  td_t_resp_free(&r);
}

static void test_arrays(void) {
  resp r;
  char h[256];
  http_get("/api/epochs/1/embedding?split=train", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_STR_CONTAINS(td_t_header(&r, "Content-Type", h, sizeof h),
                     "application/octet-stream");
  CHECK_STR_CONTAINS(td_t_header(&r, "X-Tardis-Shape", h, sizeof h), "40,2");
  CHECK_INT(r.blen, ==, N * 8);
  CHECK(memcmp(r.body, emb1, sizeof emb1) == 0);
  td_t_resp_free(&r);

  http_get("/api/epochs/1/embedding?split=test", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_INT(r.blen, ==, M * 8);
  td_t_resp_free(&r);

  http_get("/api/epochs/1/predictions", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_INT(r.blen, ==, N);
  for (int i = 0; i < N; i++)
    CHECK_INT((uint8_t)r.body[i], ==, argmax(logits1 + i * C));
  td_t_resp_free(&r);

  http_get("/api/epochs/2/predictions?split=test", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_INT(r.blen, ==, M);
  td_t_resp_free(&r);

  http_get("/api/epochs/1/confidence", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_INT(r.blen, ==, N * 4);
  float c0;
  memcpy(&c0, r.body, 4);
  CHECK(c0 >= 1.0f / C && c0 <= 1.0f);
  td_t_resp_free(&r);

  http_get("/api/labels?split=truth", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_INT(r.blen, ==, N);
  for (int i = 0; i < N; i++)
    CHECK_INT((uint8_t)r.body[i], ==, truth[i]);
  td_t_resp_free(&r);
  http_get("/api/labels?split=test", &r);
  CHECK_INT(r.blen, ==, M);
  CHECK_INT((uint8_t)r.body[3], ==, tlabels[3]);
  td_t_resp_free(&r);
  http_get("/api/labels", &r);
  CHECK_INT(r.blen, ==, N);
  td_t_resp_free(&r);

  http_get("/api/epochs/1/boundary", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_INT(r.blen, ==, NB * 8);
  td_t_resp_free(&r);

  http_get("/api/epochs/1/territory", &r);
  CHECK_INT(r.status, ==, 200);
  json_t *j = td_t_body_json(&r);
  td_t_resp_free(&r);
  CHECK_INT(json_integer_value(json_object_get(j, "res")), ==, R);
  CHECK_INT(json_array_size(json_object_get(j, "extent")), ==, 4);
  json_decref(j);
  http_get("/api/epochs/1/territory/class", &r);
  CHECK_INT(r.blen, ==, R * R);
  CHECK_STR_CONTAINS(td_t_header(&r, "X-Tardis-Shape", h, sizeof h), "8,8");
  td_t_resp_free(&r);
  http_get("/api/epochs/1/territory/conf", &r);
  CHECK_INT(r.blen, ==, R * R * 4);
  td_t_resp_free(&r);
  http_get("/api/epochs/1/territory.png", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_STR_CONTAINS(td_t_header(&r, "Content-Type", h, sizeof h), "image/png");
  CHECK(r.blen > 8 && !memcmp(r.body, "\x89PNG", 4));
  td_t_resp_free(&r);

  CHECK_STATUS("/api/epochs/2/embedding", 404); /* not projected */
  CHECK_STATUS("/api/epochs/2/territory", 404);
  CHECK_STATUS("/api/epochs/2/territory.png", 404);
  CHECK_STATUS("/api/epochs/99/embedding", 404); /* unknown epoch */
  CHECK_STATUS("/api/epochs/abc/embedding", 400);
  CHECK_STATUS("/api/epochs/-1/predictions", 400);
  CHECK_STATUS("/api/epochs/1.0/predictions", 400);
  CHECK_STATUS("/api/epochs/1/embedding?split=foo", 400);
  CHECK_STATUS("/api/epochs/1/nothing", 404);
  CHECK_STATUS("/api/labels?split=validation", 400);
  CHECK_STATUS("/api/epochs/1/embedding?method=../../etc", 400);
  CHECK_STATUS("/api/epochs/1/embedding?method=pca", 404);
  CHECK_STATUS("/api/nope", 404);
  CHECK_STATUS("/api", 404);
}

/* ?size= is capped (a 4096-pixel PNG costs about a second of CPU) and a
 * drawn PNG is kept while the territory's files stay the same: asked again
 * it comes from the cache, even with the embedding it was drawn from gone;
 * once territory.json changes it is drawn anew (and then fails without
 * the embedding). */
static void test_territory_png_cache(void) {
  CHECK_STATUS("/api/epochs/1/territory.png?size=4097", 400);
  CHECK_STATUS("/api/epochs/1/territory.png?size=-1", 400);
  CHECK_STATUS("/api/epochs/1/territory.png?size=1e3", 400);
  const char *path = "/api/epochs/1/territory.png?size=96";
  resp a, b;
  http_get(path, &a);
  CHECK_INT(a.status, ==, 200);
  char emb[4400], away[4410], tj[4400];
  snprintf(emb, sizeof emb, "%s/vis/dvi/epoch_0001/train_embedding.npy",
           run_dir);
  snprintf(away, sizeof away, "%s.away", emb);
  snprintf(tj, sizeof tj, "%s/vis/dvi/epoch_0001/territory.json", run_dir);
  CHECK(rename(emb, away) == 0);
  http_get(path, &b);
  CHECK_INT(b.status, ==, 200);
  CHECK(a.blen == b.blen && a.body && b.body &&
        !memcmp(a.body, b.body, a.blen));
  td_t_resp_free(&b);
  struct timespec when[2] = {{1000000000, 0}, {1000000000, 0}};
  CHECK(utimensat(AT_FDCWD, tj, when, 0) == 0);
  http_get(path, &b);
  CHECK_INT(b.status, >=, 400);
  td_t_resp_free(&b);
  CHECK(rename(away, emb) == 0);
  http_get(path, &b);
  CHECK_INT(b.status, ==, 200);
  td_t_resp_free(&b);
  td_t_resp_free(&a);
}

static void test_samples(void) {
  resp r;
  http_get("/api/samples/7?split=train&epoch=1", &r);
  CHECK_INT(r.status, ==, 200);
  json_t *j = td_t_body_json(&r);
  td_t_resp_free(&r);
  CHECK(j);
  CHECK_INT(json_integer_value(json_object_get(j, "index")), ==, 7);
  CHECK_INT(json_integer_value(json_object_get(j, "label")), ==, labels[7]);
  CHECK_INT(json_integer_value(json_object_get(j, "truth")), ==, truth[7]);
  CHECK(json_is_true(json_object_get(j, "noisy")));
  CHECK_INT(json_integer_value(json_object_get(j, "prediction")), ==,
            argmax(logits1 + 7 * C));
  double conf = json_real_value(json_object_get(j, "confidence"));
  CHECK(conf >= 1.0 / C && conf <= 1.0);
  CHECK(json_real_value(json_object_get(j, "loss")) > 0);
  CHECK_INT(json_array_size(json_object_get(j, "logits")), ==, C);
  json_t *t = json_object_get(j, "trajectory");
  CHECK_INT(json_array_size(t), ==, 1);
  json_t *p = json_array_get(t, 0);
  CHECK_INT(json_integer_value(json_array_get(p, 0)), ==, 1);
  CHECK_NEAR(json_real_value(json_array_get(p, 1)), emb1[14], 1e-6);
  CHECK_NEAR(json_real_value(json_array_get(p, 2)), emb1[15], 1e-6);
  CHECK(json_is_true(json_object_get(j, "has_thumbnail")));
  json_decref(j);

  http_get("/api/samples/2?split=test", &r); /* default epoch: the last */
  CHECK_INT(r.status, ==, 200);
  j = td_t_body_json(&r);
  td_t_resp_free(&r);
  CHECK_INT(json_integer_value(json_object_get(j, "epoch")), ==, 2);
  CHECK_INT(json_integer_value(json_object_get(j, "label")), ==, tlabels[2]);
  CHECK(json_is_null(json_object_get(j, "truth")));
  json_decref(j);

  char h[256];
  http_get("/api/samples/3/thumbnail.png?scale=2", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_STR_CONTAINS(td_t_header(&r, "Content-Type", h, sizeof h), "image/png");
  CHECK(r.blen > 8 && !memcmp(r.body, "\x89PNG", 4));
  td_t_resp_free(&r);

  CHECK_STATUS("/api/samples/3/thumbnail.png?split=test", 404);
  CHECK_STATUS("/api/samples/3/thumbnail.png?scale=99", 400);
  CHECK_STATUS("/api/samples/-1", 400);
  CHECK_STATUS("/api/samples/40", 404);
  CHECK_STATUS("/api/samples/10?split=test", 404);
  CHECK_STATUS("/api/samples/99999999999999999999999", 400);
  CHECK_STATUS("/api/samples/abc", 400);
  CHECK_STATUS("/api/samples/1?epoch=3", 404);
  CHECK_STATUS("/api/samples/1?epoch=x", 400);
  CHECK_STATUS("/api/samples/1?split=foo", 400);
}

static void test_filter(void) {
  int st;
  json_t *j = td_t_get_json(port, "/api/filter?label=1", &st);
  CHECK_INT(st, ==, 200);
  CHECK(json_is_array(j));
  int want = 0;
  for (int i = 0; i < N; i++)
    want += labels[i] == 1;
  CHECK_INT(json_array_size(j), ==, want);
  CHECK_INT(json_integer_value(json_array_get(j, 0)), ==, 1);
  json_decref(j);

  j = td_t_get_json(port, "/api/filter?noisy=1", &st);
  CHECK_INT(st, ==, 200);
  CHECK_INT(json_array_size(j), ==, 6); /* 0, 7, ..., 35 */
  CHECK_INT(json_integer_value(json_array_get(j, 1)), ==, 7);
  json_decref(j);

  j = td_t_get_json(port, "/api/filter?epoch=1&misclassified=1&label=2", &st);
  CHECK_INT(st, ==, 200);
  want = 0;
  for (int i = 0; i < N; i++)
    want += labels[i] == 2 && argmax(logits1 + i * C) != 2;
  CHECK_INT(json_array_size(j), ==, want);
  json_decref(j);

  j = td_t_get_json(port, "/api/filter?epoch=1&pred=0&misclassified=0", &st);
  want = 0;
  for (int i = 0; i < N; i++)
    want += labels[i] == 0 && argmax(logits1 + i * C) == 0;
  CHECK_INT(json_array_size(j), ==, want);
  json_decref(j);

  j = td_t_get_json(port, "/api/filter?indices=9,3,3,14&noisy=1", &st);
  CHECK_INT(json_array_size(j), ==, 1);
  CHECK_INT(json_integer_value(json_array_get(j, 0)), ==, 14);
  json_decref(j);

  resp r;
  http_get("/api/filter?indices=5,2&format=bin", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_INT(r.blen, ==, 8);
  int32_t v[2];
  memcpy(v, r.body, 8);
  CHECK_INT(v[0], ==, 2);
  CHECK_INT(v[1], ==, 5);
  td_t_resp_free(&r);

  j = td_t_get_json(port, "/api/filter?split=test&label=2", &st);
  CHECK_INT(st, ==, 200);
  json_decref(j);

  CHECK_STATUS("/api/filter?label=3", 400);
  CHECK_STATUS("/api/filter?label=x", 400);
  CHECK_STATUS("/api/filter?misclassified=2", 400);
  CHECK_STATUS("/api/filter?indices=1,x", 400);
  CHECK_STATUS("/api/filter?indices=1,,2", 400);
  CHECK_STATUS("/api/filter?indices=40", 400);
  CHECK_STATUS("/api/filter?split=test&noisy=1", 400);
  CHECK_STATUS("/api/filter?epoch=7&pred=1", 404);
  CHECK_STATUS("/api/filter?format=xml", 400);
}

static void test_static(void) {
  resp r;
  char h[256], etag[256], req[1024];
  http_get("/", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_STR_CONTAINS(td_t_header(&r, "Content-Type", h, sizeof h), "text/html");
  CHECK_STR_CONTAINS(r.body, "<title>tardis");
  CHECK(td_t_header(&r, "ETag", etag, sizeof etag));
  td_t_resp_free(&r);

  http_get("/assets/app.js", &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_STR_CONTAINS(td_t_header(&r, "Content-Type", h, sizeof h),
                     "text/javascript");
  td_t_resp_free(&r);

  int n = snprintf(req, sizeof req,
                   "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: %s\r\n"
                   "Connection: close\r\n\r\n",
                   etag);
  http_raw(req, (size_t)n, &r);
  CHECK_INT(r.status, ==, 304);
  td_t_resp_free(&r);

  CHECK_STATUS("/../secret.txt", 404);
  CHECK_STATUS("/assets/../../secret.txt", 404);
  CHECK_STATUS("/assets/%2e%2e/%2e%2e/secret.txt", 404);
  CHECK_STATUS("/%2e%2e%2fsecret.txt", 404);
  CHECK_STATUS("/assets/..%2f..%2fsecret.txt", 404);
  CHECK_STATUS("/assets/evil.txt", 404); /* symlink out of web/ */
  CHECK_STATUS("/.hidden", 404);
  CHECK_STATUS("//etc/passwd", 404);
  CHECK_STATUS("/assets/nope.js", 404);
  CHECK_STATUS("/assets", 404); /* a directory */

  /* A request target that is not a path at all. */
  const char abs_req[] = "GET /etc/passwd HTTP/1.1\r\nHost: "
                         "127.0.0.1\r\nConnection: close\r\n\r\n";
  http_raw(abs_req, sizeof abs_req - 1, &r);
  CHECK_INT(r.status, ==, 404);
  CHECK(!strstr(r.raw, "root:"));
  td_t_resp_free(&r);
}

static void test_hostile(void) {
  resp r;
  /* Long URL: under the HTTP layer's limit → our 414 JSON. */
  char *big = malloc(70000);
  memset(big, 'a', 69999);
  big[69999] = '\0';
  memcpy(big, "/api/", 5);
  big[5000] = '\0';
  CHECK_STATUS(big, 414);
  /* Far over it: the HTTP layer refuses or closes. */
  big[5000] = 'a';
  http_get(big, &r);
  CHECK(r.closed_early || (r.status >= 400 && r.status < 500));
  td_t_resp_free(&r);
  /* Oversized headers. */
  char *req = malloc(80000);
  int n =
      snprintf(req, 80000,
               "GET /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %s\r\n\r\n",
               big + 10000);
  http_raw(req, (size_t)n, &r);
  CHECK(r.closed_early || (r.status >= 400 && r.status < 500));
  td_t_resp_free(&r);

  /* A huge POST body is refused before it is read. */
  n = snprintf(req, 80000,
               "POST /api/feedback HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Length: 104857600\r\nConnection: close\r\n\r\n");
  memset(req + n, 'x', 60000);
  http_raw(req, (size_t)n + 60000, &r);
  CHECK(r.closed_early || r.status == 413);
  td_t_resp_free(&r);
  /* A small POST: no such method here. */
  n = snprintf(
      req, 80000,
      "POST /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
      "Connection: close\r\n\r\n{}");
  http_raw(req, (size_t)n, &r);
  CHECK_INT(r.status, ==, 405);
  CHECK_STR_CONTAINS(r.body, "\"error\"");
  char allow[64];
  CHECK_STR_CONTAINS(td_t_header(&r, "Allow", allow, sizeof allow), "GET");
  td_t_resp_free(&r);
  /* HEAD gets the headers only. */
  n = snprintf(req, 80000,
               "HEAD /api/epochs/1/embedding HTTP/1.1\r\n"
               "Host: 127.0.0.1\r\nConnection: close\r\n\r\n");
  http_raw(req, (size_t)n, &r);
  CHECK_INT(r.status, ==, 200);
  CHECK_INT(r.blen, ==, 0);
  CHECK_STR_CONTAINS(td_t_header(&r, "X-Tardis-Shape", allow, sizeof allow),
                     "40,2");
  td_t_resp_free(&r);
  /* A chunked body (no Content-Length) over the cap: the server drops the
   * connection once it has read 1 MiB. */
  int fd = td_t_connect(port);
  CHECK(fd >= 0);
  n = snprintf(req, 80000,
               "POST /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
  td_t_send_all(fd, req, (size_t)n);
  n = snprintf(req, 80000, "%x\r\n", 65536);
  memset(req + n, 'y', 65536);
  memcpy(req + n + 65536, "\r\n", 2);
  int sent_all = 1;
  for (int k = 0; k < 32 && sent_all; k++)
    sent_all = send(fd, req, (size_t)n + 65538, MSG_NOSIGNAL) > 0;
  char buf[256];
  ssize_t got = sent_all ? recv(fd, buf, sizeof buf - 1, 0) : 0;
  close(fd);
  if (got > 0) {
    buf[got] = '\0';
    CHECK(strstr(buf, " 413 ") || strstr(buf, " 400 "));
  }
  /* GET with a body. */
  n = snprintf(
      req, 80000,
      "GET /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
      "Connection: close\r\n\r\nhello");
  http_raw(req, (size_t)n, &r);
  CHECK_INT(r.status, ==, 400);
  td_t_resp_free(&r);
  /* Garbage instead of HTTP. */
  unsigned char junk[4096];
  uint32_t s = 12345;
  for (size_t i = 0; i < sizeof junk; i++) {
    s = s * 1103515245u + 12345u;
    junk[i] = (unsigned char)(s >> 16);
  }
  junk[sizeof junk - 4] = '\r';
  junk[sizeof junk - 3] = '\n';
  junk[sizeof junk - 2] = '\r';
  junk[sizeof junk - 1] = '\n';
  http_raw(junk, sizeof junk, &r);
  CHECK(r.closed_early || (r.status >= 400 && r.status < 500));
  td_t_resp_free(&r);
  const char bad_line[] = "GIMME /api/run\r\n\r\n";
  http_raw(bad_line, sizeof bad_line - 1, &r);
  CHECK(r.closed_early || (r.status >= 400 && r.status < 500));
  td_t_resp_free(&r);
  const char bad_pct[] = "GET /api/samples/%zz%00 HTTP/1.1\r\nHost: "
                         "127.0.0.1\r\nConnection: close\r\n\r\n";
  http_raw(bad_pct, sizeof bad_pct - 1, &r);
  CHECK(r.closed_early || (r.status >= 400 && r.status < 500));
  td_t_resp_free(&r);
  free(req);
  free(big);

  /* ...and the server still answers. */
  CHECK_STATUS("/api/run", 200);
}

static void *hammer_main(void *arg) {
  long fails = 0;
  for (int k = 0; k < 25; k++) {
    resp r;
    char p[128];
    snprintf(p, sizeof p, "/api/samples/%ld?epoch=%d", ((long)arg + k) % N,
             1 + k % 2);
    http_get(p, &r);
    fails += r.status != 200;
    td_t_resp_free(&r);
  }
  return (void *)fails;
}

static void test_concurrent(void) {
  pthread_t t[6];
  for (long i = 0; i < 6; i++)
    pthread_create(&t[i], NULL, hammer_main, (void *)i);
  long fails = 0;
  for (int i = 0; i < 6; i++) {
    void *v;
    pthread_join(t[i], &v);
    fails += (long)v;
  }
  CHECK_INT(fails, ==, 0);
}

static void test_events(void) {
  int fd = td_t_connect(port);
  CHECK(fd >= 0);
  const char req[] = "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  td_t_send_all(fd, req, sizeof req - 1);
  static char acc[65536];
  size_t len = 0;
  int ok = td_t_read_until(fd, acc, sizeof acc, &len, ": connected", 1, 3000);
  if (!ok)
    close(fd);
  CHECK(ok);
  CHECK(strstr(acc, "text/event-stream"));

  /* The stream must not block other requests. */
  int st;
  json_t *j = td_t_get_json(port, "/api/run", &st);
  json_decref(j);
  if (st != 200)
    close(fd);
  CHECK_INT(st, ==, 200);

  td_err err;
  int rc = write_epoch(3, &err);
  if (rc)
    close(fd);
  CHECK_OK(rc, &err);
  ok = td_t_read_until(fd, acc, sizeof acc, &len,
                       "\"epoch\":3,\"projected\":false", 1, 5000);
  if (!ok) {
    fprintf(stderr, "  stream so far: %s\n", acc);
    close(fd);
  }
  CHECK(ok);
  CHECK(strstr(acc, "event: epoch"));
  rc = write_projection(3, &err);
  if (rc)
    close(fd);
  CHECK_OK(rc, &err);
  ok = td_t_read_until(fd, acc, sizeof acc, &len,
                       "\"epoch\":3,\"projected\":true", 1, 5000);
  if (!ok)
    close(fd);
  CHECK(ok);
  close(fd);

  /* The new epoch is served. */
  CHECK_STATUS("/api/epochs/3/embedding", 200);
  j = td_t_get_json(port, "/api/samples/0", &st);
  CHECK_INT(json_array_size(json_object_get(j, "trajectory")), ==, 2);
  json_decref(j);
}

static void test_port_in_use(void) {
  td_server_opts o;
  td_server_opts_init(&o);
  o.run_dir = run_dir;
  o.port = port;
  td_server *s2 = NULL;
  td_err err;
  int rc = td_server_start(&o, &s2, &err);
  td_server_stop(s2);
  CHECK_INT(rc, ==, TD_EEXIST);
  CHECK_STR_CONTAINS(err.msg, "in use");

  o.port = 0;
  o.web_dir = "/nonexistent/web";
  rc = td_server_start(&o, &s2, &err);
  td_server_stop(s2);
  CHECK_INT(rc, ==, TD_ENOENT);
}

/* Stopping with a live event stream returns promptly. */
static void test_stop_with_stream(void) {
  int fd = td_t_connect(port);
  CHECK(fd >= 0);
  const char req[] = "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  td_t_send_all(fd, req, sizeof req - 1);
  static char acc[4096];
  size_t len = 0;
  int ok = td_t_read_until(fd, acc, sizeof acc, &len, ": connected", 1, 3000);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  td_server_stop(srv);
  srv = NULL;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  close(fd);
  CHECK(ok);
  CHECK((t1.tv_sec - t0.tv_sec) < 3);
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
  o.web_dir = web_dir;
  o.poll_ms = 100;
  if (!(srv = td_t_server_start(&o, &port)))
    return 1;
  RUN(test_run_and_epochs);
  RUN(test_arrays);
  RUN(test_territory_png_cache);
  RUN(test_samples);
  RUN(test_filter);
  RUN(test_static);
  RUN(test_hostile);
  RUN(test_concurrent);
  RUN(test_events);
  RUN(test_port_in_use);
  RUN(test_stop_with_stream);
  td_server_stop(srv);
  return td_t_finish();
}
