/* Who may talk to the server, black-box over loopback: the Host and Origin
 * checks (DNS rebinding, cross-site pages), the token of state-changing
 * requests and of a bind beyond loopback, and requests the HTTP layer used
 * to take wrongly (%00 in a path, two Content-Lengths, no Host, a 20 KB
 * query). */
#include <jansson.h>

#include "harness.h"
#include "http_client.h"
#include "server_util.h"
#include "sus_fixture.h"
#include "tardis/server.h"

static char run_dir[4200];
static int port;
static const char *token;

/* A raw request with the Host and extra header lines given (each ending in
 * \r\n) and an optional body. */
static int send_req(int at, const char *method, const char *path,
                    const char *host, const char *extra, const char *body,
                    td_t_resp *r) {
  char req[32768];
  char hostline[320] = "";
  if (host)
    snprintf(hostline, sizeof hostline, "Host: %s\r\n", host);
  size_t blen = body ? strlen(body) : 0;
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\n%s%sConnection: close\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   method, path, hostline, extra ? extra : "", blen,
                   body ? body : "");
  td_t_http_raw(at, req, (size_t)n, r);
  return r->status;
}

static int status_of(const char *method, const char *path, const char *host,
                     const char *extra, const char *body) {
  td_t_resp r;
  int st = send_req(port, method, path, host, extra, body, &r);
  td_t_resp_free(&r);
  return st;
}

static void test_host(void) {
  char h[64], hdr[160];
  snprintf(h, sizeof h, "127.0.0.1:%d", port);
  CHECK_INT(status_of("GET", "/api/run", h, NULL, NULL), ==, 200);
  snprintf(h, sizeof h, "localhost:%d", port);
  CHECK_INT(status_of("GET", "/api/run", h, NULL, NULL), ==, 200);
  CHECK_INT(status_of("GET", "/api/run", "localhost", NULL, NULL), ==, 200);
  snprintf(h, sizeof h, "[::1]:%d", port);
  CHECK_INT(status_of("GET", "/api/run", h, NULL, NULL), ==, 200);
  /* DNS rebinding: the attacker's name, on every kind of route */
  snprintf(h, sizeof h, "attacker.example:%d", port);
  CHECK_INT(status_of("GET", "/api/run", h, NULL, NULL), ==, 403);
  CHECK_INT(status_of("GET", "/", h, NULL, NULL), ==, 403);
  CHECK_INT(status_of("GET", "/api/events", h, NULL, NULL), ==, 403);
  snprintf(hdr, sizeof hdr, "X-Tardis-Token: %s\r\n", token);
  CHECK_INT(status_of("POST", "/api/suspects/sessions", h, hdr, "{}"), ==, 403);
  CHECK_INT(status_of("GET", "/api/run", "127.0.0.1:1", NULL, NULL), ==, 403);
  CHECK_INT(status_of("GET", "/api/run", "127.0.0.1.evil", NULL, NULL), ==,
            403);
  /* HTTP/1.1 needs a Host; HTTP/1.0 may go without */
  CHECK_INT(status_of("GET", "/api/run", NULL, NULL, NULL), ==, 400);
  td_t_resp r;
  const char old[] = "GET /api/run HTTP/1.0\r\n\r\n";
  td_t_http_raw(port, old, sizeof old - 1, &r);
  CHECK(strstr(r.raw, " 200 ") != NULL);
  td_t_resp_free(&r);
}

static void test_origin(void) {
  char ok[96], o[160], both[320];
  snprintf(ok, sizeof ok, "127.0.0.1:%d", port);
  snprintf(o, sizeof o, "Origin: http://127.0.0.1:%d\r\n", port);
  CHECK_INT(status_of("GET", "/api/run", ok, o, NULL), ==, 200);
  CHECK_INT(status_of("GET", "/api/run", ok,
                      "Origin: http://attacker.example\r\n", NULL),
            ==, 403);
  CHECK_INT(status_of("GET", "/api/run", ok, "Origin: null\r\n", NULL), ==,
            403);
  /* another port is another site (a dev server of another project) */
  CHECK_INT(status_of("GET", "/api/run", ok,
                      "Origin: http://127.0.0.1:3000\r\n", NULL),
            ==, 403);
  /* a cross-site post with the token (it cannot have it, but even so) */
  snprintf(both, sizeof both,
           "Origin: http://attacker.example\r\nX-Tardis-Token: %s\r\n"
           "Content-Type: application/json\r\n",
           token);
  CHECK_INT(status_of("POST", "/api/suspects/sessions", ok, both, "{}"), ==,
            403);
}

