/* /api/suspects black-box: a real server on loopback over a synthetic run:
 * the features computed off the request threads ("computing" meanwhile),
 * the ranking, feedback sessions and their export. */
#include <jansson.h>

#include "harness.h"
#include "http_client.h"
#include "server_util.h"
#include "sus_fixture.h"
#include "tardis/feedback.h"
#include "tardis/server.h"

static char run_dir[4200];
static int port;

static json_t *get_json_at(int at, const char *method, const char *path,
                           const char *body, int *status) {
  td_t_resp r;
  td_t_http(at, method, path, body, &r);
  *status = r.status;
  json_t *j = td_t_body_json(&r);
  td_t_resp_free(&r);
  return j;
}

static json_t *get_json(const char *method, const char *path, const char *body,
                        int *status) {
  return get_json_at(port, method, path, body, status);
}

/* GET until the features are computed (503 "computing" meanwhile). */
static json_t *get_ready(int at, const char *path, int *status) {
  for (int tries = 0; tries < 600; tries++) {
    json_t *j = get_json_at(at, "GET", path, NULL, status);
    if (*status != 503)
      return j;
    json_decref(j);
    usleep(100000);
  }
  return NULL;
}

/* The first request finds nothing computed: a clear 503 with Retry-After
 * at once, never a request thread blocked for the computation; later ones
 * get the cached result. */
static void test_computing(void) {
  td_t_resp r;
  td_t_http(port, "GET", "/api/suspects?k=5", NULL, &r);
  char h[64];
  int st = r.status;
  const char *ra = td_t_header(&r, "Retry-After", h, sizeof h);
  json_t *j = td_t_body_json(&r);
  td_t_resp_free(&r);
  int computing = json_is_true(json_object_get(j, "computing")) &&
                  json_is_string(json_object_get(j, "error"));
  json_decref(j);
  CHECK_INT(st, ==, 503);
  CHECK(ra && atoi(ra) >= 1);
  CHECK(computing);
  j = get_ready(port, "/api/suspects?k=5", &st);
  CHECK_INT(st, ==, 200);
  json_decref(j);
  j = get_json("GET", "/api/suspects?k=3", NULL, &st);
  CHECK_INT(st, ==, 200);
  CHECK_INT(json_array_size(json_object_get(j, "suspects")), ==, 3);
  json_decref(j);
}

/* Each server has a cache of its own: a second server on a run without a
 * projection serves features without trajectories next to the first, and
 * stopping a server while its worker computes is clean. */
static void test_per_server(void) {
  char dir2[4300];
  td_err err;
  snprintf(dir2, sizeof dir2, "%s.noproj", run_dir);
  CHECK_OK(sf_make_run(dir2, 1, 0, &err), &err);
  td_server_opts o;
  td_t_server_opts(&o, dir2);
  td_server *s2 = td_t_server_start(&o, NULL);
  CHECK(s2 != NULL);
  int st, st1;
  json_t *j = get_ready(td_server_port(s2), "/api/suspects?k=2", &st);
  json_t *j1 = get_json("GET", "/api/suspects?k=2", NULL, &st1);
  int traj2 = json_is_true(
      json_object_get(json_object_get(j, "features"), "trajectory"));
  int traj1 = json_is_true(
      json_object_get(json_object_get(j1, "features"), "trajectory"));
  json_decref(j);
  json_decref(j1);
  td_server_stop(s2);
  CHECK_INT(st, ==, 200);
  CHECK_INT(st1, ==, 200);
  CHECK(!traj2 && traj1);
  /* stopped while computing: the worker is joined, nothing leaks */
  char cache[4400];
  snprintf(cache, sizeof cache, "%s/vis", dir2);
  CHECK_OK(td_remove_tree(cache, &err), &err);
  CHECK((s2 = td_t_server_start(&o, NULL)) != NULL);
  j = get_json_at(td_server_port(s2), "GET", "/api/suspects", NULL, &st);
  json_decref(j);
  td_server_stop(s2);
  CHECK_INT(st, ==, 503);
}

