/* Slow, idle and long-lived clients must not shut others out, black-box
 * over loopback: 64 idle connections, 64 that send headers or a body slowly,
 * 64 event streams (more than the cap: the oldest are dropped), streams
 * that close must give their connections back at once, and headers or a
 * body trickled in byte by byte are cut off at their total deadline. Only
 * correctness and a generous bound ("answers within 10 s") are asserted, never
 * a figure. */
#include <errno.h>
#include <poll.h>
#include <time.h>

#include "harness.h"
#include "http_client.h"
#include "server_util.h"
#include "sus_fixture.h"
#include "tardis/server.h"

#define HELD 64

static char run_dir[4200];
static int port0; /* the default server's port */

/* GET /api/run answers 200 within 30 s (asking again while refused). */
static int answers(int port) {
  for (double dl = td_t_now_s() + 30; td_t_now_s() < dl;) {
    td_t_resp r;
    td_t_http(port, "GET", "/api/run", NULL, &r);
    int ok = r.status == 200 && r.body && strstr(r.body, "\"n_train\"");
    td_t_resp_free(&r);
    if (ok)
      return 1;
    usleep(100000);
  }
  return 0;
}

static void close_all(int *fd, int n) {
  for (int i = 0; i < n; i++)
    if (fd[i] >= 0)
      close(fd[i]);
}

/* The server closed fd within 20 s. */
static int closed_by_server(int fd) {
  char buf[4096];
  for (double dl = td_t_now_s() + 20; td_t_now_s() < dl;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) > 0) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN))
        return 1;
    }
  }
  return 0;
}

static void test_idle_and_slow(void) {
  int port = port0;
  int fd[3 * HELD];
  char req[256];
  for (int i = 0; i < 3 * HELD; i++) {
    fd[i] = td_t_connect(port);
    if (fd[i] < 0)
      continue;
    if (i < HELD)
      continue; /* idle: connected, nothing sent */
    if (i < 2 * HELD) {
      const char part[] = "GET /api/run HTTP/1.1\r\nHo"; /* slow headers */
      td_t_send_all(fd[i], part, sizeof part - 1);
    } else {
      int n = snprintf(req, sizeof req,
                       "POST /api/suspects/sessions HTTP/1.1\r\n"
                       "Host: 127.0.0.1\r\nX-Tardis-Token: %s\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 1000\r\n\r\n{\"na",
                       td_t_token);
      td_t_send_all(fd[i], req, (size_t)n); /* slow body */
    }
  }
  int held = 0;
  for (int i = 0; i < 3 * HELD; i++)
    held += fd[i] >= 0;
  CHECK_INT(held, ==, 3 * HELD);
  CHECK(answers(port));
  close_all(fd, 3 * HELD);
}

static void test_streams(void) {
  int port = port0;
  int fd[HELD];
  int open = 0;
  for (int i = 0; i < HELD; i++)
    open += (fd[i] = td_t_open_stream(port)) >= 0;
  CHECK_INT(open, ==, HELD);
  CHECK(answers(port));
  /* over the cap: the oldest streams were closed by the server */
  CHECK(fd[0] >= 0 && closed_by_server(fd[0]));
  close_all(fd, HELD);
}

/* A server with room for 40 connections: 32 streams that close must free
 * theirs at once (they used to wait for the next heartbeat, 15 s), so 32
 * new streams and a request fit right after. */
static void test_closed_streams_free_their_connections(void) {
  td_server_opts o;
  td_t_server_opts(&o, run_dir);
  o.max_connections = 40;
  int port;
  td_server *s = td_t_server_start(&o, &port);
  CHECK(s != NULL);
  int fd[32];
  for (int round = 0; round < 2; round++) {
    int open = 0;
    double dl = td_t_now_s() + 10;
    for (int i = 0; i < 32; i++) {
      while ((fd[i] = td_t_open_stream(port)) < 0 && td_t_now_s() < dl)
        usleep(100000);
      open += fd[i] >= 0;
    }
    CHECK_INT(open, ==, 32);
    CHECK(answers(port));
    close_all(fd, 32);
  }
  td_server_stop(s);
}