static void test_token(void) {
  char h[64], hdr[256];
  snprintf(h, sizeof h, "127.0.0.1:%d", port);
  /* what a cross-site form or text/plain post can send: no token */
  CHECK_INT(status_of("POST", "/api/suspects/sessions", h,
                      "Content-Type: text/plain\r\n", "{}"),
            ==, 403);
  CHECK_INT(status_of("POST", "/api/suspects/sessions", h,
                      "Content-Type: application/x-www-form-urlencoded\r\n",
                      "name=x"),
            ==, 403);
  CHECK_INT(status_of("POST", "/api/suspects/sessions", h,
                      "Content-Type: application/json\r\n", "{}"),
            ==, 403);
  CHECK_INT(status_of("POST", "/api/suspects/sessions", h,
                      "X-Tardis-Token: 00000000000000000000000000000000\r\n",
                      "{}"),
            ==, 403);
  /* with the token, still only JSON bodies */
  snprintf(hdr, sizeof hdr,
           "X-Tardis-Token: %s\r\nContent-Type: text/plain\r\n", token);
  CHECK_INT(status_of("POST", "/api/suspects/sessions", h, hdr, "{}"), ==, 415);
  snprintf(hdr, sizeof hdr,
           "X-Tardis-Token: %s\r\nContent-Type: application/json\r\n", token);
  CHECK_INT(status_of("POST", "/api/suspects/sessions", h, hdr, "{}"), ==, 201);
  /* reads on loopback need no token */
  CHECK_INT(status_of("GET", "/api/suspects/sessions", h, NULL, NULL), ==, 200);
  /* the page carries the token for the UI to send */
  td_t_resp r;
  td_t_http(port, "GET", "/", NULL, &r);
  char want[128];
  snprintf(want, sizeof want, "name=\"tardis-token\" content=\"%s\"", token);
  CHECK_INT(r.status, ==, 200);
  CHECK(r.body && strstr(r.body, want));
  td_t_resp_free(&r);
}

static void test_framing(void) {
  char h[64], hdr[256];
  snprintf(h, sizeof h, "127.0.0.1:%d", port);
  snprintf(hdr, sizeof hdr,
           "X-Tardis-Token: %s\r\nContent-Type: application/json\r\n", token);
  /* %00 would cut the path: "sessions/" + NUL made a new session */
  CHECK_INT(status_of("POST", "/api/suspects/sessions/%00/feedback", h, hdr,
                      "{\"accept\":[1]}"),
            ==, 400);
  CHECK_INT(status_of("GET", "/api/run%00.png", h, NULL, NULL), ==, 400);
  CHECK_INT(status_of("GET", "/api/run?split=%00", h, NULL, NULL), ==, 400);
  /* two Content-Lengths that differ (status_of adds the second) */
  snprintf(hdr, sizeof hdr,
           "X-Tardis-Token: %s\r\nContent-Type: application/json\r\n"
           "Content-Length: 7\r\n",
           token);
  CHECK_INT(status_of("POST", "/api/suspects/sessions", h, hdr, "{}"), ==, 400);
  /* a 20 KB query string */
  char *q = malloc(20100);
  CHECK(q != NULL);
  if (q) {
    int n = snprintf(q, 20100, "/api/run?x=");
    memset(q + n, 'a', 20000);
    q[n + 20000] = '\0';
    CHECK_INT(status_of("GET", q, h, NULL, NULL), ==, 414);
    free(q);
  }
  /* ...and the server still answers */
  CHECK_INT(status_of("GET", "/api/run", h, NULL, NULL), ==, 200);
}

/* Bound to every interface: every request needs the token; opening the
 * printed URL sets a cookie for the page's own requests. */