static void test_ranking(void) {
  int st;
  json_t *j = get_json("GET", "/api/suspects?k=5", NULL, &st);
  CHECK_INT(st, ==, 200);
  json_t *items = json_object_get(j, "suspects");
  CHECK_INT(json_array_size(items), ==, 5);
  json_t *f = json_object_get(j, "features");
  CHECK(json_is_true(json_object_get(f, "trajectory")));
  CHECK(!strcmp(json_string_value(json_object_get(j, "ranked_by")), "prior"));
  /* the planted noisy samples (the first SF_NOISY) come first */
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    CHECK(json_integer_value(json_object_get(it, "index")) < SF_NOISY);
    CHECK(json_array_size(json_object_get(it, "why")) >= 1);
    CHECK(json_is_number(
        json_object_get(json_object_get(it, "features"), "aum")));
    json_t *sg = json_object_get(it, "suggested");
    CHECK(json_is_integer(json_object_get(sg, "label")));
    CHECK(json_is_number(json_object_get(sg, "confidence")));
  }
  json_decref(j);
  /* the fixture records no test representations: the detectors say so */
  json_decref(get_json("GET", "/api/suspects/ood", NULL, &st));
  CHECK_INT(st, ==, 404);
  json_decref(get_json("GET", "/api/suspects/ood?method=nope", NULL, &st));
  CHECK_INT(st, ==, 400);
  const char *bad[] = {"/api/suspects?k=0", "/api/suspects?k=abc",
                       "/api/suspects?k=1001", "/api/suspects/sessions/abc",
                       "/api/suspects/sessions/0"};
  for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
    j = get_json("GET", bad[b], NULL, &st);
    CHECK_INT(st, ==, 400);
    CHECK(json_is_string(json_object_get(j, "error")));
    json_decref(j);
  }
  const char *missing[] = {"/api/suspects/nope", "/api/suspects/sessions/999",
                           "/api/suspects/sessions/999/recommend",
                           "/api/suspects/sessions/999/export",
                           "/api/suspects/sessions/1/nope/x"};
  for (size_t b = 0; b < sizeof missing / sizeof missing[0]; b++) {
    j = get_json("GET", missing[b], NULL, &st);
    CHECK_INT(st, ==, 404);
    CHECK(json_is_string(json_object_get(j, "error")));
    json_decref(j);
  }
}

