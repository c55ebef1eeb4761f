/* /api/suspects black-box: a real server on loopback over a synthetic run.
 * The POST routes need the server to pass POST bodies to td__api_post; a
 * server that answers them 405 has the feedback written directly instead
 * (and says so), so the GET routes are tested either way. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "harness.h"
#include "sus_fixture.h"
#include "tardis/feedback.h"
#include "tardis/server.h"

static char run_dir[4200];
static int port;

typedef struct resp {
  int status;
  char *body; /* malloc'd, NUL-terminated */
} resp;

/* One request with Connection: close; reads until EOF. */
static void http(const char *method, const char *path, const char *body,
                 resp *r) {
  r->status = 0;
  r->body = NULL;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return;
  }
  char req[8192];
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   method, path, body ? strlen(body) : 0, body ? body : "");
  if (write(fd, req, (size_t)n) != n) {
    close(fd);
    return;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  ssize_t got;
  while ((got = read(fd, buf + len, cap - len - 1)) > 0) {
    len += (size_t)got;
    if (cap - len < 1024) {
      cap *= 2;
      buf = realloc(buf, cap);
    }
  }
  close(fd);
  buf[len] = '\0';
  sscanf(buf, "HTTP/1.%*d %d", &r->status);
  char *b = strstr(buf, "\r\n\r\n");
  r->body = strdup(b ? b + 4 : "");
  /* chunked bodies: keep only the chunk payloads */
  if (strstr(buf, "chunked") && b) {
    char *in = b + 4, *out = r->body;
    size_t sz;
    while (sscanf(in, "%zx", &sz) == 1 && sz > 0) {
      in = strstr(in, "\r\n") + 2;
      memcpy(out, in, sz);
      out += sz;
      in += sz + 2;
    }
    *out = '\0';
  }
  free(buf);
}

static json_t *get_json(const char *method, const char *path, const char *body,
                        int *status) {
  resp r;
  http(method, path, body, &r);
  *status = r.status;
  json_t *j = r.body ? json_loads(r.body, 0, NULL) : NULL;
  free(r.body);
  return j;
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
  }
  json_decref(j);
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

  int64_t id = 0;
  j = get_json("POST", "/api/suspects/sessions", "{\"name\": \"tab one\"}",
               &st);
  CHECK_INT(st, !=, 405); /* the server passes POST bodies to the API */
  int has_post = 1;
  if (has_post) {
    CHECK_INT(st, ==, 201);
    id = json_integer_value(json_object_get(j, "id"));
    CHECK(id > 0);
    CHECK(!strcmp(json_string_value(json_object_get(j, "name")), "tab one"));
  } else {
    fprintf(stderr, "  note: this server answers POST with 405 (server.c "
                    "without the POST hook); writing feedback directly\n");
  }
  json_decref(j);
  char path[256], body[256];
  if (has_post) {
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
  } else {
    td_fb *db;
    td_err err;
    CHECK_OK(td_fb_open(run_dir, &db, &err), &err);
    CHECK_OK(td_fb_session_create(db, "tab one", &id, &err), &err);
    int32_t idx[] = {0, 1, 299};
    int8_t v[] = {1, 1, 0};
    CHECK_OK(td_fb_record(db, id, idx, v, 3, NULL, &err), &err);
    td_fb_close(db);
  }
  (void)body;
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
  resp r;
  http("GET", path, NULL, &r);
  CHECK_INT(r.status, ==, 200);
  CHECK(r.body && !strcmp(r.body, "index\n299\n"));
  free(r.body);
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
  td_server_opts_init(&o);
  o.run_dir = run_dir;
  o.port = 0;
  o.method = "pca";
  td_server *srv;
  if (td_server_start(&o, &srv, &err)) {
    fprintf(stderr, "server: %s\n", err.msg);
    return 1;
  }
  port = td_server_port(srv);
  RUN(test_ranking);
  RUN(test_sessions);
  td_server_stop(srv);
  return td_t_finish();
}