static void test_beyond_loopback(void) {
  td_server_opts o;
  td_t_server_opts(&o, run_dir);
  o.host = "0.0.0.0";
  int p2;
  td_server *s2 = td_t_server_start(&o, &p2);
  CHECK(s2 != NULL);
  const char *t2 = td_server_token(s2);
  CHECK(!td_server_is_loopback(s2));
  CHECK(strcmp(t2, token) != 0); /* a new token per start */
  char h[64], hdr[256], path[128];
  snprintf(h, sizeof h, "127.0.0.1:%d", p2);
  td_t_resp r;
  CHECK_INT(send_req(p2, "GET", "/api/run", h, NULL, NULL, &r), ==, 403);
  td_t_resp_free(&r);
  CHECK_INT(send_req(p2, "GET", "/", h, NULL, NULL, &r), ==, 403);
  td_t_resp_free(&r);
  snprintf(hdr, sizeof hdr, "X-Tardis-Token: %s\r\n", t2);
  CHECK_INT(send_req(p2, "GET", "/api/run", h, hdr, NULL, &r), ==, 200);
  td_t_resp_free(&r);
  snprintf(path, sizeof path, "/api/run?token=%s", t2);
  CHECK_INT(send_req(p2, "GET", path, h, NULL, NULL, &r), ==, 200);
  td_t_resp_free(&r);
  /* the printed URL: a redirect that sets the cookie */
  snprintf(path, sizeof path, "/?token=%s", t2);
  CHECK_INT(send_req(p2, "GET", path, h, NULL, NULL, &r), ==, 303);
  char cookie[256], loc[64];
  CHECK_STR_CONTAINS(td_t_header(&r, "Set-Cookie", cookie, sizeof cookie), t2);
  CHECK_STR_CONTAINS(td_t_header(&r, "Location", loc, sizeof loc), "/");
  td_t_resp_free(&r);
  snprintf(hdr, sizeof hdr, "Cookie: tardis_token=%s\r\n", t2);
  CHECK_INT(send_req(p2, "GET", "/api/epochs", h, hdr, NULL, &r), ==, 200);
  td_t_resp_free(&r);
  CHECK_INT(send_req(p2, "GET", "/", h, hdr, NULL, &r), ==, 200);
  td_t_resp_free(&r);
  /* an IP literal names this machine; a DNS name that is not ours does not */
  snprintf(h, sizeof h, "192.0.2.7:%d", p2);
  snprintf(hdr, sizeof hdr, "X-Tardis-Token: %s\r\n", t2);
  CHECK_INT(send_req(p2, "GET", "/api/run", h, hdr, NULL, &r), ==, 200);
  td_t_resp_free(&r);
  snprintf(h, sizeof h, "attacker.example:%d", p2);
  CHECK_INT(send_req(p2, "GET", "/api/run", h, hdr, NULL, &r), ==, 403);
  td_t_resp_free(&r);
  /* the cookie alone does not allow a state change */
  snprintf(h, sizeof h, "127.0.0.1:%d", p2);
  snprintf(hdr, sizeof hdr,
           "Cookie: tardis_token=%s\r\nContent-Type: application/json\r\n", t2);
  CHECK_INT(send_req(p2, "POST", "/api/suspects/sessions", h, hdr, "{}", &r),
            ==, 403);
  td_t_resp_free(&r);
  td_server_stop(s2);
}

/* `tardis serve` prints the URL with the token; bound beyond loopback it
 * also warns on stderr, on loopback it does not. */
static void serve_cli(const char *host, char *out, size_t olen, char *err,
                      size_t elen) {
  const char *bin = getenv("TD_BIN");
  out[0] = err[0] = '\0';
  if (!bin) {
    fprintf(stderr, "  TD_BIN is not set (ctest sets it)\n");
    return;
  }
  char cmd[32768], o[4300], e[4300];
  snprintf(o, sizeof o, "%s.out", run_dir);
  snprintf(e, sizeof e, "%s.err", run_dir);
  snprintf(cmd, sizeof cmd,
           "%s serve '%s' --method pca --host %s --port 0 > '%s' 2> '%s' & "
           "p=$!; i=0; while [ $i -lt 100 ] && ! grep -q token= '%s'; do "
           "sleep 0.1; i=$((i+1)); done; kill $p; wait $p",
           bin, run_dir, host, o, e, o);
  if (system(cmd) == -1)
    return;
  FILE *f = fopen(o, "r");
  size_t n = f ? fread(out, 1, olen - 1, f) : 0;
  out[n] = '\0';
  if (f)
    fclose(f);
  f = fopen(e, "r");
  n = f ? fread(err, 1, elen - 1, f) : 0;
  err[n] = '\0';
  if (f)
    fclose(f);
}

static void test_cli_warning(void) {
  char out[4096], err[4096];
  serve_cli("0.0.0.0", out, sizeof out, err, sizeof err);
  const char *t = strstr(out, "/?token=");
  CHECK(t != NULL && strspn(t + 8, "0123456789abcdef") == 32);
  CHECK_STR_CONTAINS(err, "warning: 0.0.0.0 is reachable beyond this machine");
  serve_cli("127.0.0.1", out, sizeof out, err, sizeof err);
  CHECK_STR_CONTAINS(out, "/?token=");
  CHECK(strstr(err, "warning") == NULL);
}

int main(void) {
  td_err err;
  snprintf(run_dir, sizeof run_dir, "%s/run", td_t_tmpdir("server_guard"));
  if (sf_make_run(run_dir, 1, 1, &err)) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    return 1;
  }
  td_server_opts o;
  td_t_server_opts(&o, run_dir);
  td_server *srv = td_t_server_start(&o, &port);
  if (!srv)
    return 1;
  token = td_server_token(srv);
  if (strlen(token) != 32 || !td_server_is_loopback(srv)) {
    fprintf(stderr, "bad token '%s' or not loopback\n", token);
    return 1;
  }
  td_t_use_token(srv);
  RUN(test_host);
  RUN(test_origin);
  RUN(test_token);
  RUN(test_framing);
  RUN(test_beyond_loopback);
  RUN(test_cli_warning);
  td_server_stop(srv);
  return td_t_finish();
}