static void test_sessions(void) {
  int st;
  json_t *j = get_json("GET", "/api/suspects/sessions", NULL, &st);
  CHECK_INT(st, ==, 200);
  CHECK(json_is_array(json_object_get(j, "sessions")));
  json_decref(j);
  /* a GET does not create the database (a read-only run answered 500) */
  char db[4300];
  snprintf(db, sizeof db, "%s/tardis.db", run_dir);
  CHECK(!td_path_exists(db));
  j = get_json("GET", "/api/suspects/sessions/1", NULL, &st);
  CHECK_INT(st, ==, 404);
  json_decref(j);

  j = get_json("POST", "/api/suspects/sessions", "{\"name\": \"tab one\"}",
               &st);
  CHECK_INT(st, ==, 201);
  int64_t id = json_integer_value(json_object_get(j, "id"));
  CHECK(id > 0);
  CHECK(!strcmp(json_string_value(json_object_get(j, "name")), "tab one"));
  json_decref(j);
  char path[256];
  snprintf(path, sizeof path, "/api/suspects/sessions/%lld/feedback",
           (long long)id);
  j = get_json("POST", path, "{\"accept\": [0, 1], \"reject\": [299]}", &st);
  CHECK_INT(st, ==, 200);
  CHECK_INT(json_integer_value(json_object_get(j, "round")), ==, 1);
  CHECK_INT(json_integer_value(json_object_get(j, "recorded")), ==, 3);
  json_decref(j);
  const char *bad[] = {"not json",
                       "[1]",
                       "{}",
                       "{\"accept\": [300]}",
                       "{\"accept\": [-1]}",
                       "{\"accept\": [\"1\"]}",
                       "{\"accept\": [4], \"reject\": [4]}",
                       "{\"accept\": 3}"};
  for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
    j = get_json("POST", path, bad[b], &st);
    CHECK_INT(st, ==, 400);
    CHECK(json_is_string(json_object_get(j, "error")));
    json_decref(j);
  }
  j = get_json("POST", "/api/suspects/sessions/999/feedback",
               "{\"accept\": [1]}", &st);
  CHECK_INT(st, ==, 404);
  json_decref(j);
  j = get_json("POST", "/api/suspects/sessions", "{\"name\": 3}", &st);
  CHECK_INT(st, ==, 400);
  json_decref(j);
  j = get_json("POST", "/api/suspects/sessions", "", &st); /* no body */
  CHECK_INT(st, ==, 201);
  json_decref(j);
  snprintf(path, sizeof path, "/api/suspects/sessions/%lld", (long long)id);
  j = get_json("GET", path, NULL, &st);
  CHECK_INT(st, ==, 200);
  CHECK_INT(json_integer_value(json_object_get(j, "accepted")), ==, 2);
  CHECK_INT(json_integer_value(json_object_get(j, "rejected")), ==, 1);
  json_decref(j);

  snprintf(path, sizeof path, "/api/suspects/sessions/%lld/recommend?k=40",
           (long long)id);
  j = get_json("GET", path, NULL, &st);
  CHECK_INT(st, ==, 200);
  json_t *items = json_object_get(j, "suspects");
  CHECK_INT(json_array_size(items), ==, 40);
  CHECK(json_is_object(json_object_get(j, "session")));
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    json_int_t ix = json_integer_value(json_object_get(it, "index"));
    CHECK(ix != 0 && ix != 1 && ix != 299); /* never a judged sample */
  }
  json_decref(j);

  snprintf(path, sizeof path, "/api/suspects/sessions/%lld/export",
           (long long)id);
  j = get_json("GET", path, NULL, &st);
  CHECK_INT(st, ==, 200);
  json_t *ix = json_object_get(j, "indices");
  CHECK_INT(json_array_size(ix), ==, 2);
  CHECK_INT(json_integer_value(json_array_get(ix, 1)), ==, 1);
  json_decref(j);
  snprintf(path, sizeof path,
           "/api/suspects/sessions/%lld/export?format=csv&verdict=reject",
           (long long)id);
  td_t_resp r;
  td_t_http(port, "GET", path, NULL, &r);
  int csv_ok = r.body && !strcmp(r.body, "index\n299\n");
  st = r.status;
  td_t_resp_free(&r);
  CHECK_INT(st, ==, 200);
  CHECK(csv_ok);
  snprintf(path, sizeof path, "/api/suspects/sessions/%lld/export?format=xml",
           (long long)id);
  j = get_json("GET", path, NULL, &st);
  CHECK_INT(st, ==, 400);
  json_decref(j);

  j = get_json("GET", "/api/suspects/sessions", NULL, &st);
  CHECK_INT(st, ==, 200);
  CHECK(json_array_size(json_object_get(j, "sessions")) >= 1);
  json_decref(j);
  /* other routes still refuse POST */
  j = get_json("POST", "/api/run", "{}", &st);
  CHECK_INT(st, ==, 405);
  json_decref(j);
}

int main(void) {
  td_err err;
  const char *t = td_t_tmpdir("test_suspects_api");
  if (!t)
    return 1;
  snprintf(run_dir, sizeof run_dir, "%s/run", t);
  if (sf_make_run(run_dir, 1, 1, &err)) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    return 1;
  }
  td_server_opts o;
  td_t_server_opts(&o, run_dir);
  o.method = "pca";
  td_server *srv = td_t_server_start(&o, &port);
  if (!srv)
    return 1;
  td_t_use_token(srv);
  RUN(test_computing);
  RUN(test_ranking);
  RUN(test_sessions);
  RUN(test_per_server);
  td_server_stop(srv);
  return td_t_finish();
}