/* Reads what fd has now into acc; 1 once the server has closed it. */
static int drain_closed(int fd, char *acc, size_t cap, size_t *len) {
  for (;;) {
    ssize_t n = recv(fd, acc + *len, cap - 1 - *len, MSG_DONTWAIT);
    if (n > 0) {
      *len += (size_t)n;
      acc[*len] = '\0';
      if (*len + 1 < cap)
        continue;
    }
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

/* Slow-loris: headers after the request line, or a body, trickled in a
 * byte every 100 ms (each well within the idle timeout, which it used to
 * reset for ever) are cut off at their total deadline with a 408; a
 * connection that never starts a request is closed then without a word;
 * an event stream, which is being answered, outlives every deadline. */
static void test_deadlines(void) {
  td_server_opts o;
  td_t_server_opts(&o, run_dir);
  o.token = td_t_token;
  o.headers_ms = 1000;
  o.body_ms = 1500;
  int port;
  td_server *s = td_t_server_start(&o, &port);
  CHECK(s != NULL);
  int stream = td_t_open_stream(port);
  int fd[3] = {td_t_connect(port), td_t_connect(port), td_t_connect(port)};
  const char line[] = "GET /api/run HTTP/1.1\r\n";
  td_t_send_all(fd[0], line, sizeof line - 1);
  char head[256];
  int hl = snprintf(head, sizeof head,
                    "POST /api/suspects/sessions HTTP/1.1\r\n"
                    "Host: 127.0.0.1\r\nX-Tardis-Token: %s\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length: 1000\r\n\r\n",
                    td_t_token);
  td_t_send_all(fd[1], head, (size_t)hl);
  const char slow[] = "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  static char acc[3][4096];
  size_t len[3] = {0, 0, 0};
  double t0 = td_t_now_s(), closed_at[3] = {0, 0, 0};
  for (int k = 0; td_t_now_s() - t0 < 6; k++) {
    int open = 0;
    for (int i = 0; i < 3; i++) {
      if (fd[i] < 0 || closed_at[i])
        continue;
      if (drain_closed(fd[i], acc[i], sizeof acc[i], &len[i])) {
        closed_at[i] = td_t_now_s() - t0;
        continue;
      }
      open++;
      char b = i == 0 ? slow[k % (int)(sizeof slow - 1)] : ' ';
      if (i < 2) /* the third stays silent */
        send(fd[i], &b, 1, MSG_NOSIGNAL);
    }
    if (!open)
      break;
    usleep(100000);
  }
  fprintf(stderr,
          "  closed after: slow headers %.2f s, slow body %.2f s, silent "
          "%.2f s\n",
          closed_at[0], closed_at[1], closed_at[2]);
  CHECK(closed_at[0] >= 0.9 && closed_at[0] < 3);
  CHECK(closed_at[1] >= 1.4 && closed_at[1] < 3.5);
  CHECK(closed_at[2] >= 0.9 && closed_at[2] < 3);
  CHECK(strstr(acc[0], " 408 ") && strstr(acc[0], "headers"));
  CHECK(strstr(acc[1], " 408 ") && strstr(acc[1], "body"));
  CHECK_INT((long)len[2], ==, 0);
  /* the stream, open since before them all, is still there */
  char sb[4096];
  size_t sl = 0;
  CHECK(stream >= 0 && !drain_closed(stream, sb, sizeof sb, &sl));
  CHECK(answers(port));
  close_all(fd, 3);
  close_all(&stream, 1);
  td_server_stop(s);
}

int main(void) {
  td_err err;
  snprintf(run_dir, sizeof run_dir, "%s/run", td_t_tmpdir("server_load"));
  if (sf_make_run(run_dir, 1, 1, &err)) {
    fprintf(stderr, "fixture: %s\n", err.msg);
    return 1;
  }
  td_server_opts o;
  td_t_server_opts(&o, run_dir);
  td_server *srv = td_t_server_start(&o, &port0);
  if (!srv)
    return 1;
  td_t_use_token(srv);
  RUN(test_idle_and_slow);
  RUN(test_streams);
  td_server_stop(srv);
  RUN(test_closed_streams_free_their_connections);
  RUN(test_deadlines);
  return td_t_finish();
}
