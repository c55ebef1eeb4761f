/* Feedback on many samples at once (issue 14: checking a POST of 140k
 * indices for repeats compared every pair, 3.1 s per request). Both a 14k
 * and a 140k POST must be recorded whole; their CPU times are printed for
 * whoever reads the log (tests never assert timings: bench_server measures
 * them). */
#include <jansson.h>
#include <sys/resource.h>

#include "harness.h"
#include "http_client.h"
#include "server_util.h"
#include "tardis/array.h"
#include "tardis/fsutil.h"
#include "tardis/run.h"
#include "tardis/server.h"
#include "toy_run.h"

#define N 140000

static char run_dir[4200];
static int port;

static int make_run(td_err *err) {
  static char a[] = "a", b[] = "b";
  char *classes[] = {a, b};
  td_run_meta m;
  td_t_toy_meta(&m, "feedback-140k", classes, 2, N, 0, 2);
  int rc = td_run_create(run_dir, &m, 1, err);
  static int32_t labels[N];
  for (int i = 0; i < N; i++)
    labels[i] = i % 2;
  return rc ? rc : td_t_toy_i32(run_dir, "train_labels", labels, N, err);
}

static double cpu_s(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
         (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

/* A new session, then {"accept": [0 .. n-1]} to it: the CPU time of the
 * POST (the server runs in this process), or -1 when it was not 200. */
static double post_cpu(int n) {
  td_t_resp r;
  td_t_http(port, "POST", "/api/suspects/sessions", "{}", &r);
  json_t *j = td_t_body_json(&r);
  json_int_t id = json_integer_value(json_object_get(j, "id"));
  json_decref(j);
  int created = r.status == 201 && id > 0;
  td_t_resp_free(&r);
  size_t cap = (size_t)n * 8 + 32, len = 0;
  char *body = malloc(cap);
  if (!created || !body) {
    free(body);
    return -1;
  }
  len += (size_t)snprintf(body, cap, "{\"accept\": [");
  for (int i = 0; i < n; i++)
    len += (size_t)snprintf(body + len, cap - len, i ? ",%d" : "%d", i);
  snprintf(body + len, cap - len, "]}");
  char path[96];
  snprintf(path, sizeof path, "/api/suspects/sessions/%lld/feedback",
           (long long)id);
  double t0 = cpu_s();
  td_t_http(port, "POST", path, body, &r);
  double t = cpu_s() - t0;
  int ok = r.status == 200 && r.body && strstr(r.body, "\"recorded\"");
  if (!ok)
    fprintf(stderr, "  %d indices: %d %.200s\n", n, r.status,
            r.body ? r.body : "");
  td_t_resp_free(&r);
  free(body);
  return ok ? t : -1;
}

static void test_many_indices(void) {
  /* the answer's wall time is the machine's load, not what is tested */
  td_t_timeout_s = 120;
  double small = post_cpu(N / 10), big = post_cpu(N);
  fprintf(stderr, "  feedback CPU: %d indices %.3f s, %d indices %.3f s\n",
          N / 10, small, N, big);
  CHECK(small >= 0 && big >= 0);
}

int main(void) {
  td_err err;
  snprintf(run_dir, sizeof run_dir, "%s/run", td_t_tmpdir("server_feedback"));
  if (make_run(&err)) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    return 1;
  }
  td_server_opts o;
  td_t_server_opts(&o, run_dir);
  /* a 1 MB body under ThreadSanitizer on a loaded machine may take longer
   * than the default 30 s to arrive; deadlines are not tested here */
  o.headers_ms = o.body_ms = 600000;
  td_server *srv = td_t_server_start(&o, &port);
  if (!srv)
    return 1;
  td_t_use_token(srv);
  RUN(test_many_indices);
  td_server_stop(srv);
  return td_t_finish();
}
